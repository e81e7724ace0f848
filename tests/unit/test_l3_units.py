"""The L3 building blocks on their own: the view builder (``plexus.pipeline.l3``) from
southbound objects, what it tells the agent (tunnels, next hops to resolve, gratuitous
ARPs, statuses), router zones and MACs, the conntrack NAT model, and the lowering of the
new actions (os-ken encodes, and decodes back to the same canonical entry the agent's
flow diff compares)."""

from __future__ import annotations

from dataclasses import replace

from os_ken.lib.packet import arp, ethernet, packet, vlan
from os_ken.ofproto import ofproto_v1_3_parser as parser

from plexus.agent import flowdiff, relevant
from plexus.lower.openflow import flow_mod
from plexus.agent import l3
from plexus.pipeline.compile import compile_view
from plexus.pipeline.flows import Ct, DecTtl, Flow, Nat, PopVlan, PushVlan
from plexus.pipeline.registry import BY_NAME, PipelineViolation, check_flow
from plexus.pipeline.stages import router as rt
from plexus.tools.conntrack import ACK, SYN, Conntrack
from tests.golden.l3_reference import (
    CHASSIS, PATCH, TUNNEL, TUNNEL_IP, UPSTREAM, VIF_OFPORTS, changed, mac, objects, view,
)


# the view builder ----------------------------------------------------------------------

def test_relevant_routers_networks_and_ports():
    hv2 = view("hv2")
    assert sorted(hv2.routers) == ["r1"]
    assert {"net-a", "net-b", "ext-net"} <= set(hv2.networks)
    assert "net-c" not in hv2.networks and "ext-vlan" not in hv2.networks
    assert {"a-vm1", "a-vm2", "r1-a", "r1-gw"} <= set(hv2.ports)
    assert "fip-a1-port" not in hv2.ports and sorted(hv2.floating_ips) == ["fip-a1"]
    gw = rt.gateway(hv2, hv2.routers["r1"])
    assert rt.local_fips(hv2, hv2.routers["r1"], gw) == []    # a-vm1 is on hv1
    r1 = hv2.routers["r1"]
    assert r1.interfaces == ("r1-a", "r1-b") and r1.gateway == "r1-gw"
    assert r1.gateway_chassis == ("gw1", "gw2") and r1.enable_snat
    assert r1.routes == (("192.168.50.0/24", "10.2.0.50"), ("198.18.0.0/15", "203.0.113.254"))
    ext = hv2.networks["ext-net"]
    assert (ext.network_type, ext.physical_network, ext.external) == ("flat", "physnet1", True)
    assert view("hv1").networks["ext-vlan"].segmentation_id == 100


def test_floating_ips_of_the_routers_natted_only_where_their_ports_are_bound():
    hv1 = view("hv1")
    assert sorted(hv1.floating_ips) == ["fip-a1", "fip-c1"]
    fip = hv1.floating_ips["fip-a1"]
    assert (fip.address, fip.mac, fip.fixed_ip, fip.port_id, fip.router_id) == \
        ("203.0.113.101", mac("fip-a1-port"), "10.1.0.11", "a-vm1", "r1")
    r1 = hv1.routers["r1"]
    assert [f.id for f in rt.local_fips(hv1, r1, rt.gateway(hv1, r1))] == ["fip-a1"]
    gw1 = view("gw1")
    assert sorted(gw1.floating_ips) == ["fip-a1"]          # known: reached by hairpin
    r1 = gw1.routers["r1"]
    assert rt.local_fips(gw1, r1, rt.gateway(gw1, r1)) == []   # NATed on hv1 only
    assert rt.hairpin_neighbours(gw1, r1, rt.gateway(gw1, r1)) == [
        ("203.0.113.10", mac("r1-gw")), ("203.0.113.101", mac("fip-a1-port"))]


def test_snat_blocks_of_every_chassis_on_the_current_address_only():
    blocks = view("hv2").snat_blocks["r1"]
    assert blocks == (("gw1", 1152, 1215), ("hv1", 1024, 1087), ("hv1", 2048, 2111),
                      ("hv2", 1088, 1151))               # not hv2's block on 203.0.113.99
    assert "r2" not in view("hv1").snat_blocks            # no SNAT on r2


