"""Security groups and their rules: each project's default group (made exactly once, however
many servers race), Neutron's rule checks and duplicate detection (race-free through a
claim per rule fingerprint), in-use checks, and the group's revision bump on every rule
change. A group is stored with its rules in full, so listing groups reads one range; each
rule is also stored on its own, for the rule API."""

from __future__ import annotations

import hashlib

import orjson

from plexus.api import errors, policy
from plexus.api.query import Query, matches, sort_and_page
from plexus.api.schemas.base import is_uuid, new_id
from plexus.api.schemas.security_groups import (
    DEFAULT_SG_RULE, PARENT, SECURITY_GROUP, SECURITY_GROUP_RULE, check_rule, normalized_cidr,
    rule_key,
)
from plexus.api.services.base import ALLOC, ResourceService, Retry, Writes, now
from plexus.api.services.rbac import SharedByPolicies

GROUPS = "security-groups"
DEFAULT_DESCRIPTION = "Default security group"


def ag_use_key(address_group: str, rule_id: str = "") -> str:
    """Store key recording that a rule names an address group (the prefix of all its
    uses when ``rule_id`` is empty)."""
    return f"{ALLOC}ag-use/{address_group}/{rule_id}"


def default_key(project_id: str) -> str:
    """Store key naming a project's default group; claimed once, so only one is ever made."""
    return f"{ALLOC}default-sg/{project_id}"


def fingerprint_key(rule: dict) -> str:
    """Store key that makes a rule unique within its group; it holds the rule's id."""
    digest = hashlib.sha256(rule_key(rule).encode()).hexdigest()[:32]
    return f"{ALLOC}sg-rule/{rule['security_group_id']}/{digest}"


class Missing(errors.NotFound):
    """404 in the words Neutron uses for security groups, rules and address groups."""

    def __init__(self, message: str, type_name: str):
        errors.NeutronError.__init__(self, message, type_name=type_name)


def group_missing(ident: str) -> Missing:
    """Neutron's SecurityGroupNotFound."""
    return Missing(f"Security group {ident} does not exist", "SecurityGroupNotFound")


def rule_missing(ident: str) -> Missing:
    """Neutron's SecurityGroupRuleNotFound."""
    return Missing(f"Security group rule {ident} does not exist", "SecurityGroupRuleNotFound")


def in_use(ident: str) -> errors.NeutronError:
    """Neutron's SecurityGroupInUse."""
    return errors.Conflict(f"Security Group {ident} in use.", type_name="SecurityGroupInUse")


# Neutron's seeded templates (security-groups-default-rules): egress anywhere in every
# new group; ingress from its own members in each project's default group only.
SEEDED = (("egress", "IPv4", None, True, True), ("egress", "IPv6", None, True, True),
          ("ingress", "IPv4", PARENT, True, False), ("ingress", "IPv6", PARENT, True, False))
SEEDED_KEY = f"{ALLOC}default-sg-rules-seeded"
TEMPLATES = "default-security-group-rules"


def template_key(template: dict) -> str:
    """Store key that makes a default rule unique; it holds the template's id."""
    digest = hashlib.sha256(rule_key(dict(template, security_group_id=None)).encode())
    return f"{ALLOC}default-sg-rule/{digest.hexdigest()[:32]}"


def template_rule(group: dict, template: dict) -> dict:
    """A rule a new group starts with, from a default rule template."""
    stamp = now()
    remote = group["id"] if template["remote_group_id"] == PARENT else None
    return {"id": new_id(), "project_id": group["project_id"],
            "tenant_id": group["project_id"], "description": template.get("description", ""),
            "created_at": stamp, "updated_at": stamp, "revision_number": 0,
            "security_group_id": group["id"], "direction": template["direction"],
            "ethertype": template["ethertype"], "protocol": template["protocol"],
            "port_range_min": template["port_range_min"],
            "port_range_max": template["port_range_max"],
            "remote_ip_prefix": template["remote_ip_prefix"], "remote_group_id": remote,
            "remote_address_group_id": template.get("remote_address_group_id"),
            "normalized_cidr": normalized_cidr(template["remote_ip_prefix"]),
            "belongs_to_default_sg": group["is_default"]}


