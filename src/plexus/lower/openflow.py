"""Lowering: named flows → OpenFlow 1.3 messages (os-ken's codec). The only place
where stage names become table numbers and register names become OVS fields."""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import struct

from os_ken.lib import type_desc
from os_ken.ofproto import nicira_ext, oxm_fields
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from plexus.pipeline.flows import (
    FIELD_BITS, CheckPktLarger, Conjunction, Controller, Ct, CtClear, DecTtl, Flow, Meter, Move,
    Nat, Output, PopVlan, PushVlan, SetField, ovs_field,
)
from plexus.pipeline.registry import REGISTERS, table_of

NX_NAT_F_SRC, NX_NAT_F_DST = 0x1, 0x2          # OVS's nx_nat_flags (os-ken lacks the names)
NXAST_CHECK_PKT_LARGER = 49                     # os-ken has no class for this NX action
REGISTER_FIELDS = {r.field for r in REGISTERS.values()}


class _EricssonOxm(oxm_fields._OxmClass):
    """Open vSwitch's ERICOXM_OF_ match fields (OXM class 0x1000), which os-ken lacks."""

    _class = 0x1000


# The IPv6 neighbour discovery fields Open vSwitch (2.11+) can set that os-ken does not
# know: the flags word of an advertisement and the type of a message's first option
# (``nd_reserved``, ``nd_options_type``; the ND responder turns a solicitation into an
# advertisement with them). Registered into os-ken's OpenFlow 1.3 tables, so they are
# encoded, and decoded when the agent reads flows back, like any other field.
if "nd_reserved" not in {f.name for f in ofp.oxm_types}:
    ofp.oxm_types += [_EricssonOxm("nd_reserved", 1, type_desc.Int4),
                      _EricssonOxm("nd_options_type", 2, type_desc.Int1)]
    oxm_fields.generate(ofp.__name__)


class Datapath:
    """The minimum os-ken needs to serialise messages (no connection attached)."""

    ofproto = ofp
    ofproto_parser = parser


DP = Datapath()


@functools.lru_cache(maxsize=1 << 16)
@functools.lru_cache(maxsize=1 << 16)
def cookie_of(name: str) -> int:
    """64-bit OpenFlow cookie for an object reference such as ``port:<uuid>``."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big") >> 1


def wire_value(field: str, value):
    """A match or set-field value as os-ken wants it: registers hold IP addresses (the
    IPv4 next hop, the IPv6 one in a 128-bit register) as integers; everything else is
    passed as is."""
    if field in REGISTER_FIELDS:
        if isinstance(value, tuple):
            return tuple(wire_value(field, v) for v in value)
        if isinstance(value, str):
            return int(ipaddress.ip_address(value))
    return value


def match_of(flow: Flow) -> parser.OFPMatch:
    """The flow's match as an OFPMatch: exactly what ``OFPMatch(**fields)`` builds, with
    each (field, value) normalised once and remembered (os-ken converts every value
    three times, and most values recur in many flows)."""
    fields = sorted(_oxm(ovs_field(k), v) for k, v in flow.match)
    return parser.OFPMatch(_ordered_fields=[f for _, f in fields])


@functools.lru_cache(maxsize=1 << 16)
def _oxm(field: str, value) -> tuple:
    """(OXM sort key, (field, user value)) of one match field, as OFPMatch orders them."""
    name, user = ofp.oxm_normalize_user(field, wire_value(field, value))
    n, v, m = ofp.oxm_from_user(name, user)
    return (n[0] if isinstance(n, tuple) else n), ofp.oxm_to_user(n, v, m)


def actions_of(flow: Flow) -> list:
    """The flow's apply-actions as os-ken actions."""
    out = []
    for a in flow.actions:
        if isinstance(a, Output):
            port = ofp.OFPP_IN_PORT if a.port == "in_port" else a.port
            out.append(parser.OFPActionOutput(port, ofp.OFPCML_NO_BUFFER))
        elif isinstance(a, SetField):
            field = ovs_field(a.field)
            out.append(parser.OFPActionSetField(**{field: wire_value(field, a.value)}))
        elif isinstance(a, Move):
            src, dst = ovs_field(a.src), ovs_field(a.dst)
            out.append(parser.NXActionRegMove(src_field=src, dst_field=dst,
                                              n_bits=FIELD_BITS[src]))
        elif isinstance(a, Controller):
            out.append(parser.NXActionController2(userdata=a.userdata.encode(),
                                                  max_len=ofp.OFPCML_NO_BUFFER))
        elif isinstance(a, Ct):
            out.append(ct_action(a))
        elif isinstance(a, CtClear):
            out.append(parser.NXActionCTClear())
        elif isinstance(a, DecTtl):
            out.append(parser.OFPActionDecNwTtl())
        elif isinstance(a, PushVlan):
            out.append(parser.OFPActionPushVlan(0x8100))
        elif isinstance(a, PopVlan):
            out.append(parser.OFPActionPopVlan())
        elif isinstance(a, CheckPktLarger):
            out.append(check_pkt_larger(a))
        elif isinstance(a, Conjunction):     # OVS numbers dimensions from 0 on the wire
            out.append(parser.NXActionConjunction(clause=a.k - 1, n_clauses=a.n, id_=a.id))
        elif isinstance(a, Meter):           # an instruction of its own (instructions_for)
            continue
        else:
            raise TypeError(f"cannot lower {a!r}")
    return out


