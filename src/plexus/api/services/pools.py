"""Subnet pools and address scopes, with Neutron's semantics (``db_base_plugin_v2``,
``ipam/subnet_alloc.py``, ``db/address_scope_db.py``).

Allocation is atomic in the store and proportional to the pool, never to the cloud:

- ``alloc/prefix/<pool>/<cidr>`` indexes the prefixes a pool has given out (value: the
  subnet and its project). A subnet from a pool claims its key in the subnet's own
  transaction; deleting the subnet deletes it.
- ``alloc/seq/pool/<pool>`` is the pool's allocation lock (Neutron's pool "hash"): every
  allocation, prefix removal and pool delete requires it unchanged since it read the
  index and rewrites it, so two concurrent allocations of overlapping prefixes cannot
  both commit; the loser re-plans with the winner's prefix in the index.
- ``alloc/scope/<scope>/<pool>`` indexes the pools of an address scope with their
  prefixes, under the lock ``alloc/seq/scope/<scope>``: pools of one scope never
  overlap, and a scope in use is never deleted.
- ``alloc/defaultpool/<version>`` names the one default pool of each IP version.

Sharing is by RBAC ``access_as_shared`` policies (``services/rbac.py``), as Neutron's
``rbac-subnetpool`` and ``rbac-address-scope``: ``shared: true`` is the ``*`` policy; a
policy naming a project lets that project see the pool (and allocate subnets from it) or
the scope (and put its pools in it). A policy is not revoked while its target uses it:
subnets of the target from the pool (the pool's prefix index), pools of the target in the
scope (the scope's member index); allocations and joins respect the guard a revoke holds.

The address scope of a subnet (its pool's) is written on the subnet under a hidden key
(``plexus:address_scope``, for the data plane) and on its network
(``ipv4_address_scope`` / ``ipv6_address_scope``); changing a pool's scope rewrites the
subnets of that pool and their networks in the same transaction.
"""

from __future__ import annotations

from typing import Any

import orjson

from plexus.api import errors, policy
from plexus.api.schemas.pools import ADDRESS_SCOPE, SUBNETPOOL
from plexus.api.services.base import ALLOC, ResourceService, Retry, Writes, now
from plexus.api.services.rbac import SharedByPolicies
from plexus.ipam import IpamError
from plexus.ipam import prefixes as px
from plexus.store import Put


def prefix_key(pool_id: str, cidr: str = "") -> str:
    """Index key of a prefix a pool gave out (the pool's index prefix when cidr is '')."""
    return f"{ALLOC}prefix/{pool_id}/{cidr}"


def seq_key(kind: str, ident: str) -> str:
    """The allocation lock of a pool or scope."""
    return f"{ALLOC}seq/{kind}/{ident}"


def member_key(scope_id: str, pool_id: str = "") -> str:
    """Index key of a pool in an address scope."""
    return f"{ALLOC}scope/{scope_id}/{pool_id}"


def default_key(version: int) -> str:
    """The key naming the default pool of an IP version."""
    return f"{ALLOC}defaultpool/{version}"


def ipam_error(exc: IpamError) -> errors.NeutronError:
    """An allocation error as Neutron answers it: 400 for invalid input, 409 otherwise."""
    cls = errors.BadRequest if exc.kind == "invalid" else errors.Conflict
    return cls(exc.message, type_name=exc.neutron_type)


def lock(services, w: Writes, key: str, delete: bool = False) -> None:
    """Require ``key`` unchanged since now, and rewrite (or delete) it at commit."""
    if key in w.written:
        return
    kv = services.store.get(key)
    w.expect(key, kv.mod_revision if kv is not None else 0)
    if delete:
        if kv is not None:
            w.delete(key)
    else:
        w.put(key, b"%d" % (int(kv.value) + 1 if kv is not None else 1))


