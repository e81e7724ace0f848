"""The agent's status duty: report ports bound here ACTIVE once their VIF is plugged and
the flows compiled with it are applied, DOWN as soon as it is not (the ports of one
round in one request), and routers and floating IPs ACTIVE (``l3.statuses``) at the revision
programmed, each once per change. A mixin of ``Agent``: it reads the agent's model,
bridge, view and southbound client."""

from __future__ import annotations

import asyncio
import logging

from plexus.agent import l3, relevant
from plexus.agent.southbound import Refused, Unavailable

LOG = logging.getLogger("plexus.agent")
STATUS_BATCH = 500          # ports one status request carries (the server takes 1,000)


class StatusReports:
    """Port, router and floating IP status reports (mixed into ``Agent``)."""

    _batch_status = True        # the server takes several ports' reports in one request

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
            if todo and not await self._report_ports(todo):
                await asyncio.sleep(self.config.timing.retry)
                self._status_dirty.set()
                continue
            await self._report_l3()

    async def _report_ports(self, todo: list[tuple[str, str]]) -> bool:
        """Report ports' statuses: ``STATUS_BATCH`` at a time in one request each (the
        ports one reconcile made ACTIVE: one request and one store transaction, not one
        each), or one request per port (``status_concurrency`` in flight) to a server
        without the batch report; False when no server could be reached."""
        if self._batch_status and hasattr(self.sb, "port_statuses"):
            for at in range(0, len(todo), STATUS_BATCH):
                chunk = todo[at:at + STATUS_BATCH]
                try:
                    results = await self.sb.port_statuses(chunk, self.config.chassis)
                except Refused as exc:         # the rest one by one
                    if exc.status in (404, 405):
                        LOG.info("the server has no batch status report (%s): one "
                                 "request per port", exc.status)
                        self._batch_status = False
                    else:
                        self._once(("status batch", exc.status), logging.WARNING,
                                   "server refused a batch status report: %s; reporting "
                                   "one port per request", exc)
                    break
                except Unavailable:
                    return False
                for pid, status in chunk:
                    error = results.get(pid, (0, "not in the server's answer"))
                    if error is None:
                        LOG.info("port %s %s", pid, status)
                        self._reported[pid] = status
                    else:
                        self._refused(pid, status, Refused(*error))
            else:
                return True
            todo = [(pid, status) for pid, status in todo if self._reported.get(pid) != status]
        gate = asyncio.Semaphore(self.config.timing.status_concurrency)
        reached = await asyncio.gather(*(self._report_port(gate, pid, status)
                                         for pid, status in todo))
        return all(reached)

    def _refused(self, pid: str, status: str, exc: Refused) -> None:
        """A report the server refused (the port is gone or bound elsewhere): said once,
        not retried until the model changes."""
        self._once(("status", pid, status, exc.status), logging.WARNING,
                   "server refused status %s for port %s: %s", status, pid, exc)
        self._reported[pid] = status

    async def _report_port(self, gate: asyncio.Semaphore, pid: str, status: str) -> bool:
        """Report one port's status; False when no server could be reached."""
        async with gate:
            try:
                await self.sb.port_status(pid, status, self.config.chassis)
                LOG.info("port %s %s", pid, status)
            except Refused as exc:
                self._refused(pid, status, exc)
                return True
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

