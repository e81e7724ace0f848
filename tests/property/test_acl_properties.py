"""Properties of the security-group compiler: through the evaluator it allows exactly what
a direct reading of the rules allows (and the replies of what it allows), its flows keep
the registry's promises and lower, its output does not depend on input order, remote
groups cost N + M flows rather than N × M, a membership change touches only that
group's member flows, and a rule added to (or removed from) a group that already has
rules of its own in that direction touches only that rule's flows, however many ports
hold the group."""

from __future__ import annotations

import ipaddress
import random
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st
from os_ken.ofproto import ofproto_v1_3 as ofp

from plexus.lower.openflow import flow_mod
from plexus.pipeline.compile import by_stage, compile_view
from plexus.pipeline.registry import check_flow, stage
from plexus.model.objects import Rule
from plexus.pipeline.stages.acl import port_masks, rule_matches
from plexus.pipeline.view import SecurityView
from plexus.tools.evaluator import Pipeline
from tests.golden.acl_reference import (
    NET, TUNNELS, VIF_OFPORTS, group, ip, mac, rule, view,
)

FAST = settings(max_examples=150, deadline=None)
HV2 = TUNNELS["hv2"]
SYN, ACK, FIN, RST = 0x02, 0x10, 0x01, 0x04
PROTOCOLS = [None, "tcp", "udp", "icmp", "sctp", "6", "17", "1", "47", "dccp", "112"]
NUMBERS = {"tcp": 6, "udp": 17, "icmp": 1, "sctp": 132, "dccp": 33}
PREFIXES = ["10.1.0.0/24", "10.1.0.16/28", "10.1.0.21/32", "192.168.0.0/16", "0.0.0.0/0",
            "10.0.0.0/8", "10.1.0.128/25"]
REMOTES = ["sg-web", "sg-db", "sg-a"]
PEERS = ["10.1.0.21", "10.1.0.22", "10.1.0.31", "10.1.0.41", "10.1.0.130", "10.9.0.5",
         "192.168.3.4", "10.1.0.5", "10.1.0.200", "8.8.8.8"]
PORTS = [1, 21, 22, 23, 53, 67, 68, 80, 443, 1023, 1024, 5432, 8000, 8080, 65535]
L4 = {6: "tcp", 17: "udp", 132: "sctp"}


@st.composite
def rules(draw, n: int):
    """Random Neutron rules (as the API would accept them) for group sg-a."""
    out = []
    for i in range(n):
        proto = draw(st.sampled_from(PROTOCOLS))
        number = NUMBERS.get(proto) if proto and not proto.isdigit() else (
            int(proto) if proto else None)
        low = high = None
        if number in (6, 17, 132, 33) and draw(st.booleans()):
            low = draw(st.sampled_from(PORTS))
            high = draw(st.sampled_from([p for p in PORTS if p >= low]))
        elif number == 1 and draw(st.booleans()):
            low = draw(st.sampled_from([0, 3, 8, 13]))
            high = draw(st.sampled_from([None, 0, 1]))
        remote = draw(st.sampled_from(["none", "prefix", "group"]))
        out.append(rule(f"r{i}", draw(st.sampled_from(["ingress", "egress"])), proto, low, high,
                        prefix=draw(st.sampled_from(PREFIXES)) if remote == "prefix" else None,
                        remote=draw(st.sampled_from(REMOTES)) if remote == "group" else None,
                        ethertype=draw(st.sampled_from(["IPv4"] * 5 + ["IPv6"]))))
    return [r for r in out if not (r["ethertype"] == "IPv6" and r["remote_ip_prefix"])]


@st.composite
def packets(draw):
    """A first packet through vm: ingress (from a remote peer address) or egress."""
    proto = draw(st.sampled_from([6, 6, 17, 17, 1, 1, 132, 47, 112, 33]))
    peer = draw(st.sampled_from(PEERS))
    egress = draw(st.booleans())
    pkt = {"eth_type": 0x0800, "ip_proto": proto}
    if egress:
        pkt.update(in_port=VIF_OFPORTS["vm"], eth_src=mac("vm"), eth_dst=mac("other"),
                   ipv4_src=draw(st.sampled_from([ip("vm"), "10.1.0.100"])), ipv4_dst=peer)
    else:
        pkt.update(in_port=HV2, tunnel_id=NET.key, eth_src=mac("other"), eth_dst=mac("vm"),
                   ipv4_src=peer, ipv4_dst=ip("vm"))
    if proto in L4:
        pkt[f"{L4[proto]}_src"] = draw(st.sampled_from(PORTS + [40000]))
        pkt[f"{L4[proto]}_dst"] = draw(st.sampled_from(PORTS))
    if proto == 6:
        pkt["tcp_flags"] = draw(st.sampled_from([SYN, SYN, ACK, SYN | ACK, RST, SYN | FIN]))
    if proto == 1:
        pkt.update(icmpv4_type=draw(st.sampled_from([8, 8, 0, 3, 13, 11])),
                   icmpv4_code=draw(st.sampled_from([0, 1])), icmp_id=1)
    return ("egress" if egress else "ingress"), pkt


