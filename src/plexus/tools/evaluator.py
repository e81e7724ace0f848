"""The one evaluator: runs a packet (a dict of fields) through flow objects exactly as
they will be lowered into OpenFlow, and says which flow did what. ``plexus trace``,
the compilers' behaviour tests and the verifier all use it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from plexus.pipeline.flows import Controller, Flow, Move, Output, SetField, ovs_field
from plexus.pipeline.registry import STAGES

MAX_STEPS = 64


@dataclass
class Step:
    """One table visit: the stage, the flow that matched (None = table miss, drop)."""

    stage: str
    flow: Flow | None


@dataclass
class Result:
    """What happened to a packet: outputs (port, packet as sent), controller sends, steps."""

    outputs: list[tuple[int | str, dict]] = field(default_factory=list)
    controller: list[tuple[str, dict]] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)

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
        return "\n".join(lines)


def _value_matches(actual: Any, wanted: Any) -> bool:
    if isinstance(wanted, tuple):
        value, mask = wanted
        if actual is None:
            return False
        return (_as_int(actual) & _as_int(mask)) == (_as_int(value) & _as_int(mask))
    return actual == wanted


def _as_int(v: Any) -> int:
    if isinstance(v, int):
        return v
    if isinstance(v, str) and ":" in v:
        return int(v.replace(":", ""), 16)
    if isinstance(v, str) and "." in v:
        a, b, c, d = (int(x) for x in v.split("."))
        return (a << 24) | (b << 16) | (c << 8) | d
    return int(v)


def flow_matches(flow: Flow, packet: dict) -> bool:
    """Whether every match field of the flow holds for the packet."""
    return all(_value_matches(packet.get(ovs_field(k)), v) for k, v in flow.match)


class Pipeline:
    """Flows indexed by stage, ready to evaluate packets."""

    def __init__(self, flows: Iterable[Flow]):
        self.by_stage: dict[str, list[Flow]] = {}
        for f in flows:
            self.by_stage.setdefault(f.stage, []).append(f)
        for table in self.by_stage.values():
            table.sort(key=lambda f: -f.priority)

    def lookup(self, stage: str, packet: dict) -> Flow | None:
        """The highest-priority flow of a stage matching the packet."""
        for f in self.by_stage.get(stage, ()):
            if flow_matches(f, packet):
                return f
        return None

    def run(self, packet: dict, stage: str | None = None) -> Result:
        """Evaluate from ``stage`` (default: the first) until the packet leaves or drops.

        Registers start at zero, as in OVS; ``in_port`` must be given."""
        pkt = {"metadata": 0, "reg5": 0, "reg6": 0, "reg7": 0, **packet}
        result = Result()
        current = stage or STAGES[0].name
        for _ in range(MAX_STEPS):
            flow = self.lookup(current, pkt)
            result.steps.append(Step(current, flow))
            if flow is None:
                return result
            for action in flow.actions:
                self._apply(action, pkt, result)
            if not flow.goto:
                return result
            current = flow.goto
        raise RuntimeError("pipeline loop: too many steps")

    @staticmethod
    def _apply(action, pkt: dict, result: Result) -> None:
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
        else:
            raise TypeError(f"unknown action {action!r}")
