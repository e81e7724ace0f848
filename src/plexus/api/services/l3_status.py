"""Router and floating IP ``status``: what the data plane really does, computed when
the API is read from three things in the store — the router's gateway schedule, which
chassis are alive (their leased liveness keys) and what chassis reported having
programmed.

- A router without a gateway is ACTIVE: it is routed on every chassis as part of its
  ports' pipelines, with nothing central to program.
- A router with a gateway is DOWN when none of its scheduled gateway chassis is alive;
  otherwise it shows what its active gateway (the first alive one) reported for the
  router's current revision — ACTIVE, DOWN or ERROR — and BUILD until it has.
- A floating IP is DOWN while not associated, or while the chassis hosting its port is
  not alive; otherwise it shows what that chassis reported for the floating IP's current
  revision, and DOWN until it has (Neutron's order: DOWN until an agent says ACTIVE).

Reports (``PUT /southbound/v1/{routers,floatingips}/{id}/status``) are kept outside
the model, under ``/plexus/status/``, attached to the reporting chassis' liveness lease:
they vanish with the chassis, and reporting wakes no other agent. Status is computed,
not stored, because liveness changes without any server seeing it happen (a lease
simply expires): every server reading the store gives the same answer at once, and no
server has to watch for deaths and write them back."""

from __future__ import annotations

import orjson

from plexus.api import errors
from plexus.api.services.agents import agent_id, liveness_key
from plexus.api.services.base import Retry, Writes, now
from plexus.api.services.l3_scheduling import GATEWAY_CHASSIS, alive_chassis
from plexus.model.keys import PORT_FORWARDINGS
from plexus.store import LeaseNotFound

STATUS = "/plexus/status/"
REPORTED = ("ACTIVE", "DOWN", "ERROR")


def report_key(collection: str, ident: str, chassis: str) -> str:
    """Store key of one chassis' report on one router or floating IP."""
    return f"{STATUS}{collection}/{ident}/{chassis}"


def _reported(report: dict | None, obj: dict, default: str) -> str:
    """A report's status if it covers the object's current revision, else ``default``."""
    if report is None or report.get("revision_number", -1) < obj.get("revision_number", 0):
        return default
    return report["status"]


def router_status(router: dict, alive: set[str], reports: dict[str, dict]) -> str:
    """A router's status from its schedule, liveness and its chassis' reports."""
    if not router.get("gw_port_id"):
        return "ACTIVE"
    up = [c for c in router.get(GATEWAY_CHASSIS) or [] if c in alive]
    if not up:
        return "DOWN"
    return _reported(reports.get(up[0]), router, "BUILD")


def floatingip_status(fip: dict, host: str | None, alive: set[str],
                      reports: dict[str, dict]) -> str:
    """A floating IP's status from its port's chassis (for one with port forwardings,
    their owner's), liveness and that chassis' report."""
    if not (fip.get("port_id") or fip.get(PORT_FORWARDINGS)) or not host or host not in alive:
        return "DOWN"
    return _reported(reports.get(host), fip, "DOWN")


class StatusReports:
    """Agents' reports, and the facts the computed statuses are read from."""

    def __init__(self, services):
        self.s = services

    def alive(self) -> set[str]:
        """Names of the chassis alive now."""
        return alive_chassis(self.s.store)

    def reports(self, collection: str) -> dict[str, dict[str, dict]]:
        """Every report on a collection: object id -> chassis -> report."""
        kvs, _ = self.s.store.range(f"{STATUS}{collection}/")
        out: dict[str, dict[str, dict]] = {}
        for kv in kvs:
            ident, _, chassis = kv.key[len(STATUS) + len(collection) + 1:].partition("/")
            out.setdefault(ident, {})[chassis] = orjson.loads(kv.value)
        return out

    def record(self, collection: str, obj: dict, host: str, status: str,
               revision_number: int | None) -> None:
        """Store ``host``'s report on ``obj`` under the host's liveness lease."""
        if status not in REPORTED:
            raise errors.InvalidInput(f"status '{status}' is not one of {REPORTED}")
        if revision_number is not None and (not isinstance(revision_number, int)
                                            or isinstance(revision_number, bool)
                                            or revision_number < 0):
            raise errors.InvalidInput("revision_number must be a non-negative integer")
        report = {"host": host, "status": status, "reported_at": now(),
                  "revision_number": obj.get("revision_number", 0)
                  if revision_number is None else revision_number}

        def plan(attempt: int) -> None:
            live = self.s.store.get(liveness_key(agent_id(host)))
            if live is None or not live.lease:
                raise errors.Conflict(f"Chassis {host} is not alive; it must register "
                                      f"before reporting.", type_name="ChassisNotAlive")
            w = Writes()
            w.expect(liveness_key(agent_id(host)), live.mod_revision)
            w.put(report_key(collection, obj["id"], host), report, lease=live.lease)
            try:
                self.s.commit(w)
            except LeaseNotFound:
                raise Retry() from None
        self.s.retrying(plan)

    def plan_forget(self, collection: str, ident: str, w: Writes) -> None:
        """Drop the reports on an object being deleted."""
        kvs, _ = self.s.store.range(f"{STATUS}{collection}/{ident}/")
        for kv in kvs:
            w.delete(kv.key)
