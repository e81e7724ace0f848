"""Hairpin and allowed-address-pair VIPs end to end (issue 12, items 3 and 4), in a
3-chassis lab (c1 and c2 gateway-capable) like tests/e2e/test_l3.py's.

Hairpin: VMs behind one router reach another VM's floating IP — from the floating IP's
own chassis and from another, with and without a floating IP of their own — by ping and
TCP, and the target sees as source what Neutron's L3 agent shows it: the caller's floating
IP, or else the router's gateway address.

VIP: a /32 allowed address pair configured inside a VM is reached through the router
from another network (ping, TCP), and traffic sourced from the VIP is routed (to the
other network, and SNATed to the internet host)."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import LabFixture, running_lab, wait_for
from tests.e2e.test_l3 import (  # noqa: F401 - fixtures used by name
    INET, captured, gateway_address, open_ingress, public, router_between,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A 3-chassis lab, c1 and c2 gateway-capable, every agent registered and alive."""
    with running_lab(tmp_path_factory.mktemp("hairpin"), chassis=3, gateways=2) as fixture:
        yield fixture


def fip_of(lab: LabFixture, public, vm) -> str:
    """A floating IP on ``public`` for the VM's port; its address."""
    fip = lab.api.network.create_ip(floating_network_id=public.id, port_id=vm.port_id)
    return fip.floating_ip_address


def seen_source(lab: LabFixture, target: str, caller: str, address: str, port: int) -> str:
    """What the target VM's eth0 sees while the caller pings ``address`` and sends it TCP."""
    def both():
        lab.vm(caller).ping(address, count=2, deadline=3)
        lab.vm(caller).tcp_client(address, port, size=1 << 10, timeout=3)
    return captured(lab, target, "eth0", f"icmp or tcp port {port}", both)


def test_hairpin_to_a_floating_ip_behind_the_same_router(lab, public, open_ingress):
    left = lab.api.network.get_network(lab.network("hp-left", "10.71.1.0/24").id)
    right = lab.api.network.get_network(lab.network("hp-right", "10.71.2.0/24").id)
    router = router_between(lab, "hp-router", left, right)
    lab.api.network.update_router(router, external_gateway_info={"network_id": public.id})
    gateway = gateway_address(lab, router)
    target = lab.vm("hp-b", right, chassis="c2", static=True)
    target_fip = fip_of(lab, public, target)
    callers = {                          # name: (network, chassis, with a floating IP)
        "hp-same": (left, "c2", False),  # the target's chassis
        "hp-other": (left, "c3", False),  # another chassis, not a gateway
        "hp-fip": (left, "c1", True),    # another chassis, with a floating IP
        "hp-net": (right, "c2", True),   # the target's own network and chassis
    }
    sources = {}
    for name, (net, chassis, with_fip) in callers.items():
        vm = lab.vm(name, net, chassis=chassis, static=True)
        sources[name] = fip_of(lab, public, vm) if with_fip else gateway
    inet = lab.node("inet")
    assert wait_for(lambda: inet.ping(target_fip, count=1, deadline=2), 30,
                    "inet reaches the target's floating IP")
    lab.vm("hp-b").tcp_server(5701)
    for name, source in sources.items():
        vm = lab.vm(name)
        assert wait_for(lambda: vm.ping(target_fip, count=1, deadline=2), 30,
                        f"{name} pings the floating IP of a VM behind its own router")
        assert wait_for(lambda: vm.tcp_client(target_fip, 5701, size=1 << 16,
                                              timeout=3)["ok"],
                        20, f"{name} reaches it by TCP")
        assert vm.tcp_client(target_fip, 5701, size=1 << 20)["ok"]
        seen = seen_source(lab, "hp-b", name, target_fip, 5701)
        assert f"IP {source} > {target.ip}: ICMP" in seen, (name, seen)
        assert f"IP {source}." in seen, (name, seen)               # TCP too
        assert f"IP {vm.ip} " not in seen and f"IP {vm.ip}." not in seen, (name, seen)
    # in the cloud: nothing of it is sent to the upstream router (its MAC), which would
    # otherwise route it back
    upstream = lab.node("ext").exec("cat", "/sys/class/net/eth0/address").stdout.strip()
    via_upstream = captured(lab, "ext", "eth0", f"ether dst {upstream} and host {target_fip}",
                            lambda: seen_source(lab, "hp-b", "hp-other", target_fip, 5701))
    assert not via_upstream.strip(), via_upstream
    # the internet still reaches it, and what was there keeps working
    assert inet.tcp_client(target_fip, 5701)["ok"]
    assert lab.vm("hp-other").ping(INET)


