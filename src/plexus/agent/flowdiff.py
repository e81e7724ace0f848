"""Desired versus installed flows: both turned into one canonical form (OpenFlow's
identity of a flow — table, priority, match — plus its cookie and instructions as the
switch reports them back), and the smallest set of flow mods that turns one into the
other: strict deletes, modifies, adds. Pure: the OVS boundary hands in what it read.

Open vSwitch re-encodes some actions when it reports them (a register move comes back
with NXM field headers, a controller action without its default max_len), so actions
are compared by meaning, not by bytes."""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from plexus.lower.openflow import (
    DP, WireFlowMod, cookie_of, instructions_for, match_wire, meter_mod, wire_delete,
    wire_flow_mod,
)
from plexus.pipeline.flows import Flow, Meter

Key = tuple[int, int, tuple]            # (table, priority, canonical match)


@dataclass(frozen=True)
class Entry:
    """One OpenFlow flow in canonical form; ``match`` keeps os-ken's object for deletes."""

    table: int
    priority: int
    fields: tuple                           # sorted (field, value) pairs
    cookie: int
    instructions: tuple
    # os-ken's match (an installed flow read back) or the match's bytes (a compiled flow)
    match: Any = field(default=None, compare=False, repr=False)
    mod: Any = field(default=None, compare=False, repr=False)     # the add, when lowered

    @property
    def key(self) -> Key:
        """What identifies the flow in its table."""
        return (self.table, self.priority, self.fields)


def entry(table: int, priority: int, cookie: int, match, instructions, mod=None) -> Entry:
    """The canonical entry of a flow given as os-ken match and instructions."""
    fields = tuple(sorted((k, _value(v)) for k, v in match.items()))
    return Entry(table, priority, fields, cookie,
                 tuple(_instruction(i) for i in instructions), match, mod)


def of_flow(flow: Flow) -> Entry:
    """A compiled flow's entry (as it will be installed), keeping the flow mod that adds
    it (as bytes: ``lower.openflow.wire_flow_mod``), so applying it does not lower the
    flow a second time."""
    pairs, match = match_wire(flow)
    mod = wire_flow_mod(flow, match=match)
    return Entry(mod.table_id, mod.priority, tuple(sorted(map(_canonical_pair, pairs))),
                 mod.cookie, _canonical_instructions(flow.actions, flow.goto), match, mod)


@functools.lru_cache(maxsize=1 << 16)
def _canonical_pair(pair: tuple) -> tuple:
    """The canonical form of one (field, user value) pair of a match."""
    return pair[0], _value(pair[1])


@functools.lru_cache(maxsize=1 << 14)
def _canonical_instructions(actions: tuple, goto: str | None) -> tuple:
    """The canonical instructions of the flows with these actions and goto."""
    return tuple(_instruction(i) for i in instructions_for(actions, goto))


def of_stats(stats) -> Entry:
    """An installed flow's entry, from an os-ken ``OFPFlowStats``."""
    return entry(stats.table_id, stats.priority, stats.cookie, stats.match, stats.instructions)


def of_meter_config(conf) -> Meter:
    """An installed meter, from an os-ken ``OFPMeterConfigStats`` (its first band: the
    lowering installs one drop band)."""
    band = conf.bands[0] if conf.bands else None
    return Meter(conf.meter_id, band.rate if band else 0, band.burst_size if band else 0)


def _value(v):
    if type(v) is int or v is None:                # most values: nothing to do
        return v
    if isinstance(v, str):
        return v.lower().removesuffix("_nxm")      # NXM and OXM names of one field agree
    if isinstance(v, (bytes, bytearray)):
        return bytes(v)
    if isinstance(v, (tuple, list)):
        return tuple(_value(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _value(x)) for k, x in v.items()))
    if hasattr(v, "serialize"):                    # a nested action (e.g. inside ct)
        return _action(v)
    return v


def _instruction(inst) -> tuple:
    if isinstance(inst, parser.OFPInstructionGotoTable):
        return ("goto", inst.table_id)
    if isinstance(inst, parser.OFPInstructionActions):
        return ("actions", inst.type, tuple(_action(a) for a in inst.actions))
    buf = bytearray()
    inst.serialize(buf, 0)
    return ("raw", bytes(buf))


IGNORED = {"type", "len", "experimenter", "subtype", "field"}
DEFAULTS = {   # what OVS leaves out when it reports an action back
    "NXActionController2": {"max_len": ofp.OFPCML_NO_BUFFER, "controller_id": 0,
                            "reason": ofp.OFPR_ACTION, "pause": False, "meter_id": None},
}


# Fields whose NXM name (what a register move reads back with) is not the OXM name with
# "_nxm" appended: the IPv6 neighbour discovery fields.
NXM_NAMES = {"nd_target": "ipv6_nd_target", "nd_sll": "ipv6_nd_sll", "nd_tll": "ipv6_nd_tll"}


def _action(action) -> tuple:
    name = type(action).__name__
    attrs = {**DEFAULTS.get(name, {}),
             **{k: v for k, v in vars(action).items() if k not in IGNORED}}
    for k in ("src_field", "dst_field"):
        if k in attrs:
            attrs[k] = NXM_NAMES.get(attrs[k], attrs[k])
    if name == "NXActionController2":
        attrs["userdata"] = bytes(attrs.get("userdata") or b"")
    return (name, tuple(sorted((k, _value(v)) for k, v in attrs.items())))


