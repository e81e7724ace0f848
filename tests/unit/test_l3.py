"""Routing, floating IPs and distributed SNAT through the one evaluator, across the
chassis of the L3 reference topology (tests/golden/l3_reference.py): each chassis
compiles its own view, packets follow the tunnels between them, and each chassis has
its own connection tracker."""

from __future__ import annotations

import pytest

from plexus.pipeline.stages.router import snat_mac
from plexus.tools.conntrack import ACK, SYN
from tests.golden.l3_fabric import LOCAL, Fabric
from tests.golden.l3_reference import (
    BLOCKS, CHASSIS, PATCH, TUNNEL, UPSTREAM, VIF_OFPORTS, changed, ip, mac, objects,
    replace_view, view,
)

HOST = {"a-vm1": "hv1", "a-vm2": "hv1", "c-vm1": "hv1", "c-vm3": "hv1", "b-vm1": "hv2",
        "b-app": "hv2", "c-vm2": "hv3"}
ROUTER_MAC = {"net-a": mac("r1-a"), "net-b": mac("r1-b"), "net-c": mac("r2-c")}
NET_OF = {"a": "net-a", "b": "net-b", "c": "net-c"}
INTERNET = "8.8.8.8"
UP = UPSTREAM["203.0.113.1"]
EXT_KEY, EXT_VLAN_KEY = 5000, 5001


@pytest.fixture
def fabric():
    return Fabric({c: view(c) for c in CHASSIS})


def routed(src: str, dst_ip: str, proto: str = "tcp", sport: int = 40000, dport: int = 80,
           **extra) -> dict:
    """A packet from VM ``src`` to ``dst_ip`` sent to its router (the gateway's MAC)."""
    pkt = {"in_port": VIF_OFPORTS[HOST[src]][src], "eth_src": mac(src),
           "eth_dst": ROUTER_MAC[NET_OF[src[0]]], "eth_type": 0x0800, "ipv4_src": ip(src),
           "ipv4_dst": dst_ip, "nw_ttl": 64}
    return {**pkt, **l4(proto, sport, dport), **extra}


def l4(proto: str, sport: int, dport: int) -> dict:
    """Transport fields: ports, or for ICMP an echo request with id ``sport``."""
    if proto == "icmp":
        return {"ip_proto": 1, "icmpv4_type": 8, "icmpv4_code": 0, "icmp_id": sport}
    number = {"tcp": 6, "udp": 17}[proto]
    return {"ip_proto": number, f"{proto}_src": sport, f"{proto}_dst": dport}


def inbound(dst_ip: str, eth_dst: str, proto: str = "tcp", sport: int = 80,
            dport: int = 40000, src: str = INTERNET, vlan: int | None = None, **extra) -> dict:
    """A packet from the external network arriving at a chassis' patch port."""
    pkt = {"in_port": PATCH, "eth_src": UP, "eth_dst": eth_dst, "eth_type": 0x0800,
           "ipv4_src": src, "ipv4_dst": dst_ip, "nw_ttl": 60,
           "vlan_vid": 0x1000 | vlan if vlan else 0}
    return {**pkt, **l4(proto, sport, dport), **extra}


def upstream_arp(address: str) -> str:
    """The MAC the upstream router has for an address (from ARP: never from a source MAC):
    a floating IP's own, a gateway port's, and for an internal address of a router
    without SNAT (routed to its gateway) that gateway's."""
    return {"203.0.113.101": mac("fip-a1-port"), "198.51.100.101": mac("fip-c1-port"),
            "203.0.113.10": mac("r1-gw")}.get(address, mac("r2-gw"))


def reply_to(sent: dict, **extra) -> dict:
    """What the external host answers to a packet that left by a patch port (sent to the
    MAC its upstream router has for the destination)."""
    out = {"in_port": PATCH, "eth_src": sent["eth_dst"], "eth_dst": upstream_arp(sent["ipv4_src"]),
           "eth_type": 0x0800, "ipv4_src": sent["ipv4_dst"], "ipv4_dst": sent["ipv4_src"],
           "ip_proto": sent["ip_proto"], "nw_ttl": 60, "vlan_vid": sent.get("vlan_vid", 0)}
    if sent["ip_proto"] == 1:
        out.update(icmpv4_type=0, icmpv4_code=0, icmp_id=sent.get("icmp_id", 0))
    else:
        proto = {6: "tcp", 17: "udp"}[sent["ip_proto"]]
        out.update({f"{proto}_src": sent[f"{proto}_dst"], f"{proto}_dst": sent[f"{proto}_src"]})
        if proto == "tcp":
            out["tcp_flags"] = SYN | ACK
    return {**out, **extra}


