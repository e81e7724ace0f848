"""Incremental compilation: the same flows as ``compile_view``, recomputing only the
parts of the pipeline whose inputs changed.

Each stage compiler is a pure function of the View. While a stage compiles, the view
it is handed records which of its fields the compiler reads (``Traced``); the stage's
flows are kept with those fields' values. On the next view, a stage whose recorded
fields are all unchanged (the same object, or equal) would compute the same flows, so
they are reused; the others are recompiled.

A stage the registry declares ``partitioned`` is compiled per *part*: the view cut down
to one local network (``part``) and once with no network at all (the stage's shared
flows); its flows are the union of its parts' (a property the tests check against the
whole compile). A change on one network then recompiles that network's part only.

``Delta`` says which flows went and which came: what the agent lowers and diffs,
instead of the whole pipeline. ``compile_view`` stays the reference (tests compare the
two after random changes)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from importlib import import_module
from typing import Any

from plexus.pipeline.compile import compilers
from plexus.pipeline.flows import Flow
from plexus.pipeline.registry import PipelineViolation, check_flow
from plexus.pipeline.stages.qos import used_policies
from plexus.pipeline.view import SecurityView, View

FIELDS = frozenset(f.name for f in fields(View) if f.init)
SHARED = ""                     # the part of a partitioned stage with no network
WHOLE = "*"                     # the unit compiled from the whole view


def split(stage, compiler) -> tuple:
    """(per-network compiler or None, whole-view compiler or None) of a stage. A stage the
    registry declares ``partitioned`` is compiled per network part by
    ``compile_<stage>_network`` if its module has one (and the rest of its flows by
    ``compile_<stage>_chassis``), else by ``compile_<stage>`` itself; any other stage by
    ``compile_<stage>`` on the whole view."""
    if not stage.partitioned:
        return None, compiler
    module = import_module(stage.owner)
    per_network = getattr(module, f"compile_{stage.name}_network", None)
    if per_network is None:
        return compiler, None
    return per_network, getattr(module, f"compile_{stage.name}_chassis")


# a SecurityView's fields and its derived ``shapes`` (a read of it is recorded and
# compared as its own)
SECURITY_FIELDS = frozenset(f.name for f in fields(SecurityView)) | {"shapes"}


class _Recorded:
    """A field of ``Traced``: its first read records the field's name and caches the
    value in the instance (which then hides this non-data descriptor), so only the first
    access of each field costs more than a plain attribute."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        state = obj.__dict__
        value = state["_values"][self.name]
        if self.name == "security" and value is not None:
            value = _TracedSecurity(value, state["_reads"])
        else:
            state["_reads"].add(self.name)
        state[self.name] = value
        return value


class Traced(View):
    """A view that records which of its fields are read (a shallow copy of one). Its
    ``security`` records its own fields' reads as ``security.<field>``: the conntrack
    stages read the groups of ports, not the members of remote groups."""


for _name in FIELDS:
    setattr(Traced, _name, _Recorded(_name))


class _TracedSecurity:
    """A stand-in for a SecurityView that records which of its fields are read (each
    once: the value is then kept on the stand-in)."""

    def __init__(self, value: SecurityView, reads: set):
        self._value, self._reads = value, reads

    def __getattr__(self, name: str):
        self._reads.add(f"security.{name}" if name in SECURITY_FIELDS else "security")
        value = getattr(self._value, name)
        self.__dict__[name] = value
        return value


def traced(view: View) -> Traced:
    """A recording copy of ``view`` sharing its values (and its derived-index cache)."""
    copy = object.__new__(Traced)
    values = dict(view.__dict__)
    copy.__dict__.update({"_values": values, "_reads": set(), "_cache": values["_cache"]})
    return copy


