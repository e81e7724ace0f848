"""RBAC policies: access to an object (a network, a security group, a subnet pool, an
address scope) granted to another
project, or to every project (``*``), as Neutron's ``rbac-policies`` extension.

Storage, all written in the transaction that changes a policy (nothing half written):

- the policy itself at ``/plexus/rbac/policy/<id>`` (outside the model prefix: agents never
  see policies; forwarding does not depend on who may create ports);
- ``/plexus/rbac/obj/<type>/<object>/<action>/<target>`` → policy id: the policies on one
  object (in-use checks, the object's delete, its ``shared`` flag). Being a key, it also
  makes a duplicate policy impossible (409 ``DuplicateRbacPolicy``);
- ``/plexus/rbac/tgt/<target>/<type>/<object>/<action>`` → policy id: what one project
  (or ``*``) was granted, read once per list request (``Access``).

A visibility check therefore never scans the policies: one range of the policies on the
object, or for a list one range of the caller's grants and one of the wildcard grants.

Object types are a table (``OBJECT_TYPES``): a new shareable object is one line naming its
collection, actions, the stored flags the policies drive and who depends on the access.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable
from urllib.parse import quote, unquote

import orjson

from plexus.api import errors
from plexus.api.query import Query, matches, sort_and_page
from plexus.api.schemas.base import new_id
from plexus.api.schemas.rbac import ACCESS_EXTERNAL, ACCESS_SHARED, RBAC_POLICY, WILDCARD
from plexus.api.services.base import ALLOC, ResourceService, Services, Writes, now
from plexus.model.keys import GATEWAY_OWNER

INDEX = "/plexus/rbac/"
POLICIES = f"{INDEX}policy/"
BY_OBJECT = f"{INDEX}obj/"
BY_TARGET = f"{INDEX}tgt/"
BY_OWNER = f"{INDEX}own/"


def _part(value: str) -> str:
    return quote(value, safe="")


def object_prefix(object_type: str, object_id: str) -> str:
    """Prefix of the index entries of the policies on one object."""
    return f"{BY_OBJECT}{object_type}/{object_id}/"


def object_key(p: dict) -> str:
    """Index entry of a policy under its object (unique per type, object, action, target)."""
    return f"{object_prefix(p['object_type'], p['object_id'])}{p['action']}/" \
           f"{_part(p['target_tenant'])}"


def target_prefix(target: str, object_type: str) -> str:
    """Prefix of the index entries of what ``target`` was granted on objects of a type."""
    return f"{BY_TARGET}{_part(target)}/{object_type}/"


def target_key(p: dict) -> str:
    """Index entry of a policy under its target project."""
    return f"{target_prefix(p['target_tenant'], p['object_type'])}{p['object_id']}/{p['action']}"


def owner_key(p: dict) -> str:
    """Index entry of a policy under the project that owns it (non-admin lists)."""
    return f"{BY_OWNER}{_part(p['project_id'])}/{p['id']}"


# ---- who depends on an access (in-use checks) -------------------------------------------


def network_port_projects(s: Services, network: dict, action: str) -> set[str]:
    """Projects that use the network through ``action``: with ports on it (its DHCP port
    aside) for ``access_as_shared``, with router gateways on it for ``access_as_external``.
    Read through the network's port-key allocations, so it costs the network's ports."""
    ports = s["ports"]
    kvs, _ = s.store.range(f"{ALLOC}portkey/{network['id']}/")
    out = set()
    for kv in kvs:
        found = ports.get(orjson.loads(kv.value))
        if found is None:
            continue
        owner = found[0].get("device_owner")
        if (owner == GATEWAY_OWNER) if action == ACCESS_EXTERNAL else owner != "network:dhcp":
            out.add(found[0]["project_id"])
    return out


def external_network_in_use(s: Services, network: dict) -> None:
    """Neutron's ExternalNetworkInUse (409): a network with router gateways on it stays
    external (whoever owns the routers)."""
    if network_port_projects(s, network, ACCESS_EXTERNAL):
        raise errors.Conflict(f"External network {network['id']} cannot be updated to be "
                              f"non-external, since it has existing gateway ports.",
                              type_name="ExternalNetworkInUse")


def group_port_projects(s: Services, group: dict, action: str) -> set[str]:
    """Projects with ports using the security group."""
    return {p["project_id"] for p in s["security-groups"]._ports_using(group["id"])}


def pool_subnet_projects(s: Services, pool: dict, action: str) -> set[str]:
    """Projects with subnets allocated from the subnet pool, read from the pool's
    allocation index (``alloc/prefix/<pool>/``): costs the pool's allocations."""
    return {a.get("project_id") for a in s["subnetpools"].allocations(pool["id"]).values()}


