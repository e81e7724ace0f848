"""The agent's routing duties beside the flows: flush a router's conntrack zone once it
is gone, announce with gratuitous ARPs what this chassis starts answering on an
external network (and have the mapped bridge send hairpin frames to it straight
back), lease a SNAT port block on each router it SNATs for, and ARP-probe its
routers' external next hops through the mapped bridges (replies come back as
packet-ins with userdata ``arp``). A mixin of ``Agent``: it reads the agent's view,
switch and southbound client (docs/routing.md)."""

from __future__ import annotations

import asyncio
import logging

from plexus.agent import l3
from plexus.agent.ovs import OpenFlowError
from plexus.agent.southbound import Refused, Unavailable

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
        failures = 0
        while True:
            await self._snat_dirty.wait()
            self._snat_dirty.clear()
            for rid in self.snat_wanted():
                try:
                    blocks = await self.sb.lease_snat_blocks(rid, self.config.chassis, 1)
                    self.counters.snat_leases += 1
                    LOG.info("router %s: SNAT blocks %s", rid, ", ".join(
                        f"{b['port_min']}-{b['port_max']}" for b in blocks))
                    failures = 0
                except (Refused, Unavailable, KeyError, TypeError) as exc:
                    self._once(("snat", rid, str(exc)), logging.WARNING,
                               "router %s: leasing a SNAT block failed: %s; retrying",
                               rid, exc)
                    failures += 1
                    await asyncio.sleep(self.config.timing.after(failures))
                    self._snat_dirty.set()
                    break

    async def _resolve_loop(self) -> None:
        """Probe the external next hops: at once when the set changes, unresolved ones
        every second, resolved ones every ``external.REFRESH`` seconds."""
        while True:
            try:
                await asyncio.wait_for(self._resolve_now.wait(), self.config.timing.resolve)
            except asyncio.TimeoutError:
                pass
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

