"""The lab on etcd (issue 7): three etcd members and two servers on loopback, agents
given both servers; with the whole control plane stopped, VMs keep exchanging traffic
without loss, and once it is back the agents resync and a change made then reaches the
data plane.

One lab serves the module; its inventory tears everything down, failed or not."""

from __future__ import annotations

import re
import shutil
import time

import httpx
import pytest

from plexus.lab import Lab, LabSpec
from plexus.lab.etcd import control_plane_entries, start_control_plane, stop_control_plane
from plexus.lab.inventory import alive
from plexus.lab.lab import server_answers
from tests.e2e.conftest import LabFixture, alive_chassis, require_lab_host, unique_name, wait_for
from tests.ha.conftest import admin_token

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A 2-chassis lab on a 3-member etcd cluster with 2 servers, agents registered."""
    require_lab_host()
    if not shutil.which("etcd"):
        pytest.fail("etcd is missing: run scripts/bootstrap.sh")
    root = tmp_path_factory.mktemp("etcdlab")
    made = Lab(LabSpec(name=unique_name(), chassis=2, gateways=1, store="etcd"), root)
    made.up()
    try:
        fixture = LabFixture(made)
        wait_for(lambda: alive_chassis(fixture) == {"c1", "c2"}, 30, "both agents registered")
        yield fixture
    finally:
        for log in sorted(made.dir.glob("*.log")) + sorted(made.dir.glob("*/agent.log")):
            print(f"--- {log.relative_to(made.dir)} (last lines)")     # shown on failure
            print("\n".join(log.read_text(errors="replace").splitlines()[-40:]))
        errors = made.down()
        assert not errors, errors



def test_three_members_two_servers_and_agents_that_know_both(lab):
    labels = sorted(e["label"] for e in control_plane_entries(lab.lab))
    assert labels == ["etcd/etcd1", "etcd/etcd2", "etcd/etcd3", "server", "server2"]
    first, second = lab.lab.urls
    assert server_answers(first) and server_answers(second)
    token = admin_token(first)                       # any server honours any server's token
    made = httpx.post(f"{second}/v2.0/networks", json={"network": {"name": "via-2"}},
                      headers={"X-Auth-Token": token}, timeout=30)
    assert made.status_code == 201, made.text
    ident = made.json()["network"]["id"]
    seen = httpx.get(f"{first}/v2.0/networks/{ident}", headers={"X-Auth-Token": token},
                     timeout=30)
    assert seen.status_code == 200 and seen.json()["network"]["name"] == "via-2"
    for entry in lab.lab.inventory.entries("process"):
        if entry["label"].endswith("/agent"):
            assert f"{first},{second}" in " ".join(entry["argv"])


def test_traffic_survives_the_whole_control_plane_stopping(lab):
    net = lab.network("outage", "10.71.0.0/24")
    a = lab.vm("out-a", net, chassis="c1")
    b = lab.vm("out-b", net, chassis="c2")
    assert a.ping(b.ip)
    log = lab.lab.dir / "pids" / "outage-ping.txt"
    ping = lab.lab.spawn("outage-ping", ["sh", "-c", 'ping -n -i 0.05 -c 300 -W 1 "$1" > "$0"',
                                         str(log), b.ip], ns=a.netns)
    time.sleep(0.5)

    stopped = stop_control_plane(lab.lab)          # both servers, then all three members
    assert len(stopped) == 5
    assert not any(server_answers(url) for url in lab.lab.urls)
    time.sleep(3)                                  # the data plane is on its own
    start_control_plane(lab.lab, stopped)

    # The agents come back on their own (resync, heartbeats), and a change made now —
    # a new port, booted by DHCP from c2's agent — reaches both chassis' flows.
    wait_for(lambda: alive_chassis(lab) == {"c1", "c2"}, 30, "agents alive again")
    c = lab.vm("out-c", net, chassis="c2")
    assert a.ping(c.ip) and c.ping(b.ip)

    wait_for(lambda: not alive(ping), 30, "the ping to finish")
    text = log.read_text()
    got = {int(n) for n in re.findall(r"icmp_seq=(\d+) ", text)}
    lost = sorted(set(range(1, 301)) - got)
    assert re.search(r"300 packets transmitted, 300 received", text), (
        f"lost echo requests {lost} (0.05 s apart; the outage began near seq 10): "
        f"{text[-300:]}")