def test_overlapping_blocks_do_not_break_the_compile():
    objs = objects()
    objs["snat_blocks"] = {**objs["snat_blocks"], "x": {
        "id": "x", "router_id": "r1", "chassis": "hv2", "ip": "203.0.113.10",
        "port_min": 1056, "port_max": 1119}}
    gw1 = view("gw1", objs)
    assert ("hv2", 1056, 1119) not in rt.blocks(gw1, gw1.routers["r1"])
    compile_view(gw1)
    compile_view(view("hv2", objs))


def test_the_active_gateway_is_the_first_alive_candidate():
    assert view("hv1").active_gateway == {"r1": "gw1", "r2": "gw2"}
    assert view("hv1", alive=["hv1", "gw2"]).active_gateway == {"r1": "gw2", "r2": "gw2"}
    assert view("hv1", alive=["hv1"]).active_gateway == {}
    assert "r1" in view("gw1").routers and "r1" not in view("gw2").routers
    assert "r1" in view("gw2", alive=["gw2", "hv1", "hv2"]).routers   # it took over


def test_chassis_and_tunnels_the_routers_involve():
    gw1 = view("gw1")
    assert {"hv1", "hv2", "gw2"} <= set(gw1.chassis_by_name)
    assert gw1.tunnel_ofports == {c: TUNNEL[c] for c in ("gw2", "hv1", "hv2")}
    assert l3.tunnel_peers(gw1) == {c: TUNNEL_IP[c] for c in ("gw2", "hv1", "hv2")}
    assert l3.tunnel_peers(view("hv2")) == {c: TUNNEL_IP[c] for c in ("gw1", "gw2", "hv1")}


def test_external_macs_are_kept_for_external_subnets_only():
    v = view("hv1", external_macs={**UPSTREAM, "10.1.0.50": "02:00:00:00:00:01"})
    assert set(v.external_macs) == set(UPSTREAM)


def test_unusable_objects_are_reported_not_fatal():
    objs = objects()
    objs["floatingips"]["broken"] = {**objs["floatingips"]["fip-a1"], "id": "broken",
                                     "floating_port_id": "nowhere"}
    objs["routers"]["bad"] = {"id": "bad", "routes": [{"destination": "x"}]}
    problems: list = []
    base = l3.with_l3(view("hv1"), objs, alive=CHASSIS, problems=problems)
    assert ("floatingips", "broken", "unusable: its own port is unknown") in problems
    assert any(c == "routers" and i == "bad" for c, i, _ in problems)
    assert "broken" not in base.floating_ips and "bad" not in base.routers


def test_composes_with_the_agents_relevant_view():
    """What the agent does: relevant.build_view, then l3.with_l3."""
    objs = objects()
    base = relevant.build_view(objs, "hv1", TUNNEL_IP["hv1"], VIF_OFPORTS["hv1"],
                               {c: TUNNEL[c] for c in CHASSIS if c != "hv1"})
    full = l3.with_l3(base, objs, alive=CHASSIS, bridge_mappings={"physnet1": "br-ex"},
                      patch_ofports={"physnet1": PATCH},
                      tunnel_ofports={c: TUNNEL[c] for c in CHASSIS if c != "hv1"},
                      external_macs=UPSTREAM)
    assert sorted(full.routers) == ["r1", "r2"] and sorted(full.floating_ips) == \
        ["fip-a1", "fip-c1"]
    ours = view("hv1")
    assert set(full.ports) == set(ours.ports) and set(full.networks) == set(ours.networks)
    assert full.snat_blocks == ours.snat_blocks and full.tunnel_ofports == ours.tunnel_ofports
    compile_view(full)


def test_a_router_disabled_or_without_local_interface_is_not_programmed():
    down = view("hv2", changed(objects(), "routers", "r1", admin_state_up=False))
    assert "r1" in down.routers and rt.programmed(down) == []
    assert all(f.stage not in ("l3_route", "l3_snat") or f.priority == 0
               for f in compile_view(down))


# what the agent sends and resolves -------------------------------------------------------