def ct_action(a: Ct) -> parser.NXActionCT:
    """``ct(...)``: zone immediate or from the low 16 bits of a register; recirculation
    to the stage's table; ct_mark set inside ``exec`` when committing with a mark."""
    if isinstance(a.zone, int):
        zone_src, zone = "", a.zone
    else:
        zone_src, zone = ovs_field(a.zone), nicira_ext.ofs_nbits(0, 15)
    inner = [] if a.nat is None else [nat_action(a.nat)]
    if a.mark is not None:
        inner.append(parser.OFPActionSetField(ct_mark=a.mark))
    return parser.NXActionCT(
        flags=nicira_ext.NX_CT_F_COMMIT if a.commit else 0, zone_src=zone_src,
        zone_ofs_nbits=zone, recirc_table=table_of(a.table) if a.table else
        nicira_ext.NX_CT_RECIRC_NONE, alg=0, actions=inner)


def check_pkt_larger(a: CheckPktLarger):
    """``check_pkt_larger(len)->field[bit]`` (OVS ≥ 2.12), which os-ken lacks: OVS's
    ``struct nx_action_check_pkt_larger`` after the NX subtype — pkt_len, the bit's
    offset, the destination's NXM header (a 32-bit register: class 1, its number), pad to
    24 bytes."""
    field = ovs_field(a.field)
    if not field.startswith("reg"):
        raise TypeError(f"check_pkt_larger into {field}: only registers are supported")
    header = (0x0001 << 16) | (int(field[3:]) << 9) | 4       # NXM_NX_REGn
    body = struct.pack("!HHI6x", a.length, a.bit, header)
    return parser.NXActionUnknown(NXAST_CHECK_PKT_LARGER, body)


def nat_action(n: Nat) -> parser.NXActionNAT:
    """``nat``, or ``nat(src|dst=IP[:min-max])`` (a single address as a range of one)."""
    if not n.kind:
        return parser.NXActionNAT(flags=0)
    ports = {"range_proto_min": n.port_min, "range_proto_max": n.port_max} if n.port_min else {}
    return parser.NXActionNAT(flags=NX_NAT_F_SRC if n.kind == "src" else NX_NAT_F_DST,
                              range_ipv4_min=n.ip, range_ipv4_max=n.ip, **ports)


def flow_mod(flow: Flow, command: int = ofp.OFPFC_ADD) -> parser.OFPFlowMod:
    """An OFPFlowMod adding (or, with OFPFC_DELETE_STRICT, removing) the flow."""
    instructions = [] if command == ofp.OFPFC_DELETE_STRICT else list(instructions_of(flow))
    return parser.OFPFlowMod(
        DP, cookie=cookie_of(flow.cookie), cookie_mask=0, table_id=table_of(flow.stage),
        command=command, priority=flow.priority, match=match_of(flow),
        instructions=instructions, out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
        flags=0)


def instructions_of(flow: Flow) -> tuple:
    """The flow's instructions (apply-actions, goto), built once per distinct pair of
    actions and goto and shared by the flow mods that have them (os-ken only reads
    them when it serialises a message)."""
    return instructions_for(flow.actions, flow.goto)


@functools.lru_cache(maxsize=1 << 14)
def instructions_for(actions: tuple, goto: str | None) -> tuple:
    """The os-ken instructions of these actions and goto (shared: do not mutate)."""
    out = [parser.OFPInstructionMeter(a.id, ofp.OFPIT_METER) for a in actions
           if isinstance(a, Meter)]
    acts = actions_of(Flow("", 0, actions=actions))
    if acts:
        out.append(parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, acts))
    if goto:
        out.append(parser.OFPInstructionGotoTable(table_of(goto)))
    return tuple(out)


def meter_mod(meter: Meter, command: int = ofp.OFPMC_ADD) -> parser.OFPMeterMod:
    """Add (or modify, or with OFPMC_DELETE remove) a meter: one drop band of its rate in
    kbit/s with its burst in kbit (OFPMF_BURST; the switch's default burst otherwise)."""
    if command == ofp.OFPMC_DELETE:
        return parser.OFPMeterMod(DP, command=command, flags=0, meter_id=meter.id, bands=[])
    flags = ofp.OFPMF_KBPS | (ofp.OFPMF_BURST if meter.burst else 0)
    band = parser.OFPMeterBandDrop(rate=meter.kbps, burst_size=meter.burst)
    return parser.OFPMeterMod(DP, command=command, flags=flags, meter_id=meter.id,
                              bands=[band])


