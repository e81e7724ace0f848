"""The agent loop of one chassis. Five small tasks share one event loop:

- sync: snapshot, then long-poll the watch from the snapshot's revision + 1, applying
  events to the model; a 410 takes a new snapshot; an unreachable server is retried
  with back-off (the next URL first), resuming from the revision reached;
- liveness: register the chassis under a lease, heartbeat at a third of its TTL,
  register again when the lease was lost;
- openflow: keep the channel to br-int up; on each (re)connect read what is installed;
- reconcile: whenever the model, OVSDB or the channel changed, build the relevant view,
  ask OVSDB for the tunnels it needs, compile, and apply the difference between desired
  and installed flows as one atomic bundle — nothing before a snapshot, OVSDB's first
  full state and the installed flows are all known, so a restart changes nothing that
  is already right and traffic never stops; once no flow uses the conntrack zone of a
  VIF that went away (a zone is its ofport), the zone is flushed, so a VIF that later
  gets the same ofport starts clean;
- status: report ports bound here ACTIVE when their VIF is plugged, DOWN when not.

DHCP packet-ins are answered from the latest view. Everything the agent did not expect
(malformed events and objects, stray VIFs, ports on unknown chassis) is logged once."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from plexus.agent import relevant
from plexus.agent.flowdiff import Entry, Key, Lowered, diff
from plexus.agent.model import BadEvent, Model
from plexus.agent.ovs import BridgeState, OpenFlowError, PacketIn
from plexus.agent.southbound import Compacted, LeaseLost, Refused, Unavailable
from plexus.lower.openflow import cookie_of
from plexus.pipeline.compile import compile_view
from plexus.pipeline.view import View

LOG = logging.getLogger("plexus.agent")
BACKOFF = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


@dataclass
class AgentConfig:
    """Who this chassis is."""

    chassis: str
    tunnel_ip: str
    bridge_mappings: dict[str, str] = field(default_factory=dict)
    gateway: bool = False
    ttl: float = 10.0


@dataclass
class Counters:
    """What the agent has done (logged, and read by tests and benchmarks)."""

    reconciles: int = 0
    bundles: int = 0
    flow_mods: int = 0
    flows: int = 0
    last_apply_ms: float = 0.0
    dhcp_replies: int = 0
    ct_flushes: int = 0


class Agent:
    """One chassis' agent; ``southbound`` and ``switch`` are its two boundaries."""

    def __init__(self, config: AgentConfig, southbound, switch,
                 dhcp: Callable | None = None):
        self.config = config
        self.sb = southbound
        self.switch = switch
        self.dhcp = dhcp if dhcp is not None else _dhcp_responder()
        self.model = Model()
        self.bridge = BridgeState()
        self.installed: dict[Key, Entry] | None = None     # None: not known (no channel)
        self.view: View | None = None
        self.cookies: dict[int, str] = {}        # cookie → object of the installed flows
        self._lowered = Lowered()
        self.counters = Counters()
        self.compiled = asyncio.Event()     # the first reconcile applied (or found) flows
        self._dirty = asyncio.Event()
        self._status_dirty = asyncio.Event()
        self._stop = asyncio.Event()
        self._said: set = set()
        self._reported: dict[str, str] = {}
        self._tunnels: dict[str, str] | None = None
        self._last_view: View | None = None
        self._ofports: dict[int, str] = {}
        self._plugged: tuple | None = None    # the VIFs when flows were last applied
        self.lease: int | None = None

    # --- life cycle --------------------------------------------------------------------
    async def run(self) -> None:
        """Run until ``stop()``; the data plane is left as it is on the way out."""
        self.switch.start(self._on_bridge)
        tasks = [asyncio.create_task(coro, name=name) for name, coro in (
            ("sync", self._sync()), ("liveness", self._liveness()),
            ("openflow", self._openflow()), ("reconcile", self._reconcile_loop()),
            ("status", self._status_loop()))]
        try:
            await self._stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.switch.stop()

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
                    LOG.info("snapshot at revision %d: %s", revision, ", ".join(
                        f"{len(v)} {k}" for k, v in self.model.objects.items()))
                    start = revision + 1
                    self._changed()
                events, start = await self.sb.watch(start)
                changed = False
                for event in events:
                    try:
                        changed |= self.model.apply(event)
                    except BadEvent as exc:
                        LOG.warning("skipping southbound event %s: %s",
                                    _event_id(event), exc)
                if changed:
                    self._changed()
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
                await asyncio.sleep(BACKOFF[min(failures, len(BACKOFF) - 1)])
                failures += 1

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
                    lease, ttl = await self.sb.register(c.chassis, c.tunnel_ip,
                                                        c.bridge_mappings, c.gateway, c.ttl)
                    LOG.info("registered chassis %s (tunnel %s, lease %d, ttl %.0fs)",
                             c.chassis, c.tunnel_ip, lease, ttl)
                    self.lease = lease
                else:
                    await self.sb.heartbeat(c.chassis, lease)
                failures = 0
                await asyncio.sleep(ttl / 3)
            except LeaseLost:
                LOG.warning("liveness lease %s expired: registering again", lease)
                lease = None
            except (Unavailable, Refused) as exc:
                if not failures:
                    LOG.warning("registration/heartbeat: %s; retrying", exc)
                await asyncio.sleep(BACKOFF[min(failures, len(BACKOFF) - 1)])
                failures += 1

    async def unregister(self) -> None:
        """End this chassis' liveness at once (a clean stop)."""
        if self.lease is not None:
            await self.sb.unregister(self.config.chassis, self.lease)

    # --- OVS ---------------------------------------------------------------------------
    def _on_bridge(self, state: BridgeState) -> None:
        self.bridge = state
        self._changed()

    async def _openflow(self) -> None:
        failures = 0
        while True:
            try:
                await self.switch.connect(self._on_packet_in)
                self.installed = await self.switch.installed()
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
            await asyncio.sleep(BACKOFF[min(failures, 3)])

    # --- reconcile ---------------------------------------------------------------------
    async def _reconcile_loop(self) -> None:
        failures = 0
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self.reconcile()
                failures = 0
            except OpenFlowError as exc:
                LOG.error("applying flows failed: %s; re-reading the switch", exc)
                failures += 1
                self._last_view = None
                try:
                    self.installed = await self.switch.installed()
                except (OSError, OpenFlowError, asyncio.TimeoutError):
                    self.installed = None
                await asyncio.sleep(BACKOFF[min(failures, len(BACKOFF) - 1)])
                self._dirty.set()

    def ready(self) -> bool:
        """Whether the model and OVSDB are both known (nothing is decided before)."""
        return self.model.loaded and self.bridge.synced

    async def reconcile(self) -> bool:
        """Bring tunnels and flows to what the model asks; True if flows changed."""
        if not self.ready():
            return False
        c = self.config
        problems: list = []
        vifs = self.bridge.vifs
        view = relevant.build_view(self.model.objects, c.chassis, c.tunnel_ip,
                                   relevant.vif_ofports(vifs),
                                   self.bridge.tunnel_ofports(), problems)
        self.view = view
        self._ofports = {ofport: pid for pid, ofport in view.vif_ofports.items()}
        self._explain(view, problems)
        peers = relevant.tunnel_peers(view)
        if peers != self._tunnels:
            self._tunnels = peers
            self.switch.set_tunnels(c.tunnel_ip, peers)
        if self.installed is None:
            return False
        if view == self._last_view:         # installed flows are what this view compiles to
            await self._flush_gone(vifs)
            return False
        began = time.perf_counter()
        try:
            flows = compile_view(view)
        except Exception:  # noqa: BLE001 - a compiler bug must not take the flows down
            LOG.exception("compiling the view failed; keeping the installed flows")
            return False
        desired = self._lowered.desired(flows)
        self.cookies = {cookie_of(f.cookie): f.cookie for f in flows}
        change = diff(desired, self.installed)
        self.counters.reconciles += 1
        if change:
            await self.switch.apply(change.messages())
            self.counters.bundles += 1
            self.counters.flow_mods += len(change)
        self.installed = {k: e for k, (e, _) in desired.items()}
        self._last_view = view
        self.counters.flows = len(self.installed)
        self.counters.last_apply_ms = (time.perf_counter() - began) * 1000
        if change:
            LOG.info("flows %s (%d installed) in %.1f ms", change.summary(),
                     len(self.installed), self.counters.last_apply_ms)
        await self._flush_gone(vifs)
        self.compiled.set()
        return bool(change)

    async def _flush_gone(self, vifs: tuple) -> None:
        """Flush the conntrack zones of VIFs gone since flows were last applied (no flow
        uses them now): a VIF that later gets the same ofport must not inherit them."""
        before, self._plugged = self._plugged, tuple(vifs)
        for zone in relevant.gone_zones(before or (), vifs):
            try:
                await self.switch.flush_conntrack(zone)
            except OSError as exc:
                LOG.warning("flushing conntrack zone %d failed: %s", zone, exc)
                continue
            self.counters.ct_flushes += 1
            LOG.info("conntrack zone %d flushed: its VIF is gone", zone)

    def _explain(self, view: View, problems: list) -> None:
        """Log, once each, what the agent leaves out and why."""
        for collection, ident, why in problems:
            self._once(("bad", collection, ident, why), logging.WARNING,
                       "ignoring %s/%s: %s", collection, ident, why)
        for vif, why in relevant.stray_vifs(self.model.objects, self.config.chassis,
                                            self.bridge.vifs):
            self._once(("vif", vif.name, vif.iface_id, why), logging.WARNING,
                       "VIF %s (iface-id %s) %s: it gets no connectivity",
                       vif.name, vif.iface_id, why)
        for host, ports in relevant.unregistered_hosts(view).items():
            self._once(("host", host, tuple(ports)), logging.WARNING,
                       "port(s) %s bound to chassis %r, which is not registered: "
                       "not reachable from here", ", ".join(ports), host)

    # --- port status -------------------------------------------------------------------
    async def _status_loop(self) -> None:
        while True:
            await self._status_dirty.wait()
            self._status_dirty.clear()
            if not self.ready():
                continue
            wants = relevant.port_statuses(self.model.objects, self.config.chassis,
                                           self.bridge.vifs)
            for pid in list(self._reported):
                if self._reported[pid] != wants.get(pid):
                    del self._reported[pid]          # the model caught up (or moved on)
            for pid, status in wants.items():
                if self._reported.get(pid) == status:
                    continue
                try:
                    await self.sb.port_status(pid, status, self.config.chassis)
                    LOG.info("port %s %s", pid, status)
                    self._reported[pid] = status
                except Refused as exc:
                    self._once(("status", pid, status, exc.status), logging.WARNING,
                               "server refused status %s for port %s: %s", status, pid, exc)
                    self._reported[pid] = status
                except Unavailable:
                    await asyncio.sleep(1.0)
                    self._status_dirty.set()
                    break

    # --- packet-in ---------------------------------------------------------------------
    def _on_packet_in(self, pin: PacketIn) -> None:
        if pin.userdata != "dhcp":
            self._once(("userdata", pin.userdata), logging.WARNING,
                       "packet-in with unknown userdata %r from table %d (cookie %s)",
                       pin.userdata, pin.table_id, self.cookies.get(pin.cookie, pin.cookie))
            return
        view = self.view
        port = view.ports.get(self._ofports.get(pin.in_port, "")) if view else None
        if port is None:
            LOG.info("DHCP from ofport %d, which is no local port: dropped", pin.in_port)
            return
        reply = self.dhcp(pin.data, port, view)
        if reply is None:
            LOG.info("DHCP from port %s not answered (not a request for it)", port.id)
            return
        self.switch.packet_out(pin.in_port, reply)
        self.counters.dhcp_replies += 1


def _event_id(event) -> str:
    if isinstance(event, dict):
        return f"{event.get('collection')}/{event.get('id')}@{event.get('revision')}"
    return repr(event)[:80]


def _dhcp_responder() -> Callable:
    from plexus.agent import dhcp
    return dhcp.respond
