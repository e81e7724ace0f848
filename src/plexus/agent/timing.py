"""Every delay the agent waits, in one typed value (``AgentConfig.timing``), so an
operator can tune them and tests can make them short instead of sleeping."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    """Seconds the agent waits between attempts and repetitions."""

    backoff: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)   # after failures, in turn
    garp: tuple[float, ...] = (0.0, 0.2, 0.3, 0.5, 1.0, 2.0)      # before each gratuitous ARP
    retry: float = 1.0              # before reporting statuses again when no server answered
    resolve: float = 1.0            # between probes of unresolved external next hops
    status_concurrency: int = 8     # port status reports in flight at once
    snat_check: float = 1.0         # between checks of the SNAT guard's drops (more blocks)
    snat_dump: float = 5.0          # between conntrack dumps (SNAT port use, idle blocks)
    snat_idle: float = 60.0         # a SNAT block unused this long is given back
    ra_interval: float = 30.0       # between unsolicited router advertisements (Neutron's
                                    # min_rtr_adv_interval; solicitations answered at once)
    tunnel_warm: float = 300.0      # between warm-up frames through each tunnel (below
                                    # OVS's tunnel neighbour aging, tnl/neigh/aging, 900 s)

    def after(self, failures: int, cap: int | None = None) -> float:
        """The back-off after ``failures`` failures in a row (the last step repeats;
        ``cap``: never past that step)."""
        last = len(self.backoff) - 1 if cap is None else min(cap, len(self.backoff) - 1)
        return self.backoff[min(max(failures, 0), last)]


async def wait_set(event: asyncio.Event, timeout: float) -> bool:
    """Wait until ``event`` is set or ``timeout`` seconds pass; whether it was set.
    ``asyncio.timeout`` rather than ``asyncio.wait_for(event.wait(), ...)``: on Python
    3.11 the latter can swallow a cancellation that arrives as the event is set, and a
    loop around it then never ends (the agent's stop hung on its SNAT loop)."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
        return True
    except TimeoutError:
        return False
