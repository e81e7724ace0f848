"""Learning who holds a shared VIP: ``port_security`` copies to the agent every ARP a
local port sends from a VIP that several ports of its network list (``vip:arp``: a
keepalived MASTER's gratuitous ARP, or any ARP it sends from the VIP); the agent reports
the port as the VIP's owner to the server (``PUT /southbound/v1/ports/<id>/vip-owner``),
which stores it as a model object every chassis routing to the network receives.

Debounced, so a GARP storm costs no writes: nothing is sent when the stored owner is
already this port, or while a report of the same (port, VIP) is in flight or was made
less than ``interval`` seconds ago. The server compares too (an unchanged owner is not
written)."""

from __future__ import annotations

import asyncio
import logging
import time

from plexus.model import keys

LOG = logging.getLogger(__name__)


def arp_sender(frame: bytes) -> str | None:
    """The sender protocol address of an ARP frame (None if it is not one)."""
    from os_ken.lib.packet import arp, packet
    try:
        found = packet.Packet(frame).get_protocol(arp.arp)
    except Exception:  # noqa: BLE001 - a malformed frame teaches nothing
        return None
    return None if found is None else found.src_ip


class VipAnnouncements:
    """Turns the VIP ARPs of local ports into owner reports (one per change)."""

    def __init__(self, southbound, chassis: str, interval: float = 2.0):
        self.sb, self.chassis, self.interval = southbound, chassis, interval
        self.recent: dict[tuple[str, str], float] = {}    # (port, VIP) → when reported
        self.in_flight: set[tuple[str, str]] = set()
        self.reports = 0
        self.tasks: set[asyncio.Task] = set()

    def seen(self, port, frame: bytes, catalog) -> bool:
        """An ARP the port sent (``frame``); True if a report was started."""
        ip = arp_sender(frame)
        if ip is None or port is None:
            return False
        owner = catalog.get(keys.VIP_OWNERS, f"{port.network_id}:{ip}")
        if owner is not None and owner.port_id == port.id:
            return False
        key = (port.id, ip)
        now = time.monotonic()
        if key in self.in_flight or now - self.recent.get(key, -1e9) < self.interval:
            return False
        if len(self.recent) > 4096:                     # forget old reports
            self.recent = {k: t for k, t in self.recent.items()
                           if now - t < self.interval}
        self.in_flight.add(key)
        self.recent[key] = now
        task = asyncio.get_running_loop().create_task(self._report(port.id, ip))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return True

    async def _report(self, port_id: str, ip: str) -> None:
        try:
            if await self.sb.vip_owner(port_id, ip, self.chassis):
                LOG.info("port %s announced VIP %s: now its owner", port_id, ip)
            self.reports += 1
        except Exception as exc:  # noqa: BLE001 - refused or unreachable: the next ARP retries
            LOG.warning("reporting port %s as the owner of VIP %s failed: %s",
                        port_id, ip, exc)
            self.recent.pop((port_id, ip), None)
        finally:
            self.in_flight.discard((port_id, ip))
