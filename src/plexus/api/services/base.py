"""The service layer's shared machinery: object keys, optimistic transactions with
retry, guards against deleting a parent while a child is being created, and the
generic create/list/show/update/delete that each resource's service refines."""

from __future__ import annotations

import contextlib
import logging
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

import orjson

from plexus.api import errors, policy
from plexus.api.query import Query, matches, sort_and_page
from plexus.api.schemas.base import Resource, new_id
from plexus.store import Compare, Delete, Put, Store

if TYPE_CHECKING:
    from plexus.config import Config

LOG = logging.getLogger(__name__)

MODEL = "/plexus/model/"
GUARD = "/plexus/guard/"
ALLOC = "/plexus/alloc/"
MAX_ATTEMPTS = 30
GUARD_TTL = 15.0


# (collection, field) → the index of the server's model catalog that files the
# collection's objects by that field (``Services.where``; the hub keeps them current)
INDEXES = {
    ("ports", "network_id"): "ports_by_network",
    ("ports", "device_id"): "ports_by_device",
    ("ports", "security_groups"): "ports_by_group",
    ("ports", "binding:host_id"): "ports_by_chassis",
    ("subnets", "network_id"): "subnets_by_network",
    ("floatingips", "router_id"): "fips_by_router",
    ("floatingips", "port_id"): "fips_by_port",
    ("ports", "qos_policy_id"): "ports_by_qos",
    ("ports", "dns_name"): "ports_by_dns_name",
    ("networks", "qos_policy_id"): "networks_by_qos",
}


def holds(obj: dict, name: str, value: str) -> bool:
    """Whether ``obj``'s field equals ``value`` (or, for a list field, contains it)."""
    found = obj.get(name)
    return value in found if isinstance(found, list) else found == value


def model_key(collection: str, ident: str) -> str:
    """Store key of a model object."""
    return f"{MODEL}{collection}/{ident}"


def guard_key(collection: str, ident: str) -> str:
    """Store key that, while present, stops new children of a parent being created."""
    return f"{GUARD}{collection}/{ident}"


def now() -> str:
    """A Neutron timestamp (UTC, seconds, Z)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def dumps(obj: Any) -> bytes:
    """Encode an object for the store."""
    return orjson.dumps(obj)


class Retry(Exception):
    """The transaction's guards failed: re-read and plan again."""


@dataclass
class Writes:
    """A transaction being planned: guards (compares) and writes."""

    compares: dict[str, int] = field(default_factory=dict)
    ops: list = field(default_factory=list)
    written: set[str] = field(default_factory=set)

    def expect(self, key: str, mod_revision: int) -> None:
        """Require ``key`` to be at ``mod_revision`` (0 = absent) when the txn commits."""
        self.compares[key] = mod_revision

    def unguarded(self, collection: str, ident: str) -> None:
        """Require that the parent ``collection/ident`` is not being deleted."""
        self.expect(guard_key(collection, ident), 0)

    def claim(self, key: str, value: Any) -> bool:
        """Create ``key`` only if absent (and not already claimed by this txn)."""
        if key in self.written or self.compares.get(key, 0) != 0:
            return False
        self.expect(key, 0)
        self.put(key, value)
        return True

    def put(self, key: str, value: Any, lease: int = 0) -> None:
        """Write ``value`` (JSON-encoded unless bytes) at ``key``."""
        self.written.add(key)
        self.ops.append(Put(key, value if isinstance(value, bytes) else dumps(value), lease))

    def delete(self, key: str) -> None:
        """Delete ``key``."""
        self.written.add(key)
        self.ops.append(Delete(key))


