"""Every delay the agent waits, in one typed value (``AgentConfig.timing``), so an
operator can tune them and tests can make them short instead of sleeping."""

from __future__ import annotations

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

    def after(self, failures: int, cap: int | None = None) -> float:
        """The back-off after ``failures`` failures in a row (the last step repeats;
        ``cap``: never past that step)."""
        last = len(self.backoff) - 1 if cap is None else min(cap, len(self.backoff) - 1)
        return self.backoff[min(max(failures, 0), last)]
