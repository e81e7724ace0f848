"""Nova notifier logic: which events a port or floating IP write means, and the batch
sender's batching, retry and bounded queue (with a scripted send, no timing)."""

from __future__ import annotations

import threading
import uuid

from plexus.config import NovaConfig
from plexus.server.nova import (
    DROP, RETRY, SENT, BatchNotifier, floatingip_events, is_compute_port, port_events,
)

SERVER = str(uuid.uuid4())


def port(**kw):
    base = {"id": "p1", "device_id": SERVER, "device_owner": "compute:nova", "status": "DOWN",
            "mac_address": "fa:16:3e:00:00:01",
            "fixed_ips": [{"subnet_id": "s", "ip_address": "10.0.0.5"}]}
    return {**base, **kw}


def test_compute_ports_only():
    assert is_compute_port(port())
    assert not is_compute_port(port(device_owner="network:dhcp"))
    assert not is_compute_port(port(device_id="vm-1"))
    assert not is_compute_port(port(device_id=""))


def test_status_transitions_as_neutron():
    cfg = NovaConfig()
    plugged = port_events(port(), port(status="ACTIVE"), cfg)
    assert plugged == [{"name": "network-vif-plugged", "server_uuid": SERVER, "tag": "p1",
                        "status": "completed"}]
    assert port_events(port(status="BUILD"), port(status="ERROR"), cfg)[0]["status"] == "failed"
    assert port_events(port(status="ACTIVE"), port(status="DOWN"), cfg)[0]["name"] == \
        "network-vif-unplugged"
    assert port_events(port(status="ERROR"), port(status="DOWN"), cfg) == []
    assert port_events(port(status="ACTIVE"), port(status="ACTIVE", name="x"), cfg) == []
    assert port_events(port(), port(status="ACTIVE", device_owner=""), cfg) == []
    off = NovaConfig(notify_nova_on_port_status_changes=False)
    assert port_events(port(), port(status="ACTIVE"), off) == []


def test_data_changes_and_delete():
    cfg = NovaConfig()
    moved = port(fixed_ips=[{"subnet_id": "s", "ip_address": "10.0.0.9"}])
    assert port_events(port(), moved, cfg) == [
        {"name": "network-changed", "server_uuid": SERVER, "tag": "p1"}]
    assert port_events(port(), port(mac_address="fa:16:3e:00:00:02"), cfg)[0]["name"] == \
        "network-changed"
    assert port_events(None, port(), cfg) == []            # a new port: nothing yet
    assert port_events(port(), None, cfg) == [
        {"name": "network-vif-deleted", "server_uuid": SERVER, "tag": "p1"}]
    off = NovaConfig(notify_nova_on_port_data_changes=False)
    assert port_events(port(), moved, off) == [] and port_events(port(), None, off) == []


def test_floating_ip_moves_tell_both_ports():
    cfg = NovaConfig()
    ports = {"p1": port(), "p2": port(id="p2"), "r": port(id="r", device_owner="network:router")}
    events = floatingip_events({"port_id": "p1"}, {"port_id": "p2"}, cfg, ports.get)
    assert [e["tag"] for e in events] == ["p1", "p2"]
    assert floatingip_events(None, {"port_id": "p1"}, cfg, ports.get)[0]["tag"] == "p1"
    assert floatingip_events({"port_id": "p1"}, None, cfg, ports.get)[0]["tag"] == "p1"
    assert floatingip_events({"port_id": "p1"}, {"port_id": "p1"}, cfg, ports.get) == []
    assert floatingip_events(None, {"port_id": "r"}, cfg, ports.get) == []
    assert floatingip_events(None, {"port_id": "gone"}, cfg, ports.get) == []


