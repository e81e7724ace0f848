"""IPv6 routing through the one evaluator on the dual-stack reference
(tests/golden/ipv6_reference.py): between a router's IPv6 subnets on the source VM's
chassis (hop limit decremented, MACs from the model, no NAT), to the internet by the
external network without NAT, back in on the active gateway, and the router answering
pings. Packets enter at l3_input (what port security passes of a VM's IPv6 is another
stage's concern)."""

from __future__ import annotations

import pytest

from plexus.model.keys import ADDRESS_SCOPE_KEY
from plexus.pipeline.stages.router import link_local, snat_mac
from tests.golden.ipv6_reference import UPSTREAM6, ip6, objects, view
from tests.golden.l3_fabric import Fabric
from tests.golden.l3_reference import CHASSIS, PATCH, TUNNEL, VIF_OFPORTS, mac

NET_KEY = {"net-a": 101, "net-b": 102, "net-c": 201}
PORT_KEY = {"a-vm1": 11, "a-vm2": 12, "b-vm1": 11, "b-app": 50, "c-vm1": 11}
EXT_KEY = 5000
INTERNET6 = "2001:db8:ff::10"


@pytest.fixture
def fabric():
    return Fabric({c: view(c) for c in CHASSIS})


def from_vm(src: str, net: str, dst: str, router_mac: str, **extra) -> dict:
    """A VM's IPv6 TCP packet to its router's MAC, as l3_input sees it."""
    return {"in_port": VIF_OFPORTS["hv1" if src[0] in "ac" else "hv2"][src],
            "metadata": NET_KEY[net], "reg6": PORT_KEY[src], "eth_src": mac(src),
            "eth_dst": router_mac, "eth_type": 0x86DD, "ipv6_src": ip6(src), "ipv6_dst": dst,
            "ip_proto": 6, "tcp_src": 40000, "tcp_dst": 22, "nw_ttl": 64, **extra}


def test_routed_between_subnets_on_the_source_chassis_then_tunnelled(fabric):
    result = fabric.pipelines["hv1"].run(from_vm("a-vm1", "net-a", ip6("b-app"), mac("r1-a")),
                                         stage="l3_input")
    assert result.ports == [TUNNEL["hv2"]], result.explain()
    sent = result.outputs[0][1]
    assert sent["tunnel_id"] == NET_KEY["net-b"] and sent["nw_ttl"] == 63
    assert (sent["eth_src"], sent["eth_dst"]) == (mac("r1-b"), mac("b-app"))
    assert (sent["ipv6_src"], sent["ipv6_dst"]) == (ip6("a-vm1"), ip6("b-app"))
    arriving = {k: v for k, v in sent.items() if k not in
                ("in_port", "metadata", "reg3", "reg4", "reg5", "reg6", "reg7", "xxreg2")}
    trip = fabric.send("hv2", {**arriving, "in_port": TUNNEL["hv1"]})
    assert trip.ends == [("hv2", "vif:b-app")], trip.explain()


def test_slaac_addresses_are_next_hops_from_the_model(fabric):
    result = fabric.pipelines["hv2"].run(
        from_vm("b-app", "net-b", ip6("a-vm2"), mac("r1-b")), stage="l3_input")
    assert result.ports == [TUNNEL["hv1"]], result.explain()
    assert result.outputs[0][1]["eth_dst"] == mac("a-vm2")


def test_an_address_no_port_holds_and_hop_limit_one_are_not_routed(fabric):
    hv1 = fabric.pipelines["hv1"]
    assert hv1.run(from_vm("a-vm1", "net-a", "2001:db8:b::99", mac("r1-a")),
                   stage="l3_input").dropped
    result = hv1.run(from_vm("a-vm1", "net-a", ip6("b-app"), mac("r1-a"), nw_ttl=1),
                     stage="l3_input")
    assert result.ports == [] and [u for u, _ in result.controller] == ["invalid_ttl"]


@pytest.mark.parametrize("dst", ["fe80::1", "ff02::1", "2001:db8:a::1", "2001:db8:ee::10"])
def test_link_local_multicast_and_router_addresses_are_never_routed(fabric, dst):
    result = fabric.pipelines["hv1"].run(from_vm("a-vm1", "net-a", dst, mac("r1-a")),
                                         stage="l3_input")
    assert result.ports == [] and result.controller == [], result.explain()