def arp_from_outside(target: str, vlan: int | None = None) -> dict:
    """An upstream router's ARP request, arriving at a patch port."""
    return {"in_port": PATCH, "eth_src": UP, "eth_dst": "ff:ff:ff:ff:ff:ff",
            "eth_type": 0x0806, "arp_op": 1, "arp_sha": UP, "arp_spa": "203.0.113.1",
            "arp_tha": "00:00:00:00:00:00", "arp_tpa": target,
            "vlan_vid": 0x1000 | vlan if vlan else 0}


# east-west ---------------------------------------------------------------------------

def test_routing_between_subnets_on_different_chassis(fabric):
    trip = fabric.send("hv1", routed("a-vm1", ip("b-vm1")))
    first = trip.hops[0]
    assert (first.chassis, first.where) == ("hv1", "tunnel:hv2"), trip.explain()
    sent = first.packet
    assert sent["tunnel_id"] == 102                        # net-b's VNI
    assert sent["nw_ttl"] == 63
    assert (sent["eth_src"], sent["eth_dst"]) == (mac("r1-b"), mac("b-vm1"))
    assert (sent["ipv4_src"], sent["ipv4_dst"]) == (ip("a-vm1"), ip("b-vm1"))
    assert trip.ends == [("hv2", "vif:b-vm1")]


def test_the_reply_is_routed_on_its_own_source_chassis(fabric):
    """hv2 hosts nothing on net-a, yet hv1 accepts net-a's VNI from it: they share r1."""
    trip = fabric.send("hv2", routed("b-vm1", ip("a-vm2"), sport=80, dport=40000))
    assert [(h.chassis, h.where) for h in trip.hops] == [("hv2", "tunnel:hv1"),
                                                         ("hv1", "vif:a-vm2")], trip.explain()
    assert trip.hops[0].packet["tunnel_id"] == 101
    assert trip.last["eth_src"] == mac("r1-a") and trip.last["nw_ttl"] == 63


def test_routing_to_a_local_port(fabric):
    trip = fabric.send("hv2", routed("b-vm1", ip("b-app")))
    assert trip.ends == [("hv2", "vif:b-app")]


def test_ttl_one_is_not_routed_and_two_arrives_with_one(fabric):
    assert fabric.send("hv1", routed("a-vm1", ip("b-vm1"), nw_ttl=1)).hops == []
    assert fabric.send("hv1", routed("a-vm1", ip("b-vm1"), nw_ttl=0)).hops == []
    assert fabric.send("hv1", routed("a-vm1", ip("b-vm1"), nw_ttl=2)).last["nw_ttl"] == 1


def test_no_address_no_delivery(fabric):
    """An address on a routed subnet that no port holds: no ARP, dropped."""
    assert fabric.send("hv1", routed("a-vm1", "10.2.0.99")).hops == []


def test_overlapping_subnets_behind_two_routers_stay_apart(fabric):
    """net-a and net-c are both 10.1.0.0/24; each router routes its own."""
    trip = fabric.send("hv3", {**routed("c-vm2", "10.1.0.13"), "in_port": 1})
    assert trip.ends == [("hv1", "vif:c-vm3")], trip.explain()
    assert fabric.send("hv1", routed("a-vm1", "10.1.0.13")).hops == []   # not on net-a


# extra routes ------------------------------------------------------------------------

def test_extra_route_to_an_instance_next_hop(fabric):
    trip = fabric.send("hv1", routed("a-vm1", "192.168.50.7"))
    assert trip.hops[0].where == "tunnel:hv2" and trip.hops[0].packet["tunnel_id"] == 102
    assert trip.ends == [("hv2", "vif:b-app")]
    assert trip.last["eth_dst"] == mac("b-app") and trip.last["ipv4_dst"] == "192.168.50.7"


