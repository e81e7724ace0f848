"""Lowering remembers what recurs (each match field's normalised value, the instructions
of each distinct action list) — and gives exactly what os-ken builds without it: the
same match fields and bytes, the same canonical entries."""

from __future__ import annotations

from os_ken.ofproto import ofproto_v1_3_parser as parser

from plexus.agent import flowdiff
from plexus.lower.openflow import flow_mod, match_of, wire_value
from plexus.pipeline.compile import compile_view
from plexus.pipeline.flows import ovs_field
from tests.golden import l3_reference
from tests.golden.reference import reference_view


def every_flow():
    flows = compile_view(reference_view())
    for chassis in l3_reference.CHASSIS:
        flows += compile_view(l3_reference.view(chassis))
    return flows


def test_cached_matches_are_what_ofpmatch_builds():
    flows = every_flow()
    assert len(flows) > 300
    for flow in flows:
        plain = parser.OFPMatch(**{ovs_field(k): wire_value(ovs_field(k), v)
                                   for k, v in flow.match})
        cached = match_of(flow)
        assert cached._fields2 == plain._fields2, flow
        a, b = bytearray(), bytearray()
        cached.serialize(a, 0)
        plain.serialize(b, 0)
        assert a == b, flow


def test_entries_of_compiled_flows_equal_entries_read_back_from_a_flow_mod():
    for flow in every_flow():
        mod = flow_mod(flow)
        read = flowdiff.entry(mod.table_id, mod.priority, mod.cookie, mod.match,
                              mod.instructions)
        assert flowdiff.of_flow(flow) == read, flow
