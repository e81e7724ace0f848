"""Lowering remembers what recurs (each match field's normalised value, the instructions
of each distinct action list) — and gives exactly what os-ken builds without it: the
same match fields and bytes, the same canonical entries."""

from __future__ import annotations

import struct

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


def test_flow_mods_as_bytes_are_what_os_ken_serialises():
    from os_ken.ofproto import ofproto_v1_3 as ofp

    from plexus.lower.openflow import wire_flow_mod
    for flow in every_flow():
        for command in (ofp.OFPFC_ADD, ofp.OFPFC_MODIFY_STRICT, ofp.OFPFC_DELETE_STRICT):
            ours, theirs = wire_flow_mod(flow, command), flow_mod(flow, command)
            for msg in (ours, theirs):
                msg.set_xid(41)
                msg.serialize()
            assert bytes(ours.buf) == bytes(theirs.buf), (flow, command)
            assert (ours.table_id, ours.priority, ours.cookie, ours.command) == \
                (theirs.table_id, theirs.priority, theirs.cookie, theirs.command)
        decoded = wire_flow_mod(flow)
        assert flowdiff.entry(decoded.table_id, decoded.priority, decoded.cookie,
                              decoded.match, decoded.instructions) == flowdiff.of_flow(flow)


def test_strict_delete_of_a_compiled_entry_is_os_kens():
    for flow in every_flow():
        mine = flowdiff.of_flow(flow)                      # match kept as bytes
        mod = flow_mod(flow)
        read = flowdiff.entry(mod.table_id, mod.priority, mod.cookie, mod.match,
                              mod.instructions)             # match kept as os-ken's
        ours, theirs = flowdiff.delete_strict(mine), flowdiff.delete_strict(read)
        for msg in (ours, theirs):
            msg.set_xid(9)
            msg.serialize()
        assert bytes(ours.buf) == bytes(theirs.buf), flow


def test_a_meter_is_an_instruction_before_the_actions_and_a_meter_mod_of_its_own():
    from os_ken.ofproto import ofproto_v1_3 as ofp

    from plexus.lower.openflow import meter_mod
    from plexus.pipeline.flows import Flow, Meter, Output
    meter = Meter(7, 8000, 6400)
    flow = Flow.make("output", 50, {"net": 1, "outport": 2}, [meter, Output(3)])
    kinds = [type(i).__name__ for i in flow_mod(flow).instructions]
    assert kinds == ["OFPInstructionMeter", "OFPInstructionActions"]
    for command in (ofp.OFPMC_ADD, ofp.OFPMC_MODIFY, ofp.OFPMC_DELETE):
        msg = meter_mod(meter, command)
        msg.set_xid(1)
        msg.serialize()
        # after the header: command, flags, meter id; then each band: type, length,
        # rate, burst (OpenFlow 1.3's ofp_meter_mod and ofp_meter_band_drop)
        command_, flags, mid = struct.unpack_from("!HHI", msg.buf, 8)
        assert (command_, mid) == (command, 7)
        if command != ofp.OFPMC_DELETE:
            assert flags == ofp.OFPMF_KBPS | ofp.OFPMF_BURST
            kind, _, rate, burst = struct.unpack_from("!HHII", msg.buf, 16)
            assert (kind, rate, burst) == (ofp.OFPMBT_DROP, 8000, 6400)
        else:
            assert len(msg.buf) == 16                     # no band


def test_a_move_read_back_under_its_nxm_name_is_the_same_flow():
    """OVS reports the ND responder's move into the target link-layer address with the
    NXM header (``nd_tll``), not the OXM one it was sent with: the same flow, no diff."""
    from plexus.pipeline.stages.nd_reply import reply_flow
    desired = flowdiff.of_flow(reply_flow())
    move, output = (parser.NXActionRegMove(src_field="eth_src", dst_field="nd_tll", n_bits=48),
                    parser.OFPActionOutput(0xfffffff8, 0xffff))
    installed = flowdiff.entry(desired.table, desired.priority, desired.cookie,
                               parser.OFPMatch(eth_type=0x86dd, ip_proto=58, icmpv6_type=136),
                               [parser.OFPInstructionActions(4, [move, output])])
    assert installed == desired
    other = parser.NXActionRegMove(src_field="eth_src", dst_field="nd_sll", n_bits=48)
    assert flowdiff.entry(desired.table, desired.priority, desired.cookie, installed.match,
                          [parser.OFPInstructionActions(4, [other, output])]) != desired
