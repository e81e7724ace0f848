"""Every chassis' pipeline, compiled from the model as its agent compiles it, joined by
their tunnels: the ground ``plexus trace`` and ``plexus verify`` stand on.

A ``Model`` is the southbound snapshot (wire objects, as ``GET /southbound/v1/snapshot``
answers: collection → list of objects) parsed once into the agents' ``Catalog``, plus
the names and projects the typed objects leave out. Snapshots of several chassis can be
merged into one model (``add``): each brings what its chassis needs, so a trace fetches
only the chassis it visits.

A ``Fabric`` builds a chassis' View with ``plexus.agent.view.build`` (the agent's own
code) and the chassis' local facts, which are not in the model: the OpenFlow port
numbers of its VIFs, tunnels and patch ports (``Ofports``: given — read from a real
bridge for ``--live`` — or made up: VIFs 1, 2, … in port id order, the tunnel toward a
chassis ``TUNNEL_BASE`` + its index among the registered chassis, so every chassis uses
the same number for it, patch ports ``PATCH_BASE`` + the index of the physical
network), and the MACs of external next hops, which an agent resolves by ARP (here a
made-up MAC per address: the trace assumes they answered). Pipelines are compiled on
first use and kept; cost: the chassis visited, each as its agent's compile."""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Mapping

from plexus.agent import l3 as agent_l3
from plexus.agent import view as views
from plexus.model import keys
from plexus.model.catalog import Catalog
from plexus.pipeline.compile import compilers, sort_key
from plexus.pipeline.flows import Flow, ovs_field
from plexus.pipeline.view import View
from plexus.tools.conntrack import Conntrack
from plexus.tools.evaluator import FIELD_DEFAULTS, Pipeline, Result, _as_int

TUNNEL_BASE = 1000
PATCH_BASE = 900
# what a packet carries only inside one chassis (dropped when it crosses a tunnel)
LOCAL_FIELDS = {"in_port", "metadata", "reg3", "reg4", "reg5", "reg6", "reg7", "ct_state",
                "ct_zone", "ct_mark", "conj_id"}
MAX_CHASSIS_HOPS = 6
_ABSENT = object()              # a field the packet does not carry (its default applies)
_ANOTHER = object()             # a value no flow of the stage names (in a field where
                                # every flow names addresses or numbers exactly)
DESTINATION_FIELDS = {"eth_dst", "ipv4_dst"}    # what a verification's packets vary most


def _comparable(value: Any) -> bool:
    """Whether equal ``_key``s are exactly what the evaluator's match takes as equal: an
    integer, or an address written as a string (a MAC, IPv4 or IPv6)."""
    return (type(value) is int) or (type(value) is str and (":" in value or "." in value))


