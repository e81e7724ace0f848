"""The agent loop of one chassis. Seven small tasks share one event loop:

- sync: snapshot of this chassis' objects, then long-poll its watch from the snapshot's
  revision + 1; each event is parsed once into the catalog, and one outside the
  chassis' relevance scopes (``model.relevance``) goes no further; a 410 takes a new
  snapshot; an unreachable server is retried with back-off (the next URL first),
  resuming from the revision reached;
- liveness: register the chassis under a lease, heartbeat at a third of its TTL,
  register again when the lease was lost;
- openflow: keep the channel to br-int up; on each (re)connect read what is installed;
- reconcile: whenever something relevant in the model, OVSDB or the channel changed,
  build the view through the catalog's indexes (``agent.view``), ask OVSDB for the
  tunnels it needs, recompile the stages whose inputs changed
  (``pipeline.incremental``), lower only the flows that came and apply the difference
  as one atomic bundle — nothing before a snapshot, OVSDB's first full state and the
  installed flows are all known, so a restart changes nothing that is already right
  and traffic never stops; once no flow uses the conntrack zone of a VIF that went
  away (a zone is its ofport), the zone is flushed, so a VIF that later gets the same
  ofport starts clean;
- status (``agent.status``): ports ACTIVE once the flows compiled with their VIF are
  in, DOWN at once; routers and floating IPs at the revision programmed;
- snat and resolve (``agent.routing``): SNAT block leases, external next-hop probes;
  router zones that go away are flushed and new external addresses announced.

Routing (docs/routing.md): the view includes the routers of ``agent.view`` with the
chassis believed alive (the store's ``liveness`` and BFD on tunnels with gateway
chassis: ``agent.liveness``), the bridge mappings and br-int's patch ports toward them
(created through OVSDB), every tunnel, and the resolved external MACs; tunnels are
``relevant.tunnel_peers`` ∪ ``l3.tunnel_peers`` ∪, on a gateway candidate,
``liveness.gateway_peers`` (so BFD runs while it is standby). Every delay is in
``AgentConfig.timing`` (``agent.timing``). docs/architecture.md follows an event from
the store to the flows.

DHCP packet-ins are answered from the latest view, and so are the routed packets the
pipeline punts for ICMP errors (time exceeded, fragmentation needed, host unreachable:
``agent.icmp``, rate-limited per chassis and per sender). Load balancer members hosted
here are health-checked by two tasks of their own (``agent.lbhealth``: probes out of
their VIFs, answers by packet-in; verdicts reported to the server when they change).
Everything the agent did not expect
(malformed events and objects, stray VIFs, ports on unknown chassis) is logged once."""

from __future__ import annotations

import asyncio
import gc
import logging
import struct
import time
from dataclasses import dataclass, field, replace
from typing import Callable

from plexus.agent import dhcp6, icmp, l3, lbhealth, ra, relevant
from plexus.agent import view as views
from plexus.agent.external import Resolver
from plexus.agent.metadata import Requester
from plexus.agent.liveness import Liveness, bfd_peers, gateway_peers
from plexus.agent.metrics import AgentMetrics
from plexus.agent.flowdiff import Entry, Key, Lowered, diff, meter_changes
from plexus.agent.model import BadEvent, Model
from plexus.agent.ovs import BridgeState, OpenFlowError, PacketIn
from plexus.agent.routing import RoutingDuties
from plexus.agent.southbound import Compacted, LeaseLost, Refused, Unavailable
from plexus.agent.status import StatusReports
from plexus.agent.timing import Timing
from plexus.agent.vips import VipAnnouncements
from plexus.lower.openflow import cookie_of
from plexus.model import keys, relevance
from plexus.pipeline.stages.metadata import ofport_of
from plexus.pipeline.stages.dhcp import ND_ROUTER
from plexus.pipeline.stages.l3_input import ND_GATEWAY
from plexus.pipeline.stages.lb_probe import USERDATA as LB_PROBE
from plexus.pipeline.stages.port_security import VIP_ARP
from plexus.model.catalog import Change
from plexus.pipeline.incremental import IncrementalCompiler
from plexus.pipeline.flows import Meter
from plexus.pipeline.view import View

LOG = logging.getLogger("plexus.agent")
BULK_FLOWS = 1000         # a compile adding this many flows is a bulk one (snapshot, resync)


@dataclass
class AgentConfig:
    """Who this chassis is."""

    chassis: str
    tunnel_ip: str
    bridge_mappings: dict[str, str] = field(default_factory=dict)
    gateway: bool = False
    ttl: float = 10.0
    timing: Timing = field(default_factory=Timing)
    icmp_error_rate: float = 100.0      # ICMP errors a second this chassis' routers send
    icmp_error_burst: float = 100.0     # ... at most at once
    icmp_source_rate: float = 10.0      # ... to any one sender a second
    icmp_source_burst: float = 10.0     # ... to any one sender at once
    metadata_ofport: int = 0            # br-int's port of the metadata namespace (0: none)
    metrics: str | None = None          # HOST:PORT of the /metrics listener (None: none)
    availability_zone: str = "nova"     # the zone this chassis is in (availability_zone)


