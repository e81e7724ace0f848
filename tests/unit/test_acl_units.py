"""The pieces under the ACL stages: port-range masks, rule matches, conjunction ids, the
wire → SecurityView helper, the evaluator's conjunction and conntrack models, the
registry's checks of ct and conjunction flows, and their lowering to OpenFlow."""

from __future__ import annotations

import pytest
from os_ken.ofproto import ofproto_parser
from os_ken.ofproto import ofproto_v1_3 as ofp

from plexus.lower.openflow import DP, flow_mod
from plexus.pipeline.flows import Conjunction, Ct, CtClear, Flow, ct_state, ct_state_text
from plexus.pipeline.registry import BY_NAME, PipelineViolation, check_flow
from plexus.pipeline.security import security_view
from plexus.pipeline.stages.acl import conj_ids, port_masks, rule_matches
from plexus.pipeline.view import RuleView
from plexus.tools.conntrack import ACK, EST, INV, NEW, REL, RPL, SYN, TRK, Conntrack
from plexus.tools.evaluator import Pipeline
from tests.golden.acl_reference import FAR_WEB, group, rule, wire_ports


def covered(masks) -> set[int]:
    out = set()
    for m in masks:
        value, mask = (m, 0xFFFF) if isinstance(m, int) else m
        out |= {p for p in range(65536) if p & mask == value}
    return out


@pytest.mark.parametrize("low,high,count", [(22, 22, 1), (8000, 8080, 3), (1, 65535, 16),
                                            (0, 65535, 1), (1024, 2047, 1), (6000, 6001, 1),
                                            (5, 4, 0)])
def test_port_masks_are_exact_and_minimal(low, high, count):
    masks = port_masks(low, high)
    assert covered(masks) == set(range(low, high + 1))
    assert len(masks) == count
    assert port_masks(80, 80) == [80]


def test_rule_matches():
    tcp = RuleView("r", "ingress", protocol=6, port_min=8000, port_max=8080)
    assert [m["tcp_dst"] for m in rule_matches(tcp)] == port_masks(8000, 8080)
    icmp = RuleView("r", "ingress", protocol=1, port_min=8, port_max=0)
    assert rule_matches(icmp) == [{"eth_type": 0x800, "ip_proto": 1, "icmpv4_type": 8,
                                   "icmpv4_code": 0}]
    assert rule_matches(RuleView("r", "ingress", protocol=1, port_min=3)) == [
        {"eth_type": 0x800, "ip_proto": 1, "icmpv4_type": 3}]
    assert rule_matches(RuleView("r", "ingress")) == [{"eth_type": 0x800}]
    dccp = RuleView("r", "ingress", protocol=33, port_min=1, port_max=9)
    assert rule_matches(dccp) == [{"eth_type": 0x800, "ip_proto": 33}]   # as Neutron's OVS fw
    sctp = RuleView("r", "ingress", protocol=132, port_min=9, port_max=9)
    assert rule_matches(sctp) == [{"eth_type": 0x800, "ip_proto": 132, "sctp_dst": 9}]


def test_conj_ids_are_stable_nonzero_and_distinct():
    ids = conj_ids(["b", "a", "c", "a"])
    assert sorted(ids) == ["a", "b", "c"] and 0 not in ids.values()
    assert len(set(ids.values())) == 3
    assert conj_ids(["a"])["a"] == ids["a"] == conj_ids(["a", "zzz"])["a"]


def test_security_view_from_wire_objects():
    sg = group("sg-a", rule("r1", "ingress", "TCP", 22, 22, prefix="10.0.0.7/8"),
               rule("r2", "ingress", "6", None, None, remote="sg-web"),
               rule("r3", "egress", "icmp", ethertype="IPv6"),
               rule("r4", "egress", "udp", prefix="0.0.0.0/0"))
    web = group("sg-web")
    problems: list = []
    objects = {"ports": wire_ports({"vm": ["sg-a", "sg-missing"]}),
               "security-groups": {"sg-a": sg, "sg-web": web}}
    sec = security_view(objects, ["vm2", "vm", "vm"], problems)
    assert sec.port_groups == {"vm": ("sg-a",), "vm2": ()}
    rules = {r.id: r for r in sec.groups["sg-a"].rules}
    assert (rules["r1"].protocol, rules["r1"].remote_prefix) == (6, "10.0.0.0/8")
    assert rules["r2"].protocol == 6 and rules["r2"].remote_group == "sg-web"
    assert rules["r3"].protocol == 58                       # icmp on IPv6 is ipv6-icmp
    assert rules["r4"].remote_prefix is None                # 0.0.0.0/0: anywhere
    assert sec.members == {"sg-web": ("10.1.0.128/28", "10.1.0.21", "10.1.0.22", "10.9.0.5")}
    assert set(sec.groups) == {"sg-a"} and not problems
    bad = dict(sg, security_group_rules=[{"id": "x", "direction": "sideways"}])
    objects["security-groups"]["sg-a"] = bad
    assert security_view(objects, ["vm"], problems).port_groups == {"vm": ()}
    assert problems and problems[0][:2] == ("security-groups", "sg-a")
    assert FAR_WEB["id"] == "far-web"


