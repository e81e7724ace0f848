"""The agent's status duty: report ports bound here ACTIVE once their VIF is plugged and
the flows compiled with it are applied, DOWN as soon as it is not (several reports in
flight), and routers and floating IPs ACTIVE (``l3.statuses``) at the revision
programmed, each once per change. A mixin of ``Agent``: it reads the agent's model,
bridge, view and southbound client."""

from __future__ import annotations

import asyncio
import logging

from plexus.agent import l3, relevant
from plexus.agent.southbound import Refused, Unavailable

LOG = logging.getLogger("plexus.agent")


class StatusReports:
    """Port, router and floating IP status reports (mixed into ``Agent``)."""

    async def _status_loop(self) -> None:
        while True:
            await self._status_dirty.wait()
            self._status_dirty.clear()
            if not self.ready():
                continue
            # ACTIVE only for VIFs the applied flows were compiled with (``_plugged`` is
            # set once they are in); a VIF that went away is DOWN at once
            applied = set(self._plugged or ())
            vifs = tuple(v for v in self.bridge.vifs if v in applied)
            wants = relevant.port_statuses(self.model.catalog, self.config.chassis, vifs,
                                           self.config.bridge_mappings)
            for pid in list(self._reported):
                if self._reported[pid] != wants.get(pid):
                    del self._reported[pid]          # the model caught up (or moved on)
            todo = [(pid, status) for pid, status in wants.items()
                    if self._reported.get(pid) != status]
            gate = asyncio.Semaphore(self.config.timing.status_concurrency)
            reached = await asyncio.gather(*(self._report_port(gate, pid, status)
                                             for pid, status in todo))
            if not all(reached):
                await asyncio.sleep(self.config.timing.retry)
                self._status_dirty.set()
                continue
            await self._report_l3()

    async def _report_port(self, gate: asyncio.Semaphore, pid: str, status: str) -> bool:
        """Report one port's status; False when no server could be reached."""
        async with gate:
            try:
                await self.sb.port_status(pid, status, self.config.chassis)
                LOG.info("port %s %s", pid, status)
            except Refused as exc:
                self._once(("status", pid, status, exc.status), logging.WARNING,
                           "server refused status %s for port %s: %s", status, pid, exc)
            except Unavailable:
                return False
            self._reported[pid] = status
            return True

    async def _report_l3(self) -> None:
        """Report routers and floating IPs this chassis programs, once per change."""
        if self.view is None:
            return
        for collection, found in l3.statuses(self.view).items():
            for ident, status in sorted(found.items()):
                obj = self.model.catalog.get(collection, ident)
                revision = getattr(obj, "revision", None)
                key = (collection, ident)
                if self._l3_reported.get(key) == (status, revision):
                    continue
                try:
                    await self.sb.l3_status(collection, ident, status, self.config.chassis,
                                            revision)
                    LOG.info("%s %s %s (revision %s)", collection[:-1], ident, status,
                             revision)
                except Refused as exc:
                    self._once(("l3status", key, status, exc.status), logging.WARNING,
                               "server refused status %s for %s %s: %s", status,
                               collection, ident, exc)
                except Unavailable:
                    await asyncio.sleep(self.config.timing.retry)
                    self._status_dirty.set()
                    return
                self._l3_reported[key] = (status, revision)