def scope_pool_projects(s: Services, scope: dict, action: str) -> set[str]:
    """Projects with subnet pools in the address scope, read from the scope's member
    index (``alloc/scope/<scope>/``): costs the scope's pools."""
    return s["subnetpools"].scope_members(scope["id"])


def qos_user_projects(s: Services, qos_policy: dict, action: str) -> set[str]:
    """Projects with networks or ports holding the QoS policy, read from the model's
    ``ports_by_qos`` / ``networks_by_qos`` indexes: costs the policy's users."""
    return s["qos-policies"].user_projects(qos_policy)


@dataclass(frozen=True)
class ObjectType:
    """A kind of object policies can share: its ``object_type``, collection, allowed
    actions, the stored attributes the policies drive (action, attribute, True when only
    a ``*`` policy sets it, False when any policy of the action does), and the projects
    that depend on an access (a policy they rely on cannot be removed)."""

    name: str
    collection: str
    actions: tuple[str, ...]
    flags: tuple[tuple[str, str, bool], ...]
    dependants: Callable[[Services, dict, str], set[str]]


OBJECT_TYPES: dict[str, ObjectType] = {t.name: t for t in (
    ObjectType("network", "networks", (ACCESS_SHARED, ACCESS_EXTERNAL),
               ((ACCESS_SHARED, "shared", True), (ACCESS_EXTERNAL, "router:external", False)),
               network_port_projects),
    ObjectType("security_group", "security-groups", (ACCESS_SHARED,),
               ((ACCESS_SHARED, "shared", True),), group_port_projects),
    ObjectType("subnetpool", "subnetpools", (ACCESS_SHARED,),
               ((ACCESS_SHARED, "shared", True),), pool_subnet_projects),
    ObjectType("address_scope", "address-scopes", (ACCESS_SHARED,),
               ((ACCESS_SHARED, "shared", True),), scope_pool_projects),
    ObjectType("qos_policy", "qos-policies", (ACCESS_SHARED,),
               ((ACCESS_SHARED, "shared", True),), qos_user_projects),
)}


def in_use(object_id: str, target: str) -> errors.NeutronError:
    """Neutron's RbacPolicyInUse (409)."""
    return errors.Conflict(f"RBAC policy on object {object_id} cannot be removed because "
                           f"other objects depend on it.\nDetails: tenant_id={target}",
                           type_name="RbacPolicyInUse")


# ---- what a caller was granted ------------------------------------------------------------


class Access:
    """The grants of one caller's project, read on demand and kept for one request:
    per object (one range of its policies) or, after ``prefetch``, per type (one range of
    the project's grants and one of the wildcard grants)."""

    def __init__(self, store, project: str | None):
        self.store = store
        self.project = project
        self.by_type: dict[str, dict[str, set[str]]] = {}
        self.by_object: dict[tuple[str, str], set[str]] = {}

    def prefetch(self, object_type: str) -> "Access":
        """Read every grant of the caller's project (and ``*``) on objects of a type."""
        if object_type not in self.by_type:
            grants: dict[str, set[str]] = {}
            for target in {WILDCARD, self.project} - {None}:
                prefix = target_prefix(target, object_type)
                kvs, _ = self.store.range(prefix)
                for kv in kvs:
                    obj_id, _, action = kv.key[len(prefix):].partition("/")
                    grants.setdefault(obj_id, set()).add(action)
            self.by_type[object_type] = grants
        return self

    def actions(self, object_type: str, object_id: str) -> set[str]:
        """Actions the caller's project was granted on the object."""
        if object_type in self.by_type:
            return self.by_type[object_type].get(object_id, set())
        key = (object_type, object_id)
        if key not in self.by_object:
            prefix = object_prefix(object_type, object_id)
            kvs, _ = self.store.range(prefix)
            wanted = {WILDCARD, self.project}
            self.by_object[key] = {
                action for action, _, target in
                (kv.key[len(prefix):].partition("/") for kv in kvs)
                if unquote(target) in wanted}
        return self.by_object[key]

    def granted(self, object_type: str, object_id: str, action: str) -> bool:
        """Whether the caller's project has ``action`` on the object."""
        return action in self.actions(object_type, object_id)