class Model:
    """Wire objects by collection and id, and the catalog parsed from them."""

    def __init__(self, objects: Mapping[str, Any] | None = None):
        self.raw: dict[str, dict[str, dict]] = {}
        self.catalog = Catalog()
        self.problems: list = []
        if objects:
            self.add(objects)

    def add(self, objects: Mapping[str, Any]) -> None:
        """Merge a snapshot's objects (collection → list of objects, or id → object)."""
        parsed, bad = Catalog.from_wire(objects)
        self.problems.extend(bad)
        for collection, table in parsed.objects.items():
            for ident, obj in table.items():
                if self.catalog.get(collection, ident) is None:
                    self.catalog.put(collection, ident, obj)
        for collection, items in objects.items():
            pairs = items.items() if isinstance(items, Mapping) else (
                (o.get("id") or o.get("host"), o) for o in items if isinstance(o, Mapping))
            table = self.raw.setdefault(collection, {})
            for ident, obj in pairs:
                if isinstance(ident, str):
                    table.setdefault(ident, obj)

    # --- names ----------------------------------------------------------------------
    def wire(self, collection: str, ident: str) -> dict:
        """The wire object (empty when unknown)."""
        return self.raw.get(collection, {}).get(ident) or {}

    def name(self, collection: str, ident: str) -> str:
        """``name (id)`` of an object, or its id when it has no name."""
        name = self.wire(collection, ident).get("name")
        return f"{name} ({ident})" if name else ident

    def project(self, collection: str, ident: str) -> str:
        """The object's project id ('' when unknown)."""
        obj = self.wire(collection, ident)
        return obj.get("project_id") or obj.get("tenant_id") or ""

    def find_port(self, ref: str):
        """A port by id or by name (a name must be unique)."""
        port = self.catalog.get(keys.PORTS, ref)
        if port is not None:
            return port
        found = [i for i, o in self.raw.get(keys.PORTS, {}).items() if o.get("name") == ref]
        if len(found) > 1:
            raise LookupError(f"{len(found)} ports are named {ref!r}: give an id")
        if not found:
            raise LookupError(f"no port {ref!r}")
        return self.catalog.get(keys.PORTS, found[0])

    def bridge_mappings(self, chassis: str) -> dict[str, str]:
        """A chassis' physical network → bridge, as its agent registered them."""
        for obj in self.raw.get(keys.AGENTS, {}).values():
            if obj.get("host") == chassis:
                return dict((obj.get("configurations") or {}).get("bridge_mappings") or {})
        return {}

    def chassis_names(self) -> list[str]:
        """Every registered chassis, sorted."""
        return sorted(a.host for a in self.catalog.objects[keys.AGENTS].values())


@dataclass
class Ofports:
    """One chassis' OpenFlow port numbers: VIFs by port id, tunnels by remote chassis,
    patch ports by physical network."""

    vifs: dict[str, int] = field(default_factory=dict)
    tunnels: dict[str, int] = field(default_factory=dict)
    patches: dict[str, int] = field(default_factory=dict)

    def name_of(self, ofport: int | str) -> tuple[str, str]:
        """(kind, what) of an output port: ``vif``/port id, ``tunnel``/chassis,
        ``patch``/physical network, or ``port``/number when unknown."""
        for kind, table in (("vif", self.vifs), ("tunnel", self.tunnels),
                            ("patch", self.patches)):
            for what, number in table.items():
                if number == ofport:
                    return kind, what
        return "port", str(ofport)


def made_up_ofports(model: Model, chassis: str, tunnel_number) -> Ofports:
    """The numbering a trace from the model alone uses (module doc); ``tunnel_number``:
    chassis name → the ofport every chassis uses toward it."""
    cat = model.catalog
    bound = sorted(cat.ports_by_chassis.of(chassis))
    return Ofports(vifs={p: i + 1 for i, p in enumerate(bound)},
                   tunnels={c: tunnel_number(c) for c in model.chassis_names() if c != chassis},
                   patches={p: PATCH_BASE + i for i, p in
                            enumerate(sorted(model.bridge_mappings(chassis)))})


def external_mac(ip: str) -> str:
    """The made-up MAC of an external next hop (02:ee + its IPv4 address)."""
    a, b, c, d = (int(x) for x in ip.split("."))
    return f"02:ee:{a:02x}:{b:02x}:{c:02x}:{d:02x}"