def test_external_nexthops_to_resolve():
    hops = l3.external_nexthops(view("hv1"))
    assert [(h.network_id, h.ip, h.vlan, h.patch_ofport) for h in hops] == [
        ("ext-net", "203.0.113.1", None, PATCH), ("ext-net", "203.0.113.254", None, PATCH),
        ("ext-vlan", "198.51.100.1", 100, PATCH)]


def test_announcements_for_floating_ips_here_and_gateways_active_here():
    hv1 = [(a.ofport, a.ip, a.mac) for a in l3.announcements(view("hv1"))]
    assert hv1 == [(PATCH, "198.51.100.101", mac("fip-c1-port")),
                   (PATCH, "203.0.113.101", mac("fip-a1-port"))]
    gw1 = l3.announcements(view("gw1"))
    assert [(a.ip, a.mac) for a in gw1] == [("203.0.113.10", mac("r1-gw"))]
    assert [a.ip for a in l3.announcements(view("gw2"))] == ["198.51.100.10"]


def test_loopback_macs_are_what_the_chassis_answers_for_on_each_mapped_bridge():
    assert l3.loopback_macs(view("hv1")) == {
        "br-ex": tuple(sorted([mac("fip-c1-port"), mac("fip-a1-port")]))}
    assert l3.loopback_macs(view("gw1")) == {"br-ex": (mac("r1-gw"),)}
    assert l3.loopback_macs(view("hv3")) == {}                 # no bridge mapping


def test_garp_and_probe_frames():
    frame = packet.Packet(l3.garp(mac("r1-gw"), "203.0.113.10"))
    eth, req = frame.get_protocol(ethernet.ethernet), frame.get_protocol(arp.arp)
    assert eth.dst == "ff:ff:ff:ff:ff:ff" and eth.src == mac("r1-gw")
    assert (req.src_ip, req.dst_ip, req.src_mac, req.opcode) == \
        ("203.0.113.10", "203.0.113.10", mac("r1-gw"), 1)
    tagged = packet.Packet(l3.arp_probe("0a:00:00:00:00:01", "198.51.100.1", vlan=100))
    assert tagged.get_protocol(vlan.vlan).vid == 100
    probe = tagged.get_protocol(arp.arp)
    assert (probe.src_ip, probe.dst_ip) == ("0.0.0.0", "198.51.100.1")


def test_routers_to_lease_snat_blocks_of():
    assert l3.snat_routers(view("hv1")) == ["r1"]          # r2 does not SNAT
    assert l3.snat_routers(view("hv2")) == ["r1"]
    assert l3.snat_routers(view("gw1")) == [] == l3.snat_routers(view("hv3"))


def test_statuses():
    assert l3.statuses(view("gw1")) == {"routers": {"r1": "ACTIVE"}, "floatingips": {}}
    assert l3.statuses(view("hv1")) == {"routers": {},
                                        "floatingips": {"fip-a1": "ACTIVE", "fip-c1": "ACTIVE"}}


# zones and MACs ----------------------------------------------------------------------

def test_router_zones_are_above_every_ofport_and_distinct():
    zones = l3.zones(view("hv1"))
    assert set(zones) == {"r1", "r2"} and len(set(zones.values())) == 2
    assert all(rt.ZONE_BASE <= z < rt.ZONE_BASE + rt.ZONE_SLOTS for z in zones.values())
    assert l3.zones(view("hv2"))["r1"] == zones["r1"]     # a hash: the same everywhere


def test_zone_collisions_probe_on():
    from plexus.pipeline.view import RouterView
    base = view("gw1")
    many = {f"r{i}": RouterView(f"r{i}") for i in range(300)}
    crowded = replace(base, routers=many, active_gateway={r: "gw1" for r in many})
    zones = rt.zones(crowded)
    assert len(zones) == rt.ZONE_SLOTS == len(set(zones.values()))


def test_snat_macs_are_local_unicast_and_per_router_and_chassis():
    macs = {rt.snat_mac(r, c) for r in ("r1", "r2") for c in CHASSIS}
    assert len(macs) == 10
    assert all(int(m[:2], 16) & 0x3 == 0x2 for m in macs)
    assert rt.snat_mac("r1", "hv1") == rt.snat_mac("r1", "hv1")