class SubnetPoolService(SharedByPolicies, ResourceService):
    """Neutron subnet pools."""

    resource = SUBNETPOOL
    rbac_type = "subnetpool"
    grant_types = ("subnetpool",)

    def scope_members(self, scope_id: str) -> set[str]:
        """Projects owning the pools of an address scope (its member index)."""
        base = member_key(scope_id)
        kvs, _ = self.s.store.range(base)
        out = set()
        for kv in kvs:
            project = orjson.loads(kv.value).get("project_id")
            if project is None:             # written before members named their project
                found = self.get(kv.key[len(base):])
                project = found[0].get("project_id") if found else None
            out.add(project)
        return out

    # ---- reading ------------------------------------------------------------------

    def allocations(self, pool_id: str, w: Writes | None = None) -> dict[str, dict]:
        """The prefixes the pool has given out (cidr -> {subnet_id, project_id}), with
        those planned in ``w``."""
        base = prefix_key(pool_id)
        kvs, _ = self.s.store.range(base)
        out = {kv.key[len(base):]: orjson.loads(kv.value) for kv in kvs}
        if w is not None:
            for op in w.ops:
                if op.key.startswith(base):
                    if isinstance(op, Put):
                        out[op.key[len(base):]] = orjson.loads(op.value)
                    else:
                        out.pop(op.key[len(base):], None)
        return out

    def _read(self, pool: dict) -> None:
        """Neutron's SubnetPoolReader: version from the prefixes, prefixes compacted,
        bounds defaulted and checked (400 when they do not hold)."""
        try:
            version = px.prefix_version(pool["prefixes"])
            pool["prefixes"] = px.compact(pool["prefixes"])
            if pool.get("min_prefixlen") is None:
                pool["min_prefixlen"] = px.DEFAULT_MIN_PREFIXLEN[version]
            if pool.get("max_prefixlen") is None:
                pool["max_prefixlen"] = px.MAX_PREFIXLEN[version]
            if pool.get("default_prefixlen") is None:
                pool["default_prefixlen"] = pool["min_prefixlen"]
            px.check_bounds(version, pool["min_prefixlen"], pool["max_prefixlen"],
                            pool["default_prefixlen"])
        except IpamError as exc:
            raise ipam_error(exc) from None
        pool["ip_version"] = version

    # ---- writing ------------------------------------------------------------------

    def _claim_default(self, pool: dict, w: Writes) -> None:
        if not w.claim(default_key(pool["ip_version"]), pool["id"]) \
                or self.s.store.get(default_key(pool["ip_version"])) is not None:
            raise errors.InvalidInput("A default subnetpool for this IP family has already "
                                      "been set. Only one default may exist per IP family")

    def _join_scope(self, ctx, pool: dict, w: Writes) -> None:
        """Put the pool in its address scope: the scope must be visible to the caller and
        of the pool's version, and no other pool of the scope may overlap it."""
        scopes = self.s["address-scopes"]
        scope_id = pool["address_scope_id"]
        found = scopes.get(scope_id)
        if found is None:
            raise errors.NotFound("address_scope", scope_id)
        scope, rev = found
        if not scopes.visible(ctx, scope):
            raise errors.BadRequest(
                f"Illegal subnetpool association: subnetpool {pool['id']} cannot be "
                f"associated with address scope {scope_id}.",
                type_name="IllegalSubnetPoolAssociationToAddressScope")
        if scope["ip_version"] != pool["ip_version"]:
            raise errors.BadRequest(
                f"Illegal subnetpool association: subnetpool {pool['id']} cannot associate "
                f"with address scope {scope_id} because subnetpool ip_version is not "
                f"{scope['ip_version']}.",
                type_name="IllegalSubnetPoolIpVersionAssociationToAddressScope")
        w.expect(scopes.key(scope_id), rev)
        w.unguarded("address-scopes", scope_id)     # not while a revoke checks its users
        lock(self.s, w, seq_key("scope", scope_id))
        base = member_key(scope_id)
        kvs, _ = self.s.store.range(base)
        for kv in kvs:
            if kv.key[len(base):] != pool["id"] and px.overlap(
                    orjson.loads(kv.value)["prefixes"], pool["prefixes"]):
                raise errors.Conflict("Failed to associate address scope: subnetpools "
                                      "within an address scope must have unique prefixes.",
                                      type_name="AddressScopePrefixConflict")
        w.put(member_key(scope_id, pool["id"]), {"prefixes": pool["prefixes"],
                                                 "project_id": pool["project_id"]})

    def plan_create(self, ctx, obj, w, attempt):
        """Read and check the pool; claim the default slot; join its scope."""
        self._read(obj)
        if obj["is_default"]:
            self._claim_default(obj, w)
        if obj.get("address_scope_id"):
            self._join_scope(ctx, obj, w)
        w.put(self.key(obj["id"]), obj)
        if obj.get("shared"):
            self.plan_share_all(obj, w)
        return obj

    def plan_update(self, ctx, old, new, changes, w, attempt):
        """Prefixes only grow; bounds rechecked; the default slot and the scope follow."""
        if "prefixes" in changes:
            try:
                grown = px.covers(changes["prefixes"], old["prefixes"])
            except ValueError:
                grown = False
            if not grown:
                raise errors.BadRequest("Illegal update to prefixes: Existing prefixes must "
                                        "be a subset of the new prefixes.",
                                        type_name="IllegalSubnetPoolPrefixUpdate")
        self._check_scope_owner(ctx, old)
        self._read(new)
        if new["ip_version"] != old["ip_version"]:
            raise errors.BadRequest("Cannot mix IPv4 and IPv6 prefixes in a subnet pool.",
                                    type_name="PrefixVersionMismatch")
        self._plan_rewrite(ctx, old, new, w)
        return new

    def _check_scope_owner(self, ctx, old: dict) -> None:
        """Neutron's ``_check_subnetpool_update_allowed``: a pool in a shared scope of
        another project cannot be changed by a non-admin."""
        scope_id = old.get("address_scope_id")
        if not scope_id or ctx.is_admin:
            return
        found = self.s["address-scopes"].get(scope_id)
        if found is not None and found[0].get("project_id") != ctx.project_id:
            raise errors.BadRequest(
                f"Illegal subnetpool update : subnetpool {old['id']} cannot be updated when "
                f"associated with shared address scope {scope_id}.",
                type_name="IllegalSubnetPoolUpdate")

    def _plan_rewrite(self, ctx, old: dict, new: dict, w: Writes) -> None:
        """The index writes a changed pool needs: default slot, scope membership, and the
        scope of its subnets when the pool changes scope."""
        if new["is_default"] and not old.get("is_default"):
            self._claim_default(new, w)
        elif old.get("is_default") and not new["is_default"]:
            w.delete(default_key(old["ip_version"]))
        old_scope, new_scope = old.get("address_scope_id"), new.get("address_scope_id")
        if old_scope and old_scope != new_scope:
            w.delete(member_key(old_scope, old["id"]))
        if new_scope and (new_scope != old_scope or new["prefixes"] != old["prefixes"]):
            self._join_scope(ctx, new, w)
        if new_scope != old_scope:
            lock(self.s, w, seq_key("pool", old["id"]))
            self.s["subnets"].rescope(
                [a["subnet_id"] for a in self.allocations(old["id"]).values()], new_scope, w)

    def plan_delete(self, ctx, obj, w):
        """Refuse while subnets hold prefixes of the pool; free its index entries."""
        lock(self.s, w, seq_key("pool", obj["id"]), delete=True)
        if self.allocations(obj["id"]):
            raise errors.BadRequest("Unable to delete subnet pool: Subnet pool has existing "
                                    "allocations", type_name="SubnetPoolDeleteError")
        if obj.get("is_default"):
            w.delete(default_key(obj["ip_version"]))
        if obj.get("address_scope_id"):
            w.delete(member_key(obj["address_scope_id"], obj["id"]))
        self.plan_forget_policies(obj, w)

    # ---- prefix operations (subnetpool-prefix-ops) -----------------------------------

    def change_prefixes(self, ctx, ident: str, body: Any, add: bool) -> dict:
        """``PUT /subnetpools/{id}/add_prefixes`` and ``remove_prefixes``: body and answer
        ``{"prefixes": [...]}``. Removing a prefix a subnet uses is 400."""
        action = "add_prefixes" if add else "remove_prefixes"
        if not isinstance(body, dict) or not isinstance(body.get("prefixes"), list) \
                or set(body) != {"prefixes"}:
            raise errors.BadRequest(f"Invalid input for operation: {action} requires a body "
                                    f"{{\"prefixes\": [<cidr>, ...]}}.",
                                    type_name="InvalidInput")
        given = self._valid_prefixes(body["prefixes"])

        def plan(attempt: int) -> dict:
            old, rev = self.load(ctx, ident)
            policy.enforce(ctx, action, policy.Target(old))
            if not given:
                return old
            w = Writes()
            w.expect(self.key(ident), rev)
            if add:
                wanted = old["prefixes"] + given
            else:
                if not px.overlap(old["prefixes"], given):
                    return old
                lock(self.s, w, seq_key("pool", ident))
                if px.overlap(self.allocations(ident), given):
                    raise errors.BadRequest("Illegal update to prefixes: One or more the "
                                            "prefixes to be removed is in use by a subnet.",
                                            type_name="IllegalSubnetPoolPrefixUpdate")
                wanted = px.subtract(old["prefixes"], given)
            if any(px.prefix_version([p]) != old["ip_version"] for p in given):
                raise errors.BadRequest("Cannot mix IPv4 and IPv6 prefixes in a subnet pool.",
                                        type_name="PrefixVersionMismatch")
            self._check_scope_owner(ctx, old)
            new = dict(old, prefixes=px.compact(wanted))
            if new["prefixes"] == old["prefixes"]:
                return old
            new.update(revision_number=old.get("revision_number", 0) + 1, updated_at=now())
            self._plan_rewrite(ctx, old, new, w)
            w.put(self.key(ident), new)
            self.s.commit(w)
            return new
        return {"prefixes": self.s.retrying(plan)["prefixes"]}

    @staticmethod
    def _valid_prefixes(values: list) -> list[str]:
        convert = SUBNETPOOL.attr("prefixes").convert
        try:
            return convert(values)
        except Exception as exc:        # the converter's Invalid: Neutron's 400
            raise errors.InvalidInput(str(exc)) from None

    # ---- allocation, for subnets -------------------------------------------------------

    def resolve(self, ctx, subnet: dict) -> tuple[dict, int] | None:
        """The pool a new subnet takes its prefix from (``subnetpool_id``, or the default
        pool of its version with ``use_default_subnetpool``), or None."""
        pool_id = subnet.get("subnetpool_id")
        if subnet.get("use_default_subnetpool"):
            if pool_id:
                raise errors.bad_request("subnets", "subnetpool_id and "
                                         "use_default_subnetpool cannot both be specified")
            kv = self.s.store.get(default_key(subnet["ip_version"]))
            if kv is None:
                raise errors.bad_request("subnets", f"No default subnetpool found for "
                                                    f"IPv{subnet['ip_version']}")
            pool_id = orjson.loads(kv.value)
        if not pool_id:
            return None
        found = self.get(pool_id)
        if found is None or not self.visible(ctx, found[0]):
            raise errors.NotFound("subnetpool", pool_id)
        return found

    def allocate(self, pool: dict, pool_rev: int, subnet: dict, prefixlen: int | None,
                 w: Writes) -> str:
        """Choose (or check, when the subnet names a CIDR) the subnet's prefix from the
        pool and claim it in ``w``; returns the CIDR."""
        if pool["ip_version"] != subnet["ip_version"]:
            raise errors.BadRequest(f"Cannot allocate IPv{subnet['ip_version']} subnet from "
                                    f"IPv{pool['ip_version']} subnet pool")
        cidr = subnet.get("cidr")
        if cidr is not None:
            prefixlen = int(cidr.rsplit("/", 1)[1])
        elif prefixlen is None:
            prefixlen = pool["default_prefixlen"]
        w.expect(self.key(pool["id"]), pool_rev)
        w.unguarded("subnetpools", pool["id"])     # not while a revoke checks its users
        lock(self.s, w, seq_key("pool", pool["id"]))
        allocated = self.allocations(pool["id"], w)
        try:
            px.check_prefixlen(prefixlen, pool["min_prefixlen"], pool["max_prefixlen"])
            if pool.get("default_quota"):
                used = sum(px.quota_units(c) for c, a in allocated.items()
                           if a.get("project_id") == subnet["project_id"])
                if used + 2 ** max(px.QUOTA_UNIT[pool["ip_version"]] - prefixlen, 0) \
                        > pool["default_quota"]:
                    raise errors.OverQuota("Per-tenant subnet pool prefix quota exceeded",
                                           type_name="SubnetPoolQuotaExceeded")
            if cidr is None:
                cidr = px.choose_prefix(pool["prefixes"], list(allocated), prefixlen)
            else:
                px.check_specific(pool["prefixes"], list(allocated), cidr)
        except IpamError as exc:
            raise ipam_error(exc) from None
        if not w.claim(prefix_key(pool["id"], cidr), {"subnet_id": subnet["id"],
                                                      "project_id": subnet["project_id"]}):
            raise Retry()
        return cidr


