"""Chassis registration and liveness, shown through Neutron's agents API.

A chassis registers (name, tunnel IP, bridge mappings, gateway capability) and keeps
a leased liveness key alive with heartbeats; the registration itself stays, so
``openstack network agent list`` shows dead chassis as not alive, as Neutron does.
Liveness keys live in the model (collection ``liveness``) so agents see chassis come
and go on the southbound stream; heartbeat timestamps are kept outside the model so
heartbeats do not wake every agent. Registering, changing or deleting a chassis runs
the ``agent_write`` hooks (in its transaction) and ``agent_changed`` (after it), through
which gateway scheduling and SNAT port blocks follow the chassis; registering also runs
``chassis_registered`` (in its transaction) and a clean stop ``chassis_unregistered``
(after it), through which a chassis' SNAT blocks stop or start being orphaned."""

from __future__ import annotations

import uuid

import orjson

from plexus.api import errors
from plexus.api.schemas.agents import AGENT
from plexus.api.services.base import MODEL, ResourceService, Writes, now
from plexus.store import LeaseNotFound

AGENT_TYPE = "Plexus agent"
BINARY = "plexus-agent"
NAMESPACE = uuid.UUID("6f1c0d8e-2b7a-4d5e-9a41-5c3e7b9d2f10")
HEARTBEAT = "/plexus/heartbeat/"


def agent_id(chassis: str) -> str:
    """The stable agent id of a chassis name."""
    return str(uuid.uuid5(NAMESPACE, chassis))


def beat(raw: bytes | None) -> dict:
    """What a chassis' last heartbeat said: ``at`` (its time), and the ``revision`` it
    had applied and its ``version`` when the agent sent them (None otherwise). The key
    holds JSON, or the bare timestamp a registration writes."""
    if not raw:
        return {"at": None, "revision": None, "version": None}
    if raw[:1] == b"{":
        try:
            body = orjson.loads(raw)
            return {"at": body.get("at"), "revision": body.get("revision"),
                    "version": body.get("version")}
        except orjson.JSONDecodeError:
            pass
    return {"at": raw.decode(errors="replace"), "revision": None, "version": None}


def liveness_key(ident: str) -> str:
    """Leased key present while the chassis is alive."""
    return f"{MODEL}liveness/{ident}"