# --- flow mods as bytes -----------------------------------------------------------------
# The agent sends thousands of flow mods in a burst of ports; building os-ken objects and
# having them serialise themselves costs ~150 µs a flow. ``WireFlowMod`` is the same
# message, byte for byte (tests compare it with os-ken's for every compiled flow), built
# from bytes kept per distinct match field and per distinct instruction list.

HEADER = struct.Struct("!BBHI")
FLOW_MOD = struct.Struct(ofp.OFP_FLOW_MOD_PACK_STR0)      # after the header
MATCH_HEADER = struct.Struct("!HH")


@functools.lru_cache(maxsize=1 << 16)
@functools.lru_cache(maxsize=1 << 16)
def oxm_wire(field: str, value) -> tuple:
    """(OXM sort key, (field, user value), the canonical pair flowdiff compares, the
    field's OXM bytes) of one match field."""
    key, (name, user) = _oxm(field, value)
    n, v, m = ofp.oxm_from_user(name, user)
    buf = bytearray()
    ofp.oxm_serialize(n, v, m, buf, 0)
    return key, (name, user), bytes(buf)


def match_wire(flow: Flow) -> tuple[tuple, bytes]:
    """The flow's match: its (field, user value) pairs in OXM order (what
    ``match_of`` gives OFPMatch) and its OpenFlow bytes (padded to 8)."""
    wired = sorted(oxm_wire(ovs_field(k), v) for k, v in flow.match)
    tlvs = b"".join(w[2] for w in wired)
    length = MATCH_HEADER.size + len(tlvs)
    return (tuple(w[1] for w in wired),
            MATCH_HEADER.pack(ofp.OFPMT_OXM, length) + tlvs + bytes(-length % 8))


@functools.lru_cache(maxsize=1 << 14)
def instructions_wire(actions: tuple, goto: str | None) -> bytes:
    """The OpenFlow bytes of these actions and goto's instructions."""
    out = bytearray()
    for inst in instructions_for(actions, goto):
        buf = bytearray()
        inst.serialize(buf, 0)
        out += buf[:inst.len]
    return bytes(out)


class WireFlowMod:
    """An OFPT_FLOW_MOD as bytes, with the interface the OpenFlow channel uses of an
    os-ken message (``xid``, ``set_xid``, ``serialize``, ``buf``) and the fields the
    test switches read (``match`` and ``instructions`` are decoded on demand)."""

    __slots__ = ("body", "command", "table_id", "priority", "cookie", "xid", "buf",
                 "_decoded")

    def __init__(self, body: bytes, command: int, table_id: int, priority: int, cookie: int):
        self.body, self.command, self.table_id = body, command, table_id
        self.priority, self.cookie = priority, cookie
        self.xid = None
        self.buf = None
        self._decoded = None

    def set_xid(self, xid: int) -> None:
        self.xid = xid

    def serialize(self) -> None:
        """Fill ``buf`` with the whole message (header with the current xid)."""
        self.buf = HEADER.pack(ofp.OFP_VERSION, ofp.OFPT_FLOW_MOD,
                               HEADER.size + len(self.body), self.xid or 0) + self.body

    def decoded(self) -> parser.OFPFlowMod:
        """The message as os-ken parses it."""
        if self._decoded is None:
            whole = HEADER.pack(ofp.OFP_VERSION, ofp.OFPT_FLOW_MOD,
                                HEADER.size + len(self.body), 0) + self.body
            self._decoded = parser.OFPFlowMod.parser(DP, ofp.OFP_VERSION, ofp.OFPT_FLOW_MOD,
                                                     len(whole), 0, whole)
        return self._decoded

    @property
    def match(self):
        return self.decoded().match

    @property
    def instructions(self):
        return self.decoded().instructions


def wire_flow_mod(flow: Flow, command: int = ofp.OFPFC_ADD,
                  match: bytes | None = None) -> WireFlowMod:
    """``flow_mod(flow, command)`` as bytes (``match``: the flow's match bytes, if known)."""
    if match is None:
        match = match_wire(flow)[1]
    cookie, table = cookie_of(flow.cookie), table_of(flow.stage)
    body = FLOW_MOD.pack(cookie, 0, table, command, 0, 0, flow.priority, ofp.OFP_NO_BUFFER,
                         ofp.OFPP_ANY, ofp.OFPG_ANY, 0) + match
    if command != ofp.OFPFC_DELETE_STRICT:
        body += instructions_wire(flow.actions, flow.goto)
    return WireFlowMod(body, command, table, flow.priority, cookie)


def wire_delete(table: int, priority: int, match: bytes) -> WireFlowMod:
    """A strict delete (any cookie) of the flow with this table, priority and match
    bytes, as ``flowdiff.delete_strict`` builds it with os-ken."""
    body = FLOW_MOD.pack(0, 0, table, ofp.OFPFC_DELETE_STRICT, 0, 0, priority,
                         ofp.OFP_NO_BUFFER, ofp.OFPP_ANY, ofp.OFPG_ANY, 0) + match
    return WireFlowMod(body, ofp.OFPFC_DELETE_STRICT, table, priority, 0)