def bumped(group: dict, rules: list[dict]) -> dict:
    """The group with a new rule list, its revision bumped as any rule change does."""
    return dict(group, security_group_rules=rules, updated_at=now(),
                revision_number=group.get("revision_number", 0) + 1)


class SecurityGroupService(SharedByPolicies, ResourceService):
    """Neutron security groups."""

    resource = SECURITY_GROUP

    def load(self, ctx, ident: str) -> tuple[dict, int]:
        """The group if the caller may see it; otherwise SecurityGroupNotFound."""
        found = self.get(ident)
        if found is None or not self.visible(ctx, found[0]):
            raise group_missing(ident)
        return found

    # ---- the default group -------------------------------------------------------

    def ensure_default(self, project_id: str) -> str:
        """The id of the project's default group, made with Neutron's rules if missing."""
        key = default_key(project_id)

        def plan(attempt: int) -> str:
            kv = self.s.store.get(key)
            if kv is not None:
                return orjson.loads(kv.value)
            stamp = now()
            group = {"id": new_id(), "name": "default", "project_id": project_id,
                     "tenant_id": project_id, "description": DEFAULT_DESCRIPTION,
                     "created_at": stamp, "updated_at": stamp, "revision_number": 0,
                     "tags": [], "stateful": True}
            w = Writes()
            w.claim(key, group["id"])
            self._write_new(group, True, w)
            self.s.commit(w)
            return group["id"]
        return self.s.retrying(plan)

    def ensure_for(self, ctx, q: Query) -> None:
        """Make the listed project's default group (the caller's unless filtered by
        project), as Neutron does when a project first lists groups or rules."""
        wanted = q.filters.get("project_id") or q.filters.get("tenant_id") or [ctx.project_id]
        if wanted[0] and (ctx.is_admin or wanted[0] == ctx.project_id):
            self.ensure_default(wanted[0])

    def default_group(self, project_id: str, w: Writes | None = None) -> str:
        """The project's default group id (made on first use), pinned in ``w`` if given."""
        ident = self.ensure_default(project_id)
        if w is not None:
            self.pin(ident, w)
        return ident

    # ---- RBAC (rbac-security-groups) ---------------------------------------------

    grant_types = ("security_group",)
    rbac_type = "security_group"
    shared_fact = "security_group:shared"

    def check_usable(self, ctx, project_id: str, ids: list[str],
                     w: Writes | None = None) -> None:
        """Groups a port of ``project_id`` may use (its own, one shared with the project
        by an RBAC policy; any for an admin), all stateful or all stateless; pinned in
        ``w`` so they cannot vanish (or stop being shared: the guard an RBAC delete holds)
        under the port."""
        found = {i: self.get(i) for i in ids}
        missing = [i for i, f in found.items()
                   if f is None or not (ctx.is_admin or f[0]["project_id"] == project_id
                                        or self.shared_with(f[0], project_id))]
        if missing:
            raise group_missing(", ".join(missing))
        if len({f[0]["stateful"] for f in found.values()}) > 1:
            raise errors.Conflict("Error Cannot apply both stateful and stateless security "
                                  "groups on the same port at the same time while "
                                  "attempting the operation.", type_name="SecurityGroupConflict")
        if w is not None:
            for ident in ids:
                self.pin(ident, w)

    def pin(self, ident: str, w: Writes) -> dict:
        """Make ``w`` fail unless the group is still as read now and not being deleted."""
        found = self.get(ident)
        if found is None:
            raise Retry()
        w.unguarded(GROUPS, ident)
        w.expect(self.key(ident), found[1])
        return found[0]

    # ---- reading -----------------------------------------------------------------

    def list(self, ctx, q: Query):
        """Groups the caller may see, after making its project's default group."""
        self.ensure_for(ctx, q)
        return super().list(ctx, q)

    def show(self, ctx, ident: str, fields: list[str] | None = None) -> dict:
        """One group, after making the caller's default group."""
        if ctx.project_id:
            self.ensure_default(ctx.project_id)
        return super().show(ctx, ident, fields)

    # ---- writing -----------------------------------------------------------------

    def plan_create(self, ctx, obj: dict, w: Writes, attempt: int) -> dict:
        """Make the project's default group first, then write the group and the egress
        rules every new group starts with."""
        self.ensure_default(obj["project_id"])
        self._write_new(obj, False, w)
        return obj

    def _write_new(self, group: dict, is_default: bool, w: Writes) -> None:
        """Write a new group with its starting rules (from the default rule templates
        meant for its kind) and their fingerprints."""
        group.update(is_default=is_default, shared=False)
        use = "used_in_default_sg" if is_default else "used_in_non_default_sg"
        rules = [template_rule(group, t) for t in self.s[TEMPLATES].templates()
                 if t[use]]
        rules_svc = self.s["security-group-rules"]
        ags = self.s["address-groups"]
        kept = []
        for rule in rules:
            ag = rule["remote_address_group_id"]
            if ag and ags.get(ag) is None:
                continue                  # an address group deleted since: nothing to name
            if ag:
                w.unguarded("address-groups", ag)
                w.put(ag_use_key(ag, rule["id"]), group["id"])
            w.put(rules_svc.key(rule["id"]), rule)
            w.claim(fingerprint_key(rule), rule["id"])
            kept.append(rule)
        rules = kept
        group.update(security_group_rules=rules, revision_number=1)
        w.put(self.key(group["id"]), group)

    def update(self, ctx, ident, body, if_match=None):
        """Update a group; a change of ``stateful`` holds the guard so no port joins meanwhile."""
        if isinstance(body, dict) and "stateful" in body:
            self.owned(ctx, self.load(ctx, ident)[0], "update")
            with self.s.guarding(GROUPS, ident):
                return super().update(ctx, ident, body, if_match)
        return super().update(ctx, ident, body, if_match)

    def plan_update(self, ctx, old, new, changes, w, attempt):
        """The default group keeps its name; statefulness changes only while unused."""
        if old.get("is_default") and "name" in changes:
            raise errors.Conflict("Updating default security group not allowed.",
                                  type_name="SecurityGroupCannotUpdateDefault")
        if "stateful" in changes and changes["stateful"] != old["stateful"] \
                and self._ports_using(old["id"]):
            raise in_use(old["id"])
        return new

    def _ports_using(self, ident: str) -> list[dict]:
        return self.s.where("ports", "security_groups", ident)

    def delete(self, ctx, ident, if_match=None):
        """Delete a group and its rules, refusing while ports use it."""
        self.owned(ctx, self.load(ctx, ident)[0], "delete")
        with self.s.guarding(GROUPS, ident):
            super().delete(ctx, ident, if_match)

    def plan_delete(self, ctx, obj, w):
        """In-use and default checks; the group's rules and, as Neutron's cascade does, the
        rules of other groups that name it as their remote group go with it."""
        if self._ports_using(obj["id"]):
            raise in_use(obj["id"])
        if obj.get("is_default") and not ctx.is_admin:
            raise errors.Conflict("Insufficient rights for removing default security group.",
                                  type_name="SecurityGroupCannotRemoveDefault")
        if obj.get("is_default"):
            w.delete(default_key(obj["project_id"]))
        self.s["rbac-policies"].plan_remove_all("security_group", obj["id"], w)
        rules_svc = self.s["security-group-rules"]
        for rule in obj.get("security_group_rules", []):
            rules_svc.forget(rule, w)
        kvs, _ = self.s.store.range(self.key(""))
        for kv in kvs:
            other = orjson.loads(kv.value)
            gone = [r for r in other["security_group_rules"] if r["remote_group_id"] == obj["id"]]
            if other["id"] == obj["id"] or not gone:
                continue
            for rule in gone:
                rules_svc.forget(rule, w)
            w.expect(kv.key, kv.mod_revision)
            w.put(kv.key, bumped(other, [r for r in other["security_group_rules"]
                                         if r["remote_group_id"] != obj["id"]]))