class LazyPipeline(Pipeline):
    """A chassis' pipeline whose stages are compiled when a packet first reaches them:
    each stage's compiler is a pure function of the View that emits into its own stage
    only (the registry checks it), so a stage compiled alone gives the flows
    ``compile_view`` gives it. The compiler is looked up at compile time (a test may
    replace one)."""

    def __init__(self, view: View):
        super().__init__(())
        self.view = view
        self.compilers = {st.name: st for st, _ in compilers()}
        self.compiled: set[str] = set()
        self.index: dict[str, _Index] = {}
        self.reads: dict[str, tuple[str, ...]] = {}    # stage → the fields its flows match
        self.named: dict[str, dict[str, frozenset]] = {}  # stage → field → values named
        self.answers: dict[tuple, tuple] = {}           # (stage, their values) → resolve

    def resolve(self, stage: str, packet: dict):
        """The stage's answer for the packet, worked out once per value of the fields the
        stage's flows match on: a lookup (index, flow matches, conjunctions) reads no
        other field, so packets alike in those fields get the same flow (a verification
        sends many that differ only in a destination or a port)."""
        if stage not in self.compiled:
            self._compile(stage)
        named = self.named.get(stage, {})
        try:
            key = (stage, *[_ANOTHER if f in named and _comparable(v) and _key(v) not in
                            named[f] else v
                            for f in self.reads.get(stage, ()) for v in (packet.get(f, _ABSENT),)])
            found = self.answers.get(key)
        except TypeError:           # an unhashable value: not remembered
            return super().resolve(stage, packet)
        if found is None:
            found = self.answers[key] = super().resolve(stage, packet)
        return found

    def _compile(self, stage: str) -> None:
        self.compiled.add(stage)
        st = self.compilers.get(stage)
        if st is None:
            return
        compiler = dict((s.name, c) for s, c in compilers())[stage]
        flows = sorted(compiler(self.view), key=lambda f: -f.priority)
        self.by_stage[stage] = flows
        self.index[stage] = _Index(flows)
        index = self.index[stage]
        self.reads[stage] = tuple(sorted({ovs_field(k) for k in index.fields}))
        # a destination field every flow of the stage matches exactly, on addresses: a
        # value none of them names matches none of them, like any other such value
        values: dict[str, set] = {}
        mixed: set[str] = set()
        pairs, index.pairs = index.pairs, ()
        wanted = {k for k in index.fields if ovs_field(k) in DESTINATION_FIELDS}
        for k, v in pairs:
            if k not in wanted:
                continue
            name = ovs_field(k)
            if _comparable(v):
                values.setdefault(name, set()).add(_key(v))
            else:
                mixed.add(name)
        self.named[stage] = {k: frozenset(v) for k, v in values.items() if k not in mixed}

    def candidates(self, stage: str, packet: dict) -> list[Flow]:
        index = self.index.get(stage)
        return index.candidates(packet) if index is not None else []

    def stage_flows(self, stage: str) -> list[Flow]:
        """One stage's flows (compiled if not yet)."""
        if stage not in self.compiled:
            self._compile(stage)
        return self.by_stage.get(stage, [])

    def flows(self) -> list[Flow]:
        """Every stage's flows (compiling what is not yet), in pipeline order."""
        for stage in self.compilers:
            if stage not in self.compiled:
                self._compile(stage)
        return sorted((f for fl in self.by_stage.values() for f in fl), key=sort_key)


def _key(value: Any) -> Any:
    """A match or packet value in one comparable form (MACs and IPv4 as integers)."""
    if isinstance(value, str) and (":" in value or "." in value):
        return _as_int(value)
    return value