def part(view: View, network_id: str) -> View:
    """``view`` cut down to one network (``SHARED``: to none): its ports, subnets, VIFs,
    the security of its local ports and the QoS policies its bound ports enforce;
    everything else as it is."""
    ports = {p.id: p for p in view.ports_on(network_id)} if network_id else {}
    security = view.security
    if security is not None:
        security = replace(security, port_groups={
            p: g for p, g in security.port_groups.items() if p in ports})
    qos = view.qos
    if qos:                     # the policies this part's ports enforce: a policy change
        used = used_policies(view, (p for p in ports.values() if p.chassis == view.chassis))
        qos = {q: qos[q] for q in sorted(used) if q in qos}   # recompiles their parts only
    return replace(view, ports=ports, qos=qos,
                   networks={network_id: view.networks[network_id]}
                   if network_id in view.networks else {},
                   subnets={s: o for s, o in view.subnets.items() if o.network_id == network_id},
                   vif_ofports={p: o for p, o in view.vif_ofports.items() if p in ports},
                   security=security)


def stabilise(new: View, old: View | None) -> tuple[View, frozenset[str]]:
    """``new`` with every field that equals ``old``'s replaced by ``old``'s object (and
    ``old``'s derived-value cache carried over: its entries are keyed by the identity of
    the fields they were built from), and the names of the fields that differ. A unit
    none of whose recorded reads is among them is unchanged without comparing its reads
    one by one; a field that did not change keeps one object from compile to compile,
    so a unit that reads it finds it by identity. Cost: one comparison per field (a
    dict compared entry by entry when it was rebuilt), not one per stage and part."""
    if old is None:
        return new, FIELDS
    values, changed = {}, set()
    for name in FIELDS:
        now, before = getattr(new, name), getattr(old, name)
        if now is before:
            continue
        if now == before:
            values[name] = before
        else:
            changed.add(name)
    if values:
        new = replace(new, **values)
    if len(old._cache) <= CACHE_CARRIED:            # else start afresh (names gone by)
        for name, entry in old._cache.items():
            new._cache.setdefault(name, entry)
    return new, frozenset(changed)


CACHE_CARRIED = 4096            # derived values carried from one compile to the next, at most


@dataclass
class _Memo:
    reads: dict[str, Any]                 # field → the value the unit compiled from
    flows: dict[tuple, Flow]              # flow key → flow

    @property
    def heads(self) -> frozenset[str]:
        """The view fields the unit read (``security`` for ``security.<field>``)."""
        heads = self.__dict__.get("_heads")
        if heads is None:
            heads = self.__dict__["_heads"] = frozenset(
                name.partition(".")[0] for name in self.reads)
        return heads


@dataclass
class Delta:
    """What one incremental compile changed: flows removed and added, the units (stage,
    part) that were recompiled, and how many were reused."""

    removed: list[Flow] = field(default_factory=list)
    added: list[Flow] = field(default_factory=list)
    recompiled: list[tuple[str, str]] = field(default_factory=list)
    reused: int = 0

    def __bool__(self) -> bool:
        return bool(self.removed or self.added)


def _read(view: View, name: str):
    """The value of a recorded read: a view field, or ``security.<field>`` (None when the
    view has no security, which differs from every value it had)."""
    head, _, tail = name.partition(".")
    value = getattr(view, head)
    if tail:
        return _ABSENT if value is None else getattr(value, tail)
    return value


_ABSENT = object()


def _unchanged(view: View, reads: dict[str, Any]) -> bool:
    for name, before in reads.items():
        now = _read(view, name)
        if now is not before and now != before:
            return False
    return True


def _merge(parts, old: dict[tuple, Flow], touched: set[tuple]) -> dict[tuple, Flow]:
    """A stage's flows: ``old`` with the ``touched`` keys taken from its parts again (a
    flow two parts emit must be the same flow)."""
    new = dict(old)
    for key in touched:
        found = None
        for memo in parts:
            flow = memo.flows.get(key)
            if flow is None:
                continue
            if found is None:
                found = flow
            elif found != flow:
                raise PipelineViolation(f"two flows with one match:\n  {found}\n  {flow}")
        if found is None:
            new.pop(key, None)
        else:
            new[key] = found
    return new