def test_allowed_address_pair_vip_is_routed_to_and_from(lab, public, open_ingress):
    net = lab.api.network.get_network(lab.network("vip-net", "10.72.1.0/24").id)
    other = lab.api.network.get_network(lab.network("vip-other", "10.72.2.0/24").id)
    router = router_between(lab, "vip-router", net, other)
    lab.api.network.update_router(router, external_gateway_info={"network_id": public.id})
    gateway = gateway_address(lab, router)
    vip = "10.72.1.250"
    holder = lab.vm("vip-a", net, chassis="c3", static=True)
    lab.api.network.update_port(holder.port_id,
                                allowed_address_pairs=[{"ip_address": vip}])
    holder.exec("ip", "address", "add", f"{vip}/32", "dev", "eth0")
    neighbour = lab.vm("vip-n", net, chassis="c1", static=True)
    client = lab.vm("vip-c", other, chassis="c1", static=True)
    # on its own network it works already (ARP flooded, answered by the holder)
    assert wait_for(lambda: neighbour.ping(vip, count=1, deadline=2), 30,
                    "the VIP answers on its own network")
    # routed to the VIP: ping and TCP from another network behind the router
    assert wait_for(lambda: client.ping(vip, count=1, deadline=2), 30,
                    "the VIP answers through the router")
    holder.tcp_server(5801)
    assert client.tcp_client(vip, 5801)["ok"]
    seen = captured(lab, "vip-a", "eth0", "icmp",
                    lambda: client.ping(vip, count=2, deadline=3))
    assert f"{client.ip} > {vip}" in seen, seen
    # sourced from the VIP (the holder's routes pick it as source): routed to the other
    # network, and SNATed to the internet host
    holder.exec("ip", "route", "add", "10.72.2.0/24", "via", "10.72.1.1",
                "src", vip)
    holder.exec("ip", "route", "add", f"{INET}/32", "via", "10.72.1.1", "src", vip)
    client.tcp_server(5802)
    assert wait_for(lambda: holder.ping(client.ip, count=1, deadline=2), 20,
                    "the VIP's traffic is routed to the other network")
    assert holder.tcp_client(client.ip, 5802)["ok"]
    seen = captured(lab, "vip-c", "eth0", "icmp or tcp port 5802", lambda: (
        holder.ping(client.ip, count=2, deadline=3),
        holder.tcp_client(client.ip, 5802, size=1 << 10, timeout=3)))
    assert f"{vip} > {client.ip}" in seen and f"{vip}." in seen, seen
    assert f"{holder.ip} > " not in seen, seen
    assert wait_for(lambda: holder.ping(INET, count=1, deadline=2), 30,
                    "the VIP pings inet through SNAT")
    inet = lab.node("inet")
    inet.tcp_server(5803)
    assert wait_for(lambda: holder.tcp_client(INET, 5803, size=1 << 12, timeout=3)["ok"], 20,
                    "TCP from the VIP to inet (port-block SNAT)")
    seen = captured(lab, "inet", "eth0", "icmp or tcp port 5803", lambda: (
        holder.ping(INET, count=2, deadline=3),
        holder.tcp_client(INET, 5803, size=1 << 10, timeout=3)))
    assert f"{gateway} > {INET}" in seen and f"{gateway}." in seen, seen
    assert vip not in seen, seen
