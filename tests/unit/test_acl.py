"""Security groups through the one evaluator, on the ACL reference topology
(tests/golden/acl_reference.py, seen from hv1): what passes, what returns, what a rule
or membership change does, and what a conntrack state does."""

from __future__ import annotations

from dataclasses import replace

import pytest

from plexus.pipeline.compile import compile_view
from plexus.pipeline.view import View
from plexus.tools.conntrack import ACK, SYN
from plexus.tools.evaluator import Pipeline
from tests.golden.acl_reference import (
    KINDS, NET, TUNNELS, VIF_OFPORTS, group, ip, kind_view, mac, rule, view,
)

HV2 = TUNNELS["hv2"]


def pipeline(v: View, before: Pipeline | None = None) -> Pipeline:
    """The compiled view, keeping the connections of ``before`` (as OVS keeps conntrack
    across a flow change)."""
    return Pipeline(compile_view(v), before.conntrack if before else None)


def packet(src: str, dst: str, proto: str = "tcp", dport: int = 80, sport: int = 40000,
           **extra) -> dict:
    """An IPv4 packet from port ``src`` to port ``dst`` (ids): from its VIF when ``src``
    is local, else from the tunnel of hv2. For ICMP, ``dport`` is the type and ``sport``
    the code."""
    pkt = {"eth_src": mac(src), "eth_dst": mac(dst), "eth_type": 0x0800,
           "ipv4_src": ip(src), "ipv4_dst": ip(dst)}
    if src in VIF_OFPORTS:
        pkt["in_port"] = VIF_OFPORTS[src]
    else:
        pkt.update(in_port=HV2, tunnel_id=NET.key)
    if proto == "icmp":
        pkt.update(ip_proto=1, icmpv4_type=dport, icmpv4_code=sport if sport < 256 else 0)
    else:
        number = {"tcp": 6, "udp": 17, "sctp": 132}[proto]
        pkt.update(ip_proto=number, **{f"{proto}_src": sport, f"{proto}_dst": dport})
    return {**pkt, **extra}


def reply(pkt: dict, **extra) -> dict:
    """The answer to a packet (ports, addresses and sides swapped; TCP: SYN+ACK)."""
    swap = {"eth_src": "eth_dst", "ipv4_src": "ipv4_dst"}
    out = dict(pkt)
    for a, b in swap.items():
        out[a], out[b] = pkt[b], pkt[a]
    for proto in ("tcp", "udp", "sctp"):
        if f"{proto}_src" in pkt:
            out[f"{proto}_src"], out[f"{proto}_dst"] = pkt[f"{proto}_dst"], pkt[f"{proto}_src"]
    if pkt.get("ip_proto") == 6:
        out["tcp_flags"] = SYN | ACK
    if pkt.get("ip_proto") == 1:
        out["icmpv4_type"] = {8: 0, 13: 14}[pkt["icmpv4_type"]]
    dst = next(p for p in list(VIF_OFPORTS) + ["web1", "web2", "db1", "other"]
               if mac(p) == out["eth_src"])
    out.pop("tunnel_id", None)
    if dst in VIF_OFPORTS:
        out["in_port"] = VIF_OFPORTS[dst]
    else:
        out.update(in_port=HV2, tunnel_id=NET.key)
    return {**out, **extra}


def to(port: str) -> list:
    """Where a packet for ``port`` leaves hv1."""
    return [VIF_OFPORTS[port]] if port in VIF_OFPORTS else [HV2]


def passes(p: Pipeline, pkt: dict, dst: str) -> bool:
    """Whether the packet is delivered toward ``dst``; anything else fails loudly."""
    result = p.run(pkt)
    assert result.ports in ([], to(dst)), result.explain()
    return result.ports == to(dst)


@pytest.fixture(scope="module")
def kinds():
    return {k: kind_view(k) for k in KINDS}


# rules by kind --------------------------------------------------------------------------

def test_tcp_to_an_allowed_port_passes_and_to_a_denied_port_drops(kinds):
    p = pipeline(kinds["tcp_range"])
    for port in (8000, 8042, 8063, 8064, 8080):
        assert passes(p, packet("other", "vm", dport=port), "vm"), port
    for port in (22, 7999, 8081, 65535):
        assert not passes(p, packet("other", "vm", dport=port), "vm"), port
    assert not passes(p, packet("other", "vm", "udp", dport=8000), "vm")
    # egress: this group allows none
    assert not passes(p, packet("vm", "other", dport=8000), "other")


