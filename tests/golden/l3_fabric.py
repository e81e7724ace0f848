"""Several chassis' pipelines joined by their tunnels, for behaviour checks that cross
chassis: a packet is evaluated on one chassis (the one evaluator, each chassis with its
own connection tracker), and what leaves by a tunnel is evaluated again on the chassis
at the other end, arriving by that chassis' tunnel from the sender with the same key.
What leaves by a VIF or the patch port is where the packet ends up."""

from __future__ import annotations

from dataclasses import dataclass, field

from plexus.pipeline.compile import compile_view
from plexus.pipeline.view import View
from plexus.tools.evaluator import Pipeline, Result
from tests.golden.l3_reference import PATCH, TUNNEL, VIF_OFPORTS

BY_TUNNEL = {ofport: chassis for chassis, ofport in TUNNEL.items()}
LOCAL = {"in_port", "metadata", "reg3", "reg4", "reg5", "reg6", "reg7", "ct_state",
         "ct_zone", "ct_mark", "conj_id"}


@dataclass
class Hop:
    """Where a packet went: the chassis, the port it left by, how it looked."""

    chassis: str
    port: int | str
    packet: dict

    @property
    def where(self) -> str:
        """``vif:<port id>``, ``patch`` or ``tunnel:<chassis>`` as seen from the chassis."""
        if self.port == PATCH:
            return "patch"
        if self.port in BY_TUNNEL:
            return f"tunnel:{BY_TUNNEL[self.port]}"
        vifs = {o: p for p, o in VIF_OFPORTS[self.chassis].items()}
        return f"vif:{vifs.get(self.port, self.port)}"


@dataclass
class Trip:
    """Every hop of one packet, and each chassis' evaluation of it."""

    hops: list[Hop] = field(default_factory=list)
    results: list[tuple[str, Result]] = field(default_factory=list)

    @property
    def ends(self) -> list[tuple[str, str]]:
        """(chassis, where) of the hops that did not lead to another chassis."""
        return [(h.chassis, h.where) for h in self.hops if not h.where.startswith("tunnel:")]

    @property
    def last(self) -> dict:
        """The packet as it left at the (only) end."""
        ends = [h for h in self.hops if not h.where.startswith("tunnel:")]
        assert len(ends) == 1, self.explain()
        return ends[0].packet

    def explain(self) -> str:
        """Each chassis' steps."""
        return "\n".join(f"--- {c}\n{r.explain()}" for c, r in self.results)


class Fabric:
    """Compiled chassis, keeping their connections across recompiles."""

    def __init__(self, views: dict[str, View]):
        self.pipelines: dict[str, Pipeline] = {}
        self.update(views)

    def update(self, views: dict[str, View]) -> None:
        """Recompile some chassis (their connection trackers stay, as in OVS)."""
        for name, v in views.items():
            old = self.pipelines.get(name)
            self.pipelines[name] = Pipeline(compile_view(v), old.conntrack if old else None)

    def send(self, chassis: str, packet: dict, max_hops: int = 4) -> Trip:
        """Evaluate on ``chassis`` and follow tunnels to the chassis they lead to."""
        trip = Trip()
        todo = [(chassis, packet)]
        while todo:
            assert len(trip.results) < max_hops, trip.explain()
            here, pkt = todo.pop(0)
            result = self.pipelines[here].run(pkt)
            trip.results.append((here, result))
            for port, sent in result.outputs:
                hop = Hop(here, port, sent)
                trip.hops.append(hop)
                if hop.where.startswith("tunnel:"):
                    there = BY_TUNNEL[port]
                    arriving = {k: v for k, v in sent.items() if k not in LOCAL}
                    todo.append((there, {**arriving, "in_port": TUNNEL[here]}))
        return trip