class AddressScopeService(SharedByPolicies, ResourceService):
    """Neutron address scopes."""

    resource = ADDRESS_SCOPE
    rbac_type = "address_scope"
    grant_types = ("address_scope",)

    def plan_create(self, ctx, obj, w, attempt):
        """IP version 4 or 6."""
        if obj["ip_version"] not in (4, 6):
            raise errors.InvalidInput(f"{obj['ip_version']} is not in [4, 6]")
        w.put(self.key(obj["id"]), obj)
        if obj.get("shared"):
            self.plan_share_all(obj, w)
        return obj

    def plan_update(self, ctx, old, new, changes, w, attempt):
        """A shared scope cannot be unshared."""
        if old.get("shared") and not new.get("shared"):
            raise errors.BadRequest(f"Unable to update address scope {old['id']} : Shared "
                                    f"address scope can't be unshared.",
                                    type_name="AddressScopeUpdateError")
        if new.get("shared") and not old.get("shared"):
            self.plan_share_all(old, w)
        return new

    def plan_delete(self, ctx, obj, w):
        """Refuse while subnet pools are in the scope (409 AddressScopeInUse)."""
        lock(self.s, w, seq_key("scope", obj["id"]), delete=True)
        kvs, _ = self.s.store.range(member_key(obj["id"]))
        if kvs:
            raise errors.Conflict(f"Unable to complete operation on address scope "
                                  f"{obj['id']}. There are one or more subnet pools in use "
                                  f"on the address scope", type_name="AddressScopeInUse")
        self.plan_forget_policies(obj, w)