class ScriptedSend:
    """A send whose outcomes are scripted; it can hold a call until released."""

    def __init__(self, outcomes=()):
        self.outcomes = list(outcomes)
        self.calls: list[list[dict]] = []
        self.entered = threading.Semaphore(0)
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, batch):
        self.calls.append(list(batch))
        self.entered.release()
        assert self.gate.wait(10)
        return self.outcomes.pop(0) if self.outcomes else SENT


def notifier(send, **kw):
    opts = dict(interval=0, retry_initial=0.001, retry_max=0.004, max_queue=100, max_batch=50)
    opts.update(kw)
    return BatchNotifier(send, **opts)


def ev(i):
    return {"name": "network-changed", "server_uuid": SERVER, "tag": f"p{i}"}


def test_first_event_goes_alone_then_later_ones_together():
    send = ScriptedSend()
    send.gate.clear()
    n = notifier(send).start()
    try:
        n.queue(ev(0))
        assert send.entered.acquire(timeout=10)     # the first is being sent at once
        for i in range(1, 6):
            n.queue(ev(i))                          # these wait for the next request
        send.gate.set()
        assert send.entered.acquire(timeout=10)
        assert send.calls == [[ev(0)], [ev(i) for i in range(1, 6)]]
    finally:
        n.stop()
    assert n.delivered == 6 and n.dropped == 0


def test_retries_with_backoff_until_sent_without_loss():
    send = ScriptedSend([RETRY, RETRY, RETRY, SENT])
    n = notifier(send).start()
    try:
        n.queue(ev(1))
        for _ in range(4):
            assert send.entered.acquire(timeout=10)
    finally:
        n.stop()
    assert send.calls == [[ev(1)]] * 4
    assert n.retries == 3 and n.delivered == 1 and n.dropped == 0


def test_backoff_doubles_up_to_the_cap():
    waits = []
    n = notifier(ScriptedSend([RETRY] * 5), retry_initial=0.5, retry_max=2.0)
    n._pause = lambda seconds: waits.append(seconds) or False
    assert n._deliver([ev(1)])
    assert waits == [0.5, 1.0, 2.0, 2.0, 2.0]


def test_a_send_that_raises_is_retried():
    calls = []

    def send(batch):
        calls.append(batch)
        if len(calls) == 1:
            raise ConnectionError("nova down")
        return SENT
    n = notifier(send)
    n._pause = lambda seconds: False
    assert n._deliver([ev(1)])
    assert len(calls) == 2 and n.delivered == 1


def test_refused_batches_are_dropped_and_counted():
    n = notifier(ScriptedSend([DROP]))
    assert n._deliver([ev(1), ev(2)])
    assert n.dropped == 2 and n.delivered == 0


def test_full_queue_drops_the_oldest_and_counts(caplog):
    send = ScriptedSend()
    send.gate.clear()
    n = notifier(send, max_queue=3).start()
    try:
        n.queue(ev(0))
        assert send.entered.acquire(timeout=10)     # Nova is "slow": the sender is busy
        for i in range(1, 6):
            n.queue(ev(i))
        assert n.pending() == 3 and n.dropped == 2
        assert "dropped" in caplog.text
        send.gate.set()
        assert send.entered.acquire(timeout=10)
        assert send.calls[1] == [ev(3), ev(4), ev(5)]
    finally:
        n.stop()


def test_batches_are_bounded():
    send = ScriptedSend()
    send.gate.clear()
    n = notifier(send, max_batch=2).start()
    try:
        n.queue(ev(0))
        assert send.entered.acquire(timeout=10)
        for i in range(1, 6):
            n.queue(ev(i))
        send.gate.set()
        for _ in range(3):
            assert send.entered.acquire(timeout=10)
    finally:
        n.stop()
    assert [len(c) for c in send.calls] == [1, 2, 2, 1]


def test_stop_during_a_retry_keeps_the_batch_queued():
    n = notifier(ScriptedSend([RETRY]))
    n._pause = lambda seconds: True                  # stopped while waiting to retry
    assert not n._deliver([ev(1), ev(2)])
    assert n.pending() == 2