def test_extra_route_to_an_external_next_hop_is_snatted_toward_it(fabric):
    trip = fabric.send("hv1", routed("a-vm2", "198.18.4.4"))
    assert trip.ends == [("hv1", "patch")]
    assert trip.last["eth_dst"] == UPSTREAM["203.0.113.254"]
    assert trip.last["ipv4_src"] == "203.0.113.10"


def test_longest_prefix_wins(fabric):
    """10.2.0.0/24 (connected) beats the default route; 198.18.0.0/15 beats it too."""
    assert fabric.send("hv1", routed("a-vm2", "10.2.0.11")).ends == [("hv2", "vif:b-vm1")]
    assert fabric.send("hv1", routed("a-vm2", "198.19.255.1")).last["eth_dst"] == \
        UPSTREAM["203.0.113.254"]
    assert fabric.send("hv1", routed("a-vm2", "198.20.0.1")).last["eth_dst"] == UP


# the router's own addresses ------------------------------------------------------------

@pytest.mark.parametrize("target", ["10.1.0.1", "10.2.0.1", "203.0.113.10"])
def test_router_ports_answer_ping_in_place(fabric, target):
    trip = fabric.send("hv1", routed("a-vm1", target, "icmp", sport=7))
    assert trip.ends == [("hv1", "vif:a-vm1")], trip.explain()
    pong = trip.last
    assert (pong["eth_src"], pong["eth_dst"]) == (mac("r1-a"), mac("a-vm1"))
    assert (pong["ipv4_src"], pong["ipv4_dst"]) == (target, ip("a-vm1"))
    assert pong["icmpv4_type"] == 0 and pong["icmp_id"] == 7


def test_nothing_else_reaches_the_router_itself(fabric):
    assert fabric.send("hv1", routed("a-vm1", "10.1.0.1", dport=22)).hops == []
    # the gateway address is routed (hairpin replies go there) to where it lives, the
    # active gateway, which has no connection for it and routes nothing from outside
    trip = fabric.send("hv1", routed("a-vm1", "203.0.113.10", dport=22))
    assert trip.ends == [("hv1", "patch")] and trip.last["eth_dst"] == mac("r1-gw")
    assert fabric.send(*across(trip)).hops == []


# hairpin: a floating IP reached from behind its own router ------------------------------

SEGMENT = {mac("fip-a1-port"): "hv1", mac("r1-gw"): "gw1"}   # where each MAC answers ARP


def across(trip) -> tuple[str, dict]:
    """The frame that left by a patch port as the external network delivers it: to the
    chassis holding its destination MAC, arriving by that chassis' patch port."""
    assert trip.ends and trip.ends[-1][1] == "patch", trip.explain()
    sent = trip.last
    return SEGMENT[sent["eth_dst"]], {**{k: v for k, v in sent.items() if k not in LOCAL},
                                      "in_port": PATCH}


def test_hairpin_tcp_to_a_floating_ip_is_snatted_to_the_gateway_address(fabric):
    """b-vm1 (hv2, no floating IP) → a-vm1's floating IP (hv1): SNATed in hv2's own
    block and sent across the external network to the floating IP's MAC; DNATed on hv1;
    a-vm1 sees the gateway address; its reply leaves as the floating IP toward the
    gateway's MAC, and the active gateway returns it statelessly to hv2."""
    fip, gateway = "203.0.113.101", "203.0.113.10"
    out = fabric.send("hv2", routed("b-vm1", fip, sport=40000, dport=22))
    assert out.ends == [("hv2", "patch")], out.explain()
    sent = out.last
    assert (sent["ipv4_src"], sent["ipv4_dst"]) == (gateway, fip)
    assert in_blocks(sent["tcp_src"], "hv2")
    assert (sent["eth_src"], sent["eth_dst"]) == (snat_mac("r1", "hv2"), mac("fip-a1-port"))
    there = fabric.send(*across(out))
    assert there.ends == [("hv1", "vif:a-vm1")], there.explain()
    assert (there.last["ipv4_src"], there.last["ipv4_dst"]) == (gateway, ip("a-vm1"))
    answer = routed("a-vm1", gateway, sport=22, dport=sent["tcp_src"], tcp_flags=SYN | ACK)
    back = fabric.send("hv1", answer)
    assert back.ends == [("hv1", "patch")], back.explain()
    assert (back.last["ipv4_src"], back.last["ipv4_dst"]) == (fip, gateway)
    assert (back.last["eth_src"], back.last["eth_dst"]) == (mac("fip-a1-port"), mac("r1-gw"))
    home = fabric.send(*across(back))
    assert home.ends == [("hv2", "vif:b-vm1")], home.explain()
    assert (home.last["ipv4_src"], home.last["ipv4_dst"]) == (fip, ip("b-vm1"))
    assert (home.last["tcp_src"], home.last["tcp_dst"]) == (22, 40000)


