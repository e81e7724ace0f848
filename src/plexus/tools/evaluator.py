"""The one evaluator: runs a packet (a dict of fields) through flow objects exactly as
they will be lowered into OpenFlow, and says which flow did what. ``plexus trace``,
the compilers' behaviour tests and the verifier all use it.

It models the OVS mechanisms the ACL and L3 stages rely on: conjunctive matches (a
``conj_id`` flow applies when, at one priority, a flow of every dimension matches), a
small connection tracker (``ct``: per zone, both directions, new/established/reply/
related/invalid, commit and ct_mark, NAT), kept by the ``Pipeline`` across packets,
TTL decrement (an expired TTL is an ``invalid_ttl`` packet-in), check_pkt_larger and VLAN
push/pop. A packet without ``vlan_vid`` is untagged (0); one without ``nw_ttl`` has TTL
64, one without ``pkt_len`` is a 98-byte frame."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable

from plexus.pipeline.flows import (
    VLAN_PRESENT, CheckPktLarger, Conjunction, Controller, Ct, CtClear, DecTtl, Flow, Meter,
    Move, Output, PopVlan, PushVlan, SetField, ovs_field,
)
from plexus.pipeline.registry import STAGES
from plexus.tools.conntrack import Conntrack

MAX_STEPS = 64
# what a packet has when not told (``pkt_len``: the whole frame, as check_pkt_larger sees it)
FIELD_DEFAULTS = {"vlan_vid": 0, "nw_ttl": 64, "pkt_len": 98}
_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
STOP = "<stop>"                 # an action ended the flow's actions and its goto


@dataclass
class Step:
    """One table visit: the stage, the flow that matched (None = table miss, drop)."""

    stage: str
    flow: Flow | None
    via: tuple[Flow, ...] = ()      # the conjunctive flows that led to ``flow``


@dataclass
class Result:
    """What happened to a packet: outputs (port, packet as sent), controller sends, steps."""

    outputs: list[tuple[int | str, dict]] = field(default_factory=list)
    controller: list[tuple[str, dict]] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    meters: list[int] = field(default_factory=list)     # the meters it went through

    @property
    def ports(self) -> list[int | str]:
        """The ports the packet left by, in order."""
        return [p for p, _ in self.outputs]

    @property
    def dropped(self) -> bool:
        """True when the packet went nowhere."""
        return not self.outputs and not self.controller

    def explain(self) -> str:
        """One line per step: the stage and the flow (with the object that made it)."""
        lines = []
        for step in self.steps:
            lines.append(f"{step.stage}: " + (str(step.flow) if step.flow else "no match: drop"))
            lines += [f"    via {f}" for f in step.via]
        return "\n".join(lines)


def _value_matches(actual: Any, wanted: Any) -> bool:
    if isinstance(wanted, tuple):
        value, mask = wanted
        if actual is None:
            return False
        return (_as_int(actual) & _as_int(mask)) == (_as_int(value) & _as_int(mask))
    if actual is not None and type(actual) is not type(wanted):   # an IP in a register
        return _as_int(actual) == _as_int(wanted)
    if actual is None:                  # a field the packet does not have (nexthop6 of
        return wanted is None           # an IPv4 packet) holds no address
    if actual != wanted and isinstance(wanted, str) and "::" in wanted + str(actual):
        return _as_int(actual) == _as_int(wanted)      # IPv6 written two ways
    return actual == wanted


def _as_int(v: Any) -> int:
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        return _str_as_int(v)
    return int(v)


@lru_cache(maxsize=1 << 16)
def _str_as_int(v: str) -> int:
    """A MAC, IPv4 or IPv6 address (or a number) written as a string, as an integer
    (the same few addresses recur in every packet and flow: cached)."""
    if ":" in v:
        if _MAC.match(v):
            return int(v.replace(":", ""), 16)
        return int(ipaddress.IPv6Address(v))
    if "." in v:
        a, b, c, d = (int(x) for x in v.split("."))
        return (a << 24) | (b << 16) | (c << 8) | d
    return int(v)


def flow_matches(flow: Flow, packet: dict) -> bool:
    """Whether every match field of the flow holds for the packet (``_value_matches`` on
    each; the flow's match is prepared once: OVS field names, defaults, masks as
    integers)."""
    prepared = flow.__dict__.get("_prepared")
    if prepared is None:
        prepared = _prepare(flow)
    for name, default, wanted, mask in prepared:
        actual = packet.get(name, default)
        if mask is None:
            if actual != wanted and not _value_matches(actual, wanted):
                return False
        elif actual is None or _as_int(actual) & mask != wanted:
            return False
    return True


def _prepare(flow: Flow) -> tuple:
    """(OVS field, its default, wanted value, mask) per match field of a flow; a masked
    match as (value & mask, mask) in integers. Kept on the (frozen) flow."""
    out = []
    for k, v in flow.match:
        name = ovs_field(k)
        if isinstance(v, tuple):
            mask = _as_int(v[1])
            out.append((name, FIELD_DEFAULTS.get(name), _as_int(v[0]) & mask, mask))
        else:
            out.append((name, FIELD_DEFAULTS.get(name), v, None))
    prepared = tuple(out)
    object.__setattr__(flow, "_prepared", prepared)
    return prepared


def conjunctions(flow: Flow) -> list:
    """``flow.conjunctions()``, kept on the (frozen) flow."""
    found = flow.__dict__.get("_conjunctions")
    if found is None:
        found = flow.conjunctions()
        object.__setattr__(flow, "_conjunctions", found)
    return found


class Pipeline:
    """Flows indexed by stage, ready to evaluate packets; with its connection tracker
    (pass ``conntrack`` to keep connections across a recompile, as OVS does)."""

    def __init__(self, flows: Iterable[Flow], conntrack: Conntrack | None = None):
        self.by_stage: dict[str, list[Flow]] = {}
        self.conntrack = conntrack if conntrack is not None else Conntrack()
        for f in flows:
            self.by_stage.setdefault(f.stage, []).append(f)
        for table in self.by_stage.values():
            table.sort(key=lambda f: -f.priority)

    def lookup(self, stage: str, packet: dict) -> Flow | None:
        """The flow of a stage that applies to the packet, as OVS chooses it: the highest
        priority ordinary match, unless conjunctive flows above it complete a conjunction
        (then the flow found again with ``conj_id`` set, ignoring conjunctive flows)."""
        return self.resolve(stage, packet)[0]

    def resolve(self, stage: str, packet: dict) -> tuple[Flow | None, tuple[Flow, ...]]:
        """``lookup``, and the conjunctive flows that made its answer (the dimensions of
        the completed conjunction; none for an ordinary match)."""
        table = self.candidates(stage, packet)
        hard = _first(table, packet)
        floor = hard.priority if hard is not None else -1
        levels: dict[int, list[Flow]] = {}
        for f in table:
            if f.priority <= floor:
                break
            if conjunctions(f) and flow_matches(f, packet):
                levels.setdefault(f.priority, []).append(f)
        for prio in sorted(levels, reverse=True):
            for cid in _completed(levels[prio]):
                joined = {**packet, "conj_id": cid}      # its own candidates: an index
                found = _first(self.candidates(stage, joined), joined)   # may key conj_id
                if found is not None:
                    return found, tuple(f for f in levels[prio]
                                        if any(c.id == cid for c in conjunctions(f)))
        return hard, ()

    def candidates(self, stage: str, packet: dict) -> list[Flow]:
        """The flows of a stage that may apply to the packet, highest priority first
        (all of them here; ``plexus.tools.fabric`` narrows them with an index)."""
        return self.by_stage.get(stage, [])

    def run(self, packet: dict, stage: str | None = None) -> Result:
        """Evaluate from ``stage`` (default: the first) until the packet leaves or drops.

        Registers and connection-tracking fields start at zero, as in OVS; ``in_port``
        must be given."""
        pkt = {"metadata": 0, "reg5": 0, "reg6": 0, "reg7": 0, "ct_state": 0, "ct_zone": 0,
               "ct_mark": 0, "conj_id": 0, **packet}
        result = Result()
        current = stage or STAGES[0].name
        for _ in range(MAX_STEPS):
            flow, via = self.resolve(current, pkt)
            result.steps.append(Step(current, flow, via))
            if flow is None:
                return result
            after = flow.goto
            for action in flow.actions:
                recirculate = self._apply(action, pkt, result)
                if recirculate:
                    after = None if recirculate is STOP else recirculate
                    break
            if not after:
                return result
            current = after
        raise RuntimeError("pipeline loop: too many steps")

    def _apply(self, action, pkt: dict, result: Result) -> str | None:
        """Apply one action; the stage to continue in when it recirculates (ct(table)), or
        ``STOP`` when the flow's processing ends here (dec_ttl of TTL 0 or 1)."""
        if isinstance(action, SetField):
            pkt[ovs_field(action.field)] = action.value
        elif isinstance(action, Move):
            pkt[ovs_field(action.dst)] = pkt.get(ovs_field(action.src))
        elif isinstance(action, Output):
            if action.port == "in_port":
                result.outputs.append((pkt.get("in_port"), dict(pkt)))
            elif action.port != pkt.get("in_port"):   # OVS drops output to the in_port
                result.outputs.append((action.port, dict(pkt)))
        elif isinstance(action, Controller):
            result.controller.append((action.userdata, dict(pkt)))
        elif isinstance(action, Ct):
            zone = action.zone if isinstance(action.zone, int) else pkt.get(
                ovs_field(action.zone), 0) & 0xFFFF
            if action.commit:
                self.conntrack.commit(zone, pkt, action.mark, action.nat)
            if action.table or action.nat is not None:
                state = self.conntrack.lookup(zone, pkt)
                if action.nat is not None:
                    self.conntrack.nat(zone, pkt)
                if action.table:
                    pkt.update(zip(("ct_state", "ct_zone", "ct_mark"), state))
                    return action.table
        elif isinstance(action, DecTtl):
            ttl = pkt.get("nw_ttl", FIELD_DEFAULTS["nw_ttl"])
            if ttl <= 1:                # OVS: no decrement, the rest of the flow is skipped,
                result.controller.append(("invalid_ttl", dict(pkt)))   # a packet-in
                return STOP
            pkt["nw_ttl"] = ttl - 1
        elif isinstance(action, CheckPktLarger):
            field = ovs_field(action.field)
            larger = pkt.get("pkt_len", FIELD_DEFAULTS["pkt_len"]) > action.length
            pkt[field] = (pkt.get(field, 0) & ~(1 << action.bit)) | (int(larger) << action.bit)
        elif isinstance(action, PushVlan):
            pkt["vlan_vid"] = VLAN_PRESENT
        elif isinstance(action, PopVlan):
            pkt["vlan_vid"] = 0
        elif isinstance(action, CtClear):
            pkt.update(ct_state=0, ct_zone=0, ct_mark=0)
        elif isinstance(action, Meter):
            result.meters.append(action.id)     # a rate limit: the packet passes
        elif isinstance(action, Conjunction):
            raise TypeError("conjunction actions are never executed (lookup resolves them)")
        else:
            raise TypeError(f"unknown action {action!r}")
        return None


def _first(table: Iterable[Flow], packet: dict) -> Flow | None:
    """The first ordinary (non-conjunctive) flow of a priority-sorted table that matches."""
    for f in table:
        if not conjunctions(f) and flow_matches(f, packet):
            return f
    return None


def _completed(flows: list[Flow]) -> list[int]:
    """Conjunction ids for which the matching flows (of one priority) cover every
    dimension, smallest first (OVS picks one; all of ours have equivalent actions)."""
    seen: dict[int, set[int]] = {}
    size: dict[int, int] = {}
    for f in flows:
        for c in conjunctions(f):
            seen.setdefault(c.id, set()).add(c.k)
            size[c.id] = c.n
    return sorted(cid for cid, ks in seen.items() if len(ks) == size[cid])
