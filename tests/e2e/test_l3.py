"""Routing end to end (issue 5): a 3-chassis lab (c1 and c2 gateway-capable) whose
agents compile routers with ``l3.with_l3`` — VMs on two subnets on different chassis
reach each other through a router (ping, TCP), routed on the chassis where the packet
enters; a VM with a floating IP is reached from the internet host by that address and
its traffic leaves from its own chassis (no VXLAN on the underlay), and re-associating
the floating IP takes effect at once (gratuitous ARP). One lab serves the module; each
test makes its own networks, routers and VMs; the external network "public" (flat,
physnet1, the lab's 203.0.113.0/24 behind ``ext``) is shared."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import LabFixture, capture_during, public_network, running_lab, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A 3-chassis lab, c1 and c2 gateway-capable, every agent registered and alive."""
    with running_lab(tmp_path_factory.mktemp("l3"), chassis=3, gateways=2) as fixture:
        yield fixture


def router_between(lab: LabFixture, name: str, *networks):
    """A router with an interface on each network's (first) subnet."""
    api = lab.api.network
    router = api.create_router(name=name)
    for net in networks:
        api.add_interface_to_router(router, subnet_id=net.subnet_ids[0])
    return router


def test_vms_on_two_subnets_on_different_chassis_reach_each_other_through_a_router(lab):
    left = lab.network("ew-left", "10.61.1.0/24")
    right = lab.network("ew-right", "10.61.2.0/24")
    left, right = (lab.api.network.get_network(n.id) for n in (left, right))
    router_between(lab, "ew-router", left, right)
    a = lab.vm("ew-a", left, chassis="c1", static=True)
    b = lab.vm("ew-b", right, chassis="c3", static=True)
    assert wait_for(lambda: lab.vm("ew-a").ping(b.ip, count=1, deadline=2), 20,
                    "a pings b through the router")
    assert lab.vm("ew-b").ping(a.ip)
    assert lab.vm("ew-a").ping("10.61.1.1") and lab.vm("ew-a").ping("10.61.2.1")
    lab.vm("ew-b").tcp_server(5101)
    result = lab.vm("ew-a").tcp_client(b.ip, 5101)
    assert result["ok"], result
    ttl = lab.vm("ew-a").exec("ping", "-n", "-c", "1", "-W", "2", b.ip, check=False).stdout
    assert "ttl=63" in ttl, ttl           # one router hop


INET = "198.19.0.10"


@pytest.fixture(scope="module")
def public(lab):
    """The external network: flat on physnet1, the lab's provider segment."""
    return public_network(lab.api.network)


@pytest.fixture(scope="module")
def open_ingress(lab):
    """Let ping and TCP in to the admin project's default security group."""
    api = lab.api.network
    group = next(g for g in api.security_groups(name="default")
                 if g.project_id == lab.api.current_project_id)
    for proto in ("icmp", "tcp"):
        api.create_security_group_rule(security_group_id=group.id, direction="ingress",
                                       ethertype="IPv4", protocol=proto,
                                       remote_ip_prefix="0.0.0.0/0")
    return group


# VXLAN except the BFD sessions it carries (inner UDP to port 3784): offsets from the
# outer UDP header — VXLAN header 8, inner Ethernet 16 (type at 28), inner IPv4 30
# (protocol at 39), inner UDP 50 (destination port at 52)
NOT_BFD = "udp port 4789 and not (udp[28:2] = 0x0800 and udp[39] = 17 and udp[52:2] = 3784)"


def vxlan_during(lab: LabFixture, action) -> str:
    """What the underlay carries as VXLAN (but BFD) while ``action()`` runs (tcpdump in
    ``ul``)."""
    return captured(lab, "ul", "br-ul", NOT_BFD, action)


def captured(lab: LabFixture, node: str, iface: str, expression: str, action) -> str:
    """tcpdump's lines (``-q``) on ``iface`` of ``node`` while ``action()`` runs."""
    return capture_during(lab, node, expression, action, ifname=iface)