def test_udp_single_port(kinds):
    p = pipeline(kinds["udp_port"])
    assert passes(p, packet("web1", "vm", "udp", dport=53), "vm")
    assert not passes(p, packet("web1", "vm", "udp", dport=54), "vm")
    assert passes(p, packet("vm", "other", "udp", dport=123), "other")
    assert not passes(p, packet("vm", "other", "udp", dport=124), "other")


def test_replies_to_outbound_connections_return(kinds):
    p = pipeline(kinds["udp_port"])
    query = packet("vm", "other", "udp", dport=123, sport=5555)
    assert passes(p, query, "other")
    assert passes(p, reply(query), "vm")
    # not a reply: another source port
    assert not passes(p, packet("other", "vm", "udp", dport=5555, sport=124), "vm")
    d = pipeline(kinds["default_group"])
    syn = packet("vm", "other", dport=443)
    assert passes(d, syn, "other")
    assert passes(d, reply(syn), "vm")
    assert not passes(d, packet("other", "vm", dport=40001, sport=443), "vm")   # no SYN seen


def test_icmp_by_type_and_code(kinds):
    p = pipeline(kinds["icmp_type_code"])
    echo = packet("other", "vm", "icmp", dport=8, sport=0, icmp_id=7)
    assert passes(p, echo, "vm")
    assert passes(p, reply(echo), "other")                 # the echo reply goes back
    assert not passes(p, packet("other", "vm", "icmp", dport=13, sport=0), "vm")   # timestamp
    assert not passes(p, packet("other", "vm", "icmp", dport=8, sport=1), "vm")    # code 1
    # an unreachable about nothing vm sent is invalid to conntrack, whatever the rules say
    assert not passes(p, packet("other", "vm", "icmp", dport=3, sport=1), "vm")
    ping = packet("vm", "other", "icmp", dport=8, sport=0, icmp_id=9)
    assert passes(p, ping, "other")                        # egress: any ICMP
    assert passes(p, reply(ping), "vm")                    # type 0 back, as a reply


def test_icmp_errors_about_accepted_connections_are_related(kinds):
    p = pipeline(kinds["default_group"])
    sent = packet("vm", "other", "udp", dport=9999, sport=4444)
    assert passes(p, sent, "other")
    error = packet("other", "vm", "icmp", dport=3, sport=3, inner=sent)
    assert passes(p, error, "vm")
    about_nothing = packet("other", "vm", "icmp", dport=3, sport=3,
                           inner=packet("vm", "other", "udp", dport=1, sport=1))
    assert not passes(p, about_nothing, "vm")


def test_any_protocol_and_protocol_numbers(kinds):
    p = pipeline(kinds["any_protocol"])
    for pkt in (packet("other", "vm", "sctp", dport=9), packet("db1", "vm", "udp", dport=1),
                {**packet("other", "vm", "udp"), "ip_proto": 112}):
        assert passes(p, pkt, "vm")
    gre = {**packet("vm", "other", "udp"), "ip_proto": 47}
    assert passes(p, gre, "other")
    assert not passes(p, packet("vm", "other", "udp", dport=47), "other")


def test_remote_prefix(kinds):
    p = pipeline(kinds["remote_prefix"])
    assert passes(p, packet("other", "vm", dport=22, ipv4_src="192.168.7.7"), "vm")
    assert not passes(p, packet("other", "vm", dport=22), "vm")            # 10.1.0.41
    assert not passes(p, packet("other", "vm", dport=22, ipv4_src="192.169.0.1"), "vm")
    assert passes(p, packet("vm", "other", "udp", dport=53, ipv4_dst="10.1.0.2"), "other")
    assert not passes(p, packet("vm", "other", "udp", dport=53), "other")


