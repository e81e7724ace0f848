"""The whole pipeline of one chassis: each stage declared in the registry is compiled
by ``compile_<stage>`` of its owner module, every flow is checked against its stage's
declaration, and the result is sorted, so the same view always gives the same list."""

from __future__ import annotations

from importlib import import_module
from typing import Callable, Iterable

from plexus.pipeline.flows import Flow
from plexus.pipeline.registry import STAGES, PipelineViolation, Stage, check_flow, table_of
from plexus.pipeline.view import View

Compiler = Callable[[View], list[Flow]]


def compilers() -> list[tuple[Stage, Compiler]]:
    """Each declared stage with its compiler, in pipeline order."""
    return [(st, getattr(import_module(st.owner), f"compile_{st.name}")) for st in STAGES]


def compile_view(view: View) -> list[Flow]:
    """All flows for one chassis, checked and sorted (same view → same list)."""
    flows: dict[tuple, Flow] = {}
    for st, compiler in compilers():
        for flow in compiler(view):
            check_flow(flow, owner=st.owner)
            other = flows.setdefault(flow.key(), flow)
            if other != flow:
                raise PipelineViolation(f"two flows with one match:\n  {other}\n  {flow}")
    return sorted(flows.values(), key=sort_key)


def sort_key(flow: Flow) -> tuple:
    """Pipeline order: table, then priority (highest first), then the flow's text."""
    return (table_of(flow.stage), -flow.priority, str(flow))


def by_stage(flows: Iterable[Flow]) -> dict[str, list[Flow]]:
    """Flows grouped by stage name (every declared stage present), order kept."""
    out: dict[str, list[Flow]] = {st.name: [] for st in STAGES}
    for flow in flows:
        out[flow.stage].append(flow)
    return out