def test_hairpin_ping_from_the_floating_ips_own_chassis(fabric):
    """a-vm2 (hv1, no floating IP) pings a-vm1's floating IP (hv1 as well): SNATed by
    the active gateway, back across the external network to hv1, DNATed; the echo reply
    goes to the gateway address, is unNATed there and routed back to a-vm2."""
    fip, gateway = "203.0.113.101", "203.0.113.10"
    out = fabric.send("hv1", routed("a-vm2", fip, "icmp", sport=9))
    assert [(h.chassis, h.where) for h in out.hops] == [("hv1", "tunnel:gw1"),
                                                       ("gw1", "patch")], out.explain()
    assert (out.last["ipv4_src"], out.last["eth_dst"]) == (gateway, mac("fip-a1-port"))
    there = fabric.send(*across(out))
    assert there.ends == [("hv1", "vif:a-vm1")], there.explain()
    assert (there.last["ipv4_src"], there.last["ipv4_dst"]) == (gateway, ip("a-vm1"))
    pong = routed("a-vm1", gateway, "icmp", sport=9)
    pong.update(icmpv4_type=0)
    back = fabric.send("hv1", pong)
    assert (back.last["ipv4_src"], back.last["eth_dst"]) == (fip, mac("r1-gw"))
    home = fabric.send(*across(back))
    assert home.ends == [("hv1", "vif:a-vm2")], home.explain()
    assert (home.last["ipv4_src"], home.last["ipv4_dst"]) == (fip, ip("a-vm2"))
    assert (home.last["icmpv4_type"], home.last["icmp_id"]) == (0, 9)


# floating IPs --------------------------------------------------------------------------

def test_floating_ip_outbound_is_snatted_on_its_own_chassis(fabric):
    trip = fabric.send("hv1", routed("a-vm1", INTERNET))
    assert trip.ends == [("hv1", "patch")], trip.explain()
    out = trip.last
    assert out["ipv4_src"] == "203.0.113.101" and out["tcp_src"] == 40000
    assert (out["eth_src"], out["eth_dst"]) == (mac("fip-a1-port"), UP)
    assert out["nw_ttl"] == 63 and out.get("vlan_vid", 0) == 0
    back = fabric.send("hv1", reply_to(out))
    assert back.ends == [("hv1", "vif:a-vm1")], back.explain()
    assert (back.last["ipv4_src"], back.last["ipv4_dst"]) == (INTERNET, ip("a-vm1"))
    assert back.last["tcp_dst"] == 40000 and back.last["eth_dst"] == mac("a-vm1")


def test_floating_ip_inbound_is_dnatted_to_the_vm_and_its_replies_leave_as_the_fip(fabric):
    syn = inbound("203.0.113.101", mac("fip-a1-port"), sport=5555, dport=22)
    trip = fabric.send("hv1", syn)
    assert trip.ends == [("hv1", "vif:a-vm1")], trip.explain()
    assert (trip.last["ipv4_dst"], trip.last["tcp_dst"]) == (ip("a-vm1"), 22)
    assert (trip.last["eth_src"], trip.last["nw_ttl"]) == (mac("r1-a"), 59)
    answer = routed("a-vm1", INTERNET, sport=22, dport=5555, tcp_flags=SYN | ACK)
    out = fabric.send("hv1", answer).last
    assert (out["ipv4_src"], out["tcp_src"]) == ("203.0.113.101", 22)