# the evaluator: conjunctions --------------------------------------------------------------

def conj_table(*extra: Flow) -> Pipeline:
    """A one-stage table: dimension 1 on the source, 2 on the TCP port, conj 7 → out 1."""
    t = "egress_acl"
    return Pipeline([
        Flow.make(t, 50, {"ipv4_src": "10.0.0.1"}, [Conjunction(7, 1, 2)]),
        Flow.make(t, 50, {"ipv4_src": "10.0.0.2"}, [Conjunction(7, 1, 2), Conjunction(8, 1, 2)]),
        Flow.make(t, 50, {"tcp_dst": 22}, [Conjunction(7, 2, 2)]),
        Flow.make(t, 50, {"tcp_dst": 80}, [Conjunction(8, 2, 2)]),
        Flow.make(t, 60, {"conj_id": 7}, [CtClear()], goto=None, cookie="conj7"),
        Flow.make(t, 60, {"conj_id": 8}, [CtClear()], goto=None, cookie="conj8"),
        Flow.make(t, 10, {}, cookie="fallback"),
        *extra])


def decide(p: Pipeline, **fields) -> str:
    flow = p.lookup("egress_acl", {"conj_id": 0, **fields})
    return flow.cookie if flow else "miss"


def test_a_conjunction_applies_only_when_every_dimension_matches():
    p = conj_table()
    assert decide(p, ipv4_src="10.0.0.1", tcp_dst=22) == "conj7"
    assert decide(p, ipv4_src="10.0.0.2", tcp_dst=80) == "conj8"
    assert decide(p, ipv4_src="10.0.0.1", tcp_dst=80) == "fallback"    # 7 and 8 half done
    assert decide(p, ipv4_src="10.0.0.3", tcp_dst=22) == "fallback"


def test_a_higher_ordinary_flow_wins_and_a_missing_conj_id_flow_falls_back():
    p = conj_table(Flow.make("egress_acl", 55, {"tcp_dst": 22}, cookie="above"))
    assert decide(p, ipv4_src="10.0.0.1", tcp_dst=22) == "above"
    q = Pipeline([f for f in conj_table().by_stage["egress_acl"] if f.cookie != "conj7"])
    assert decide(q, ipv4_src="10.0.0.1", tcp_dst=22) == "fallback"


# the evaluator: conntrack -------------------------------------------------------------

def tcp(src, dst, sport, dport, flags=SYN) -> dict:
    return {"ipv4_src": src, "ipv4_dst": dst, "ip_proto": 6, "tcp_src": sport,
            "tcp_dst": dport, "tcp_flags": flags}


def test_conntrack_states():
    ct = Conntrack()
    out = tcp("10.0.0.1", "10.0.0.2", 1000, 22)
    back = tcp("10.0.0.2", "10.0.0.1", 22, 1000, SYN | ACK)
    assert ct.lookup(5, out)[0] == TRK | NEW
    assert ct.lookup(5, back)[0] == TRK | INV               # SYN+ACK starts nothing
    ct.commit(5, out)
    assert ct.lookup(5, out)[0] == TRK | NEW                # no reply seen yet
    assert ct.lookup(6, back)[0] == TRK | INV               # another zone knows nothing
    assert ct.lookup(5, back)[0] == TRK | EST | RPL
    assert ct.lookup(5, dict(out, tcp_flags=ACK))[0] == TRK | EST
    ct.commit(5, out, mark=1)
    assert ct.lookup(5, back) == (TRK | EST | RPL, 5, 1)
    error = {"ipv4_src": "10.9.9.9", "ipv4_dst": "10.0.0.1", "ip_proto": 1, "icmpv4_type": 3,
             "inner": out}
    assert ct.lookup(5, error)[0] == TRK | REL
    assert ct.lookup(5, dict(error, inner=tcp("1.1.1.1", "2.2.2.2", 1, 2)))[0] == TRK | INV
    echo = {"ipv4_src": "10.0.0.1", "ipv4_dst": "10.0.0.2", "ip_proto": 1, "icmpv4_type": 8,
            "icmp_id": 4}
    pong = dict(echo, ipv4_src="10.0.0.2", ipv4_dst="10.0.0.1", icmpv4_type=0)
    assert ct.lookup(5, pong)[0] == TRK | INV
    ct.commit(5, echo)
    assert ct.lookup(5, pong)[0] == TRK | EST | RPL
    assert ct.lookup(5, dict(pong, icmp_id=5))[0] == TRK | INV
    assert len(ct.connections()) == 2