@dataclass
class FlowDiff:
    """What turns installed into desired: strict deletes, modifies, adds."""

    deletes: list[Entry]
    modifies: list[tuple[Entry, Flow]]       # (installed, desired): actions or cookie differ
    adds: list[Flow]
    lowered: dict = field(default_factory=dict, repr=False)   # flow → its add, if built

    def __bool__(self) -> bool:
        return bool(self.deletes or self.modifies or self.adds)

    def __len__(self) -> int:
        return len(self.deletes) + len(self.modifies) + len(self.adds)

    def messages(self) -> list:
        """The flow mods, deletes first (one atomic bundle applies them all)."""
        out = [delete_strict(e) for e in self.deletes]
        for old, flow in self.modifies:
            # OpenFlow 1.3 modify keeps the old cookie: a new cookie needs an add (replace)
            same_cookie = old.cookie == cookie_of(flow.cookie)
            out.append(wire_flow_mod(flow, ofp.OFPFC_MODIFY_STRICT) if same_cookie
                       else self.lowered.get(flow) or wire_flow_mod(flow))
        out += [self.lowered.get(f) or wire_flow_mod(f) for f in self.adds]
        return out

    def summary(self) -> str:
        """``-deletes ~modifies +adds``."""
        return f"-{len(self.deletes)} ~{len(self.modifies)} +{len(self.adds)}"


def delete_strict(e: Entry) -> parser.OFPFlowMod | WireFlowMod:
    """A strict delete of exactly this installed flow (any cookie)."""
    if isinstance(e.match, bytes):
        return wire_delete(e.table, e.priority, e.match)
    match = e.match if e.match is not None else parser.OFPMatch(**dict(e.fields))
    return parser.OFPFlowMod(DP, cookie=0, cookie_mask=0, table_id=e.table,
                             command=ofp.OFPFC_DELETE_STRICT, priority=e.priority,
                             match=match, instructions=[], out_port=ofp.OFPP_ANY,
                             out_group=ofp.OFPG_ANY, flags=0)


def desired_entries(flows: Iterable[Flow]) -> dict[Key, tuple[Entry, Flow]]:
    """Compiled flows by OpenFlow identity, each with its canonical entry."""
    out = {}
    for flow in flows:
        e = of_flow(flow)
        out[e.key] = (e, flow)
    return out


class Lowered:
    """The desired OpenFlow entries of the compiled flows, kept from one reconcile to the
    next: lowering through os-ken costs far more than compiling, and most flows do not
    change. ``update`` takes what an incremental compile changed."""

    def __init__(self) -> None:
        self._entries: dict[Flow, Entry] = {}
        self.entries: dict[Key, tuple[Entry, Flow]] = {}    # OpenFlow identity → desired
        # the meters the desired flows name: how many flows name each spec, and the one
        # spec of each id; ``meters_touched``: the ids the last update changed
        self._meter_refs: dict[int, Counter] = {}
        self.meters: dict[int, Meter] = {}
        self.meters_touched: set[int] = set()

    def update(self, removed: Iterable[Flow], added: Iterable[Flow]) -> set[Key]:
        """Drop the entries of ``removed`` flows and lower the ``added`` ones; returns
        the OpenFlow identities touched (what to diff against the switch)."""
        touched: set[Key] = set()
        self.meters_touched = set()
        for flow in removed:
            e = self._entries.pop(flow, None)
            if e is None:
                continue
            touched.add(e.key)
            if self.entries.get(e.key, (None, None))[1] == flow:
                del self.entries[e.key]
            self._count_meters(flow, -1)
        for flow in added:
            e = self._entries[flow] = of_flow(flow)
            self.entries[e.key] = (e, flow)
            touched.add(e.key)
            self._count_meters(flow, +1)
        for mid in self.meters_touched:
            refs = self._meter_refs.get(mid)
            if refs:
                self.meters[mid] = max(refs)        # one spec per id (the compilers')
            else:
                self.meters.pop(mid, None)
        return touched

    def _count_meters(self, flow: Flow, sign: int) -> None:
        for meter in flow.meters():
            refs = self._meter_refs.setdefault(meter.id, Counter())
            refs[meter] += sign
            if refs[meter] <= 0:
                del refs[meter]
                if not refs:
                    del self._meter_refs[meter.id]
            self.meters_touched.add(meter.id)


def meter_changes(want: dict[int, Meter], have: dict[int, Meter],
                  ids: Iterable[int]) -> tuple[list, list]:
    """The meter mods that turn ``have`` into ``want`` for ``ids``: (adds and modifies, to
    send before the flows that name them; deletes, after the flows are gone: OVS
    removes the flows of a deleted meter)."""
    before, after = [], []
    for mid in sorted(ids):
        new, old = want.get(mid), have.get(mid)
        if new is not None and new != old:
            before.append(meter_mod(new, ofp.OFPMC_ADD if old is None else ofp.OFPMC_MODIFY))
        elif new is None and old is not None:
            after.append(meter_mod(old, ofp.OFPMC_DELETE))
    return before, after


def diff(desired: dict[Key, tuple[Entry, Flow]], installed: dict[Key, Entry]) -> FlowDiff:
    """The minimal change from ``installed`` to ``desired`` (sorted, so deterministic)."""
    deletes = [installed[k] for k in sorted(installed.keys() - desired.keys(), key=repr)]
    adds, modifies, lowered = [], [], {}
    for k in sorted(desired, key=repr):
        want, flow = desired[k]
        have = installed.get(k)
        if have is None:
            adds.append(flow)
        elif (have.cookie, have.instructions) != (want.cookie, want.instructions):
            modifies.append((have, flow))
        else:
            continue
        if want.mod is not None:
            lowered[flow] = want.mod
    return FlowDiff(deletes, modifies, adds, lowered)