class SharedByPolicies:
    """A service whose objects' ``shared`` is per caller, from ``access_as_shared``
    policies on ``rbac_type`` (security groups, subnet pools, address scopes): ``shared: true`` is the
    ``*`` policy; a policy naming a project shares the object with that project only."""

    rbac_type: str
    shared_fact = "shared"      # the policy target key rules read (``sg_shared``: its own)

    def shared_with(self, obj: dict, project_id: str | None, access=None) -> bool:
        """Whether the object is shared with ``project_id`` (``access``: that project's
        grants, if already read)."""
        if obj.get("shared"):
            return True
        if not project_id:
            return False
        if access is None or access.project != project_id:
            access = self.s["rbac-policies"].access_for(project_id)
        return access.granted(self.rbac_type, obj["id"], ACCESS_SHARED)

    def policy_target(self, ctx, obj: dict, access=None):
        """The object with ``shared`` as the caller sees it (read only if a rule asks)."""
        from plexus.api import policy

        def facts() -> dict:
            return {self.shared_fact: self.shared_with(obj, ctx.project_id, access)}
        return policy.Target(obj, {self.shared_fact: facts})

    def for_caller(self, ctx, obj: dict, access=None) -> dict:
        """``shared`` as Neutron shows it: true when shared with the caller's project."""
        if obj.get("shared") or not self.shared_with(obj, ctx.project_id, access):
            return obj
        return dict(obj, shared=True)

    def plan_share_all(self, obj: dict, w: Writes) -> None:
        """``shared: true`` on create (or set by an update): the ``*`` policy."""
        rbac = self.s["rbac-policies"]
        rbac.plan_add(rbac.wildcard(obj, self.rbac_type, ACCESS_SHARED), w)

    def plan_forget_policies(self, obj: dict, w: Writes) -> None:
        """The object is deleted: its policies go with it."""
        self.s["rbac-policies"].plan_remove_all(self.rbac_type, obj["id"], w)


# ---- the service ----------------------------------------------------------------------------


