"""The agent's routing duties beside the flows: flush a router's conntrack zone once it
is gone, announce with gratuitous ARPs what this chassis starts answering on an
external network (and have the mapped bridge send hairpin frames to it straight
back), lease SNAT port blocks on each router it SNATs for (more as they fill, idle ones
given back), give router conntrack zones their timeout policy, and ARP-probe its
routers' external next hops through the mapped bridges (replies come back as
packet-ins with userdata ``arp``). A mixin of ``Agent``: it reads the agent's view,
switch and southbound client (docs/routing.md)."""

from __future__ import annotations

import asyncio
import logging

from plexus.agent import l3
from plexus.agent.ovs import OpenFlowError
from plexus.agent.southbound import Refused, Unavailable
from plexus.agent.timing import wait_set
from plexus.lower.openflow import cookie_of
from plexus.pipeline.registry import table_of
from plexus.pipeline.stages.snat_guard import guard_cookie

LOG = logging.getLogger("plexus.agent")


class RoutingDuties:
    """Router zones, gratuitous ARPs, SNAT block leases, next-hop probes (mixed into
    ``Agent``)."""

    async def _flush_router_zones(self, zones: dict[str, int]) -> None:
        """Flush the conntrack zone of a router that went away (or moved to another
        zone) once the applied flows no longer use it: its NAT state must not reach a
        router that gets the zone later."""
        used = set(zones.values())
        gone = sorted(set(self._router_zones.values()) - used)
        self._router_zones = dict(zones)
        await self._flush_zones(gone, "router")
        await self._zone_timeouts(used)

    async def _zone_timeouts(self, used: set[int]) -> None:
        """Give the router zones in use the router timeout policy
        (``l3.ROUTER_ZONE_TIMEOUTS``) and drop those of zones gone: only the zones that
        changed since the last success (retried at the next reconcile on failure)."""
        add = used - self._timed_zones
        remove = self._timed_zones - used
        if not add and not remove:
            return
        try:
            await self.switch.set_zone_timeouts(
                {z: l3.ROUTER_ZONE_TIMEOUTS for z in add}, sorted(remove))
            self._timed_zones = set(used)
        except OSError as exc:
            self._once(("zone-tp", str(exc)), logging.WARNING,
                       "conntrack timeout policies of router zones not set: %s", exc)

    def _announce(self, announcements: list) -> None:
        """Gratuitous ARPs, out of br-int's patch ports, for what this chassis has just
        started answering on an external network (a floating IP associated or moved
        here, a gateway now active here): at the times of ``Timing.garp``."""
        current = {(a.ofport, a.ip, a.mac): a for a in announcements}
        new = [current[k] for k in sorted(set(current) - self._announced)]
        self._announced = set(current)
        for a in new:
            LOG.info("announcing %s at %s (gratuitous ARP out of ofport %d)", a.ip, a.mac,
                     a.ofport)
            asyncio.get_running_loop().create_task(self._garp(a))

    def _announce_again_when_back(self, alive: set[str], view) -> None:
        """When this chassis' own liveness reappears (it registered again after its lease
        ran out: an agent restart, a control-plane outage), other gateway candidates may
        have taken it for dead meanwhile, become active and announced the gateway
        addresses it holds; they step down on seeing it alive. Announce everything it
        answers for again, after them (even if its own view did not change)."""
        me = self.config.chassis in alive
        if me and not getattr(self, "_was_alive", True):
            self._announced = set()
            self._announce(l3.announcements(view))
        self._was_alive = me

    async def _garp(self, a) -> None:
        for delay in self.config.timing.garp:
            await asyncio.sleep(delay)
            if (a.ofport, a.ip, a.mac) not in self._announced:
                return
            try:
                self.switch.packet_out(a.ofport, a.frame)
                self.counters.garps += 1
            except (OSError, OpenFlowError, AttributeError) as exc:
                LOG.warning("gratuitous ARP for %s not sent: %s", a.ip, exc)

    def _want_loopback(self, wanted: dict[str, tuple[str, ...]]) -> None:
        """The hairpin loopback flows each mapped bridge should have (``l3.loopback_macs``);
        ``_loopback_loop`` installs what differs from what it installed last, and
        re-installs on a bridge whose channel was lost."""
        self._loopback_want = dict(wanted)
        self._loopback_dirty.set()

    async def _loopback_loop(self) -> None:
        failures = 0
        while True:
            await self._loopback_dirty.wait()
            self._loopback_dirty.clear()
            want = dict(self._loopback_want)
            try:
                for bridge in sorted(set(want) | set(self._loopback_done)):
                    macs = want.get(bridge, ())
                    if (self._loopback_done.get(bridge) == macs
                            and self.switch.external_alive(bridge)):
                        continue
                    await self.switch.set_loopback(bridge, list(macs), self._on_packet_in)
                    self._loopback_done[bridge] = macs
                    LOG.info("%s: hairpin loopback for %s", bridge,
                             ", ".join(macs) or "nothing")
                failures = 0
            except (OSError, OpenFlowError, asyncio.TimeoutError) as exc:
                self._once(("loopback", str(exc)), logging.WARNING,
                           "hairpin loopback flows: %s; retrying", exc)
                failures += 1
                await asyncio.sleep(self.config.timing.after(failures))
                self._loopback_dirty.set()

    def snat_wanted(self) -> list[str]:
        """Routers this chassis should hold a SNAT block of but holds none of (yet)."""
        view, me = self.view, self.config.chassis
        if view is None:
            return []
        return [rid for rid in l3.snat_routers(view)
                if not any(c == me for c, _, _ in view.snat_blocks.get(rid, ()))]

    async def _snat_loop(self) -> None:
        """Lease a first block at once for a router that needs one (``_snat_dirty``);
        every ``timing.snat_check`` seconds, measure what the SNAT connections use and
        what the guard dropped, lease more blocks where they fill up, and give back
        blocks idle for ``timing.snat_idle`` seconds."""
        failures = 0
        next_check = 0.0
        loop = asyncio.get_running_loop()
        while True:
            await wait_set(self._snat_dirty, max(0.05, next_check - loop.time()))
            self._snat_dirty.clear()
            wants = {rid: 1 for rid in self.snat_wanted()}
            release: list[tuple[str, int]] = []
            if loop.time() >= next_check:
                next_check = loop.time() + self.config.timing.snat_check
                try:
                    more, release = await self._snat_demand()
                    wants.update(more)
                except (OSError, OpenFlowError, AttributeError, asyncio.TimeoutError) as exc:
                    self._once(("snat-check", str(exc)), logging.WARNING,
                               "measuring SNAT port use: %s; retrying", exc)
            for rid, count in sorted(wants.items()):
                try:
                    blocks = await self.sb.lease_snat_blocks(rid, self.config.chassis, count)
                    self.counters.snat_leases += 1
                    LOG.info("router %s: SNAT blocks %s", rid, ", ".join(
                        f"{b['port_min']}-{b['port_max']}" for b in blocks))
                    failures = 0
                except Refused as exc:
                    # no free block or past the maximum: the guard drops (and counts)
                    # what does not fit; the next check asks again
                    self._once(("snat", rid, count, str(exc)), logging.WARNING,
                               "router %s: %d SNAT blocks refused: %s", rid, count, exc)
                except (Unavailable, KeyError, TypeError) as exc:
                    self._once(("snat", rid, str(exc)), logging.WARNING,
                               "router %s: leasing a SNAT block failed: %s; retrying",
                               rid, exc)
                    failures += 1
                    await asyncio.sleep(self.config.timing.after(failures))
                    self._snat_dirty.set()
                    break
            for rid, first in release:
                try:
                    await self.sb.release_snat_block(rid, self.config.chassis, first)
                    self._snat_idle.pop((rid, first), None)
                    LOG.info("router %s: SNAT block %d given back (idle)", rid, first)
                except (Refused, Unavailable, KeyError, TypeError) as exc:
                    self._once(("snat-release", rid, first, str(exc)), logging.WARNING,
                               "router %s: giving back SNAT block %d failed: %s",
                               rid, first, exc)

    async def _snat_demand(self) -> tuple[dict[str, int], list[tuple[str, int]]]:
        """One bounded check of the routers this chassis SNATs for: the guard's drop
        counts (one flow-stats request of its table) and, every ``timing.snat_dump``
        seconds, one conntrack dump, split per router zone. Returns the routers to hold more blocks of (router → count) and
        the idle blocks to give back ((router, first port))."""
        view = self.view
        routers = [r for r in (l3.snat_state(view) if view is not None else []) if r.blocks]
        if not routers:
            self._snat_idle.clear()
            return {}, []
        packets = await self.switch.table_packets(table_of("snat_guard"))
        now = asyncio.get_running_loop().time()
        dumped = now >= self._snat_next_dump
        if dumped:
            dump = await self.switch.dump_conntrack()
            self._snat_use = l3.snat_use(dump, {r.zone: (r.ip, list(r.blocks))
                                                for r in routers})
            self._snat_next_dump = now + self.config.timing.snat_dump
        use = self._snat_use
        grow, release, seen = {}, [], set()
        for r in routers:
            size = r.blocks[0][1] - r.blocks[0][0] + 1
            count = packets.get(cookie_of(guard_cookie(r.id)), 0)
            dropped = max(0, count - self._snat_drops.get(r.id, count))
            self._snat_drops[r.id] = count
            self.counters.snat_dropped += dropped
            u = use.get(r.zone, l3.SnatUse())
            maximum = getattr(self.sb, "snat_max_blocks", None) or len(r.blocks) + 1
            want = l3.snat_wanted_count(len(r.blocks), size, u, dropped, maximum)
            if want > len(r.blocks):
                grow[r.id] = want
                LOG.info("router %s: %d connections to one destination, %d dropped: "
                         "asking for %d SNAT blocks (holding %d)", r.id, u.peak, dropped,
                         want, len(r.blocks))
                continue
            if not dumped:
                continue
            firsts = [lo for lo, _ in r.blocks]
            for first in firsts:
                seen.add((r.id, first))
                if first in u.busy:
                    self._snat_idle.pop((r.id, first), None)
                else:
                    self._snat_idle.setdefault((r.id, first), now)
            idle = [b for b in firsts if now - self._snat_idle.get((r.id, b), now)
                    >= self.config.timing.snat_idle]
            for first in l3.snat_idle(firsts, size, l3.SnatUse(u.peak, frozenset(
                    b for b in firsts if b not in idle)))[:1]:
                release.append((r.id, first))
        for key in set(self._snat_idle) - seen if dumped else ():
            del self._snat_idle[key]
        for rid in set(self._snat_drops) - {r.id for r in routers}:
            del self._snat_drops[rid]
        return grow, release

    async def _resolve_loop(self) -> None:
        """Probe the external next hops: at once when the set changes, unresolved ones
        every second, resolved ones every ``external.REFRESH`` seconds."""
        while True:
            await wait_set(self._resolve_now, self.config.timing.resolve)
            self._resolve_now.clear()
            probes = self.resolver.due()
            if not probes:
                continue
            try:
                for bridge in sorted({p.bridge for p in probes}):
                    await self.switch.punt_arp_replies(bridge, self.resolver.mac,
                                                       self._on_packet_in)
                for probe in probes:
                    self.switch.packet_out_external(probe.bridge, probe.frame)
                    self.counters.arp_probes += 1
            except (OSError, OpenFlowError, asyncio.TimeoutError) as exc:
                self._once(("resolve", str(exc)), logging.WARNING,
                           "probing external next hops: %s; retrying", exc)