def within(address: str, cidr: str) -> bool:
    return ipaddress.ip_address(address) in ipaddress.ip_network(cidr, strict=False)


def starts_connection(pkt: dict) -> bool:
    """Whether conntrack would take this first packet as a new connection (not invalid)."""
    if pkt["ip_proto"] == 6:
        f = pkt["tcp_flags"]
        return (f == SYN) or (f & ACK and not f & (SYN | RST))
    if pkt["ip_proto"] == 1:
        return pkt["icmpv4_type"] in (8, 13)
    return True


def reference(wire_rules, members, stateful: bool, direction: str, pkt: dict) -> bool:
    """A direct reading of Neutron's rules (with its fixed DHCP allowances): is this first
    packet through vm allowed?"""
    proto = pkt["ip_proto"]
    if proto == 17 and (pkt["udp_src"], pkt["udp_dst"]) == (68, 67) and direction == "egress":
        return True
    if proto == 17 and (pkt["udp_src"], pkt["udp_dst"]) == (67, 68):
        return direction == "ingress"
    if stateful and not starts_connection(pkt):
        return False
    peer = pkt["ipv4_dst"] if direction == "egress" else pkt["ipv4_src"]
    for r in wire_rules:
        if r["direction"] != direction or r["ethertype"] != "IPv4":
            continue
        if r["protocol"] is not None:
            wanted = int(r["protocol"]) if r["protocol"].isdigit() else NUMBERS[r["protocol"]]
            if wanted != proto:
                continue
            if proto in L4 and r["port_range_min"] is not None and not (
                    r["port_range_min"] <= pkt[f"{L4[proto]}_dst"] <= r["port_range_max"]):
                continue
            if proto == 1 and r["port_range_min"] is not None and (
                    pkt["icmpv4_type"] != r["port_range_min"] or (
                        r["port_range_max"] is not None
                        and pkt["icmpv4_code"] != r["port_range_max"])):
                continue
        if r["remote_ip_prefix"] and not within(peer, r["remote_ip_prefix"]):
            continue
        if r["remote_group_id"] and not any(within(peer, m)
                                            for m in members.get(r["remote_group_id"], ())):
            continue
        return True
    return False


def answer(pkt: dict) -> dict:
    """The reply to a packet, arriving from the other side."""
    out = dict(pkt, ipv4_src=pkt["ipv4_dst"], ipv4_dst=pkt["ipv4_src"],
               eth_src=pkt["eth_dst"], eth_dst=pkt["eth_src"])
    proto = pkt["ip_proto"]
    if proto in L4:
        name = L4[proto]
        out[f"{name}_src"], out[f"{name}_dst"] = pkt[f"{name}_dst"], pkt[f"{name}_src"]
    if proto == 6:
        out["tcp_flags"] = SYN | ACK if pkt["tcp_flags"] == SYN else ACK
    if proto == 1:
        out["icmpv4_type"] = {8: 0, 13: 14}[pkt["icmpv4_type"]]
    out.pop("tunnel_id", None)
    if pkt["in_port"] == HV2:
        out["in_port"] = VIF_OFPORTS["vm"]
    else:
        out.update(in_port=HV2, tunnel_id=NET.key)
    return out


def allowed(result, direction: str) -> bool:
    """Whether the evaluator let the packet through vm (DHCP requests go to the agent)."""
    target = [HV2] if direction == "egress" else [VIF_OFPORTS["vm"]]
    assert result.ports in ([], target), result.explain()
    return result.ports == target or bool(result.controller)


@FAST
@given(rules(8), st.booleans(), packets())
def test_the_evaluator_allows_exactly_what_the_rules_allow(wire_rules, stateful, case):
    direction, pkt = case
    sg = group("sg-a", *wire_rules, stateful=stateful)
    v = view([sg], {"vm": ["sg-a"]}, unsecured=("vm2",))
    members = dict(v.security.members)
    p = Pipeline(compile_view(v))
    result = p.run(pkt)
    expected = reference(sg["security_group_rules"], members, stateful, direction, pkt)
    assert allowed(result, direction) == expected, result.explain()
    if expected and stateful and not dhcp(pkt):          # and its reply comes back
        back = p.run(answer(pkt))
        assert allowed(back, "ingress" if direction == "egress" else "egress"), back.explain()