class RbacService(ResourceService):
    """Neutron RBAC policies."""

    resource = RBAC_POLICY

    def key(self, ident: str) -> str:
        return f"{POLICIES}{ident}"

    def all(self) -> list[dict]:
        kvs, _ = self.s.store.range(POLICIES)
        return [orjson.loads(kv.value) for kv in kvs]

    def access(self, ctx) -> Access:
        """A fresh view of what the caller's project was granted."""
        return Access(self.s.store, ctx.project_id)

    def access_for(self, project_id: str) -> Access:
        """A fresh view of what a project was granted."""
        return Access(self.s.store, project_id)

    # ---- the object a policy is about ------------------------------------------------

    def _type(self, name: str) -> ObjectType:
        found = OBJECT_TYPES.get(name)
        if found is None:
            raise errors.InvalidInput(f"Invalid input for object_type. Reason: '{name}' is not "
                                      f"in {sorted(OBJECT_TYPES)}.")
        return found

    def _object(self, ctx, p: dict) -> tuple[ObjectType, dict, int]:
        """The policy's object, which the caller must see (404) and own (400, as Neutron's
        "Only admins can manipulate policies on objects they do not own")."""
        kind = self._type(p["object_type"])
        if p["action"] not in kind.actions:
            raise errors.InvalidInput(f"Action {p['action']} is not supported for object type "
                                      f"{kind.name}" if p["action"] in (ACCESS_SHARED,
                                                                        ACCESS_EXTERNAL)
                                      else f"Invalid input for action. Reason: "
                                           f"'{p['action']}' is not in "
                                           f"{[ACCESS_EXTERNAL, ACCESS_SHARED]}.")
        svc = self.s[kind.collection]
        found = svc.get(p["object_id"])
        if found is None or not svc.visible(ctx, found[0]):
            raise errors.NotFound(kind.name, p["object_id"])
        if not ctx.is_admin and found[0].get("project_id") != ctx.project_id:
            raise errors.InvalidInput(f"Only admins can manipulate policies on "
                                      f"{kind.collection.replace('-', ' ')} they do not own")
        return kind, found[0], found[1]

    def on_object(self, object_type: str, object_id: str) -> list[dict]:
        """The policies on one object (read through its index)."""
        kvs, _ = self.s.store.range(object_prefix(object_type, object_id))
        out = []
        for kv in kvs:
            found = self.get(orjson.loads(kv.value))
            if found is not None:
                out.append(found[0])
        return out

    # ---- planning (used by the objects' own services too) ----------------------------

    def plan_add(self, p: dict, w: Writes, keep: bool = False) -> None:
        """Write a policy and its index entries (``keep``: the policy exists, only its
        target changes); 409 if the same one exists."""
        if self.s.store.get(object_key(p)) is not None or not w.claim(object_key(p), p["id"]):
            raise errors.Conflict("An RBAC policy already exists with those values.",
                                  type_name="DuplicateRbacPolicy")
        w.put(target_key(p), p["id"])
        if not keep:
            w.put(owner_key(p), p["id"])
        w.put(self.key(p["id"]), p)

    def plan_remove(self, p: dict, w: Writes) -> None:
        """Delete a policy and its index entries."""
        w.delete(self.key(p["id"]))
        w.delete(object_key(p))
        w.delete(target_key(p))
        w.delete(owner_key(p))

    def plan_remove_all(self, object_type: str, object_id: str, w: Writes) -> None:
        """Delete every policy on an object (it is being deleted)."""
        for p in self.on_object(object_type, object_id):
            self.plan_remove(p, w)

    @staticmethod
    def wildcard(owner: dict, object_type: str, action: str) -> dict:
        """The ``*`` policy that ``shared: true`` (or ``router:external: true``) means."""
        return {"id": new_id(), "project_id": owner["project_id"],
                "tenant_id": owner["project_id"], "object_type": object_type,
                "object_id": owner["id"], "action": action, "target_tenant": WILDCARD}

    def flags(self, kind: ObjectType, policies: list[dict]) -> dict:
        """The stored attributes an object's policies imply."""
        return {attr: any(p["action"] == action and (not only_wildcard
                                                     or p["target_tenant"] == WILDCARD)
                          for p in policies)
                for action, attr, only_wildcard in kind.flags}

    def check_removable(self, kind: ObjectType, obj: dict, p: dict,
                        remaining: list[dict]) -> None:
        """Refuse (409 RbacPolicyInUse) to take away an access a project still uses:
        ``remaining`` are the object's policies once ``p`` is gone."""
        target = p["target_tenant"]
        if kind.name == "network" and p["action"] == ACCESS_EXTERNAL \
                and target == WILDCARD and obj.get("is_default"):
            raise errors.Conflict(f"RBAC policy on object {obj['id']} cannot be removed "
                                  f"because other objects depend on it.\nDetails: Default "
                                  f"external networks must be shared to everyone.",
                                  type_name="RbacPolicyInUse")
        if target == obj.get("project_id"):
            return
        still = {r["target_tenant"] for r in remaining if r["action"] == p["action"]}
        if WILDCARD in still:
            return
        users = kind.dependants(self.s, obj, p["action"]) - {obj.get("project_id")}
        lost = users - still if target == WILDCARD else users & {target}
        if lost:
            raise in_use(obj["id"], target)

    def plan_flags(self, kind: ObjectType, obj: dict, rev: int, policies: list[dict],
                   w: Writes) -> None:
        """Rewrite the object if the policies change its flags (``shared``,
        ``router:external``); require it unchanged otherwise. The last
        ``access_as_external`` policy of a network with router gateways stays (409)."""
        svc = self.s[kind.collection]
        w.expect(svc.key(obj["id"]), rev)
        flags = self.flags(kind, policies)
        if obj.get("router:external") and flags.get("router:external") is False:
            external_network_in_use(self.s, obj)
        if any(obj.get(k) != v for k, v in flags.items()):
            w.put(svc.key(obj["id"]), dict(obj, **flags, updated_at=now(),
                                           revision_number=obj.get("revision_number", 0) + 1))

    # ---- create / update / delete -------------------------------------------------------

    def new_object(self, ctx, attrs: dict) -> dict:
        """Check the object (exists, visible, owned) before the policy rules."""
        self._type(attrs["object_type"])
        obj = super().new_object(ctx, attrs)
        obj.pop("created_at", None), obj.pop("updated_at", None), obj.pop("revision_number", None)
        self._object(ctx, obj)
        return obj

    def plan_create(self, ctx, obj: dict, w: Writes, attempt: int) -> dict:
        kind, target, rev = self._object(ctx, obj)
        policies = self.on_object(kind.name, target["id"]) + [obj]
        self.plan_add(obj, w)
        self.plan_flags(kind, target, rev, policies, w)
        return obj

    def update(self, ctx, ident, body, if_match=None):
        """Change a policy's target (the only attribute that changes)."""
        changes = self.resource.validate_update(ctx, body)

        def plan(attempt: int) -> dict:
            old, rev = self.load_to_change(ctx, ident, "update", if_match, changes)
            new = {**old, **changes}
            if new == old:
                return old
            kind, target, trev = self._object(ctx, old)
            with self._guard(kind, old):
                policies = [p for p in self.on_object(kind.name, target["id"])
                            if p["id"] != old["id"]]
                self.check_removable(kind, target, old, policies)
                w = Writes()
                w.expect(self.key(ident), rev)
                w.delete(object_key(old))           # the policy and its owner entry stay
                w.delete(target_key(old))
                self.plan_add(new, w, keep=True)
                self.plan_flags(kind, target, trev, policies + [new], w)
                self.s.commit(w)
            return new
        return self.view(ctx, self.s.retrying(plan))

    def delete(self, ctx, ident, if_match=None):
        """Delete a policy unless a project still uses the access it gives."""
        def plan(attempt: int) -> None:
            old, rev = self.load_to_change(ctx, ident, "delete", if_match)
            kind = self._type(old["object_type"])
            svc = self.s[kind.collection]
            found = svc.get(old["object_id"])
            w = Writes()
            w.expect(self.key(ident), rev)
            if found is None:                 # object gone: nothing depends on it
                self.plan_remove(old, w)
                self.s.commit(w)
                return
            with self._guard(kind, old):
                policies = [p for p in self.on_object(kind.name, old["object_id"])
                            if p["id"] != old["id"]]
                self.check_removable(kind, found[0], old, policies)
                self.plan_remove(old, w)
                self.plan_flags(kind, found[0], found[1], policies, w)
                self.s.commit(w)
        self.s.retrying(plan)

    def _guard(self, kind: ObjectType, p: dict):
        """Hold the object's guard while checking who uses it: a port created meanwhile
        fails its ``unguarded`` compare and re-plans (seeing the access gone)."""
        return self.s.guarding(kind.collection, p["object_id"])

    # ---- reading ---------------------------------------------------------------------

    def list(self, ctx, q: Query):
        """Policies the caller may see (its own project's; every one for an admin)."""
        if ctx.is_admin:
            candidates = self.all()
        else:                           # only the caller's project's: read through its index
            kvs, _ = self.s.store.range(f"{BY_OWNER}{_part(ctx.project_id or '')}/")
            candidates = [f[0] for kv in kvs if (f := self.get(orjson.loads(kv.value)))]
        items = [o for o in candidates if self.visible(ctx, o) and matches(self.resource, o, q)]
        page, more, before = sort_and_page(items, q)
        return [self.view(ctx, o, q.fields) for o in page], more, before
