"""QoS policies and their rules (Neutron's ``qos`` service plugin): policies are shared
through ``qos_policy`` RBAC policies like security groups; a policy's rules live inside
the policy object (one write changes both, and the policy's revision moves with its
rules, as Neutron's); ``qos_policy_id`` on networks and ports names the policy the
agents enforce (a port's own wins over its network's).

Who uses a policy is read from the server's model indexes (``ports_by_qos``,
``networks_by_qos``): an in-use check costs the policy's users, not the cloud. A port or
network that takes a policy plans ``unguarded(qos-policies, id)`` and requires the
policy's revision unchanged, so a delete (which holds the guard) and a new user never
both commit."""

from __future__ import annotations

from plexus.api import errors, policy
from plexus.api.query import Query, matches, sort_and_page
from plexus.api.schemas.base import Invalid, new_id, to_bool
from plexus.api.schemas.qos import (
    POLICY, RULE_TYPE, RULE_TYPES, VALID_DSCP_MARKS,
)
from plexus.api.services.base import ALLOC, ResourceService, Writes, now
from plexus.api.services.rbac import OBJECT_TYPES, SharedByPolicies

COLLECTION = "qos-policies"
DRIVER = "plexus"
# every rule type Neutron defines (neutron_lib's qos_consts.VALID_RULE_TYPES)
ALL_RULE_TYPES = ("bandwidth_limit", "dscp_marking", "minimum_bandwidth", "packet_rate_limit",
                  "minimum_packet_rate")


def default_key(project_id: str) -> str:
    """Claimed by a project's default policy (qos-default: one per project)."""
    return f"{ALLOC}qos-default/{project_id}"


def in_use(policy_id: str, kind: str, ident: str) -> errors.NeutronError:
    """Neutron's QosPolicyInUse (409)."""
    return errors.Conflict(f"QoS Policy {policy_id} is used by {kind} {ident}.",
                           type_name="QosPolicyInUse")


def rule_type_details(name: str) -> dict:
    """A rule type with qos-rule-type-details' ``drivers``: what the Plexus agents accept."""
    params = {
        "bandwidth_limit": [
            {"parameter_name": "max_kbps", "parameter_type": "range",
             "parameter_values": {"start": 0, "end": 2 ** 31 - 1}},
            {"parameter_name": "max_burst_kbps", "parameter_type": "range",
             "parameter_values": {"start": 0, "end": 2 ** 31 - 1}},
            {"parameter_name": "direction", "parameter_type": "choices",
             "parameter_values": ["egress", "ingress"]}],
        "dscp_marking": [
            {"parameter_name": "dscp_mark", "parameter_type": "choices",
             "parameter_values": list(VALID_DSCP_MARKS)}],
        "minimum_bandwidth": [
            {"parameter_name": "min_kbps", "parameter_type": "range",
             "parameter_values": {"start": 0, "end": 2 ** 31 - 1}},
            {"parameter_name": "direction", "parameter_type": "choices",
             "parameter_values": ["egress", "ingress"]}],
    }[name]
    return {"type": name, "drivers": [{"name": DRIVER, "supported_parameters": params}]}