def dhcp(pkt: dict) -> bool:
    """DHCP requests and replies: allowed before conntrack, so not tracked."""
    return pkt["ip_proto"] == 17 and (pkt["udp_src"], pkt["udp_dst"]) in ((68, 67), (67, 68))


@st.composite
def security_views(draw):
    """The ACL reference topology with random groups on vm and vm2, some of them shared,
    some ports unsecured, and random extra members."""
    stateful = draw(st.booleans())      # the API keeps a port's groups all alike
    groups = [group(f"sg-{name}", *draw(rules(draw(st.integers(0, 5)))), stateful=stateful)
              for name in ("a", "b")]
    for g in groups:
        g["security_group_rules"] = [dict(r, id=f"{g['id']}-{r['id']}",
                                          security_group_id=g["id"])
                                     for r in g["security_group_rules"]]
    pick = st.lists(st.sampled_from(["sg-a", "sg-b"]), unique=True, max_size=2)
    local = {"vm": draw(pick), "vm2": draw(pick)}
    unsecured = tuple(draw(st.lists(st.sampled_from(["vm", "vm2"]), unique=True, max_size=1)))
    extra = {"sg-web": draw(st.lists(st.sampled_from(["db1", "other"]), unique=True))}
    return view(groups, local, unsecured=unsecured, extra_members=extra)


@FAST
@given(security_views())
def test_every_acl_flow_keeps_the_registry_promises_and_lowers(v):
    flows = compile_view(v)
    for flow in flows:
        check_flow(flow, owner=stage(flow.stage).owner)
        flow_mod(flow).serialize()
        flow_mod(flow, ofp.OFPFC_DELETE_STRICT).serialize()
    for name, table in by_stage(flows).items():
        conj = {f.priority for f in table if f.conjunctions()}
        plain = {f.priority for f in table if not f.conjunctions()}
        assert not conj & plain, f"{name}: conjunctive and ordinary flows share a priority"


def shuffled_security(sec: SecurityView, rnd: random.Random) -> SecurityView:
    def mix(items):
        items = list(items)
        rnd.shuffle(items)
        return items
    groups = {g: replace(sec.groups[g], rules=tuple(mix(sec.groups[g].rules)))
              for g in mix(sec.groups)}
    return SecurityView(groups=groups,
                        port_groups={p: tuple(mix(gs)) for p, gs in mix(sec.port_groups.items())},
                        members={g: tuple(mix(ms)) for g, ms in mix(sec.members.items())})


@FAST
@given(security_views(), st.randoms(use_true_random=False))
def test_acl_output_does_not_depend_on_input_order(v, rnd):
    again = replace(v, security=shuffled_security(v.security, rnd))
    assert [str(f) for f in compile_view(again)] == [str(f) for f in compile_view(v)]


def remote_group_view(members: int, ranges: list[tuple[int, int]], ports: int = 1):
    """vm (and vm2 when ports=2) allowing TCP ``ranges`` from sg-big, which has ``members``
    member addresses."""
    sg = group("sg-a", *[rule(f"r{i}", "ingress", "tcp", lo, hi, remote="sg-big")
                         for i, (lo, hi) in enumerate(ranges)])
    v = view([sg, group("sg-big")], {"vm": ["sg-a"], "vm2": ["sg-a"] if ports == 2 else []},
             unsecured=() if ports == 2 else ("vm2",))
    addresses = tuple(str(ipaddress.ip_address("10.50.0.0") + i) for i in range(members))
    return replace(v, security=replace(v.security, members={"sg-big": addresses}))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 120), st.lists(st.tuples(st.integers(1, 65535), st.integers(0, 300)),
                                     min_size=1, max_size=30))
def test_remote_groups_cost_members_plus_ranges_not_their_product(n, spans):
    ranges = [(lo, min(65535, lo + span)) for lo, span in spans]
    masks = sum(len(port_masks(lo, hi)) for lo, hi in ranges)
    one = by_stage(compile_view(remote_group_view(n, ranges)))["ingress_acl"]
    fixed = 5 + 2 + 2          # state flows and default; the port's conj_id and revoke flows
                               # (one each per IP family)
    assert len(one) <= n + masks + fixed
    two = by_stage(compile_view(remote_group_view(n, ranges, ports=2)))["ingress_acl"]
    assert len(two) - len(one) <= masks + 4          # another port: its ranges, not the members
                                                     # (+ conj_id and revoke per IP family)


def test_a_big_remote_group_stays_linear():
    flows = by_stage(compile_view(remote_group_view(100, [(1000 + 10 * i, 1000 + 10 * i)
                                                         for i in range(50)])))
    assert len(flows["ingress_acl"]) == 100 + 50 + 9        # not 100 × 50 (9: state flows,
                                                            # default, conj_id and revoke × 2)


