"""IPv6 routing through the one evaluator on the dual-stack reference
(tests/golden/ipv6_reference.py): between a router's IPv6 subnets on the source VM's
chassis (hop limit decremented, MACs from the model, no NAT), to the internet by the
external network without NAT, back in on the active gateway, and the router answering
pings. Packets enter at l3_input (what port security passes of a VM's IPv6 is another
stage's concern)."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from plexus.agent import icmp, ipv6
from plexus.model.keys import ADDRESS_SCOPE_KEY
from plexus.pipeline.registry import register_field
from plexus.pipeline.stages.l3_input import ND_GATEWAY
from plexus.pipeline.stages.router import link_local, programmed, snat_mac
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
    unknown = hv1.run(from_vm("a-vm1", "net-a", "2001:db8:b::99", mac("r1-a")),
                      stage="l3_input")
    assert unknown.ports == [] and [u for u, _ in unknown.controller] == ["icmp:unreachable"]
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
    assert [u for u, _ in fabric.pipelines["gw1"].run(ns).controller] == [ND_GATEWAY]
    assert fabric.pipelines["gw2"].run(ns).controller == []


def test_address_scopes_keep_ipv6_subnets_apart():
    objs = objects()
    objs["subnets"]["sub-a6"][ADDRESS_SCOPE_KEY] = "red"
    fabric = Fabric({"hv1": view("hv1", objs)})
    assert fabric.pipelines["hv1"].run(from_vm("a-vm1", "net-a", ip6("b-app"), mac("r1-a")),
                                       stage="l3_input").dropped


# --- ICMPv6 errors (agent.icmp.answer6) -----------------------------------------------

def punted_frame(src: str, dst: str, hop_limit: int, size: int = 100) -> bytes:
    body = struct.pack("!HHIIHHHH", 40000, 22, 1, 0, 0x5002, 1000, 0, 0)
    body += bytes(max(0, size - len(body)))
    return ipv6.frame(mac(src), mac("r1-a"), ip6(src), dst, 6, body, hop_limit=hop_limit)


def router_fields(v, flags: int = 0, net: str = "net-b") -> dict:
    zone = dict((r.id, z) for r, z in programmed(v))["r1"]
    return {register_field("router"): zone, register_field("flags"): flags,
            register_field("net"): NET_KEY[net]}


@pytest.mark.parametrize("kind,want", [("ttl", (3, 0, 0)), ("too-big", (2, 0, 1450)),
                                       ("unreachable", (1, 3, 0))])
def test_icmpv6_errors_go_back_to_the_vm_from_the_router(kind, want):
    v = view("hv1")
    frame = punted_frame("a-vm1", ip6("b-app"), 1 if kind == "ttl" else 63, size=1400)
    got = icmp.answer(kind, frame, router_fields(v), VIF_OFPORTS["hv1"]["a-vm1"], v,
                      {o: p for p, o in VIF_OFPORTS["hv1"].items()})
    assert isinstance(got, icmp.Error), got
    pkt = ipv6.parse(got.frame)
    assert ipv6.valid_checksum(pkt) and pkt.proto == 58
    assert (pkt.src_mac, pkt.dst_mac) == (mac("r1-a"), mac("a-vm1"))
    assert (pkt.src, pkt.dst) == ("2001:db8:a::1", ip6("a-vm1"))
    assert struct.unpack_from("!BBHI", pkt.payload) [:2] + (struct.unpack_from(
        "!I", pkt.payload, 4)[0],) == want
    quoted = pkt.payload[8:]
    assert len(got.frame) - 14 <= 1280 and quoted[7] == (1 if kind == "ttl" else 64)
    assert quoted[24:40] == ipaddress.IPv6Address(ip6("b-app")).packed


def test_no_icmpv6_error_from_a_tunnel_or_about_an_error():
    v = view("hv1")
    ports = {o: p for p, o in VIF_OFPORTS["hv1"].items()}
    frame = punted_frame("a-vm1", ip6("b-app"), 1)
    assert isinstance(icmp.answer("ttl", frame, router_fields(v, flags=1), 1, v, ports), str)
    error = ipv6.icmp6(mac("a-vm1"), mac("r1-a"), ip6("a-vm1"), ip6("b-app"), 1, 3, bytes(8))
    assert isinstance(icmp.answer("ttl", error, router_fields(v), 1, v, ports), str)


def test_verify_finds_nothing_wrong_with_the_dual_stack_cloud(monkeypatch):
    """``plexus verify`` (its IPv4 checks) over the same cloud with IPv6 subnets, router
    interfaces and addresses: IPv6 changes nothing it checks, and breaks none of it."""
    from plexus.tools.verify import verify
    from tests.unit import test_verify
    monkeypatch.setattr(test_verify, "objects", objects)
    result = verify(test_verify.fabric())
    assert not result.findings, [f.message for f in result.findings]
    assert result.counts["ports"] == 7


def test_too_big_from_outside_is_answered_from_the_gateway_toward_the_upstream():
    v = view("gw1")
    frame = ipv6.frame(UPSTREAM6["2001:db8:ee::1"], mac("r1-gw"), INTERNET6, ip6("b-app"),
                       17, struct.pack("!HHHH", 53, 53, 1408, 0) + bytes(1400), hop_limit=59)
    fields = {**router_fields(v, flags=2), register_field("net"): NET_KEY["net-b"]}
    got = icmp.answer("too-big", frame, fields, PATCH, v, {})
    assert isinstance(got, icmp.Error), got
    pkt = ipv6.parse(got.frame)
    assert got.port == PATCH and ipv6.valid_checksum(pkt)
    assert (pkt.src_mac, pkt.dst_mac) == (mac("r1-gw"), UPSTREAM6["2001:db8:ee::1"])
    assert (pkt.src, pkt.dst) == ("2001:db8:ee::10", INTERNET6)
    assert pkt.payload[0] == 2 and struct.unpack_from("!I", pkt.payload, 4)[0] == 1450
    assert isinstance(icmp.answer("too-big", frame, fields, 7, v, {}), str)   # not the patch