@pytest.mark.parametrize("dst", ["2001:db8:a::1", "2001:db8:b::1", "2001:db8:ee::10",
                                 link_local(mac("r1-a"))])
def test_the_router_answers_ping6_in_place(fabric, dst):
    pkt = {**from_vm("a-vm1", "net-a", dst, mac("r1-a")), "ip_proto": 58, "icmpv6_type": 128}
    del pkt["tcp_src"], pkt["tcp_dst"]
    result = fabric.pipelines["hv1"].run(pkt, stage="l3_input")
    assert result.ports == [VIF_OFPORTS["hv1"]["a-vm1"]], result.explain()
    reply = result.outputs[0][1]
    assert reply["icmpv6_type"] == 129
    assert (reply["ipv6_src"], reply["ipv6_dst"]) == (dst, ip6("a-vm1"))
    assert (reply["eth_src"], reply["eth_dst"]) == (mac("r1-a"), mac("a-vm1"))


def test_to_the_internet_without_nat_from_the_vms_own_chassis(fabric):
    result = fabric.pipelines["hv1"].run(from_vm("a-vm1", "net-a", INTERNET6, mac("r1-a")),
                                         stage="l3_input")
    assert result.ports == [PATCH], result.explain()
    sent = result.outputs[0][1]
    assert sent["ipv6_src"] == ip6("a-vm1") and sent["ipv6_dst"] == INTERNET6
    assert (sent["eth_src"], sent["eth_dst"]) == (snat_mac("r1", "hv1"),
                                                  UPSTREAM6["2001:db8:ee::1"])
    assert sent["nw_ttl"] == 63


def inbound6(dst: str, **extra) -> dict:
    return {"in_port": PATCH, "eth_src": UPSTREAM6["2001:db8:ee::1"], "eth_dst": mac("r1-gw"),
            "eth_type": 0x86DD, "ipv6_src": INTERNET6, "ipv6_dst": dst, "ip_proto": 6,
            "tcp_src": 22, "tcp_dst": 40000, "nw_ttl": 60, **extra}


def test_back_in_on_the_active_gateway_only_and_on_to_the_vms_chassis(fabric):
    trip = fabric.send("gw1", inbound6(ip6("b-app")))
    assert [(h.chassis, h.where) for h in trip.hops] == [("gw1", "tunnel:hv2"),
                                                         ("hv2", "vif:b-app")], trip.explain()
    assert trip.last["eth_dst"] == mac("b-app") and trip.last["nw_ttl"] == 59
    assert trip.last["ipv6_src"] == INTERNET6                  # no NAT
    assert fabric.send("gw2", inbound6(ip6("b-app"))).hops == []     # standby: nothing
    assert fabric.send("hv1", inbound6(ip6("b-app"))).hops == []


def test_neighbour_solicitation_for_the_gateway_goes_to_the_agent_on_the_active_gateway(
        fabric):
    ns = {"in_port": PATCH, "eth_src": UPSTREAM6["2001:db8:ee::1"],
          "eth_dst": "33:33:ff:00:00:10", "eth_type": 0x86DD, "ipv6_src": "2001:db8:ee::1",
          "ipv6_dst": "ff02::1:ff00:10", "ip_proto": 58, "icmpv6_type": 135,
          "ipv6_nd_target": "2001:db8:ee::10", "nw_ttl": 255}
    assert [u for u, _ in fabric.pipelines["gw1"].run(ns).controller] == ["nd"]
    assert fabric.pipelines["gw2"].run(ns).controller == []


def test_address_scopes_keep_ipv6_subnets_apart():
    objs = objects()
    objs["subnets"]["sub-a6"][ADDRESS_SCOPE_KEY] = "red"
    fabric = Fabric({"hv1": view("hv1", objs)})
    assert fabric.pipelines["hv1"].run(from_vm("a-vm1", "net-a", ip6("b-app"), mac("r1-a")),
                                       stage="l3_input").dropped