class SecurityGroupRuleService(ResourceService):
    """Neutron security group rules (immutable: created and deleted only)."""

    resource = SECURITY_GROUP_RULE

    @property
    def groups(self) -> SecurityGroupService:
        """The group service."""
        return self.s[GROUPS]

    def policy_target(self, ctx, obj: dict, access=None,
                      owners: dict | None = None) -> policy.Target:
        """The rule with its group's owner (from ``owners`` or read if a rule asks)."""
        def facts() -> dict:
            if owners is not None:
                return {"security_group:tenant_id": owners.get(obj["security_group_id"])}
            found = self.groups.get(obj["security_group_id"])
            return {"security_group:tenant_id": found[0]["project_id"] if found else None}
        return policy.Target(obj, {"security_group:tenant_id": facts})

    def load(self, ctx, ident: str) -> tuple[dict, int]:
        """The rule if the caller may see it; otherwise SecurityGroupRuleNotFound."""
        found = self.get(ident)
        if found is None or not self.visible(ctx, found[0]):
            raise rule_missing(ident)
        return found


    def list(self, ctx, q: Query):
        """Rules the caller may see, after making its project's default group."""
        self.groups.ensure_for(ctx, q)
        owners = {g["id"]: g["project_id"] for g in self.groups.all()}
        items = [r for r in self.all()
                 if policy.check(ctx, "get_security_group_rule",
                                 self.policy_target(ctx, r, owners=owners))
                 and matches(self.resource, r, q)]
        page, more, before = sort_and_page(items, q)
        return [self.view(ctx, r, q.fields) for r in page], more, before

    def create_bulk(self, ctx, bodies: list) -> list[dict]:
        """Create rules of one group atomically, after Neutron's checks."""
        fresh = [self.new_object(ctx, self.resource.validate_create(ctx, b)) for b in bodies]
        if len({r["security_group_id"] for r in fresh}) > 1:
            raise errors.BadRequest("Only allowed to update rules for one security profile at "
                                    "a time", type_name="SecurityGroupNotSingleGroupRules")
        if len({r["project_id"] for r in fresh}) > 1:
            raise errors.BadRequest("Multiple project_ids in bulk security group rule create "
                                    "not allowed", type_name="SecurityGroupRulesNotSingleProject")
        for rule in fresh:
            check_rule(rule)
        keys = [fingerprint_key(r) for r in fresh]
        if len(set(keys)) < len(keys):
            raise errors.Conflict("Duplicate Security Group Rule in POST.",
                                  type_name="DuplicateSecurityGroupRuleInPost")

        def plan(attempt: int) -> list[dict]:
            w = Writes()
            rules = [dict(r) for r in fresh]
            for rule in rules:
                self._check_remotes(ctx, rule, w)
            group, rev = self.groups.load(ctx, rules[0]["security_group_id"])
            w.unguarded(GROUPS, group["id"])
            w.expect(self.groups.key(group["id"]), rev)
            for rule, key in zip(rules, keys):
                existing = self.s.store.get(key)
                if existing is not None:
                    raise errors.Conflict(f"Security group rule already exists. Rule id is "
                                          f"{orjson.loads(existing.value)}.",
                                          type_name="SecurityGroupRuleExists")
                w.claim(key, rule["id"])
                rule.update(normalized_cidr=normalized_cidr(rule["remote_ip_prefix"]),
                            belongs_to_default_sg=bool(group.get("is_default")))
                w.put(self.key(rule["id"]), rule)
            w.put(self.groups.key(group["id"]),
                  bumped(group, group["security_group_rules"] + rules))
            self.s.commit(w)
            return rules
        return [self.view(ctx, r) for r in self.s.retrying(plan)]

    def _check_remotes(self, ctx, rule: dict, w: Writes) -> None:
        """The remote group must exist and be visible; a remote address group too (its
        use recorded, so it is not deleted while the rule names it)."""
        ag = rule.get("remote_address_group_id")
        if ag:
            self.s["address-groups"].usable(ctx, ag, rule["project_id"], w)
            w.put(ag_use_key(ag, rule["id"]), rule["security_group_id"])
        remote = rule.get("remote_group_id")
        if remote and remote != rule["security_group_id"]:
            if not is_uuid(remote):      # no group has such an id (nor a store key)
                raise group_missing(remote)
            self.groups.load(ctx, remote)
            self.groups.pin(remote, w)

    def plan_delete(self, ctx, obj, w):
        """Drop the rule from its group (bumping the group's revision) and its fingerprint."""
        found = self.groups.get(obj["security_group_id"])
        if found is not None:
            group, rev = found
            w.expect(self.groups.key(group["id"]), rev)
            w.put(self.groups.key(group["id"]), bumped(
                group, [r for r in group["security_group_rules"] if r["id"] != obj["id"]]))
        w.delete(fingerprint_key(obj))
        if obj.get("remote_address_group_id"):
            w.delete(ag_use_key(obj["remote_address_group_id"], obj["id"]))

    def forget(self, rule: dict, w: Writes) -> None:
        """Add the deletes of a rule, its fingerprint and its address group use (its group
        is handled by the caller)."""
        w.delete(self.key(rule["id"]))
        w.delete(fingerprint_key(rule))
        if rule.get("remote_address_group_id"):
            w.delete(ag_use_key(rule["remote_address_group_id"], rule["id"]))