class IndexRecords:
    """Index records in the store (``key(ident)`` → a JSON object), as one transaction
    being planned sees them: each read once and compared at commit (absent: revision 0);
    ``flush`` writes back the ones read, an emptied one deleted."""

    def __init__(self, services: "Services", w: Writes, key):
        self.s, self.w, self.key = services, w, key
        self.docs: dict[str, dict] = {}
        self.read: dict[str, dict | None] = {}

    def __getitem__(self, ident: str) -> dict:
        if ident not in self.docs:
            found = self.s.get(self.key(ident))
            data, rev = found if found else ({}, 0)
            self.w.expect(self.key(ident), rev)
            self.read[ident] = dict(data) if found else None
            self.docs[ident] = data
        return self.docs[ident]

    def flush(self) -> None:
        """Write every record that changed, deleting the emptied ones."""
        for ident, data in self.docs.items():
            if data == (self.read[ident] or {}):
                continue
            if data:
                self.w.put(self.key(ident), data)
            else:
                self.w.delete(self.key(ident))


class Services:
    """Everything a service needs: the store, the configuration, and the other services."""

    def __init__(self, store: Store, config: "Config"):
        self.store = store
        self.config = config
        self.rng = random.SystemRandom()
        self.by_collection: dict[str, ResourceService] = {}
        self.hooks: dict[str, list] = {}
        self.index = None     # the server's hub (``lookup``); None: every query reads all
        self.metrics = None         # plexus.server.metrics.ServerMetrics, when served
        self.port_forwardings = None    # services.port_forwardings.PortForwardingService

    def add_hook(self, event: str, fn) -> None:
        """Call ``fn`` on ``event``: while planning ("port_delete": ``fn(ctx, obj, writes)``;
        "create": ``fn(ctx, collection, objs, writes)`` after a create is planned;
        "port_fixed_ips": ``fn(ctx, old, new, writes)`` when an update sets a port's
        addresses; "commit":
        ``fn(writes)`` just before any transaction is sent) or after a commit
        ("agent_changed": ``fn(old, new)``); see ``run_hooks``."""
        self.hooks.setdefault(event, []).append(fn)

    def run_hooks(self, event: str, *args) -> None:
        """Call every hook of ``event`` with ``args``."""
        for fn in self.hooks.get(event, ()):
            fn(*args)

    def register(self, service: "ResourceService") -> None:
        """Make a service reachable by its collection name."""
        self.by_collection[service.resource.collection] = service

    def __getitem__(self, collection: str) -> "ResourceService":
        return self.by_collection[collection]

    def commit(self, w: Writes) -> int:
        """Commit planned writes; raise Retry when a guard failed. Returns the revision."""
        self.run_hooks("commit", w)       # e.g. quota usage, planned with the writes
        compares = [Compare(k, r) for k, r in w.compares.items()]
        began = time.perf_counter()
        result = self.store.txn(compares, w.ops)
        if self.metrics is not None:
            self.metrics.observe_txn(time.perf_counter() - began, result.succeeded)
        if not result.succeeded:
            raise Retry()
        return result.revision

    def get(self, key: str) -> tuple[dict, int] | None:
        """A stored JSON object and its mod revision."""
        kv = self.store.get(key)
        if kv is None:
            return None
        return orjson.loads(kv.value), kv.mod_revision

    def objects(self, collection: str) -> list[dict]:
        """Every stored object of a collection."""
        kvs, _ = self.store.range(f"{MODEL}{collection}/")
        return [orjson.loads(kv.value) for kv in kvs]

    def where(self, collection: str, name: str, value: str) -> list[dict]:
        """The objects of ``collection`` whose field ``name`` holds ``value``, read from
        the hub's index (as current as a store read; costs what the value holds) when
        it answers, else from every object of the collection."""
        raws = None
        if self.index is not None and (collection, name) in INDEXES:
            raws = self.index.lookup(collection, INDEXES[(collection, name)], value)
        objs = [orjson.loads(r) for r in raws] if raws is not None else \
            self.objects(collection)
        return [o for o in objs if holds(o, name, value)]

    def retrying(self, plan) -> Any:
        """Run ``plan()`` (which reads, plans and commits) until its guards hold."""
        for attempt in range(MAX_ATTEMPTS):
            try:
                return plan(attempt)
            except Retry:
                time.sleep(min(0.001 * (2 ** min(attempt, 6)), 0.05) * random.random())
        raise errors.Conflict("The request conflicted with concurrent changes; retry it.",
                              type_name="ConcurrentModification")

    @contextlib.contextmanager
    def guarding(self, collection: str, ident: str) -> Iterator[None]:
        """Hold the guard of a parent while checking its children and deleting it.

        Children created before the guard are visible to the check; those after it
        fail their ``unguarded`` compare and re-plan. The guard rides a lease, so a
        server that dies half-way does not leave the parent locked."""
        key = guard_key(collection, ident)
        lease = self.store.lease_grant(GUARD_TTL)
        try:
            if not self.store.txn([Compare(key, 0)], [Put(key, b"1", lease)]).succeeded:
                raise errors.Conflict(f"{collection} {ident} is being changed by another "
                                      f"request; retry.", type_name="ConcurrentModification")
            yield
        finally:
            self.store.lease_revoke(lease)