# the registry and the lowering ----------------------------------------------------------

def test_registry_checks_ct_and_conjunction_flows():
    owner = BY_NAME["egress_acl"].owner
    ip = {"eth_type": 0x800}
    good = [Flow.make("egress_acl", 60, ip, [Conjunction(1, 1, 2)]),
            Flow.make("egress_acl", 70, {**ip, "conj_id": 1}, [Ct(5, commit=True)],
                      goto="l3_input"),
            Flow.make("egress_acl", 40, {**ip, "ct_state": ct_state("+est+trk")},
                      [Ct(5, commit=True, mark=1)])]
    for flow in good:
        check_flow(flow, owner)
    check_flow(Flow.make("egress_ct", 90, ip, [Ct(5, table="egress_acl")]),
               BY_NAME["egress_ct"].owner)
    bad = [Flow.make("egress_acl", 60, ip, [Conjunction(1, 1, 2), Ct(5)]),
           Flow.make("egress_acl", 60, ip, [Conjunction(1, 1, 2)], goto="l3_input"),
           Flow.make("egress_acl", 60, ip, [Conjunction(1, 3, 2)]),
           Flow.make("egress_acl", 60, ip, [Conjunction(1, 1, 2), Conjunction(1, 2, 2)]),
           Flow.make("egress_acl", 60, {**ip, "conj_id": 2}, [Conjunction(1, 1, 2)]),
           Flow.make("egress_acl", 70, {}, [Ct(5, commit=True)]),                # not IP
           Flow.make("egress_acl", 70, ip, [Ct(5, mark=1)]),                     # no commit
           Flow.make("egress_acl", 70, ip, [Ct(5, table="l3_input")], goto="l3_input"),
           Flow.make("egress_acl", 70, ip, [Ct(5, table="egress_ct")]),          # backwards
           Flow.make("egress_ct", 70, {"eth_type": 0x800, "tcp_dst": 1})]        # not declared
    for flow in bad:
        with pytest.raises(PipelineViolation):
            check_flow(flow)


def test_ct_and_conjunction_lower_to_nicira_actions():
    flows = [Flow.make("egress_ct", 90, {"eth_type": 0x800, "net": 11, "inport": 1},
                       [Ct(5, table="egress_acl")]),
             Flow.make("egress_acl", 40, {"eth_type": 0x800, "ct_state": ct_state("+est+trk"),
                                          "conj_id": 3, "ct_mark": 1, "ip_proto": 6,
                                          "tcp_dst": (0x60, 0xFFE0)},
                       [Ct("inport", commit=True, mark=1)]),
             Flow.make("egress_acl", 60, {"eth_type": 0x800, "ipv4_dst": "10.0.0.1"},
                       [Conjunction(7, 1, 2), Conjunction(9, 2, 2)]),
             Flow.make("ingress_ct", 90, {"eth_type": 0x800}, [CtClear()], goto="ingress_acl")]
    decoded = []
    for flow in flows:
        msg = flow_mod(flow)
        msg.serialize()
        back = ofproto_parser.msg(DP, ofp.OFP_VERSION, msg.msg_type, msg.msg_len, 0,
                                  bytes(msg.buf))
        decoded.append((dict(back.match.items()), back.instructions[0].actions))
    (m0, [ct0]), (m1, [ct1]), (m2, conj), (m3, [clear]) = decoded
    assert (ct0.recirc_table, ct0.zone_ofs_nbits, ct0.flags, ct0.zone_src) == (45, 5, 0, "")
    assert m1["ct_state"] == ct_state("+est+trk") and m1["conj_id"] == 3
    assert m1["tcp_dst"] == (0x60, 0xFFE0) and ct1.flags == 1 and ct1.zone_src == "reg6"
    assert ct1.recirc_table == 255 and ct1.actions[0].value == 1
    assert [(c.id, c.clause, c.n_clauses) for c in conj] == [(7, 0, 2), (9, 1, 2)]
    assert type(clear).__name__ == "NXActionCTClear"


def test_ct_state_notation_round_trips():
    for text in ("+trk+inv", "+est-rel+rpl+trk", "-new-est+rel-inv+trk"):
        value, mask = ct_state(text)
        assert ct_state(ct_state_text(value, mask)) == (value, mask)