def test_remote_group_members_and_their_pairs(kinds):
    p = pipeline(kinds["remote_group"])
    assert passes(p, packet("web1", "vm", dport=5432), "vm")
    assert passes(p, packet("web2", "vm", dport=6001), "vm")
    assert passes(p, packet("web2", "vm", dport=5432, ipv4_src="10.1.0.130"), "vm")  # pair
    assert passes(p, packet("web1", "vm", dport=5432, ipv4_src="10.9.0.5"), "vm")   # far-web
    assert not passes(p, packet("web1", "vm", dport=6002), "vm")
    assert not passes(p, packet("db1", "vm", dport=5432), "vm")
    assert not passes(p, packet("web2", "vm", dport=5432, ipv4_src="10.1.0.150"), "vm")
    assert passes(p, packet("vm", "db1", "udp", dport=53), "db1")
    assert not passes(p, packet("vm", "web1", "udp", dport=53), "web1")
    assert passes(p, packet("web1", "vm2", dport=5432), "vm2")           # vm2: same group


def test_membership_added_and_removed_changes_reachability(kinds):
    groups, local = KINDS["remote_group"]
    before = kinds["remote_group"]
    joined = view(groups, local, extra_members={"sg-web": ["db1"]})
    assert not passes(pipeline(before), packet("db1", "vm", dport=5432), "vm")
    assert passes(pipeline(joined), packet("db1", "vm", dport=5432), "vm")
    left = view(groups, local)
    assert not passes(pipeline(left), packet("db1", "vm", dport=5432), "vm")


def test_a_membership_change_touches_only_that_groups_member_flows(kinds):
    groups, local = KINDS["remote_group"]
    old = {f.key(): f for f in compile_view(kinds["remote_group"])}
    new = {f.key(): f for f in compile_view(view(groups, local,
                                                 extra_members={"sg-web": ["db1"]}))}
    changed = [k for k in old.keys() | new.keys() if old.get(k) != new.get(k)]
    assert changed
    for key in changed:       # added, removed or changed: its old or new cookie names it
        names = {c for f in (old.get(key), new.get(key)) if f for c in f.cookie.split(",")}
        assert "sg:sg-web:members" in names, key


def test_default_group_allows_all_egress_and_ingress_from_members(kinds):
    p = pipeline(kinds["default_group"])
    syn = packet("vm", "vm2", dport=3306)               # local to local: both ACLs
    assert passes(p, syn, "vm2")
    assert passes(p, reply(syn), "vm")
    assert passes(p, packet("vm", "web1", "udp", dport=7), "web1")
    assert not passes(p, packet("web1", "vm", dport=22), "vm")      # not in default
    assert passes(p, packet("vm2", "vm", "udp", dport=53), "vm")     # a member


def test_no_groups_allows_only_dhcp_and_arp(kinds):
    p = pipeline(kinds["no_groups"])
    assert not passes(p, packet("vm", "other", dport=80), "other")
    assert not passes(p, packet("other", "vm", dport=80), "vm")
    assert not passes(p, packet("vm", "other", "icmp", dport=8, sport=0), "other")
    dhcp = {"in_port": VIF_OFPORTS["vm"], "eth_src": mac("vm"), "eth_dst": "ff:ff:ff:ff:ff:ff",
            "eth_type": 0x0800, "ipv4_src": "0.0.0.0", "ipv4_dst": "255.255.255.255",
            "ip_proto": 17, "udp_src": 68, "udp_dst": 67}
    assert [tag for tag, _ in p.run(dhcp).controller] == ["dhcp"]
    offer = packet("other", "vm", "udp", dport=68, sport=67)
    assert passes(p, offer, "vm")                                    # DHCP replies pass
    assert not passes(p, packet("vm", "other", "udp", dport=68, sport=67), "other")
    arp = {"in_port": HV2, "tunnel_id": NET.key, "eth_src": mac("other"), "eth_dst": mac("vm"),
           "eth_type": 0x0806, "arp_op": 2, "arp_spa": ip("other"), "arp_tpa": ip("vm"),
           "arp_sha": mac("other"), "arp_tha": mac("vm")}
    assert p.run(arp).ports == [VIF_OFPORTS["vm"]]
    ipv6 = {"in_port": HV2, "tunnel_id": NET.key, "eth_src": mac("other"), "eth_dst": mac("vm"),
            "eth_type": 0x86DD, "ipv6_src": "fd00::41", "ipv6_dst": "fd00::5"}
    assert p.run(ipv6).dropped                                       # IPv6: not yet