class QosPolicyService(SharedByPolicies, ResourceService):
    """Neutron QoS policies, with their rules as sub-resources."""

    resource = POLICY
    sub_resources = (*RULE_TYPES.values(), RULE_TYPE)      # documented with it
    rbac_type = "qos_policy"
    grant_types = ("qos_policy",)

    # ---- policies --------------------------------------------------------------------

    def plan_create(self, ctx, obj, w, attempt):
        """No rules yet; the project's default slot; `shared` is the `*` policy."""
        obj["rules"] = []
        if obj.get("is_default"):
            self._claim_default(obj, w)
        w.put(self.key(obj["id"]), obj)
        if obj.get("shared"):
            self.plan_share_all(obj, w)
        return obj

    def _claim_default(self, obj: dict, w: Writes) -> None:
        key = default_key(obj["project_id"])
        found = self.s.get(key)
        if found is not None and found[0] != obj["id"]:
            raise errors.Conflict(f"A default QoS policy exists for project "
                                  f"{obj['project_id']}.",
                                  type_name="QoSPolicyDefaultAlreadyExists")
        if found is None:
            w.claim(key, obj["id"])

    def plan_update(self, ctx, old, new, changes, w, attempt):
        """The default slot follows ``is_default``; ``shared`` adds or removes the `*`
        policy (not while another project uses the policy only through it)."""
        if new.get("is_default") and not old.get("is_default"):
            self._claim_default(new, w)
        elif old.get("is_default") and not new.get("is_default"):
            w.delete(default_key(old["project_id"]))
        if "shared" in changes and bool(changes["shared"]) != bool(old.get("shared")):
            rbac = self.s["rbac-policies"]
            if changes["shared"]:
                self.plan_share_all(old, w)
            else:               # 409 RbacPolicyInUse while a project uses it only so
                policies = rbac.on_object(self.rbac_type, old["id"])
                going = [p for p in policies if p["target_tenant"] == "*"]
                for p in going:
                    rbac.check_removable(OBJECT_TYPES[self.rbac_type], old, p,
                                         [r for r in policies if r not in going])
                    rbac.plan_remove(p, w)
        return new

    def users(self, policy_id: str) -> list[tuple[str, dict]]:
        """Networks and ports holding the policy, read from the model indexes."""
        return ([("network", n) for n in self.s.where("networks", "qos_policy_id", policy_id)]
                + [("port", p) for p in self.s.where("ports", "qos_policy_id", policy_id)])

    def user_projects(self, obj: dict) -> set[str]:
        """Projects whose networks or ports hold the policy (RBAC in-use checks)."""
        return {o.get("project_id") for _, o in self.users(obj["id"])}

    def delete(self, ctx, ident, if_match=None):
        """Delete a policy, refusing (409 QosPolicyInUse) while a network or port holds it."""
        self.owned(ctx, self.load(ctx, ident)[0], "delete")
        with self.s.guarding(COLLECTION, ident):
            super().delete(ctx, ident, if_match)

    def plan_delete(self, ctx, obj, w):
        for kind, user in self.users(obj["id"]):
            raise in_use(obj["id"], kind, user["id"])
        if obj.get("is_default"):
            w.delete(default_key(obj["project_id"]))
        self.plan_forget_policies(obj, w)

    def default_for(self, project_id: str) -> str | None:
        """The project's default policy (qos-default), if any."""
        found = self.s.get(default_key(project_id))
        return found[0] if found else None

    # ---- users: networks and ports ---------------------------------------------------

    def plan_attach(self, ctx, obj: dict, old: dict | None, w: Writes) -> None:
        """A network or port (``obj``, ``old`` before an update) that names a policy: the
        caller must see it (404 QosPolicyNotFound), and it must not be deleted meanwhile."""
        ident = obj.get("qos_policy_id")
        if not ident or (old is not None and old.get("qos_policy_id") == ident):
            return
        found = self.get(ident)
        if found is None or not self.visible(ctx, found[0]):
            raise errors.NotFound("QoS policy", ident, type_name="QosPolicyNotFound")
        w.unguarded(COLLECTION, ident)
        w.expect(self.key(ident), found[1])

    # ---- rules -----------------------------------------------------------------------

    def _rule_policy(self, ctx, policy_id: str) -> tuple[dict, int]:
        found = self.get(policy_id)
        if found is None or not self.visible(ctx, found[0]):
            raise errors.NotFound("QoS policy", policy_id, type_name="QosPolicyNotFound")
        return found

    def _rule_view(self, rule: dict, fields=None) -> dict:
        res = RULE_TYPES[rule["type"]]
        out = {a.name: rule.get(a.name) for a in res.attrs}
        if fields:
            out = {k: v for k, v in out.items() if k in fields}
        return out

    def _find_rule(self, policy_obj: dict, kind: str, rule_id: str) -> dict:
        for rule in policy_obj.get("rules", []):
            if rule["id"] == rule_id and rule["type"] == kind:
                return rule
        raise _rule_not_found(rule_id, policy_obj["id"])

    def list_rules(self, ctx, policy_id: str, kind: str, q: Query) -> list[dict]:
        obj, _ = self._rule_policy(ctx, policy_id)
        policy.enforce(ctx, f"get_policy_{kind}_rule", self.policy_target(ctx, obj))
        res = RULE_TYPES[kind]
        items = [r for r in obj.get("rules", []) if r["type"] == kind
                 and matches(res, self._rule_view(r), q)]
        page, _, _ = sort_and_page(items, q)
        return [self._rule_view(r, q.fields) for r in page]

    def show_rule(self, ctx, policy_id: str, kind: str, rule_id: str,
                  fields=None) -> dict:
        obj, _ = self._rule_policy(ctx, policy_id)
        policy.enforce(ctx, f"get_policy_{kind}_rule", self.policy_target(ctx, obj))
        return self._rule_view(self._find_rule(obj, kind, rule_id), fields)

    def _check_rules(self, rules: list[dict], rule: dict) -> None:
        """One bandwidth-limit and one minimum-bandwidth rule per direction, one DSCP
        rule per policy (409); a minimum above the same direction's limit (409)."""
        same = [r for r in rules if r["type"] == rule["type"] and r["id"] != rule["id"]
                and r.get("direction") == rule.get("direction")]
        if same:
            what = {"bandwidth_limit": "QosBandwidthLimitRule",
                    "dscp_marking": "QosDscpMarkingRule",
                    "minimum_bandwidth": "QosMinimumBandwidthRule"}[rule["type"]]
            attrs = ["qos_policy_id"] + (["direction"] if "direction" in rule else [])
            raise errors.Conflict(f"Failed to create a duplicate {what}: for attribute(s) "
                                  f"{attrs} with value(s) {rule['qos_policy_id']}",
                                  type_name="NeutronDbObjectDuplicateEntry")
        limits = {r.get("direction"): r for r in rules + [rule]
                  if r["type"] == "bandwidth_limit"}
        for r in rules + [rule]:
            if r["type"] != "minimum_bandwidth":
                continue
            limit = limits.get(r.get("direction"))
            if limit is not None and limit["max_kbps"] < r["min_kbps"]:
                raise errors.Conflict(
                    f"Rule {r['type']} in policy {r['qos_policy_id']} conflicts with "
                    f"rule bandwidth_limit: min_kbps {r['min_kbps']} is greater than "
                    f"max_kbps {limit['max_kbps']}.", type_name="QoSRuleParameterConflict")

    def _write_rules(self, ctx, policy_id: str, kind: str, action: str, change) -> dict:
        """Read the policy, let ``change(rules)`` return (new rules, the rule), write."""
        def plan(attempt: int):
            obj, rev = self._rule_policy(ctx, policy_id)
            policy.enforce(ctx, f"{action}_policy_{kind}_rule", self.policy_target(ctx, obj))
            rules, rule = change([dict(r) for r in obj.get("rules", [])])
            new = dict(obj, rules=rules, updated_at=now(),
                       revision_number=obj.get("revision_number", 0) + 1)
            w = Writes()
            w.expect(self.key(policy_id), rev)
            w.put(self.key(policy_id), new)
            self.s.commit(w)
            return obj, new, rule
        old, new, rule = self.s.retrying(plan)
        self.changed(old, new)
        return rule

    def create_rule(self, ctx, policy_id: str, kind: str, body) -> dict:
        res = RULE_TYPES[kind]
        attrs = res.validate_create(ctx, body)

        def change(rules):
            rule = {"id": new_id(), "qos_policy_id": policy_id, "type": kind, **attrs}
            self._check_rules(rules, rule)
            return rules + [rule], rule
        return self._rule_view(self._write_rules(ctx, policy_id, kind, "create", change))

    def update_rule(self, ctx, policy_id: str, kind: str, rule_id: str, body) -> dict:
        changes = RULE_TYPES[kind].validate_update(ctx, body)

        def change(rules):
            for i, r in enumerate(rules):
                if r["id"] == rule_id and r["type"] == kind:
                    rules[i] = rule = {**r, **changes}
                    self._check_rules(rules[:i] + rules[i + 1:], rule)
                    return rules, rule
            raise _rule_not_found(rule_id, policy_id)
        return self._rule_view(self._write_rules(ctx, policy_id, kind, "update", change))

    def delete_rule(self, ctx, policy_id: str, kind: str, rule_id: str) -> None:
        def change(rules):
            kept = [r for r in rules if not (r["id"] == rule_id and r["type"] == kind)]
            if len(kept) == len(rules):
                raise _rule_not_found(rule_id, policy_id)
            return kept, None
        self._write_rules(ctx, policy_id, kind, "delete", change)

    # ---- rule types -----------------------------------------------------------------

    def rule_types(self, ctx, q: Query, all_rules=None, all_supported=None) -> list[dict]:
        """The rule types the agents support (``all_supported``: the same, one driver);
        ``all_rules``: every type Neutron defines, supported or not (qos-rule-type-filter;
        both at once is a 400, as Neutron's)."""
        policy.enforce(ctx, "get_rule_type", {})
        flags = {}
        for name, value in (("all_rules", all_rules), ("all_supported", all_supported)):
            if value is not None:
                try:
                    flags[name] = to_bool(value)
                except Invalid as exc:
                    raise errors.InvalidInput(str(exc)) from None
        if flags.get("all_rules") and flags.get("all_supported"):
            raise errors.BadRequest("Use only one of the rule type filters: 'all_rules' or "
                                    "'all_supported'.")
        names = ALL_RULE_TYPES if flags.get("all_rules") else tuple(RULE_TYPES)
        return [{"type": t} for t in names if matches(RULE_TYPE, {"type": t}, q)]

    def rule_type(self, ctx, name: str) -> dict:
        policy.enforce(ctx, "get_rule_type", {})
        if name not in RULE_TYPES:
            raise errors.NotFound("rule_type", name, type_name="QosRuleTypeNotFound")
        return rule_type_details(name)


def _rule_not_found(rule_id: str, policy_id: str) -> errors.NeutronError:
    """Neutron's QosRuleNotFound (404)."""
    return errors.NotFound("QoS rule", rule_id, type_name="QosRuleNotFound")

