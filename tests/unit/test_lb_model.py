"""The data plane's form of a load balancer (plexus.model.lbaas): which members are in
selection, how the hash space is shared out by weight, and that slots interleave."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, strategies as st

from plexus.model.lbaas import HASH_SOURCE_IP, HASH_SOURCE_PORT, LbMember, slots, \
    to_loadbalancer


def member(i, weight=1, **kw):
    return {"id": f"m{i}", "pool_id": "p", "address": f"10.0.0.{i}", "protocol_port": 80,
            "weight": weight, "admin_state_up": True, "backup": False, **kw}


def tree(members, persistence=None, algorithm="ROUND_ROBIN", monitored=True):
    return {"id": "lb", "admin_state_up": True, "vip_address": "10.0.0.100",
            "vip_network_id": "n", "vip_port_id": "vp", "children": {
                "listeners": {"l": {"id": "l", "protocol": "TCP", "protocol_port": 80,
                                    "default_pool_id": "p", "admin_state_up": True}},
                "pools": {"p": {"id": "p", "protocol": "TCP", "lb_algorithm": algorithm,
                                "admin_state_up": True,
                                "session_persistence": persistence}},
                "members": {m["id"]: m for m in members},
                "healthmonitors": {"h": {"id": "h", "pool_id": "p", "type": "TCP"}}
                if monitored else {}}}


def test_selection_skips_down_disabled_zero_weight_and_backups():
    members = [member(1), member(2, admin_state_up=False), member(3, weight=0),
               member(4), member(5, backup=True)]
    lb = to_loadbalancer(tree(members), {"m4": "ERROR"})
    assert [m.id for m in lb.listeners[0].members] == ["m1"]
    assert lb.listeners[0].hash == HASH_SOURCE_PORT
    # no primary left: the backup serves
    lb = to_loadbalancer(tree(members), {"m1": "ERROR", "m4": "ERROR"})
    assert [m.id for m in lb.listeners[0].members] == ["m5"]
    # an unmonitored pool ignores stale reports
    lb = to_loadbalancer(tree(members, monitored=False), {"m1": "ERROR"})
    assert [m.id for m in lb.listeners[0].members] == ["m1", "m4"]


def test_source_ip_hashing():
    assert to_loadbalancer(tree([member(1)], {"type": "SOURCE_IP"})).listeners[0].hash \
        == HASH_SOURCE_IP
    assert to_loadbalancer(tree([member(1)], algorithm="SOURCE_IP")).listeners[0].hash \
        == HASH_SOURCE_IP


def test_disabled_load_balancer_has_no_data_plane():
    assert to_loadbalancer({**tree([member(1)]), "admin_state_up": False}).listeners == ()
    # the reports kept on the members count when no health is given
    kept = [member(1), member(2, **{"plexus:health": "ERROR"})]
    assert [m.id for m in to_loadbalancer(tree(kept)).listeners[0].members] == ["m1"]


@given(st.lists(st.integers(1, 256), min_size=1, max_size=40))
def test_slots_share_by_weight(weights):
    members = tuple(LbMember(f"m{i:02}", f"10.0.{i}.1", 80, w) for i, w in enumerate(weights))
    bits, order = slots(members)
    total = 1 << bits
    assert len(order) == total and total >= min(8 * len(members), 256)
    counts = Counter(m.id for m in order)
    weight = sum(weights)
    for m in members:       # each share within one slot of its exact share
        assert abs(counts[m.id] - total * m.weight / weight) < 1


def test_slots_interleave():
    members = tuple(LbMember(f"m{i}", f"10.0.0.{i}", 80, 1) for i in range(3))
    bits, order = slots(members)
    assert bits == 5
    # consecutive source ports go round the members
    assert [m.id for m in order[:6]] == ["m0", "m1", "m2", "m0", "m1", "m2"]


def test_health_monitor_timing_is_at_least_a_second_and_timeout_within_delay():
    """delay 0 (the API takes it) would probe without pause: 1 s at least; a timeout
    never longer than the delay; a disabled pool or monitor, or an HTTP one, is not
    probed; disabled members are left out, weight-0 ones kept."""
    from plexus.model.lbaas import LbProbe
    members = [member(1), {**member(2), "admin_state_up": False},
               {**member(3), "weight": 0, "monitor_port": 9000}]
    t = tree(members)
    t["children"]["healthmonitors"] = {"hm": {"id": "hm", "pool_id": "p", "type": "TCP",
                                              "delay": 0, "timeout": 0, "max_retries": 2}}
    (hm,) = to_loadbalancer(t, {"m1": "ERROR"}).monitors
    assert (hm.delay, hm.timeout, hm.max_retries, hm.max_retries_down) == (1, 1, 2, 3)
    assert hm.probes == (LbProbe("m1", "10.0.0.1", 80, "ERROR"),
                         LbProbe("m3", "10.0.0.3", 9000, ""))
    t["children"]["healthmonitors"]["hm"].update(delay=3, timeout=10)
    assert to_loadbalancer(t).monitors[0].timeout == 3
    t["children"]["healthmonitors"]["hm"]["type"] = "HTTP"
    assert to_loadbalancer(t).monitors == ()