class _Index:
    """A stage's flows by the value of one exact-match field — the one that leaves the
    fewest flows to scan (a packet can only hit the flows with its value, and those
    without the field) — and each part again by another field while it stays large (the
    ACL stages: per port, then per remote address), so a lookup does not scan the whole
    table. Candidates come highest priority first, as the table would give them."""

    LEAF = 16               # parts this small are scanned
    DEPTH = 4

    def __init__(self, flows: list[Flow], depth: int = 0):
        self.all = flows
        self.field = None
        self.merged: dict[tuple, list[Flow]] = {}
        self.fields = set()
        self.pairs: Any = ()
        if len(flows) <= self.LEAF and depth:
            return
        # how many flows have each exact-match value of each field (values as written:
        # the count only chooses the field; the split below compares them comparably);
        # and every field a flow matches on
        buckets: dict[str, dict[Any, int]] = {}
        self.fields: set[str] = set()
        pairs = Counter(chain.from_iterable(f.match for f in flows))
        self.pairs = pairs if not depth else ()     # the stage's (field, value)s: read once
        for (k, v), n in pairs.items():
            self.fields.add(k)
            if not isinstance(v, tuple):
                bucket = buckets.get(k)
                if bucket is None:
                    bucket = buckets[k] = {}
                bucket[v] = n

        def worst(k: str) -> tuple:     # the most flows a lookup may still scan
            b = buckets[k]
            return (len(flows) - sum(b.values()) + max(b.values()), k)
        best = min(buckets, key=worst) if buckets else None
        if best is None or (depth and worst(best)[0] >= len(flows)):
            return                      # no field splits this part further
        self.field = best
        self.ovs = ovs_field(best)
        by_value: dict[Any, list[Flow]] = {}
        rest: list[Flow] = []
        for f in flows:
            for k, v in f.match:
                if k == best and not isinstance(v, tuple):
                    by_value.setdefault(_key(v), []).append(f)
                    break
            else:
                rest.append(f)
        # each part is split again when a lookup first reaches it (most never are)
        self.depth = depth
        self.by_value: dict[Any, Any] = by_value
        self.rest = self._part(rest)

    def _part(self, flows: list[Flow]) -> "_Index | _Leaf":
        if self.depth + 1 < self.DEPTH:
            return _Index(flows, self.depth + 1)
        return _Leaf(flows)

    def candidates(self, packet: dict) -> list[Flow]:
        if self.field is None:
            return self.all
        value = packet.get(self.ovs, FIELD_DEFAULTS.get(self.ovs))
        part = None
        if value is not None:
            key = _key(value)
            part = self.by_value.get(key)
            if type(part) is list:
                part = self.by_value[key] = self._part(part)
        rest = self.rest.candidates(packet)
        hit = part.candidates(packet) if part is not None else []
        if not hit:
            return rest
        if not rest:
            return hit
        key = (id(hit), id(rest))       # both are kept lists: their ids are stable
        merged = self.merged.get(key)
        if merged is None:
            merged = self.merged[key] = list(heapq.merge(hit, rest,
                                                         key=lambda f: -f.priority))
        return merged


class _Leaf:
    """A part of an index that is scanned."""

    def __init__(self, flows: list[Flow]):
        self.all = flows

    def candidates(self, packet: dict) -> list[Flow]:
        return self.all


@dataclass
class Hop:
    """Where a packet left a chassis: the kind of port (``vif``, ``tunnel``, ``patch``,
    ``controller``), what it leads to (port id, chassis, physical network, reason) and
    the packet as it left."""

    chassis: str
    kind: str
    what: str
    packet: dict


@dataclass
class Trip:
    """A packet's whole path: each chassis' evaluation (with the packet that came in)
    and where it left each one."""

    visits: list[tuple[str, dict, Result]] = field(default_factory=list)
    hops: list[Hop] = field(default_factory=list)

    @property
    def ends(self) -> list[Hop]:
        """Hops that did not lead to another chassis."""
        return [h for h in self.hops if h.kind != "tunnel"]

    def unfollowed(self) -> list[Hop]:
        """Tunnel hops to chassis the packet was not evaluated on (``send``'s follow)."""
        evaluated = {c for c, _, _ in self.visits}
        return [h for h in self.hops if h.kind == "tunnel" and h.what not in evaluated]

    def delivered(self) -> set[str]:
        """Port ids the packet reached (left by their VIF)."""
        return {h.what for h in self.hops if h.kind == "vif"}

    @property
    def dropped(self) -> bool:
        """True when the packet ended nowhere."""
        return not self.ends

    def explain(self) -> str:
        """Each chassis' steps (the evaluator's words)."""
        return "\n".join(f"--- {c}\n{r.explain()}" for c, _, r in self.visits)