class AgentService(ResourceService):
    """Neutron agents (admin only): list, show, update admin_state_up/description, delete."""

    resource = AGENT


    def all(self) -> list[dict]:
        """Registrations with ``alive`` and ``heartbeat_timestamp`` filled in."""
        alive = {kv.key.rsplit("/", 1)[1] for kv in self.s.store.range(f"{MODEL}liveness/")[0]}
        beats = {kv.key.rsplit("/", 1)[1]: beat(kv.value)["at"]
                 for kv in self.s.store.range(HEARTBEAT)[0]}
        return [dict(o, alive=o["id"] in alive,
                     heartbeat_timestamp=beats.get(o["id"], o["started_at"]))
                for o in super().all()]

    def get(self, ident: str):
        """One registration with its liveness."""
        found = super().get(ident)
        if found is None:
            return None
        obj, rev = found
        last = beat(kv.value if (kv := self.s.store.get(HEARTBEAT + ident)) else None)
        return dict(obj, alive=self.s.store.get(liveness_key(ident)) is not None,
                    heartbeat_timestamp=last["at"] or obj["started_at"]), rev

    def create_bulk(self, ctx, bodies):
        """Agents are created by chassis registering, not through the API."""
        raise errors.BadRequest("Agents register themselves; they cannot be created via "
                                "the API", type_name="HTTPBadRequest")

    def plan_update(self, ctx, old, new, changes, w, attempt):
        """Keep the computed fields out of the stored object."""
        new.pop("alive", None)
        new.pop("heartbeat_timestamp", None)
        self.s.run_hooks("agent_write", old, new, w)
        return new

    def after_write(self, ctx, obj):
        """Let dependants (gateway scheduling) react to a changed chassis."""
        self.s.run_hooks("agent_changed", None, obj)

    def plan_delete(self, ctx, obj, w):
        """Deleting an agent drops its liveness and heartbeat too."""
        w.delete(liveness_key(obj["id"]))
        w.delete(HEARTBEAT + obj["id"])
        self.s.run_hooks("agent_write", obj, None, w)

    def delete(self, ctx, ident, if_match=None):
        """Delete an agent; dependants (gateway scheduling) react once it is gone."""
        found = super().get(ident)
        super().delete(ctx, ident, if_match)
        self.s.run_hooks("agent_changed", found[0] if found else None, None)

    # ---- southbound -----------------------------------------------------------------

    def register(self, name: str, tunnel_ip: str, bridge_mappings: dict[str, str],
                 gateway: bool, ttl: float, datapath_type: str = "netdev",
                 availability_zone: str = "nova") -> tuple[dict, int]:
        """Record a chassis and start its liveness lease; returns (agent, lease id).
        ``datapath_type`` (its br-int's) goes into the VIF details of ports bound to it;
        ``availability_zone`` is the zone it is in."""
        ident = agent_id(name)
        stamp = now()
        lease = self.s.store.lease_grant(ttl)

        def plan(attempt: int) -> dict:
            found = super(AgentService, self).get(ident)
            old, rev = found if found else (None, 0)
            obj = {"id": ident, "agent_type": AGENT_TYPE, "binary": BINARY, "topic": "N/A",
                   "host": name, "admin_state_up": old["admin_state_up"] if old else True,
                   "availability_zone": availability_zone,
                   "configurations": {"tunnel_ip": tunnel_ip,
                                      "bridge_mappings": dict(bridge_mappings),
                                      "gateway": bool(gateway),
                                      "datapath_type": datapath_type},
                   "created_at": old["created_at"] if old else stamp, "started_at": stamp,
                   "description": old["description"] if old else "",
                   "resources_synced": None,
                   "revision_number": (old or {}).get("revision_number", -1) + 1,
                   "updated_at": stamp}
            w = Writes()
            w.expect(self.key(ident), rev)
            w.put(self.key(ident), obj)
            w.put(liveness_key(ident), {"host": name, "since": stamp}, lease=lease)
            w.put(HEARTBEAT + ident, stamp.encode())
            self.s.run_hooks("agent_write", old, obj, w)
            self.s.run_hooks("chassis_registered", name, w)
            self.s.commit(w)
            return old, obj
        old, obj = self.s.retrying(plan)
        self.s["ports"].rebind_host(name)
        self.s.run_hooks("agent_changed", old, obj)
        return obj, lease

    def heartbeat(self, name: str, lease: int, revision: int | None = None,
                  version: str | None = None) -> float:
        """Keep a chassis alive; raises NotFound when its lease is gone (re-register).
        The heartbeat key keeps its time and what the agent said it had applied."""
        try:
            ttl = self.s.store.lease_keepalive(lease)
        except LeaseNotFound:
            raise errors.NotFound("agent", name, type_name="AgentLeaseExpired") from None
        value = now().encode() if revision is None and version is None else orjson.dumps(
            {"at": now(), "revision": revision, "version": version})
        self.s.store.put(HEARTBEAT + agent_id(name), value)
        return ttl

    def health(self) -> list[dict]:
        """Every chassis for ``plexus status``: name, alive, its lease, last heartbeat,
        version and the store revision its agent has applied (one range per prefix:
        O(chassis), an operator's request, never per event)."""
        leases = {kv.key.rsplit("/", 1)[1]: kv.lease
                  for kv in self.s.store.range(f"{MODEL}liveness/")[0]}
        beats = {kv.key.rsplit("/", 1)[1]: beat(kv.value)
                 for kv in self.s.store.range(HEARTBEAT)[0]}
        out = []
        for obj in super().all():
            last = beats.get(obj["id"]) or beat(None)
            out.append({"chassis": obj["host"], "id": obj["id"],
                        "alive": obj["id"] in leases, "lease": leases.get(obj["id"]),
                        "admin_state_up": obj["admin_state_up"],
                        "gateway": bool(obj["configurations"].get("gateway")),
                        "tunnel_ip": obj["configurations"].get("tunnel_ip"),
                        "started_at": obj["started_at"],
                        "last_seen": last["at"] or obj["started_at"],
                        "version": last["version"], "applied_revision": last["revision"]})
        return sorted(out, key=lambda c: c["chassis"])

    def unregister(self, name: str, lease: int) -> None:
        """A chassis stopping cleanly ends its liveness at once."""
        try:
            self.s.store.lease_revoke(lease)
        except LeaseNotFound:
            pass
        self.s.run_hooks("chassis_unregistered", name)

    def datapath_type(self, name: str) -> str:
        """The datapath type a chassis registered with (netdev when unknown)."""
        found = super().get(agent_id(name))
        return ((found[0].get("configurations") or {}).get("datapath_type") or "netdev") \
            if found else "netdev"

    def exists(self, name: str) -> bool:
        """Whether a chassis of that name has ever registered (and was not deleted)."""
        return self.s.store.get(self.key(agent_id(name))) is not None