# conntrack NAT --------------------------------------------------------------------------

def tcp(src, dst, sport, dport, flags=SYN):
    return {"ipv4_src": src, "ipv4_dst": dst, "ip_proto": 6, "tcp_src": sport,
            "tcp_dst": dport, "tcp_flags": flags}


def test_snat_picks_a_free_port_in_range_and_reverses_replies():
    ct = Conntrack()
    nat = Nat("src", "203.0.113.10", 1024, 1027)
    seen = set()
    for i in range(4):
        pkt = tcp("10.1.0.11", "8.8.8.8", 40000 + i, 80)
        ct.commit(7, pkt, nat=nat)
        ct.nat(7, pkt)
        assert pkt["ipv4_src"] == "203.0.113.10" and 1024 <= pkt["tcp_src"] <= 1027
        seen.add(pkt["tcp_src"])
    assert len(seen) == 4
    full = tcp("10.1.0.99", "8.8.8.8", 40000, 80)
    ct.commit(7, full, nat=nat)
    assert ct.find(7, full)[0] is None                 # range exhausted: not committed
    reply = tcp("8.8.8.8", "203.0.113.10", 80, 1024, SYN | ACK)
    state = ct.lookup(7, reply)[0]
    ct.nat(7, reply)
    assert reply["ipv4_dst"] == "10.1.0.11" and reply["tcp_dst"] in range(40000, 40004)
    assert state & 0x08                                 # +rpl


def test_nat_keeps_a_source_port_inside_its_range_and_dnat_rewrites_the_destination():
    ct = Conntrack()
    pkt = tcp("10.1.0.11", "8.8.8.8", 1025, 80)
    ct.commit(1, pkt, nat=Nat("src", "203.0.113.10", 1024, 1087))
    ct.nat(1, pkt)
    assert pkt["tcp_src"] == 1025
    inbound = tcp("8.8.8.8", "203.0.113.101", 5555, 22)
    ct.commit(1, inbound, nat=Nat("dst", "10.1.0.11"))
    ct.nat(1, inbound)
    assert (inbound["ipv4_dst"], inbound["tcp_dst"]) == ("10.1.0.11", 22)
    answer = tcp("10.1.0.11", "8.8.8.8", 22, 5555, SYN | ACK)
    ct.nat(1, answer)
    assert answer["ipv4_src"] == "203.0.113.101"


def test_ct_without_nat_translates_nothing_and_zones_are_apart():
    ct = Conntrack()
    pkt = tcp("10.1.0.11", "8.8.8.8", 40000, 80)
    ct.commit(1, dict(pkt), nat=Nat("src", "203.0.113.10", 1024, 1087))
    other_zone = dict(pkt)
    ct.nat(2, other_zone)
    assert other_zone == pkt
    untranslated = dict(pkt)
    ct.lookup(1, untranslated)
    assert untranslated == pkt


def test_icmp_snat_keeps_the_id_and_reverses_the_echo_reply():
    ct = Conntrack()
    echo = {"ipv4_src": "10.1.0.12", "ipv4_dst": "8.8.8.8", "ip_proto": 1,
            "icmpv4_type": 8, "icmp_id": 77}
    ct.commit(3, echo, nat=Nat("src", "203.0.113.10"))
    ct.nat(3, echo)
    assert (echo["ipv4_src"], echo["icmp_id"]) == ("203.0.113.10", 77)
    pong = {"ipv4_src": "8.8.8.8", "ipv4_dst": "203.0.113.10", "ip_proto": 1,
            "icmpv4_type": 0, "icmp_id": 77}
    ct.nat(3, pong)
    assert pong["ipv4_dst"] == "10.1.0.12"


# flows: checks and lowering -----------------------------------------------------------------