class Fabric:
    """The compiled chassis of a model, joined by tunnels."""

    def __init__(self, model: Model, ofports: Mapping[str, Ofports] | None = None,
                 fetch=None, read_ofports=None):
        self.model = model
        self.fetch = fetch              # called with a chassis before its view is built
        # (the CLI merges that chassis' snapshot into the model: only chassis visited)
        self.read_ofports = read_ofports    # chassis → its real Ofports, or None (--live)
        self.given = dict(ofports or {})
        self.tunnel_numbers: dict[str, int] = {c: TUNNEL_BASE + i
                                               for i, c in enumerate(model.chassis_names())}
        self.views: dict[str, View] = {}
        self.pipelines: dict[str, LazyPipeline] = {}

    def ofports(self, chassis: str) -> Ofports:
        """The chassis' port numbers: given, or made up."""
        if chassis not in self.given:
            if self.fetch is not None:
                self.fetch(chassis)
            real = self.read_ofports(chassis) if self.read_ofports is not None else None
            self.given[chassis] = real if real is not None else made_up_ofports(
                self.model, chassis, self._tunnel_number)
        return self.given[chassis]

    def _tunnel_number(self, chassis: str) -> int:
        return self.tunnel_numbers.setdefault(chassis, TUNNEL_BASE + len(self.tunnel_numbers))

    def view(self, chassis: str) -> View:
        """The chassis' View, as its agent builds it."""
        if chassis not in self.views:
            cat, ports = self.model.catalog, self.ofports(chassis)
            agent = cat.agent(chassis)
            tunnel_ip = agent.tunnel_ip if agent is not None else "0.0.0.0"
            mappings = self.model.bridge_mappings(chassis)
            common = dict(vif_ofports=ports.vifs, tunnel_ofports=ports.tunnels,
                          alive=cat.alive(), bridge_mappings=mappings,
                          patch_ofports={p: o for p, o in ports.patches.items()
                                         if p in mappings})
            view = views.build(cat, chassis, tunnel_ip, **common)
            macs = {h.ip: external_mac(h.ip) for h in agent_l3.external_nexthops(view)
                    if ":" not in h.ip}
            if macs:
                view = views.build(cat, chassis, tunnel_ip, external_macs=macs, **common)
            self.views[chassis] = view
        return self.views[chassis]

    def pipeline(self, chassis: str) -> "LazyPipeline":
        """The chassis' pipeline, ready to evaluate (each stage compiled once, when a
        packet first reaches it)."""
        if chassis not in self.pipelines:
            self.pipelines[chassis] = LazyPipeline(self.view(chassis))
        return self.pipelines[chassis]

    def send(self, chassis: str, packet: dict, fresh: bool = False, tracker=None,
             follow=None) -> Trip:
        """Evaluate ``packet`` on ``chassis`` and follow it through the tunnels it takes
        (``fresh``: each chassis with an empty connection tracker, as for a new flow;
        ``tracker``: each visit with the connection tracker it returns, called once per
        visit in order; ``follow``: chassis → whether to evaluate the packet there, else
        its tunnel hop ends the trip there)."""
        if fresh and tracker is None:
            tracker = Conntrack
        trip = Trip()
        todo = [(chassis, packet)]
        while todo:
            if len(trip.visits) >= MAX_CHASSIS_HOPS:
                raise RuntimeError("the packet crossed too many chassis:\n" + trip.explain())
            here, pkt = todo.pop(0)
            pipeline = self.pipeline(here)
            if tracker is not None:
                pipeline.conntrack = tracker()
            result = pipeline.run(pkt)
            trip.visits.append((here, pkt, result))
            ports = self.ofports(here)
            for port, sent in result.outputs:
                kind, what = ports.name_of(port)
                trip.hops.append(Hop(here, kind, what, sent))
                if kind == "tunnel" and (follow is None or follow(what)):
                    arriving = {k: v for k, v in sent.items() if k not in LOCAL_FIELDS}
                    todo.append((what, {**arriving,
                                        "in_port": self.ofports(what).tunnels.get(here, 0)}))
            for reason, sent in result.controller:
                trip.hops.append(Hop(here, "controller", reason, sent))
        return trip