def test_floating_ip_on_a_vlan_network(fabric):
    """c-vm1 has a1-vm1's address behind another router; its FIP leaves tagged."""
    out = fabric.send("hv1", routed("c-vm1", INTERNET)).last
    assert out["vlan_vid"] == 0x1000 | 100
    assert out["ipv4_src"] == "198.51.100.101" and out["eth_src"] == mac("fip-c1-port")
    assert out["eth_dst"] == UPSTREAM["198.51.100.1"]
    back = fabric.send("hv1", reply_to(out))
    assert back.ends == [("hv1", "vif:c-vm1")] and back.last["vlan_vid"] == 0


def test_floating_ip_arp_is_answered_only_where_its_port_is(fabric):
    for chassis in ("hv2", "gw1", "gw2"):
        assert fabric.send(chassis, arp_from_outside("203.0.113.101")).hops == [], chassis
    trip = fabric.send("hv1", arp_from_outside("203.0.113.101"))
    assert trip.ends == [("hv1", "patch")]
    answer = trip.last
    assert answer["arp_op"] == 2 and answer["in_port"] == PATCH
    assert answer["arp_sha"] == answer["eth_src"] == mac("fip-a1-port")
    assert (answer["arp_spa"], answer["arp_tpa"], answer["arp_tha"]) == \
        ("203.0.113.101", "203.0.113.1", UP)
    tagged = fabric.send("hv1", arp_from_outside("198.51.100.101", vlan=100)).last
    assert tagged["arp_sha"] == mac("fip-c1-port") and tagged["vlan_vid"] == 0x1000 | 100


def test_a_moved_floating_ip_follows_its_port(fabric):
    """The port of fip-a1 moves to hv2 (its VIF there is ofport 3): hv2 answers its ARP
    and NATs it, hv1 no longer does."""
    objs = changed(objects(), "ports", "a-vm1", **{"binding:host_id": "hv2"})
    moved = {c: view(c, objs) for c in CHASSIS}
    moved["hv2"] = replace_view(moved["hv2"], vif_ofports={**moved["hv2"].vif_ofports,
                                                           "a-vm1": 3})
    fabric.update(moved)
    assert fabric.send("hv1", arp_from_outside("203.0.113.101")).hops == []
    assert fabric.send("hv2", arp_from_outside("203.0.113.101")).last["arp_sha"] == \
        mac("fip-a1-port")
    trip = fabric.send("hv2", inbound("203.0.113.101", mac("fip-a1-port"), dport=22))
    assert [h.port for h in trip.hops] == [3], trip.explain()
    assert trip.last["ipv4_dst"] == ip("a-vm1")
    out = fabric.send("hv2", {**routed("a-vm1", INTERNET), "in_port": 3}).last
    assert out["ipv4_src"] == "203.0.113.101" and out["eth_src"] == mac("fip-a1-port")


def test_disassociated_floating_ip_is_gone(fabric):
    objs = changed(objects(), "floatingips", "fip-a1", port_id=None, fixed_ip_address=None,
                   router_id=None)
    fabric.update({"hv1": view("hv1", objs)})
    assert fabric.send("hv1", arp_from_outside("203.0.113.101")).hops == []
    assert fabric.send("hv1", inbound("203.0.113.101", mac("fip-a1-port"))).hops == []
    out = fabric.send("hv1", routed("a-vm1", INTERNET)).last
    assert out["ipv4_src"] == "203.0.113.10"          # now SNATed like any port


# SNAT by port blocks -------------------------------------------------------------------

def in_blocks(port: int, chassis: str) -> bool:
    return any(lo <= port <= hi for lo, hi in BLOCKS[chassis])


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_snat_uses_the_chassis_own_blocks_and_mac(fabric, proto):
    for src, chassis in (("a-vm2", "hv1"), ("b-vm1", "hv2")):
        for sport in (40000, 40001, 1100):
            trip = fabric.send(chassis, routed(src, INTERNET, proto, sport=sport))
            assert trip.ends == [(chassis, "patch")], trip.explain()
            out = trip.last
            assert out["ipv4_src"] == "203.0.113.10"
            assert in_blocks(out[f"{proto}_src"], chassis), (chassis, out[f"{proto}_src"])
            assert out["eth_src"] == snat_mac("r1", chassis) and out["eth_dst"] == UP


def test_several_blocks_are_all_used(fabric):
    ports = {fabric.send("hv1", routed("a-vm2", INTERNET, sport=s)).last["tcp_src"]
             for s in range(40000, 40008)}
    assert any(p < 1088 for p in ports) and any(p >= 2048 for p in ports), ports