def test_registry_checks_nat_and_dec_ttl():
    ip = {"eth_type": 0x0800}
    owner = BY_NAME["l3_snat"].owner
    check_flow(Flow.make("l3_snat", 1, ip, [Ct(9, commit=True, table="output",
                                               nat=Nat("src", "1.2.3.4", 1, 2))]), owner)
    bad = [Flow.make("l3_snat", 1, ip, [Ct(9, table="output", nat=Nat("src", "1.2.3.4"))]),
           Flow.make("l3_snat", 1, ip, [Ct(9, commit=True, nat=Nat("both", "1.2.3.4"))]),
           Flow.make("l3_snat", 1, ip, [Ct(9, commit=True, nat=Nat("src", "1.2.3.4", 5, 2))]),
           Flow.make("l3_route", 1, {}, [DecTtl()]),
           Flow.make("l3_route", 1, {**ip, "nw_ttl": 1})]
    for flow in bad:
        try:
            check_flow(flow)
        except PipelineViolation:
            continue
        raise AssertionError(f"accepted {flow}")


def canonical_round_trip(flow: Flow) -> None:
    """Encode the flow mod, decode it as os-ken decodes what OVS reports: same entry."""
    mod = flow_mod(flow)
    mod.serialize()
    msg = parser.OFPFlowMod.parser(mod.datapath, mod.version, mod.msg_type, mod.msg_len,
                                   mod.xid, mod.buf)
    back = flowdiff.entry(msg.table_id, msg.priority, msg.cookie, msg.match,
                          msg.instructions)
    assert back == flowdiff.of_flow(flow), flow


def test_every_l3_flow_round_trips_through_the_codec():
    for chassis in CHASSIS:
        for flow in compile_view(view(chassis)):
            canonical_round_trip(flow)


def test_new_actions_lower():
    flow = Flow.make("classify", 1, {"in_port": 50, "vlan_vid": 0x1064},
                     [PopVlan()], goto="l3_input")
    canonical_round_trip(flow)
    canonical_round_trip(Flow.make("output", 1, {"outport": 0x10000},
                                   [PushVlan(), *rt.vlan_push(view("hv1").networks["ext-vlan"])]))
    canonical_round_trip(Flow.make("l3_input", 1, {"eth_type": 0x0800},
                                   [Ct(0xFF01, table="l3_route", nat=Nat())]))


# allowed-address-pair VIPs ---------------------------------------------------------------

def neighbour_macs(v) -> dict[tuple[int, str], str]:
    """l3_neighbor's (net key, next hop) → destination MAC."""
    from plexus.pipeline.stages.l3_neighbor import compile_l3_neighbor
    found = {}
    for f in compile_l3_neighbor(v):
        match = dict(f.match)
        if "nexthop" in match and hasattr(f.actions[0], "value"):   # not the ICMP punts
            found[(match["net"], match["nexthop"])] = f.actions[0].value
    return found


def with_pairs(objs: dict, **pairs) -> dict:
    """Objects where each named port holds the given allowed address pairs."""
    for port, addresses in pairs.items():
        objs = changed(objs, "ports", port, allowed_address_pairs=[
            {"ip_address": a, "mac_address": mac(port)} for a in addresses])
    return objs


def test_a_vip_held_by_one_port_is_routed_to_that_port():
    objs = with_pairs(objects(), **{"a-vm2": ["10.1.0.250/32", "10.1.0.251",
                                              "10.1.0.128/25"]})
    net_a = view("hv2", objs).networks["net-a"].key
    macs = neighbour_macs(view("hv2", objs))
    assert macs[(net_a, "10.1.0.250")] == mac("a-vm2")
    assert macs[(net_a, "10.1.0.251")] == mac("a-vm2")
    assert not any(ip.startswith("10.1.0.128") for _, ip in macs)   # a CIDR pair: no
    assert (net_a, "10.1.0.250") not in neighbour_macs(view("hv2"))  # without the pair


def test_a_vip_several_ports_hold_is_not_routed_and_a_fixed_ip_wins():
    objs = with_pairs(objects(), **{"a-vm1": ["10.1.0.250", "10.1.0.12"],
                                    "a-vm2": ["10.1.0.250"]})
    v = view("hv2", objs)
    macs = neighbour_macs(v)
    net_a = v.networks["net-a"].key
    assert (net_a, "10.1.0.250") not in macs                 # keepalived style: nobody
    assert macs[(net_a, "10.1.0.12")] == mac("a-vm2")        # a-vm2's own fixed IP
