"""Availability zones (``availability_zone``, ``network_availability_zone``,
``router_availability_zone``): each chassis' agent says which zone it is in (its
``--availability-zone``, default ``nova``) when it registers; the zones are those of
the registered chassis, each for networks and routers (every chassis serves both: DHCP
and routing are distributed), available while one of its chassis is alive. A key per
(zone, agent) is kept with the agent (``zone_key``), so checking a hint reads that
zone's keys only, and listing reads one key per chassis, never the model."""

from __future__ import annotations

from plexus.api import errors
from plexus.api.query import Query, matches, sort_and_page
from plexus.api.schemas.base import Attr, Resource
from plexus.api.services.base import ALLOC, ResourceService, Writes

DEFAULT_ZONE = "nova"
RESOURCES = ("network", "router")

AVAILABILITY_ZONE = Resource("availability_zone", "availability_zones", (
    Attr("name", post=False, put=False),
    Attr("resource", post=False, put=False, doc="`network` or `router`"),
    Attr("state", post=False, put=False,
         doc="`available` while a chassis of the zone is alive, else `unavailable`"),
))


def zone_key(zone: str, agent_id: str = "") -> str:
    """Store key saying that an agent is in a zone (all the zone's when ``agent_id`` is
    empty)."""
    return f"{ALLOC}az/{zone}/{agent_id}"


def plan_zone(old: dict | None, new: dict | None, w: Writes) -> None:
    """The zone keys of an agent written (``new``), moved or deleted (``new`` None)."""
    before = (old or {}).get("availability_zone")
    after = (new or {}).get("availability_zone")
    if before and before != after:
        w.delete(zone_key(before, old["id"]))
    if after:
        w.put(zone_key(after, new["id"]), new["host"])


class _NotFound(errors.NotFound):
    """Neutron's AvailabilityZoneNotFound."""

    def __init__(self, zone: str):
        errors.NeutronError.__init__(self, f"AvailabilityZone {zone} could not be found.",
                                     type_name="AvailabilityZoneNotFound")


class AvailabilityZoneService(ResourceService):
    """``GET /v2.0/availability_zones`` and the check of ``availability_zone_hints``."""

    resource = AVAILABILITY_ZONE

    def __init__(self, services):
        super().__init__(services)
        services.add_hook("agent_write", plan_zone)

    def zones(self) -> dict[str, bool]:
        """Every zone of a registered chassis, and whether one of its chassis is alive."""
        from plexus.api.services.agents import liveness_key
        kvs, _ = self.s.store.range(f"{ALLOC}az/")
        out: dict[str, bool] = {}
        for kv in kvs:
            zone, _, agent = kv.key[len(f"{ALLOC}az/"):].rpartition("/")
            out[zone] = out.get(zone, False) or self.s.store.get(liveness_key(agent)) is not None
        return out

    def check_hints(self, hints: list[str]) -> None:
        """Each hint names a zone some chassis is in (404 AvailabilityZoneNotFound)."""
        for zone in dict.fromkeys(hints):
            kvs, _ = self.s.store.range(zone_key(zone))
            if not kvs:
                raise _NotFound(zone)

    def list(self, ctx, q: Query):
        """The zones, for networks and routers, filtered, sorted and paged."""
        items = [{"name": zone, "resource": kind,
                  "state": "available" if alive else "unavailable"}
                 for zone, alive in sorted(self.zones().items()) for kind in RESOURCES]
        items = [dict(i, id=f"{i['name']}/{i['resource']}") for i in items
                 if matches(self.resource, i, q)]
        page, more, before = sort_and_page(items, q)
        return [self.view(ctx, i, q.fields) for i in page], more, before