class ResourceService:
    """Generic Neutron behaviour over one collection; subclasses add the semantics."""

    resource: Resource

    def __init__(self, services: Services):
        self.s = services
        self.c = self.resource.collection
        services.register(self)

    # ---- reading -------------------------------------------------------------------

    def key(self, ident: str) -> str:
        """Store key of one object."""
        return model_key(self.c, ident)

    def get(self, ident: str) -> tuple[dict, int] | None:
        """The stored object and its revision, whoever may see it."""
        return self.s.get(self.key(ident))

    def all(self) -> list[dict]:
        """All stored objects."""
        return self.s.objects(self.c)

    def access(self, ctx):
        """What RBAC policies grant the caller's project (read on demand, per request)."""
        return self.s["rbac-policies"].access(ctx)

    def policy_target(self, ctx, obj: dict, access=None) -> policy.Target:
        """The object as the policy sees it: an object on a network (a port, a subnet)
        with its network's owner and flags for this caller (``shared`` when a policy shares
        it with the caller's project), read only if a rule asks for them."""
        if "network_id" not in obj or self.c == "networks":
            return policy.Target(obj)

        read: list = []

        def network():
            if not read:
                found = self.s["networks"].get(obj["network_id"])
                read.append(found[0] if found else None)
            return read[0]

        def owner() -> dict:            # no RBAC read for rules that stop at the owner
            net = network()
            return {"network:tenant_id": net.get("project_id") if net else None}

        def facts() -> dict:
            return policy.network_facts(network(), access or self.access(ctx))
        lazy = {key: facts for key in policy.network_facts(None)}
        lazy["network:tenant_id"] = owner
        return policy.Target(obj, lazy)

    def visible(self, ctx, obj: dict, access=None) -> bool:
        """Whether the caller may see the object (the ``get_<resource>`` rule)."""
        return policy.check(ctx, f"get_{self.resource.name}",
                            self.policy_target(ctx, obj, access))

    def prefetch(self, ctx):
        """The caller's grants for a list: one read of them, not one per object."""
        access = self.access(ctx)
        for object_type in self.grant_types:
            access.prefetch(object_type)
        return access

    # RBAC object types whose grants a list of this collection consults.
    grant_types: tuple[str, ...] = ()

    def for_caller(self, ctx, obj: dict, access=None) -> dict:
        """The object as this caller sees it (e.g. ``shared`` when shared with it)."""
        return obj

    def load(self, ctx, ident: str) -> tuple[dict, int]:
        """The object if the caller may see it; otherwise NotFound."""
        found = self.get(ident)
        if found is None or not self.visible(ctx, found[0]):
            raise errors.NotFound(self.resource.name, ident)
        return found

    def owned(self, ctx, obj: dict, action: str, changes: dict | None = None) -> None:
        """The ``<action>_<resource>`` rule, and the attribute rules of ``changes``, for
        an object the caller can see (403 when they refuse). ``obj`` is the object as it
        would be after the change."""
        policy.enforce(ctx, f"{action}_{self.resource.name}", self.policy_target(ctx, obj),
                       changes)

    def view(self, ctx, obj: dict, fields: list[str] | None = None, access=None) -> dict:
        """Wire form for this caller (``access``: its RBAC grants, if already read)."""
        return self.resource.view(ctx, self.for_caller(ctx, obj, access), fields)

    def present(self, objs: list[dict]) -> list[dict]:
        """Stored objects as the API shows them: fields computed at read time (e.g. a
        status that depends on liveness) filled in. Never written back."""
        return objs

    def candidates(self, q: Query) -> list[dict]:
        """The objects a list query may return: those of the values of an indexed
        filter when it has one (the query's own filters then decide), else all. An
        empty value (``?dns_name=``) is not looked up: indexes file no empty keys."""
        for name, values in q.filters.items():
            if (self.c, name) in INDEXES and values and all(v != "" for v in values):
                found = {}
                for value in values:
                    for obj in self.s.where(self.c, name, value):
                        found[obj["id"]] = obj
                return list(found.values())
        return self.all()

    def list(self, ctx, q: Query) -> tuple[list[dict], bool, bool]:
        """Visible objects passing the query, sorted and paged."""
        access = self.prefetch(ctx)
        items = [o for o in self.present(self.candidates(q)) if self.visible(ctx, o, access)
                 and matches(self.resource, self.for_caller(ctx, o, access), q)]
        if policy.hidden(ctx, self.resource.name) & set(q.filters):
            items = []
        page, more, before = sort_and_page(items, q)
        return [self.view(ctx, o, q.fields, access) for o in page], more, before

    def show(self, ctx, ident: str, fields: list[str] | None = None) -> dict:
        """One object in wire form."""
        return self.view(ctx, self.present([self.load(ctx, ident)[0]])[0], fields)

    # ---- writing -------------------------------------------------------------------

    def new_object(self, ctx, attrs: dict) -> dict:
        """The standard attributes of a new object, around the validated ones."""
        if not ctx.is_admin and attrs.get("project_id") not in (None, ctx.project_id):
            raise errors.BadRequest("Specifying 'project_id' or 'tenant_id' other than the "
                                    "authenticated project in request requires admin "
                                    "privileges")
        if attrs.get("project_id") != attrs.get("tenant_id"):
            raise errors.BadRequest("'project_id' and 'tenant_id' do not match")
        obj = dict(attrs)
        access = self.access(ctx)
        target = self.policy_target(ctx, obj, access)
        if "network_id" in obj and self.c != "networks":
            # Neutron's ownership check: ports and subnets go on a network the caller can
            # see, and (unless admin) on its own or one shared with the caller (a `*` or a
            # targeted access_as_shared policy); 404 otherwise.
            networks = self.s["networks"]
            found = networks.get(obj["network_id"])
            if found is None or not networks.visible(ctx, found[0], access):
                raise errors.NotFound("network", obj["network_id"])
            facts = policy.network_facts(found[0], access)
            if not ctx.is_admin and not facts["network:shared"] \
                    and found[0].get("project_id") != obj.get("project_id"):
                raise errors.ResourceNotFound("The resource could not be found.")
            target.facts.update(facts)
        policy.enforce(ctx, f"create_{self.resource.name}", target,
                       self.resource.explicit(ctx, attrs))
        stamp = now()
        obj.update(id=new_id(), created_at=stamp, updated_at=stamp, revision_number=0)
        if "tags" in obj:
            obj["tags"] = sorted(obj["tags"])   # Neutron keeps tags as a sorted set
        return obj

    def plan_create(self, ctx, obj: dict, w: Writes, attempt: int) -> dict:
        """Resource semantics of a create: fill derived fields, add guards and writes."""
        w.put(self.key(obj["id"]), obj)
        return obj

    def create(self, ctx, body: Any) -> dict:
        """Create one object atomically; returns its wire form."""
        return self.create_bulk(ctx, [body])[0]

    def create_bulk(self, ctx, bodies: list[Any]) -> list[dict]:
        """Create several objects in one transaction (all or nothing)."""
        validated = [self.resource.validate_create(ctx, b) for b in bodies]
        fresh = [self.new_object(ctx, a) for a in validated]

        def plan(attempt: int) -> list[dict]:
            w = Writes()
            done = [self.plan_create(ctx, dict(obj), w, attempt) for obj in fresh]
            self.s.run_hooks("create", ctx, self.c, done, w)
            self.s.commit(w)
            return done
        created = self.s.retrying(plan)
        for obj in created:
            self.after_write(ctx, obj)
            self.changed(None, obj)
        return [self.view(ctx, o) for o in self.present(created)]

    def load_to_change(self, ctx, ident: str, action: str, if_match: int | None,
                       changes: dict | None = None) -> tuple[dict, int]:
        """The object, if the caller may make ``changes`` to it (or ``action`` it) and it
        is at the If-Match revision."""
        obj, rev = self.load(ctx, ident)
        self.owned(ctx, {**obj, **changes} if changes else obj, action, changes)
        if if_match is not None and obj.get("revision_number") != if_match:
            raise errors.PreconditionFailed(
                f"Constrained to {if_match}, but current revision is "
                f"{obj.get('revision_number')}")
        return obj, rev

    def plan_update(self, ctx, old: dict, new: dict, changes: dict, w: Writes,
                    attempt: int) -> dict:
        """Resource semantics of an update (checks, derived fields, extra writes)."""
        return new

    def update(self, ctx, ident: str, body: Any, if_match: int | None = None) -> dict:
        """Apply an update atomically, honouring If-Match: revision_number."""
        changes = self.resource.validate_update(ctx, body)

        def plan(attempt: int) -> tuple[dict, dict]:
            old, rev = self.load_to_change(ctx, ident, "update", if_match, changes)
            w = Writes()
            w.expect(self.key(ident), rev)
            new = {**old, **changes}
            new = self.plan_update(ctx, old, new, changes, w, attempt)
            if new != old:
                new["revision_number"] = old.get("revision_number", 0) + 1
                new["updated_at"] = now()
            w.put(self.key(ident), new)
            self.s.commit(w)
            return old, new
        old, obj = self.s.retrying(plan)
        self.after_write(ctx, obj)
        if obj != old:
            self.changed(old, obj)
        return self.view(ctx, self.present([obj])[0])

    def plan_delete(self, ctx, obj: dict, w: Writes) -> None:
        """Resource semantics of a delete (in-use checks, dependent writes)."""

    def delete(self, ctx, ident: str, if_match: int | None = None) -> None:
        """Delete one object (after the resource's in-use checks)."""
        def plan(attempt: int) -> dict:
            obj, rev = self.load_to_change(ctx, ident, "delete", if_match)
            w = Writes()
            w.expect(self.key(ident), rev)
            w.delete(self.key(ident))
            self.plan_delete(ctx, obj, w)
            self.s.commit(w)
            return obj
        self.changed(self.s.retrying(plan), None)

    def after_write(self, ctx, obj: dict) -> None:
        """Hook after a successful write (e.g. refreshing a parent's derived fields)."""

    def changed(self, old: dict | None, new: dict | None) -> None:
        """After a committed create (``old`` None), update or delete (``new`` None) made
        through this service: the ``<collection>_changed`` hooks (e.g. Nova's
        notifier), ``fn(old, new)``."""
        self.s.run_hooks(f"{self.c}_changed", old, new)

    # ---- tags ----------------------------------------------------------------------

    def set_tags(self, ctx, ident: str, tags: list[str] | None, add: list[str] = (),
                 remove: str | None = None) -> dict:
        """Replace, add or remove tags; bumps the revision like any update."""
        def plan(attempt: int) -> dict:
            old, rev = self.load(ctx, ident)
            self.owned(ctx, old, "update")
            current = list(old.get("tags") or [])
            if tags is not None:
                current = list(dict.fromkeys(tags))
            current += [t for t in dict.fromkeys(add) if t not in current]
            if remove is not None:
                if remove not in current:
                    raise errors.NotFound("tag", remove, type_name="TagNotFound")
                current.remove(remove)
            new = dict(old, tags=sorted(current), revision_number=old.get("revision_number", 0) + 1,
                       updated_at=now())
            w = Writes()
            w.expect(self.key(ident), rev)
            w.put(self.key(ident), new)
            self.s.commit(w)
            return new
        return self.s.retrying(plan)