def test_the_active_gateway_returns_each_block_to_its_owner_statelessly(fabric):
    out = fabric.send("hv2", routed("b-vm1", INTERNET, sport=40000)).last
    back = reply_to(out)
    trip = fabric.send("gw1", back)
    first = trip.hops[0]
    assert (first.chassis, first.where) == ("gw1", "tunnel:hv2"), trip.explain()
    assert first.packet["tunnel_id"] == EXT_KEY
    assert first.packet["ipv4_dst"] == "203.0.113.10" and first.packet["nw_ttl"] == 60
    assert trip.ends == [("hv2", "vif:b-vm1")]
    assert (trip.last["ipv4_dst"], trip.last["tcp_dst"]) == (ip("b-vm1"), 40000)
    assert trip.last["eth_src"] == mac("r1-b") and trip.last["nw_ttl"] == 59
    assert fabric.pipelines["gw1"].conntrack.connections() == []      # no state there


def test_every_port_of_every_block_goes_to_its_owner(fabric):
    for chassis, blocks in BLOCKS.items():
        for lo, hi in blocks:
            for port in (lo, hi, (lo + hi) // 2):
                pkt = inbound("203.0.113.10", mac("r1-gw"), dport=port)
                result = fabric.pipelines["gw1"].run(pkt)
                if chassis == "gw1":
                    assert result.steps[-1].stage in ("l3_neighbor", "l3_route"), \
                        result.explain()           # unNATed here: no such connection
                else:
                    assert result.ports == [TUNNEL[chassis]], (chassis, port)


def test_snat_return_to_a_port_in_no_block_goes_nowhere(fabric):
    assert fabric.send("gw1", inbound("203.0.113.10", mac("r1-gw"), dport=3000)).hops == []


def test_only_the_active_gateway_forwards_and_answers_for_the_gateway(fabric):
    arp = arp_from_outside("203.0.113.10")
    answer = fabric.send("gw1", arp).last
    assert answer["arp_sha"] == mac("r1-gw") and answer["arp_spa"] == "203.0.113.10"
    for chassis in ("hv1", "hv2", "gw2"):
        assert fabric.send(chassis, arp).hops == [], chassis
        back = inbound("203.0.113.10", mac("r1-gw"), dport=1100)
        assert fabric.send(chassis, back).hops == [], chassis


def test_ping_the_gateway_from_outside(fabric):
    ping = inbound("203.0.113.10", mac("r1-gw"), "icmp", sport=9)
    pong = fabric.send("gw1", ping).last
    assert (pong["ipv4_src"], pong["ipv4_dst"], pong["icmpv4_type"]) == \
        ("203.0.113.10", INTERNET, 0)
    assert fabric.send("hv1", ping).hops == []


def test_a_chassis_without_a_block_sends_no_tcp_out(fabric):
    objs = objects()
    objs["snat_blocks"] = {k: b for k, b in objs["snat_blocks"].items() if b["chassis"] != "hv2"}
    fabric.update({"hv2": view("hv2", objs)})
    assert fabric.send("hv2", routed("b-vm1", INTERNET)).hops == []


# portless protocols: SNAT on the active gateway -----------------------------------------

def test_icmp_goes_to_the_active_gateway_and_is_snatted_there(fabric):
    trip = fabric.send("hv1", routed("a-vm2", INTERNET, "icmp", sport=77))
    first = trip.hops[0]
    assert (first.chassis, first.where) == ("hv1", "tunnel:gw1"), trip.explain()
    assert first.packet["tunnel_id"] == EXT_KEY and first.packet["eth_src"] == mac("r1-gw")
    assert trip.ends == [("gw1", "patch")]
    out = trip.last
    assert (out["ipv4_src"], out["ipv4_dst"]) == ("203.0.113.10", INTERNET)
    assert (out["eth_src"], out["eth_dst"], out["nw_ttl"]) == (mac("r1-gw"), UP, 63)
    back = fabric.send("gw1", reply_to(out))
    assert [(h.chassis, h.where) for h in back.hops] == [("gw1", "tunnel:hv1"),
                                                        ("hv1", "vif:a-vm2")], back.explain()
    assert back.hops[0].packet["tunnel_id"] == 101
    assert (back.last["ipv4_dst"], back.last["icmpv4_type"], back.last["icmp_id"]) == \
        (ip("a-vm2"), 0, 77)


def test_icmp_from_the_active_gateways_own_vm_is_snatted_locally():
    """When hv1 itself is r1's active gateway, ICMP never leaves it through a tunnel."""
    objs = changed(objects(), "routers", "r1", **{"plexus:gateway_chassis": ["hv1"]})
    fabric = Fabric({c: view(c, objs) for c in CHASSIS})
    trip = fabric.send("hv1", routed("a-vm2", INTERNET, "icmp"))
    assert trip.ends == [("hv1", "patch")] and trip.last["eth_src"] == mac("r1-gw")
    back = fabric.send("hv1", reply_to(trip.last))
    assert back.ends == [("hv1", "vif:a-vm2")], back.explain()


def test_unsolicited_icmp_to_the_gateway_reaches_nobody(fabric):
    unsolicited = inbound("203.0.113.10", mac("r1-gw"), "icmp", icmpv4_type=0)
    assert fabric.send("gw1", unsolicited).hops == []


# two chassis that both believe they are active ------------------------------------------

def test_two_active_gateways_both_forward_correctly():
    """gw2 lost sight of gw1 and took over r1; gw1 still believes it is active."""
    views = {c: view(c) for c in CHASSIS}
    views["gw2"] = view("gw2", alive=[c for c in CHASSIS if c != "gw1"])
    fabric = Fabric(views)
    assert views["gw1"].active_gateway["r1"] == "gw1"
    assert views["gw2"].active_gateway["r1"] == "gw2"
    out = fabric.send("hv2", routed("b-vm1", INTERNET, sport=40000)).last
    for gateway in ("gw1", "gw2", "gw1"):
        assert fabric.send(gateway, arp_from_outside("203.0.113.10")).last["arp_sha"] == \
            mac("r1-gw")
        trip = fabric.send(gateway, reply_to(out, tcp_flags=ACK))
        assert trip.ends == [("hv2", "vif:b-vm1")], (gateway, trip.explain())
        assert trip.last["tcp_dst"] == 40000


def test_portless_packets_go_to_whichever_gateway_their_sender_believes_active():
    views = {c: view(c) for c in CHASSIS}
    for c in ("hv2", "gw2"):                    # they lost sight of gw1
        views[c] = view(c, alive=[c for c in CHASSIS if c != "gw1"])
    fabric = Fabric(views)
    trip = fabric.send("hv2", routed("b-vm1", INTERNET, "icmp", sport=5))
    assert trip.hops[0].where == "tunnel:gw2" and trip.ends == [("gw2", "patch")]
    back = fabric.send("gw2", reply_to(trip.last))
    assert back.ends == [("hv2", "vif:b-vm1")], back.explain()
    trip = fabric.send("hv1", routed("a-vm2", INTERNET, "icmp", sport=6))
    assert trip.ends == [("gw1", "patch")]
    assert fabric.send("gw1", reply_to(trip.last)).ends == [("hv1", "vif:a-vm2")]


def test_failover_keeps_tcp_sessions():
    """gw1 dies: gw2 becomes active, and an established SNAT session goes on."""
    fabric = Fabric({c: view(c) for c in CHASSIS})
    out = fabric.send("hv1", routed("a-vm2", INTERNET, sport=40000)).last
    assert fabric.send("gw1", reply_to(out)).ends == [("hv1", "vif:a-vm2")]
    survivors = [c for c in CHASSIS if c != "gw1"]
    fabric.update({c: view(c, alive=survivors) for c in survivors})
    del fabric.pipelines["gw1"]
    more = fabric.send("hv1", routed("a-vm2", INTERNET, sport=40000, tcp_flags=ACK)).last
    assert (more["ipv4_src"], more["tcp_src"]) == (out["ipv4_src"], out["tcp_src"])
    trip = fabric.send("gw2", reply_to(more, tcp_flags=ACK))
    assert trip.ends == [("hv1", "vif:a-vm2")], trip.explain()


# routers without SNAT --------------------------------------------------------------------

def test_a_router_without_snat_routes_addresses_as_they_are(fabric):
    out = fabric.send("hv1", routed("c-vm3", INTERNET)).last
    assert out["ipv4_src"] == ip("c-vm3") and out["vlan_vid"] == 0x1000 | 100
    assert out["eth_src"] == snat_mac("r2", "hv1")
    back = reply_to(out)
    trip = fabric.send("gw2", back)                     # r2's active gateway
    assert [(h.chassis, h.where) for h in trip.hops] == [("gw2", "tunnel:hv1"),
                                                        ("hv1", "vif:c-vm3")], trip.explain()
    assert fabric.send("gw1", back).hops == []


def test_a_chassis_without_a_bridge_mapping_sends_nothing_out(fabric):
    assert fabric.send("hv3", {**routed("c-vm2", INTERNET), "in_port": 1}).hops == []


# external MACs ----------------------------------------------------------------------------

def test_until_the_upstream_mac_is_resolved_external_traffic_drops():
    fabric = Fabric({"hv1": view("hv1", external_macs={}), "hv2": view("hv2")})
    assert fabric.send("hv1", routed("a-vm2", INTERNET)).hops == []
    assert fabric.send("hv1", routed("a-vm1", INTERNET)).hops == []
    assert fabric.send("hv1", routed("a-vm1", ip("b-vm1"))).hops != []   # inside still works


def test_resolved_hosts_on_the_external_subnet_are_reached_directly(fabric):
    out = fabric.send("hv1", routed("a-vm2", "203.0.113.254")).last
    assert out["eth_dst"] == UPSTREAM["203.0.113.254"]
    other = fabric.send("hv1", routed("a-vm2", "203.0.113.77")).last
    assert other["eth_dst"] == UP                        # unresolved: via the gateway


def test_nothing_from_outside_is_routed_back_out(fabric):
    """A packet from outside that no flow claims (even to an address a default route
    would take) drops: no hairpin, no transit."""
    assert fabric.send("hv1", inbound("203.0.113.10", mac("r1-gw"), dport=1030)).hops == []
    assert fabric.send("gw1", inbound("8.8.4.4", mac("r1-gw"))).hops == []
    assert fabric.send("gw1", inbound("203.0.113.10", mac("r1-gw"), dport=1160)).hops == []


# with security groups --------------------------------------------------------------------

def test_routed_and_natted_traffic_meets_the_vms_security_groups():
    """a-vm1 allows SSH in and anything out: DNATed SSH passes its ingress rules, other
    ports do not; replies of its outbound (SNATed) connections come back in."""
    from plexus.pipeline.security import security_view
    objs = objects()
    group = {"id": "sg-ssh", "stateful": True, "security_group_rules": [
        {"id": "ssh-in", "direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
         "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": None,
         "remote_group_id": None},
        {"id": "all-out", "direction": "egress", "ethertype": "IPv4", "protocol": None,
         "port_range_min": None, "port_range_max": None, "remote_ip_prefix": None,
         "remote_group_id": None}]}
    objs["security-groups"] = {"sg-ssh": group}
    objs["ports"] = {pid: {**p, "security_groups": ["sg-ssh"]}
                     for pid, p in objs["ports"].items()}
    hv1 = view("hv1", objs)
    local = ["a-vm1", "a-vm2", "c-vm1", "c-vm3"]
    secured = replace_view(hv1, security=security_view(objs, local))
    fabric = Fabric({"hv1": secured, "hv2": view("hv2"), "gw1": view("gw1")})
    ssh = fabric.send("hv1", inbound("203.0.113.101", mac("fip-a1-port"), dport=22))
    assert ssh.ends == [("hv1", "vif:a-vm1")], ssh.explain()
    closed = inbound("203.0.113.101", mac("fip-a1-port"), dport=23)
    assert fabric.send("hv1", closed).hops == []
    out = fabric.send("hv1", routed("a-vm1", INTERNET, dport=443)).last
    assert fabric.send("hv1", reply_to(out)).ends == [("hv1", "vif:a-vm1")]
    snat = fabric.send("hv1", routed("a-vm2", INTERNET, dport=443)).last
    assert fabric.send("gw1", reply_to(snat)).ends == [("hv1", "vif:a-vm2")]
    unsolicited = reply_to(snat, tcp_dst=snat["tcp_src"] + 1)
    assert fabric.send("gw1", unsolicited).ends == []