class IncrementalCompiler:
    """Flows of one chassis, kept per stage (and per part of a partitioned stage)."""

    def __init__(self) -> None:
        self._memo: dict[str, dict[str, _Memo]] = {}      # stage → part → memo
        self._flows: dict[str, dict[tuple, Flow]] = {}    # stage → its merged flows
        self._views: dict[str, View] = {}                 # unit name → its last view

    def flows(self) -> list[Flow]:
        """Every flow of the last compiled view (unsorted)."""
        return [f for flows in self._flows.values() for f in flows.values()]

    def reset(self) -> None:
        """Forget everything (the next compile recompiles every stage)."""
        self._memo.clear()
        self._flows.clear()
        self._views.clear()

    def compile(self, view: View) -> Delta:
        """Bring the flows to ``view``'s; returns what changed. A compiler error leaves
        the previous flows in place and propagates."""
        delta = Delta()
        memos: dict[str, dict[str, _Memo]] = {}
        merged: dict[str, dict[tuple, Flow]] = {}
        # the view and its parts, each made once and stabilised against the last compile's
        views = self._views
        cut: dict[str, tuple[View, frozenset[str]]] = {
            WHOLE: stabilise(view, views.get(WHOLE))}
        view = cut[WHOLE][0]

        def unit_view(name: str) -> tuple[View, frozenset[str]]:
            found = cut.get(name)
            if found is None:
                found = cut[name] = stabilise(part(view, name), views.get(name))
            return found
        for stage, compiler in compilers():
            before = self._memo.get(stage.name, {})
            per_network, whole = split(stage, compiler)
            units: dict[str, tuple] = {}                   # unit → (its compiler, its view)
            if per_network is not None:
                nets = sorted({p.network_id for p in view.bound_ports()})
                for name in [SHARED, *nets]:
                    units[name] = (per_network, *unit_view(name))
            if whole is not None:
                units[WHOLE] = (whole, *cut[WHOLE])
            parts: dict[str, _Memo] = {}
            touched: set[tuple] = set()
            for name, (unit_compiler, unit_view_, changed) in units.items():
                memo = before.get(name)
                if memo is not None and (changed.isdisjoint(memo.heads)
                                         or _unchanged(unit_view_, memo.reads)):
                    parts[name] = memo
                    delta.reused += 1
                    continue
                parts[name], keys = self._unit(stage, unit_compiler, unit_view_, memo)
                delta.recompiled.append((stage.name, name))
                touched |= keys
            for name, memo in before.items():
                if name not in parts:                     # a network no longer local
                    touched |= memo.flows.keys()
            memos[stage.name] = parts
            if not touched:
                merged[stage.name] = self._flows[stage.name]
                continue
            old = self._flows.get(stage.name, {})
            if len(parts) == 1:                            # one unit: its flows as they are
                new = merged[stage.name] = next(iter(parts.values())).flows
            else:
                new = merged[stage.name] = _merge(parts.values(), old, touched)
            for key in touched:
                was, now = old.get(key), new.get(key)
                if was is now:
                    continue
                if was is not None and was != now:
                    delta.removed.append(was)
                if now is not None and now != was:
                    delta.added.append(now)
        self._memo, self._flows = memos, merged
        self._views = {name: v for name, (v, _) in cut.items()}
        return delta

    @staticmethod
    def _unit(stage, compiler, view: View, memo: _Memo | None) -> tuple[_Memo, set]:
        """Compile one unit: its memo, and the keys whose flow is not the one it had. A
        flow equal to the unit's previous one at its key is replaced by that previous
        object, so unchanged flows stay the same objects from compile to compile (the
        delta and the lowering compare them by identity first)."""
        before = memo.flows if memo is not None else {}
        probe = traced(view)
        out: dict[tuple, Flow] = {}
        changed: set[tuple] = set()
        for flow in compiler(probe):
            key = flow.key()
            was = before.get(key)
            if was is not flow:
                if was is not None and was == flow:
                    flow = was                            # checked when it first came
                else:
                    check_flow(flow, owner=stage.owner)
                    changed.add(key)
            other = out.setdefault(key, flow)
            if other is not flow and other != flow:
                raise PipelineViolation(f"two flows with one match:\n  {other}\n  {flow}")
        if len(out) != len(before) or changed:
            changed.update(k for k in before if k not in out)
        reads = {name: _read(view, name) for name in probe.__dict__["_reads"]}
        return _Memo(reads, out), changed