class DefaultSecurityGroupRuleService(ResourceService):
    """Neutron's default security group rules (``security-groups-default-rules``): the
    templates of the rules a new group starts with. Seeded once with Neutron's own
    (``SEEDED``); written by admins only, created and deleted (no update). A group's
    creation reads them: one range over what admins defined, never over the cloud."""

    resource = DEFAULT_SG_RULE

    def load(self, ctx, ident: str) -> tuple[dict, int]:
        """The template; otherwise DefaultSecurityGroupRuleNotFound."""
        self.seed()
        found = self.get(ident)
        if found is None or not self.visible(ctx, found[0]):
            raise Missing(f"Default Security Group rule {ident} does not exist",
                          "DefaultSecurityGroupRuleNotFound")
        return found

    def seed(self) -> None:
        """Write Neutron's seeded templates, exactly once however many servers race."""
        if self.s.store.get(SEEDED_KEY) is not None:
            return

        def plan(attempt: int) -> None:
            if self.s.store.get(SEEDED_KEY) is not None:
                return
            w = Writes()
            w.claim(SEEDED_KEY, True)
            for direction, ethertype, remote, default_sg, other_sg in SEEDED:
                template = {"id": new_id(), "description": "", "direction": direction,
                            "ethertype": ethertype, "protocol": None, "port_range_min": None,
                            "port_range_max": None, "remote_ip_prefix": None,
                            "remote_group_id": remote, "remote_address_group_id": None,
                            "used_in_default_sg": default_sg,
                            "used_in_non_default_sg": other_sg}
                w.put(self.key(template["id"]), template)
                w.claim(template_key(template), template["id"])
            self.s.commit(w)
        self.s.retrying(plan)

    def templates(self) -> list[dict]:
        """Every template, by id (seeded first if never)."""
        self.seed()
        return sorted(self.all(), key=lambda t: t["id"])

    def list(self, ctx, q):
        """The templates, after seeding them."""
        self.seed()
        return super().list(ctx, q)

    def create_bulk(self, ctx, bodies: list) -> list[dict]:
        """Create templates atomically (admin only), after the rules' own checks; a
        duplicate is 409 DefaultSecurityGroupRuleExists."""
        self.seed()
        fresh = [self.new_object(ctx, self.resource.validate_create(ctx, b)) for b in bodies]
        for template in fresh:
            for name in ("created_at", "updated_at", "revision_number"):
                template.pop(name, None)
            check_rule(template)
        keys = [template_key(t) for t in fresh]
        if len(set(keys)) < len(keys):
            raise errors.Conflict("Duplicate Default Security Group Rule in POST.",
                                  type_name="DuplicateDefaultSgRuleInPost")

        def plan(attempt: int) -> list[dict]:
            w = Writes()
            for template, key in zip(fresh, keys):
                ag = template.get("remote_address_group_id")
                if ag and self.s["address-groups"].get(ag) is None:
                    raise errors.NotFound("address_group", ag, type_name="AddressGroupNotFound")
                existing = self.s.store.get(key)
                if existing is not None:
                    raise errors.Conflict(f"Default Security group rule already exists. Rule "
                                          f"id is {orjson.loads(existing.value)}.",
                                          type_name="DefaultSecurityGroupRuleExists")
                w.claim(key, template["id"])
                w.put(self.key(template["id"]), template)
            self.s.commit(w)
            return fresh
        return [self.view(ctx, t) for t in self.s.retrying(plan)]

    def plan_delete(self, ctx, obj, w):
        """Its duplicate key goes with it; groups made from it keep their rules."""
        w.delete(template_key(obj))