@FAST
@given(security_views(), st.lists(st.sampled_from(["db1", "other", "web1", "vm2"]),
                                   unique=True, min_size=1))
def test_a_membership_change_touches_only_that_groups_member_flows(v, joining):
    members = dict(v.security.members)
    for gid in members:
        changed_members = dict(members)
        extra = tuple(ip(p) for p in joining)
        changed_members[gid] = tuple(sorted(set(members[gid]) ^ set(extra)))
        other = replace(v, security=replace(v.security, members=changed_members))
        assert changed_keys_name(compile_view(v), compile_view(other), f"sg:{gid}:members")


@FAST
@given(security_views(), st.sampled_from(["ingress", "egress"]),
       st.sampled_from([None, 6, 17, 132, 1, 47]), st.sampled_from(PORTS),
       st.sampled_from([None, 0, 9, 1000]), st.sampled_from([None, *PREFIXES]))
def test_a_rule_added_or_removed_touches_only_its_own_flows(v, direction, proto, low, span,
                                                            prefix):
    ranged = proto in L4 and span is not None
    for gid, group in v.security.groups.items():
        new = Rule(f"{gid}-new", direction, "IPv4", proto, low if ranged else None,
                   min(65535, low + span) if ranged else None, prefix)
        grown = replace(group, rules=group.rules + (new,))
        other = replace(v, security=replace(v.security,
                                            groups={**v.security.groups, gid: grown}))
        before, after = compile_view(v), compile_view(other)
        cookie = f"sg:{gid}:rule:{new.id}"
        if any(r.direction == direction and r.ethertype == "IPv4" and r.remote_group is None
               for r in group.rules):
            # adding it and removing it again change the same flows: its matches only
            assert changed_keys_name(before, after, cookie)
            assert changed_count(before, after) <= len(rule_matches(new))


def changed_count(old: list, new: list) -> int:
    """How many flows (by table, priority and match) were added, removed or changed."""
    before, after = {f.key(): f for f in old}, {f.key(): f for f in new}
    return sum(1 for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def changed_keys_name(old: list, new: list, cookie: str) -> bool:
    """Whether every flow added, removed or changed (by table, priority and match) names
    ``cookie`` in its old or its new version."""
    before, after = {f.key(): f for f in old}, {f.key(): f for f in new}
    changed = [k for k in before.keys() | after.keys() if before.get(k) != after.get(k)]
    return all(any(cookie in f.cookie.split(",") for f in (before.get(k), after.get(k)) if f)
               for k in changed)


def fewest_prefixes(low: int, high: int, base: int = 0, bits: int = 16) -> int:
    """The fewest aligned power-of-two blocks covering low..high inside one block
    (an independent recursion over the binary trie)."""
    top = base + (1 << bits) - 1
    if high < base or low > top:
        return 0
    if low <= base and top <= high:
        return 1
    half = 1 << (bits - 1)
    return (fewest_prefixes(low, high, base, bits - 1)
            + fewest_prefixes(low, high, base + half, bits - 1))


@FAST
@given(st.integers(0, 65535), st.integers(0, 65535))
def test_port_masks_are_exact_and_minimal(a, b):
    low, high = min(a, b), max(a, b)
    masks = port_masks(low, high)
    assert len(masks) == fewest_prefixes(low, high)
    spans = []
    for m in masks:
        value, mask = (m, 0xFFFF) if isinstance(m, int) else m
        size = 0x10000 - mask if mask != 0 else 0x10000
        assert value & ~mask & 0xFFFF == 0
        spans.append((value, value + size - 1))
    spans.sort()
    assert spans[0][0] == low and spans[-1][1] == high
    assert all(a[1] + 1 == b[0] for a, b in zip(spans, spans[1:]))


@FAST
@given(security_views(), st.sampled_from(["vm", "vm2"]))
def test_plugging_a_guarded_port_adds_only_what_names_its_ofport(v, pid):
    """A port's flows are compiled from its binding; its VIF's plug adds its classify and
    output flows, its network's floods and, for a stateful port, the conntrack step in
    its zone (the ofport). Its rules, port security, ARP and DHCP are already in."""
    ofport = v.vif_ofports[pid]
    unplugged = replace(v, vif_ofports={k: o for k, o in v.vif_ofports.items() if k != pid})
    plugged, before = set(compile_view(v)), set(compile_view(unplugged))
    for flow in plugged ^ before:
        assert flow.stage in ("classify", "output", "egress_ct", "ingress_ct"), str(flow)
        if flow.stage in ("egress_ct", "ingress_ct"):
            assert flow in plugged and flow.cookie == f"port:{pid}", str(flow)
            assert [a.zone for a in flow.actions] == [ofport], str(flow)
