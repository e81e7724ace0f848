"""Incremental compilation: the same flows as ``compile_view``, recomputing only the
stages whose inputs changed.

Each stage compiler is a pure function of the View. While a stage compiles, the view
it is handed records which of its fields the compiler reads (``Traced``); the stage's
flows are kept with those fields' values. On the next view, a stage whose recorded
fields are all unchanged (the same object, or equal) would compute the same flows, so
they are reused; the others are recompiled. The view builder shares unchanged field
values between views, so "unchanged" is mostly an identity check.

``Delta`` says, per recompiled stage, which flows went and which came: what the agent
lowers and diffs, instead of the whole pipeline. ``compile_view`` stays the reference
(tests compare the two after random changes)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from plexus.pipeline.compile import compilers
from plexus.pipeline.flows import Flow
from plexus.pipeline.registry import PipelineViolation, check_flow
from plexus.pipeline.view import View

FIELDS = frozenset(f.name for f in fields(View) if f.init)


class Traced(View):
    """A view that records which of its fields are read (a shallow copy of one)."""

    def __getattribute__(self, name: str):
        if name in FIELDS:
            object.__getattribute__(self, "_reads").add(name)
        return object.__getattribute__(self, name)


def traced(view: View) -> Traced:
    """A recording copy of ``view`` sharing its values (and its derived-index cache)."""
    copy = object.__new__(Traced)
    copy.__dict__.update(view.__dict__)
    copy.__dict__["_reads"] = set()
    return copy


@dataclass
class _Memo:
    reads: dict[str, Any]                 # field → the value the stage compiled from
    flows: dict[tuple, Flow]              # flow key → flow


@dataclass
class Delta:
    """What one incremental compile changed: flows removed and added, the stages that
    were recompiled (and how many were reused)."""

    removed: list[Flow] = field(default_factory=list)
    added: list[Flow] = field(default_factory=list)
    recompiled: list[str] = field(default_factory=list)
    reused: int = 0

    def __bool__(self) -> bool:
        return bool(self.removed or self.added)


def _unchanged(view: View, reads: dict[str, Any]) -> bool:
    for name, before in reads.items():
        now = getattr(view, name)
        if now is not before and now != before:
            return False
    return True


class IncrementalCompiler:
    """Flows of one chassis, kept per stage between views."""

    def __init__(self) -> None:
        self._memo: dict[str, _Memo] = {}

    def flows(self) -> list[Flow]:
        """Every flow of the last compiled view (unsorted)."""
        return [f for memo in self._memo.values() for f in memo.flows.values()]

    def reset(self) -> None:
        """Forget everything (the next compile recompiles every stage)."""
        self._memo.clear()

    def compile(self, view: View) -> Delta:
        """Bring the flows to ``view``'s; returns what changed. A compiler error leaves
        the previous flows in place and propagates."""
        delta = Delta()
        fresh: dict[str, _Memo] = {}
        for stage, compiler in compilers():
            memo = self._memo.get(stage.name)
            if memo is not None and _unchanged(view, memo.reads):
                fresh[stage.name] = memo
                delta.reused += 1
                continue
            probe = traced(view)
            out: dict[tuple, Flow] = {}
            before = memo.flows if memo is not None else {}
            for flow in compiler(probe):
                if before.get(flow.key()) != flow:       # an equal flow was checked before
                    check_flow(flow, owner=stage.owner)
                other = out.setdefault(flow.key(), flow)
                if other != flow:
                    raise PipelineViolation(f"two flows with one match:\n  {other}\n  {flow}")
            reads = {name: getattr(view, name) for name in probe.__dict__["_reads"]}
            fresh[stage.name] = _Memo(reads, out)
            delta.recompiled.append(stage.name)
            delta.removed += [f for k, f in before.items() if out.get(k) != f]
            delta.added += [f for k, f in out.items() if before.get(k) != f]
        self._memo = fresh
        return delta