def test_port_security_off_passes_everything(kinds):
    p = pipeline(kinds["port_security_off"])
    assert passes(p, packet("other", "vm", dport=1), "vm")
    assert passes(p, packet("other", "vm", "udp", dport=9, ipv4_src="203.0.113.9"), "vm")
    assert passes(p, packet("vm", "other", dport=1, ipv4_src="203.0.113.5",
                            eth_src="02:00:00:00:00:99"), "other")
    assert not p.conntrack.connections()


def test_invalid_packets_drop(kinds):
    p = pipeline(kinds["tcp_range"])
    assert not passes(p, packet("other", "vm", dport=8000, tcp_flags=SYN | ACK), "vm")
    assert passes(p, packet("other", "vm", dport=8000, tcp_flags=SYN), "vm")


def test_rule_removal_blocks_new_connections_and_revokes_established_ones(kinds):
    p = pipeline(kinds["tcp_range"])
    syn = packet("other", "vm", dport=8000, sport=33000)
    assert passes(p, syn, "vm")
    assert passes(p, reply(syn), "other")
    ack = dict(syn, tcp_flags=ACK)
    assert passes(p, ack, "vm")                            # established
    without = pipeline(view([group("sg-a")], {"vm": ["sg-a"]}, unsecured=("vm2",)), p)
    assert not passes(without, packet("other", "vm", dport=8000, sport=33001), "vm")
    # Neutron's OVS firewall: the next packet of the established connection is dropped
    # and its connection marked (ct_mark=1); then its replies drop too
    assert passes(without, reply(syn, tcp_flags=ACK), "other")   # before any mark
    result = without.run(ack)
    assert result.dropped and "revoke" in (result.steps[-1].flow.note or ""), result.explain()
    assert [c.mark for c in without.conntrack.connections()] == [1]
    assert not passes(without, reply(syn, tcp_flags=ACK), "other")
    # putting the rule back does not revive a revoked connection (as in Neutron)
    again = pipeline(kinds["tcp_range"], without)
    assert not passes(again, ack, "vm")
    assert passes(again, packet("other", "vm", dport=8000, sport=33002), "vm")


def test_stateless_groups_track_nothing_and_need_rules_both_ways(kinds):
    p = pipeline(kinds["stateless"])
    syn = packet("other", "vm", dport=22)
    assert passes(p, syn, "vm")
    assert passes(p, reply(syn), "other")                  # allowed by its own egress rule
    assert not passes(p, packet("other", "vm", dport=23), "vm")
    assert not p.conntrack.connections()
    only_in = pipeline(view([group("sg-a", rule("ssh-in", "ingress", "tcp", 22, 22),
                                   stateful=False)], {"vm": ["sg-a"]}, unsecured=("vm2",)))
    assert passes(only_in, syn, "vm")
    assert not passes(only_in, reply(syn), "other")        # no conntrack: no free return


def test_floods_are_not_filtered_on_ingress(kinds):
    """Broadcast and multicast reach local ports whatever their ingress rules (as in
    Neutron's OVS firewall, which finds a port's ingress traffic by its MAC); the
    sender's egress rules still apply."""
    p = pipeline(kinds["no_groups"])
    flood = packet("other", "vm", "udp", dport=5353, eth_dst="01:00:5e:00:00:fb",
                   ipv4_dst="224.0.0.251")
    assert p.run(flood).ports == [VIF_OFPORTS["vm"], VIF_OFPORTS["vm2"]]
    assert p.run(packet("vm", "other", "udp", dport=5353, eth_dst="01:00:5e:00:00:fb",
                        ipv4_dst="224.0.0.251")).dropped


def test_without_security_in_the_view_nothing_is_filtered():
    v = kind_view("no_groups")
    p = pipeline(replace(v, security=None))
    assert passes(p, packet("other", "vm", dport=1), "vm")
    assert passes(p, packet("vm", "other", dport=1), "other")


def test_trace_names_the_rule_and_the_zone(kinds):
    p = pipeline(kinds["tcp_range"])
    text = p.run(packet("other", "vm", dport=8001)).explain()
    assert "[sg:sg-a:rule:tcp-8000-8080]" in text and "ct(zone=5,table=ingress_acl)" in text
    group_text = pipeline(kinds["remote_group"]).run(packet("web1", "vm", dport=5432)).explain()
    assert "conj_id=" in group_text and "[port:vm]" in group_text