@dataclass
class Counters:
    """What the agent has done (logged, and read by tests and benchmarks)."""

    reconciles: int = 0
    bundles: int = 0
    flow_mods: int = 0
    flows: int = 0
    last_apply_ms: float = 0.0
    # where the last reconcile that changed flows spent its time (ms): view build,
    # compile, lowering and diff, the bundle round trip to br-int
    last_view_ms: float = 0.0
    last_compile_ms: float = 0.0
    last_lower_ms: float = 0.0
    last_bundle_ms: float = 0.0
    dhcp_replies: int = 0
    dhcp6_replies: int = 0
    router_advertisements: int = 0
    ct_flushes: int = 0
    arp_probes: int = 0
    garps: int = 0
    snat_leases: int = 0
    snat_dropped: int = 0           # packets the SNAT guard dropped (no free port)
    events: int = 0                 # watch events applied
    irrelevant: int = 0             # ... of which concerned nothing this chassis has
    stages_recompiled: int = 0
    stages_reused: int = 0
    icmp_errors: int = 0            # ICMP errors sent (agent.icmp; by kind in self.icmp)
    icmp_limited: int = 0           # ... refused by the rate limits (chassis, sender)
    lb_probes: int = 0              # load balancer health probes sent (agent.lbhealth)
    lb_reports: int = 0             # ... member verdicts reported to the server