def test_floating_ip_reached_from_outside_and_leaving_from_its_own_chassis(
        lab, public, open_ingress):
    net = lab.api.network.get_network(lab.network("fip-net", "10.62.1.0/24").id)
    router = router_between(lab, "fip-router", net)
    lab.api.network.update_router(router, external_gateway_info={"network_id": public.id})
    vm = lab.vm("fip-a", net, chassis="c3", static=True)
    port = lab.api.network.get_port(vm.port_id)
    fip = lab.api.network.create_ip(floating_network_id=public.id, port_id=port.id)
    address = fip.floating_ip_address
    inet = lab.node("inet")
    assert wait_for(lambda: inet.ping(address, count=1, deadline=2), 30,
                    "inet pings the floating IP")
    assert wait_for(lambda: lab.api.network.get_ip(fip.id).status == "ACTIVE", 10,
                    "the floating IP reported ACTIVE by c3")
    assert wait_for(lambda: lab.api.network.get_router(router.id).status == "ACTIVE", 10,
                    "the router reported ACTIVE by its active gateway")
    lab.vm("fip-a").tcp_server(5201)
    result = inet.tcp_client(address, 5201)
    assert result["ok"], result
    # outbound from the VM leaves by c3's own br-ex: the underlay carries no VXLAN for it
    seen = vxlan_during(lab, lambda: lab.vm("fip-a").ping(INET, count=5, deadline=5))
    assert lab.vm("fip-a").ping(INET)
    assert not seen.strip(), seen
    # the internet host sees the floating IP as the source
    seen = captured(lab, "inet", "eth0", "icmp",
                    lambda: lab.vm("fip-a").ping(INET, count=2, deadline=3))
    assert f"{address} > {INET}" in seen, seen

    # re-association: the floating IP moves to a VM on c1 and answers there at once
    other = lab.vm("fip-b", net, chassis="c1", static=True)
    lab.vm("fip-b").tcp_server(5203)
    lab.api.network.update_ip(fip, port_id=None)
    lab.api.network.update_ip(fip, port_id=other.port_id)
    started = time.monotonic()
    assert wait_for(lambda: inet.tcp_client(address, 5203, size=1 << 12, timeout=2)["ok"],
                    20, "the floating IP reaches fip-b after re-association")
    assert time.monotonic() - started < 10


def gateway_address(lab: LabFixture, router) -> str:
    info = lab.api.network.get_router(router.id).external_gateway_info
    return next(ip["ip_address"] for ip in info["external_fixed_ips"]
                if ":" not in ip["ip_address"])


def test_snat_from_the_vm_own_chassis_as_the_gateway_address(lab, public):
    net = lab.api.network.get_network(lab.network("snat-net", "10.63.1.0/24").id)
    router = router_between(lab, "snat-router", net)
    lab.api.network.update_router(router, external_gateway_info={"network_id": public.id})
    gateway = gateway_address(lab, router)
    vm = lab.vm("snat-a", net, chassis="c3", static=True)
    # ICMP is SNATed on the active gateway (c1 or c2)
    assert wait_for(lambda: lab.vm("snat-a").ping(INET, count=1, deadline=2), 30,
                    "a VM without a floating IP pings inet")
    seen = captured(lab, "inet", "eth0", "icmp",
                    lambda: lab.vm("snat-a").ping(INET, count=2, deadline=3))
    assert f"{gateway} > {INET}" in seen, seen
    # TCP in c3's own port block, out of c3's own br-ex: the underlay carries only replies
    inet = lab.node("inet")
    inet.tcp_server(5301)
    assert wait_for(lambda: lab.vm("snat-a").tcp_client(INET, 5301, size=1 << 12,
                                                        timeout=3)["ok"],
                    20, "TCP to inet through SNAT (the chassis leased a block)")
    results: dict = {}
    under = vxlan_during(lab, lambda: results.update(
        lab.vm("snat-a").tcp_client(INET, 5301, size=1 << 20)))
    assert results["ok"], results
    c3 = "198.18.0.13"                                        # c3's tunnel address
    assert f"> {c3}.4789" in under, under                     # replies via the gateway
    assert f"IP {c3}." not in under, under                    # nothing from c3 tunnelled
    seen = captured(lab, "inet", "eth0", "tcp port 5301",
                    lambda: lab.vm("snat-a").tcp_client(INET, 5301, size=1 << 12))
    assert f"{gateway}." in seen and vm.ip not in seen, seen
    log = (lab.lab.dir / "c3" / "agent.log").read_text()
    assert f"router {router.id}: SNAT blocks" in log
