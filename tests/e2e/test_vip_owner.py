"""A keepalived-style VIP end to end (issue 12, item 4): two VMs on different chassis
both list VIP v in their allowed address pairs; v is routed to the one that last
announced it with a gratuitous ARP (the agent of its chassis learns it from the ARP and
reports it; the owner rides every chassis' stream). A client behind a router on a third
chassis reaches A while A holds v, then B once A dropped v and B announced it."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import running_lab, wait_for
from tests.e2e.test_l3 import captured, open_ingress, router_between  # noqa: F401

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A 3-chassis lab, every agent registered and alive."""
    with running_lab(tmp_path_factory.mktemp("vipowner"), chassis=3) as fixture:
        yield fixture


def announce(vm, vip: str) -> None:
    """Configure the VIP inside the VM and announce it (gratuitous ARP, like keepalived)."""
    vm.exec("ip", "address", "add", f"{vip}/32", "dev", "eth0")
    vm.exec("busybox", "arping", "-U", "-c", "2", "-I", "eth0", vip, check=False, timeout=10)


def pinged(client, vip: str) :
    """What a ping of the VIP from the client shows to who captures it: the action of a
    capture, which fails loudly when the ping itself did."""
    def action():
        assert client.ping(vip, count=2, deadline=3), f"{client.name} pings {vip}"
    return action


def test_a_shared_vip_follows_the_gratuitous_arp(lab, open_ingress):
    net = lab.api.network.get_network(lab.network("vo-net", "10.73.1.0/24").id)
    other = lab.api.network.get_network(lab.network("vo-other", "10.73.2.0/24").id)
    router_between(lab, "vo-router", net, other)
    vip = "10.73.1.250"
    a = lab.vm("vo-a", net, chassis="c2", static=True)
    b = lab.vm("vo-b", net, chassis="c3", static=True)
    for vm in (a, b):
        lab.api.network.update_port(vm.port_id, allowed_address_pairs=[{"ip_address": vip}])
    client = lab.vm("vo-c", other, chassis="c1", static=True)
    assert wait_for(lambda: client.ping(a.ip, count=1, deadline=2), 30, "routing works")

    # A is MASTER: it configures the VIP and announces it; the client reaches A
    announce(a, vip)
    assert wait_for(lambda: client.ping(vip, count=1, deadline=2), 30,
                    "the VIP answers through the router once A announced it")
    seen = captured(lab, "vo-a", "eth0", "icmp", pinged(client, vip))
    assert f"{client.ip} > {vip}" in seen, seen

    # failover: A drops the VIP, B takes it and announces it; the client reaches B
    a.exec("ip", "address", "del", f"{vip}/32", "dev", "eth0")
    announce(b, vip)
    assert wait_for(lambda: client.ping(vip, count=1, deadline=2), 30,
                    "the VIP answers through the router once B announced it")
    seen = captured(lab, "vo-b", "eth0", "icmp", pinged(client, vip))
    assert f"{client.ip} > {vip}" in seen, seen
    seen = captured(lab, "vo-a", "eth0", "icmp", pinged(client, vip))
    assert f"{client.ip} > {vip}" not in seen, seen