class Agent(StatusReports, RoutingDuties):
    """One chassis' agent; ``southbound`` and ``switch`` are its two boundaries. Its
    status reports (``agent.status``) and routing duties (``agent.routing``) live in
    modules of their own."""

    def __init__(self, config: AgentConfig, southbound, switch,
                 dhcp: Callable | None = None):
        self.config = config
        self.sb = southbound
        self.switch = switch
        self.vips = VipAnnouncements(southbound, config.chassis)
        self.dhcp = dhcp if dhcp is not None else _dhcp_responder()
        self.dhcp6 = dhcp6.Responder()
        self.dns_domain: str | None = None      # the cloud's, once the server said it
        self._advertised: dict[int, tuple] = {}     # VIF ofport → the last RAs sent there
        self.model = Model()
        self.bridge = BridgeState()
        self.installed: dict[Key, Entry] | None = None     # None: not known (no channel)
        self.meters: dict[int, Meter] = {}      # the meters br-int holds (QoS limits)
        self.view: View | None = None
        self.cookies: dict[int, str] = {}        # cookie → object of the installed flows
        self.compiler = IncrementalCompiler()
        self.subscribed: set = set()            # relevance scopes of this chassis
        self._lowered = Lowered()
        self._full_diff = True                  # installed was (re)read: diff everything
        self.counters = Counters()
        self.compiled = asyncio.Event()     # the first reconcile applied (or found) flows
        self._dirty = asyncio.Event()
        self._status_dirty = asyncio.Event()
        self._stop = asyncio.Event()
        self._said: set = set()
        self._reported: dict[str, str] = {}
        self._l3_reported: dict[tuple[str, str], tuple[str, int | None]] = {}
        self._tunnels: dict[str, str] | None = None
        self._warmed: dict[str, int] = {}        # chassis → tunnel ofport warmed
        self._last_view: View | None = None
        self._ofports: dict[int, str] = {}
        self._plugged: tuple | None = None    # the VIFs when flows were last applied
        self.lease: int | None = None
        self.resolver = Resolver(config.chassis)
        self.liveness = Liveness()
        self._bfd: frozenset | None = None
        self._resolve_now = asyncio.Event()
        self._patches: dict[str, str] | None = None
        self._announced: set[tuple[int, str, str]] = set()
        self._snat_dirty = asyncio.Event()
        self._router_zones: dict[str, int] = {}
        self.icmp = icmp.IcmpErrors(config.icmp_error_rate, config.icmp_error_burst,
                                    config.icmp_source_rate, config.icmp_source_burst)
        self._icmp_said = 0.0
        self.lbhealth = lbhealth.Prober()       # health checks of the members hosted here
        self._health_wake = asyncio.Event()     # the probe loop: targets changed
        self._health_report = asyncio.Event()   # the report loop: a verdict changed

        self._loopback_want: dict[str, tuple[str, ...]] = {}
        self._loopback_done: dict[str, tuple[str, ...]] = {}
        self._loopback_dirty = asyncio.Event()

        self._timed_zones: set[int] = set()     # router zones given their timeout policy
        self._snat_drops: dict[str, int] = {}   # router → guard drop count last read
        self._snat_idle: dict[tuple[str, int], float] = {}  # (router, block) → idle since
        self._snat_use: dict = {}               # router zone → l3.SnatUse, last dump
        self._snat_next_dump = 0.0              # loop time of the next conntrack dump

        self.metrics = AgentMetrics(self)
        self.seen_revision = 0          # the watch has read every event up to this
        self.applied_revision = 0       # ... and every relevant one up to this is in flows
        self._reconciling = False
        if hasattr(southbound, "report"):       # heartbeats carry what ``status`` shows
            southbound.report = self.heartbeat_report

    # --- life cycle --------------------------------------------------------------------
    async def run(self) -> None:
        """Run until ``stop()``; the data plane is left as it is on the way out."""
        if self.config.metrics:
            try:
                await self.metrics.serve(self.config.metrics)
            except (OSError, ValueError) as exc:     # the data plane matters more
                LOG.error("metrics listener on %s: %s; running without it",
                          self.config.metrics, exc)
        self.switch.start(self._on_bridge)
        tasks = [asyncio.create_task(coro, name=name) for name, coro in (
            ("sync", self._sync()), ("liveness", self._liveness()),
            ("openflow", self._openflow()), ("reconcile", self._reconcile_loop()),
            ("status", self._status_loop()), ("resolve", self._resolve_loop()),
            ("snat", self._snat_loop()), ("loopback", self._loopback_loop()),
            ("tunnels", self._tunnel_loop()), ("ra", self._ra_loop()),
            ("lbhealth", self._lbhealth_loop()), ("lbreport", self._lbreport_loop()))]
        try:
            await self._stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.switch.stop()
            await self.metrics.close()

    def heartbeat_report(self) -> dict:
        """What each heartbeat tells the server besides the lease (``plexus status``)."""
        from plexus import __version__
        return {"revision": self.applied_revision, "version": __version__}

    def stop(self) -> None:
        """Ask ``run`` to return."""
        self._stop.set()

    def _once(self, key, level: int, msg: str, *args) -> None:
        if key not in self._said:
            self._said.add(key)
            LOG.log(level, msg, *args)

    # --- sync: snapshot and watch ------------------------------------------------------
    async def _sync(self) -> None:
        start, failures = None, 0
        while True:
            try:
                if start is None:
                    revision, objects = await self.sb.snapshot()
                    for collection, ident, why in self.model.reset(revision, objects):
                        LOG.warning("snapshot: skipping %s/%s: %s", collection, ident, why)
                    self.subscribed = relevance.subscriptions(self.model.catalog,
                                                              self.config.chassis)
                    # the snapshot's objects live long: keep them out of the cyclic
                    # collector's full passes (one took ~70 ms in the middle of an event)
                    gc.freeze()
                    LOG.info("snapshot at revision %d: %s", revision, ", ".join(
                        f"{len(v)} {k}" for k, v in self.model.objects.items()))
                    start = revision + 1
                    self.seen_revision = revision
                    self._changed()
                events, start = await self.sb.watch(start)
                if self.apply_events(events):
                    self._changed()
                self.seen_revision = max(self.seen_revision, start - 1)
                if not self._dirty.is_set() and not self._reconciling \
                        and self._last_view is not None:
                    self.applied_revision = self.seen_revision   # nothing relevant since
                if failures:
                    LOG.info("server %s reachable again; resumed at revision %d",
                             self.sb.url, start)
                failures = 0
            except Compacted:
                LOG.info("watch history compacted: taking a new snapshot")
                start = None
            except (Unavailable, Refused, KeyError, ValueError, TypeError) as exc:
                if not failures:
                    LOG.warning("southbound: %s; keeping the data plane as it is and "
                                "retrying", exc)
                await asyncio.sleep(self.config.timing.after(failures))
                failures += 1

    def apply_events(self, events: list) -> bool:
        """Apply watch events to the model; True if one concerns this chassis. An event
        outside this chassis' relevance scopes costs a catalog update and a set check."""
        changed = False
        for event in events:
            try:
                change = self.model.apply(event)
            except BadEvent as exc:
                LOG.warning("skipping southbound event %s: %s", _event_id(event), exc)
                continue
            self.counters.events += 1
            if change is None or not self._concerns(change):
                self.counters.irrelevant += 1
            elif change.old is not None and change.old == change.new:
                self._status_dirty.set()        # only a status or revision: no flow moves
            else:
                changed = True
        return changed

    def _concerns(self, change: Change) -> bool:
        """Whether a change touches this chassis' scopes (before or after it); one that
        may move the scopes themselves makes the agent recompute them."""
        if not relevance.relevant(relevance.change_scopes(change), self.subscribed):
            return False
        if relevance.structural(change):
            self.subscribed = relevance.subscriptions(self.model.catalog, self.config.chassis)
        return True

    def _changed(self) -> None:
        self._dirty.set()
        self._status_dirty.set()

    # --- liveness ----------------------------------------------------------------------
    async def _liveness(self) -> None:
        c = self.config
        lease, ttl, failures = None, c.ttl, 0
        while True:
            try:
                if lease is None:
                    lease, ttl = await self.sb.register(
                        c.chassis, c.tunnel_ip, c.bridge_mappings, c.gateway, c.ttl,
                        availability_zone=c.availability_zone)
                    LOG.info("registered chassis %s (tunnel %s, lease %d, ttl %.0fs)",
                             c.chassis, c.tunnel_ip, lease, ttl)
                    self.lease = lease
                    self._learn_dns_domain(getattr(self.sb, "dns_domain", None))
                else:
                    await self.sb.heartbeat(c.chassis, lease)
                    self._learn_dns_domain(getattr(self.sb, "dns_domain", None))
                failures = 0
                await asyncio.sleep(ttl / 3)
            except LeaseLost:
                LOG.warning("liveness lease %s expired: registering again", lease)
                lease = None
            except (Unavailable, Refused) as exc:
                if not failures:
                    LOG.warning("registration/heartbeat: %s; retrying", exc)
                await asyncio.sleep(self.config.timing.after(failures))
                failures += 1

    def _learn_dns_domain(self, domain: str | None) -> None:
        """Take the cloud's DNS domain the server said at registration or in a heartbeat
        (what DHCP names the ports in): the next view carries it; no flow depends on it."""
        if domain is not None and domain != self.dns_domain:
            LOG.info("DNS domain of the cloud: %r", domain)
            self.dns_domain = domain
            self._dirty.set()

    def metadata_requester(self, address: str):
        """The local port (and its instance and project) whose link-local metadata address
        is ``address``, or None: O(1), from the last reconciled view's ofports."""
        ofport = ofport_of(address)
        pid = self._ofports.get(ofport) if ofport is not None else None
        port = self.model.catalog.objects[keys.PORTS].get(pid) if pid else None
        if port is None or port.chassis != self.config.chassis:
            return None
        v4 = [ip for _, ip in port.ips if ":" not in ip]
        return Requester(port_id=port.id, instance_id=port.device_id,
                         project_id=port.project_id, address=v4[0] if v4 else "")

    async def unregister(self) -> None:
        """End this chassis' liveness at once (a clean stop)."""
        if self.lease is not None:
            await self.sb.unregister(self.config.chassis, self.lease)

    # --- OVS ---------------------------------------------------------------------------
    def _on_bridge(self, state: BridgeState) -> None:
        if state.vifs != self.bridge.vifs:        # the start of a port-up, in the log
            before, after = set(self.bridge.vifs), set(state.vifs)
            LOG.info("OVSDB: VIFs +%d -%d", len(after - before), len(before - after))
        self.bridge = state
        self._changed()

    async def _openflow(self) -> None:
        failures = 0
        while True:
            try:
                await self.switch.connect(self._on_packet_in)
                await self._read_switch()
                LOG.info("OpenFlow channel up: %d flows installed", len(self.installed))
                failures = 0
                self._last_view = None
                self._dirty.set()
                await self.switch.disconnected()
                LOG.warning("OpenFlow channel down")
            except (OSError, OpenFlowError, asyncio.TimeoutError) as exc:
                if not failures:
                    LOG.warning("OpenFlow channel to br-int: %s; retrying", exc)
                failures += 1
            self.installed = None
            await asyncio.sleep(self.config.timing.after(failures, cap=3))

    async def _read_switch(self) -> None:
        """Read what br-int holds (flows and meters): the next reconcile diffs it all."""
        self.installed = await self.switch.installed()
        self.meters = await self.switch.meters()
        self._full_diff = True

    # --- reconcile ---------------------------------------------------------------------
    async def _reconcile_loop(self) -> None:
        failures = 0
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            self._reconciling = True
            try:
                await self.reconcile()
                failures = 0
            except OpenFlowError as exc:
                LOG.error("applying flows failed: %s; re-reading the switch", exc)
                self.metrics.bundle_failures.inc()
                failures += 1
                self._last_view = None
                try:
                    await self._read_switch()
                except (OSError, OpenFlowError, asyncio.TimeoutError):
                    self.installed = None
                await asyncio.sleep(self.config.timing.after(failures))
                self._dirty.set()
            finally:
                self._reconciling = False

    def _applied(self, revision: int) -> None:
        """The flows now hold the view of the model at ``revision`` (and, if nothing
        relevant came meanwhile, everything the watch has read)."""
        reached = revision if self._dirty.is_set() else self.seen_revision
        self.applied_revision = max(self.applied_revision, reached)

    def ready(self) -> bool:
        """Whether the model and OVSDB are both known (nothing is decided before)."""
        return self.model.loaded and self.bridge.synced

    async def reconcile(self) -> bool:
        """Bring tunnels and flows to what the model asks; True if flows changed."""
        if not self.ready():
            return False
        c = self.config
        problems: list = []
        started = time.perf_counter()
        revision = self.seen_revision
        vifs = self.bridge.vifs
        catalog = self.model.catalog
        alive = self.liveness.alive(catalog, self.bridge.bfd_states())
        plugged = relevant.vif_ofports(vifs)
        view = views.build(catalog, c.chassis, c.tunnel_ip,
                           vif_ofports=relevant.with_subports(catalog, c.chassis, plugged),
                           tunnel_ofports=self.bridge.tunnel_ofports(), alive=alive,
                           bridge_mappings=c.bridge_mappings,
                           patch_ofports=self.bridge.patch_ofports(),
                           external_macs=self.resolver.macs, problems=problems,
                           metadata_ofport=c.metadata_ofport, dns_domain=self.dns_domain)
        if self.liveness.isolated(self.bridge.bfd_states()):
            view = replace(view, active_gateway={r: a for r, a in view.active_gateway.items()
                                                 if a != c.chassis})
            self._once(("isolated",), logging.WARNING,
                       "every BFD session is down: cut off, not acting as a gateway")
        else:
            self._said.discard(("isolated",))
        self.view = view
        self._ofports = {ofport: pid for pid, ofport in plugged.items()
                         if pid in view.vif_ofports}         # a VIF's own port, no subport
        self._explain(view, problems)
        if self.lbhealth.update(lbhealth.targets(view)):
            self._health_wake.set()
            self._health_report.set()
        if c.bridge_mappings != self._patches:
            self._patches = dict(c.bridge_mappings)
            self.switch.set_patches(self._patches)
        if self.resolver.want(l3.external_nexthops(view), c.bridge_mappings):
            self._resolve_now.set()
        peers = {**relevant.tunnel_peers(view), **l3.tunnel_peers(view),
                 **gateway_peers(catalog, c.chassis)}
        peers = dict(sorted((k, v) for k, v in peers.items() if k != c.chassis))
        bfd = bfd_peers(catalog, peers, c.gateway)
        if peers != self._tunnels or bfd != self._bfd:
            self._tunnels, self._bfd = peers, bfd
            self.switch.set_tunnels(c.tunnel_ip, peers, bfd)
        if self.installed is None:
            return False
        self._warm_tunnels(view.tunnel_ofports)
        self._announce_again_when_back(alive, view)
        if view == self._last_view and not self._full_diff:
            await self._flush_gone(vifs)    # installed flows are what this view compiles to
            self._status_dirty.set()
            self._applied(revision)
            return False
        began = time.perf_counter()
        view_ms = (began - started) * 1000
        try:
            delta = self.compiler.compile(view)
        except Exception:  # noqa: BLE001 - a compiler bug must not take the flows down
            LOG.exception("compiling the view failed; keeping the installed flows")
            return False
        compiled = time.perf_counter()
        self.counters.stages_recompiled += len(delta.recompiled)
        self.counters.stages_reused += delta.reused
        touched = self._lowered.update(delta.removed, delta.added)
        self.cookies.update((cookie_of(f.cookie), f.cookie) for f in delta.added)
        if len(self.cookies) > 2 * len(self._lowered.entries) + 1024:    # churn: forget
            self.cookies = {cookie_of(f.cookie): f.cookie                # the gone ones
                            for _, f in self._lowered.entries.values()}
        desired = self._lowered.entries
        if self._full_diff:
            change = diff(desired, self.installed)
        else:
            change = diff({k: desired[k] for k in touched if k in desired},
                          {k: self.installed[k] for k in touched if k in self.installed})
        self.counters.reconciles += 1
        lowered = time.perf_counter()
        meters_before, meters_after = meter_changes(
            self._lowered.meters, self.meters,
            set(self._lowered.meters) | set(self.meters) if self._full_diff
            else self._lowered.meters_touched)
        if meters_before:       # the meters exist before a flow names them
            await self.switch.apply_meters(meters_before)
        if change:
            await self.switch.apply(change.messages())
            self.counters.bundles += 1
            self.counters.flow_mods += len(change)
        if meters_after:        # and go once no flow names them
            await self.switch.apply_meters(meters_after)
        if meters_before or meters_after:
            self.meters = dict(self._lowered.meters)
        applied = time.perf_counter()
        if self._full_diff or len(delta.added) >= BULK_FLOWS:
            # the compiled pipeline lives long too (the compiler's units, the lowered
            # entries, the installed table): out of the cyclic collector's full passes
            # with the snapshot (one walking them took ~80 ms in the middle of an event)
            gc.freeze()
        if self._full_diff:
            self.installed = {k: e for k, (e, _) in desired.items()}
            self._full_diff = False
        else:
            for k in touched:
                if k in desired:
                    self.installed[k] = desired[k][0]
                else:
                    self.installed.pop(k, None)
        self._last_view = view
        self.counters.flows = len(self.installed)
        self.counters.last_apply_ms = (time.perf_counter() - began) * 1000
        if change:
            n = self.counters
            n.last_view_ms, n.last_compile_ms = view_ms, (compiled - began) * 1000
            n.last_lower_ms = (lowered - compiled) * 1000
            n.last_bundle_ms = (applied - lowered) * 1000
            LOG.info("flows %s (%d installed) in %.1f ms (view %.1f, compile %.1f, "
                     "lower and diff %.1f, bundle %.1f)", change.summary(),
                     len(self.installed), n.last_apply_ms, n.last_view_ms,
                     n.last_compile_ms, n.last_lower_ms, n.last_bundle_ms)
        await self._flush_gone(vifs)
        await self._flush_router_zones(l3.zones(view))
        self._announce(l3.announcements(view))
        self._want_loopback(l3.loopback_macs(view))
        self._advertise(view, only_changed=True)
        self._snat_dirty.set()
        self._status_dirty.set()
        self.compiled.set()
        self._applied(revision)
        self.metrics.reconcile.observe(time.perf_counter() - started)
        return bool(change)

    def _warm_tunnels(self, tunnels) -> None:
        """One frame through each tunnel port that appeared (or got a new ofport) since
        the last reconcile (``switch.warm_tunnel``): the userspace datapath resolves the
        far endpoint's MAC when a tunnel is created for a network bound here, before the
        VIFs are plugged, instead of dropping the VMs' first packets while it does.
        Costs one comparison per tunnel of this chassis per reconcile."""
        for chassis in [c for c in self._warmed if c not in tunnels]:
            del self._warmed[chassis]
        for chassis, ofport in tunnels.items():
            if self._warmed.get(chassis) == ofport:
                continue
            try:
                self.switch.warm_tunnel(ofport)
            except (OSError, OpenFlowError, AttributeError) as exc:
                LOG.warning("tunnel to %s: warm-up frame not sent: %s", chassis, exc)
                continue
            self._warmed[chassis] = ofport
            LOG.info("tunnel to %s (ofport %d): warm-up frame sent", chassis, ofport)

    async def _tunnel_loop(self) -> None:
        """Every ``timing.tunnel_warm``, a warm-up frame through each tunnel again: the
        datapath's tunnel neighbour entry of an idle tunnel ages out (``ovs-appctl
        tnl/neigh/aging``, 900 s by default; each use renews it), and the first packet
        after that would be dropped again. O(tunnels of this chassis) per period."""
        while True:
            await asyncio.sleep(self.config.timing.tunnel_warm)
            for chassis, ofport in list(self._warmed.items()):
                try:
                    self.switch.warm_tunnel(ofport)
                except (OSError, OpenFlowError, AttributeError) as exc:
                    LOG.warning("tunnel to %s: warm-up frame not sent: %s", chassis, exc)

    async def _flush_gone(self, vifs: tuple) -> None:
        """Flush the conntrack zones of VIFs gone since flows were last applied (no flow
        uses them now): a VIF that later gets the same ofport must not inherit them."""
        before, self._plugged = self._plugged, tuple(vifs)
        await self._flush_zones(relevant.gone_zones(before or (), vifs), "VIF")

    async def _flush_zones(self, zones, owner: str) -> None:
        """Flush conntrack zones no applied flow uses any more (their ``owner`` is gone)."""
        for zone in zones:
            try:
                await self.switch.flush_conntrack(zone)
            except OSError as exc:
                LOG.warning("flushing conntrack zone %d failed (its %s is gone): %s", zone,
                            owner, exc)
                continue
            self.counters.ct_flushes += 1
            LOG.info("conntrack zone %d flushed: its %s is gone", zone, owner)

    def _explain(self, view: View, problems: list) -> None:
        """Log, once each, what the agent leaves out and why."""
        for collection, ident, why in problems:
            self._once(("bad", collection, ident, why), logging.WARNING,
                       "ignoring %s/%s: %s", collection, ident, why)
        for vif, why in relevant.stray_vifs(self.model.catalog, self.config.chassis,
                                            self.bridge.vifs):
            self._once(("vif", vif.name, vif.iface_id, why), logging.WARNING,
                       "VIF %s (iface-id %s) %s: it gets no connectivity",
                       vif.name, vif.iface_id, why)
        for pid, (net, physnet) in relevant.unbridged_ports(
                self.model.catalog, self.config.chassis, self.config.bridge_mappings).items():
            self._once(("unbridged", pid, physnet), logging.WARNING,
                       "port %s on network %s (physical network %r): this chassis has no "
                       "bridge mapping for %r: not programmable here (status ERROR)",
                       pid, net, physnet, physnet)
        for host, ports in relevant.unregistered_hosts(view).items():
            self._once(("host", host, tuple(ports)), logging.WARNING,
                       "port(s) %s bound to chassis %r, which is not registered: "
                       "not reachable from here", ", ".join(ports), host)

    # --- packet-in ---------------------------------------------------------------------
    def _on_packet_in(self, pin: PacketIn) -> None:
        kind = icmp.kind_of(pin.userdata, pin.reason)
        if kind is not None:
            self._icmp_error(kind, pin)
            return
        if pin.userdata == LB_PROBE:
            for ofport, frame in self.lbhealth.reply(pin.data):
                self.switch.packet_out(ofport, frame)
            if self.lbhealth.to_report():
                self._health_report.set()
            return
        if pin.userdata == VIP_ARP:
            view = self.view
            port = view.ports.get(self._ofports.get(pin.in_port, "")) if view else None
            self.vips.seen(port, pin.data, self.model.catalog)
            return
        if pin.userdata == "arp":
            if self.resolver.learn(pin.data):
                LOG.info("external next hops resolved: %s", self.resolver.macs)
                self._dirty.set()
            return
        if pin.userdata == ND_GATEWAY:
            reply = l3.gateway_advert(self.view, pin.data) if self.view else None
            if reply is not None:
                self.switch.packet_out(pin.in_port, reply)
            return
        if pin.userdata in ("dhcp6", "rs", ND_ROUTER):
            self._ipv6_service(pin)
            return
        if pin.userdata != "dhcp":
            self._once(("userdata", pin.userdata), logging.WARNING,
                       "packet-in with unknown userdata %r from table %d (cookie %s)",
                       pin.userdata, pin.table_id, self.cookies.get(pin.cookie, pin.cookie))
            return
        view = self.view
        port = view.ports.get(self._ofports.get(pin.in_port, "")) if view else None
        if port is not None and port.trunk:
            port = self._subport_of(view, port, pin.fields)
        if port is None:
            LOG.info("DHCP from ofport %d, which is no local port: dropped", pin.in_port)
            return
        reply = self.dhcp(pin.data, port, view)
        if reply is None:
            LOG.info("DHCP from port %s not answered (not a request for it)", port.id)
            return
        if port.parent:                 # back in the subport's VLAN on its parent's VIF
            reply = reply[:12] + struct.pack("!HH", 0x8100, port.vlan) + reply[12:]
        self.switch.packet_out(pin.in_port, reply)
        self.counters.dhcp_replies += 1

    async def _lbhealth_loop(self) -> None:
        """Load balancer health probes (``agent.lbhealth``): wake when one falls due or
        the members probed here change; send what is due out of the members' VIFs.
        Nothing is probed (and no probe fails) while the OpenFlow channel is down."""
        prober = self.lbhealth
        while True:
            due = prober.next_due()
            wait = None if due is None else max(0.0, due - prober.clock())
            if self.installed is None:
                wait = 0.5 if wait is None else max(wait, 0.5)
            try:
                await asyncio.wait_for(self._health_wake.wait(), wait)
            except asyncio.TimeoutError:
                pass
            self._health_wake.clear()
            if self.installed is None:      # no answer can come: no probe can fail
                prober.drop_pending()
                continue
            for ofport, frame in prober.tick():
                try:
                    self.switch.packet_out(ofport, frame)
                    self.counters.lb_probes += 1
                except (OSError, OpenFlowError, AttributeError) as exc:
                    LOG.debug("health probe to ofport %d not sent: %s", ofport, exc)
            if prober.to_report():
                self._health_report.set()

    async def _lbreport_loop(self) -> None:
        """Report the member verdicts the model does not hold yet, one at a time (the
        verdict the server keeps comes back through the watch; a failed report is
        tried again after a back-off)."""
        failures = 0
        while True:
            await self._health_report.wait()
            self._health_report.clear()
            for member, verdict in self.lbhealth.to_report().items():
                self.lbhealth.inflight[member] = verdict
                try:
                    await self.sb.member_health(member, verdict, self.config.chassis)
                    self.counters.lb_reports += 1
                    LOG.info("load balancer member %s: %s (health check)", member, verdict)
                    failures = 0
                except (Unavailable, Refused) as exc:
                    self.lbhealth.inflight.pop(member, None)
                    if not failures:
                        LOG.warning("member %s health report failed: %s; retrying", member,
                                    exc)
                    failures += 1
                    await asyncio.sleep(self.config.timing.after(failures))
                    self._health_report.set()
                    break

    def _ipv6_service(self, pin: PacketIn) -> None:
        """Answer a DHCPv6 message (``agent.dhcp6``), a router solicitation or a
        neighbour solicitation for a router port's link-local address (``agent.ra``)
        from a local port, out of its VIF."""
        view = self.view
        port = view.ports.get(self._ofports.get(pin.in_port, "")) if view else None
        if port is None:
            LOG.info("%s from ofport %d, which is no local port: dropped", pin.userdata,
                     pin.in_port)
            return
        if pin.userdata == "dhcp6":
            replies = [r for r in (self.dhcp6(pin.data, port, view),) if r is not None]
            self.counters.dhcp6_replies += len(replies)
        elif pin.userdata == ND_ROUTER:
            replies = [r for r in (ra.neighbor_answer(pin.data, port, view),) if r is not None]
        else:
            replies = ra.answer(pin.data, port, view)
            self.counters.router_advertisements += len(replies)
        for reply in replies:
            self.switch.packet_out(pin.in_port, reply)

    async def _ra_loop(self) -> None:
        """Unsolicited router advertisements out of every local VIF of the networks
        whose routers advertise, every ``timing.ra_interval`` (``agent.ra``); between
        rounds, a VIF whose advertisements changed gets them at the next reconcile
        (``_advertise``)."""
        while True:
            await asyncio.sleep(self.config.timing.ra_interval)
            if self.view is not None and self.installed is not None:
                self._advertise(self.view, only_changed=False)

    def _advertise(self, view: View, only_changed: bool) -> None:
        """Send ``ra.unsolicited``'s advertisements (with ``only_changed``: to the VIFs
        whose advertisements differ from the last ones sent to them: plugged since, or a
        router interface, prefix, flag or MTU changed), and for a router port that no
        longer advertises to a VIF its last advertisement with lifetime 0. Cost: the
        local ports, and one frame per advertising router port of their networks."""
        current = ra.unsolicited(view)
        before, self._advertised = self._advertised, current
        sends = []
        plugged = set(view.vif_ofports.values())
        for ofport, frames in before.items():       # router ports that stopped: lifetime 0
            if ofport in plugged and current.get(ofport) != frames:
                still = {f[6:12] for f in current.get(ofport, ())}     # source MACs
                sends += [(ofport, w) for f in frames if f[6:12] not in still
                          and (w := ra.withdrawn(f)) is not None]
        for ofport, frames in current.items():
            if not only_changed or before.get(ofport) != frames:
                sends += [(ofport, f) for f in frames]
        for ofport, frame in sends:
            try:
                self.switch.packet_out(ofport, frame)
            except (OSError, OpenFlowError, AttributeError) as exc:
                LOG.debug("router advertisement to ofport %d not sent: %s", ofport, exc)
                return
            self.counters.router_advertisements += 1

    def _subport_of(self, view, parent, fields: dict):
        """The port a packet-in from a trunk parent's VIF came from: the parent, or the
        subport whose network and port keys classify put in the registers."""
        net, key = fields.get("metadata"), fields.get("reg6")
        network = view.networks.get(parent.network_id)
        if key is None or (key == parent.key and network is not None and network.key == net):
            return parent
        for sub in self.model.catalog.subports_by_parent.of(parent.id):
            port = view.ports.get(sub)
            network = view.networks.get(port.network_id) if port else None
            if port is not None and port.key == key and network is not None \
                    and network.key == net:
                return port
        return None

    def _icmp_error(self, kind: str, pin: PacketIn) -> None:
        """Answer a routed packet with an ICMP error (``agent.icmp``), within the rate."""
        limited = self.icmp.counts.limited
        error = self.icmp.handle(kind, pin.data, pin.fields, pin.in_port, self.view,
                                 self._ofports)
        if error is not None:
            self.switch.packet_out(error.port, error.frame)
            self.counters.icmp_errors += 1
        elif self.icmp.counts.limited > limited:
            self.counters.icmp_limited += 1
            now = time.monotonic()
            if now - self._icmp_said >= 10:
                self._icmp_said = now
                c = self.config
                LOG.warning("ICMP errors rate-limited (%g/s, burst %g; per sender %g/s, "
                            "burst %g): %d sent, %d suppressed so far", c.icmp_error_rate,
                            c.icmp_error_burst, c.icmp_source_rate, c.icmp_source_burst,
                            self.counters.icmp_errors, self.counters.icmp_limited)


def _event_id(event) -> str:
    if isinstance(event, dict):
        return f"{event.get('collection')}/{event.get('id')}@{event.get('revision')}"
    return repr(event)[:80]


def _dhcp_responder() -> Callable:
    from plexus.agent import dhcp
    return dhcp.Responder()
