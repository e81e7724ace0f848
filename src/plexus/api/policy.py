"""Authorization as data: one table of rules per resource, action and attribute, after
Neutron's default policies (``neutron/conf/policies/*.py``, the secure-RBAC "project
member / project reader" defaults), and ``enforce``, the one place they are evaluated.

A rule names its *checks*; it passes when any of them does. A check reads the caller
(``ctx``) and the *target*: the object being read or written, with the facts about
its parents that Neutron puts in its policy target (``network:tenant_id``,
``network:shared``, ``security_group:tenant_id``). Parent facts are computed lazily,
so a rule that an admin or the owner passes costs no read of the parent.

Attribute rules (``create_port:mac_address``, ``update_port:fixed_ips:ip_address``)
are checked, as Neutron does, for attributes a create sets to something other than
their default and for every attribute an update names. Read rules of attributes
(``get_port:binding:host_id``) hide the attribute from callers who fail them; they
must not depend on the object.

``python -m plexus.api.policy --markdown`` prints the table that docs/api.md embeds.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from plexus.api import errors

# ---- checks ---------------------------------------------------------------------------


def _roles(ctx) -> frozenset:
    return getattr(ctx, "roles", frozenset())


def _member(ctx) -> bool:
    """Keystone's implied roles: admin implies member."""
    return bool({"admin", "member"} & _roles(ctx))


def _reader(ctx) -> bool:
    """Keystone's implied roles: admin and member imply reader."""
    return bool({"admin", "member", "reader"} & _roles(ctx))


def _project(target) -> Any:
    return target.get("project_id") or target.get("tenant_id")


CHECKS: dict[str, tuple[Callable[[Any, "Target"], bool], str]] = {
    "admin": (lambda ctx, t: ctx.is_admin, "the caller has the admin role"),
    "project_member": (lambda ctx, t: _member(ctx) and _project(t) == ctx.project_id,
                       "a member of the object's project"),
    "project_reader": (lambda ctx, t: _reader(ctx) and _project(t) == ctx.project_id,
                       "a reader (or member) of the object's project"),
    "reader": (lambda ctx, t: _reader(ctx), "the caller has the reader (or member) role"),
    "authenticated": (lambda ctx, t: True, "any authenticated caller"),
    "network_owner": (lambda ctx, t: t.get("network:tenant_id") == ctx.project_id,
                      "the caller's project owns the port's or subnet's network"),
    "network_owner_member": (lambda ctx, t: _member(ctx)
                             and t.get("network:tenant_id") == ctx.project_id,
                             "a member of the project that owns the network"),
    "sg_owner": (lambda ctx, t: t.get("security_group:tenant_id") == ctx.project_id,
                 "the caller's project owns the rule's security group"),
    "sg_owner_member": (lambda ctx, t: _member(ctx)
                        and t.get("security_group:tenant_id") == ctx.project_id,
                        "a member of the project that owns the rule's security group"),
    "shared": (lambda ctx, t: bool(t.get("network:shared")),
               "the network is shared with the caller's project (`shared: true` as the "
               "caller sees it: an `access_as_shared` RBAC policy targets the project or `*`)"),
    "external": (lambda ctx, t: bool(t.get("network:router:external")),
                 "the network is external for the caller's project (an "
                 "`access_as_external` RBAC policy targets the project or `*`)"),
    "sg_shared": (lambda ctx, t: bool(t.get("security_group:shared")),
                  "the security group is shared with the caller's project (`shared: true` as "
                  "the caller sees it, through an `access_as_shared` RBAC policy)"),
    "not_wildcard": (lambda ctx, t: t.get("target_tenant") != "*",
                     "the RBAC policy targets one project, not `*`"),
    "shared_object": (lambda ctx, t: bool(t.get("shared")),
                      "the object itself is shared (a subnet pool's, address scope's or QoS "
                      "policy's `shared: true`)"),
    "parent_owner_member": (lambda ctx, t: _member(ctx)
                            and t.get("ext_parent_tenant_id") == ctx.project_id,
                            "a member of the project owning the parent (a port "
                            "forwarding's floating IP)"),
    "parent_owner_reader": (lambda ctx, t: _reader(ctx)
                            and t.get("ext_parent_tenant_id") == ctx.project_id,
                            "a reader (or member) of the project owning the parent"),
    "not_network_device": (lambda ctx, t: not str(t.get("device_owner") or "")
                           .startswith("network:"),
                           "the port's `device_owner` does not start with `network:`"),
}

# ---- the table --------------------------------------------------------------------------

ADMIN = ("admin",)
ADMIN_OR_MEMBER = ("admin", "project_member")
ADMIN_OR_READER = ("admin", "project_reader")
ADMIN_OR_NET_OWNER = ("admin", "network_owner")


@dataclass(frozen=True)
class Rule:
    """One policy: its name (``<action>_<resource>[:<attribute>[:<key>]]``) and the checks
    any of which allows it."""

    name: str
    allow: tuple[str, ...]
    doc: str = ""


def _rules(*rows: tuple) -> dict[str, Rule]:
    out = {}
    for row in rows:
        rule = Rule(*row)
        assert rule.name not in out, rule.name
        assert all(c in CHECKS for c in rule.allow), rule
        out[rule.name] = rule
    return out


def _each(actions: Iterable[str], resource: str, attrs: Iterable[str],
          allow: tuple[str, ...], doc: str = "") -> list[tuple]:
    return [(f"{a}_{resource}:{attr}", allow, doc) for a in actions for attr in attrs]


PROVIDER = ("provider:network_type", "provider:physical_network", "provider:segmentation_id")
BINDING_ADMIN = ("binding:host_id", "binding:profile")

RULES: dict[str, Rule] = _rules(
    # networks
    ("create_network", ADMIN_OR_MEMBER),
    *_each(("create", "update"), "network", ("shared",), ADMIN, "share a network"),
    *_each(("create", "update"), "network", ("router:external", "is_default"), ADMIN),
    *_each(("create", "update", "get"), "network", PROVIDER, ADMIN),
    ("get_network", ADMIN_OR_READER + ("shared", "external")),
    ("update_network", ADMIN_OR_MEMBER),
    ("delete_network", ADMIN_OR_MEMBER),
    # subnets
    ("create_subnet", ("admin", "network_owner_member")),
    *_each(("create", "update"), "subnet", ("service_types",), ADMIN),
    *_each(("create", "get"), "subnet", ("segment_id",), ADMIN),
    ("get_subnet", ADMIN_OR_READER + ("network_owner", "shared"),
     "as Neutron: a subnet of an external network that is not shared is not shown to "
     "other projects (its network is)"),
    ("update_subnet", ("admin", "network_owner_member")),
    ("delete_subnet", ("admin", "network_owner_member")),
    # ports
    ("create_port", ADMIN_OR_MEMBER),
    ("create_port:device_owner", ("not_network_device",) + ADMIN_OR_NET_OWNER,
     "a `network:*` owner (router, DHCP, floating IP) only on the caller's own network"),
    ("create_port:mac_address", ADMIN_OR_NET_OWNER),
    ("create_port:fixed_ips", ADMIN_OR_NET_OWNER + ("shared",)),
    ("create_port:fixed_ips:ip_address", ADMIN_OR_NET_OWNER, "choose the address"),
    ("create_port:fixed_ips:subnet_id", ADMIN_OR_NET_OWNER + ("shared",)),
    ("create_port:port_security_enabled", ADMIN_OR_NET_OWNER),
    ("create_port:allowed_address_pairs", ADMIN_OR_NET_OWNER),
    ("create_port:allowed_address_pairs:mac_address", ADMIN_OR_NET_OWNER),
    ("create_port:allowed_address_pairs:ip_address", ADMIN_OR_NET_OWNER),
    *_each(("create", "update", "get"), "port", BINDING_ADMIN, ADMIN),
    *_each(("get",), "port", ("binding:vif_type", "binding:vif_details"), ADMIN),
    ("get_port", ADMIN_OR_READER + ("network_owner",)),
    ("update_port", ADMIN_OR_MEMBER),
    ("update_port:device_owner", ("not_network_device",) + ADMIN_OR_NET_OWNER),
    ("update_port:mac_address", ADMIN),
    ("update_port:fixed_ips", ADMIN_OR_NET_OWNER),
    ("update_port:fixed_ips:ip_address", ADMIN_OR_NET_OWNER),
    ("update_port:fixed_ips:subnet_id", ADMIN_OR_NET_OWNER + ("shared",)),
    ("update_port:port_security_enabled", ADMIN_OR_NET_OWNER),
    ("update_port:allowed_address_pairs", ADMIN_OR_NET_OWNER),
    ("update_port:allowed_address_pairs:mac_address", ADMIN_OR_NET_OWNER),
    ("update_port:allowed_address_pairs:ip_address", ADMIN_OR_NET_OWNER),
    ("delete_port", ADMIN_OR_MEMBER + ("network_owner_member",)),
    # security groups and rules
    ("create_security_group", ADMIN_OR_MEMBER),
    ("get_security_group", ADMIN_OR_READER + ("sg_shared",)),
    ("update_security_group", ADMIN_OR_MEMBER),
    ("delete_security_group", ADMIN_OR_MEMBER),
    ("create_security_group_rule", ADMIN_OR_MEMBER),
    ("get_security_group_rule", ADMIN_OR_READER + ("sg_owner",)),
    ("delete_security_group_rule", ADMIN_OR_MEMBER + ("sg_owner_member",)),
    # default security group rules (security-groups-default-rules): templates, no project
    ("create_default_security_group_rule", ADMIN),
    ("get_default_security_group_rule", ("reader",)),
    ("delete_default_security_group_rule", ADMIN),
    # availability zones (availability_zone)
    ("get_availability_zone", ("authenticated",), "`GET /availability_zones`"),
    # address groups (address-group)
    ("create_address_group", ADMIN_OR_MEMBER),
    ("get_address_group", ADMIN_OR_READER),
    ("update_address_group", ADMIN_OR_MEMBER),
    ("delete_address_group", ADMIN_OR_MEMBER),
    ("add_addresses", ADMIN_OR_MEMBER, "`PUT /address-groups/{id}/add_addresses`"),
    ("remove_addresses", ADMIN_OR_MEMBER, "`PUT /address-groups/{id}/remove_addresses`"),
    # network IP availability
    ("get_network_ip_availability", ADMIN, "`GET /network-ip-availabilities[/{network}]`"),
    # RBAC policies (rbac-policies): seen by their own project only
    ("create_rbac_policy", ADMIN_OR_MEMBER),
    ("create_rbac_policy:target_tenant", ("admin", "not_wildcard"),
     "only an admin shares with every project (`*`)"),
    ("get_rbac_policy", ADMIN_OR_READER),
    ("update_rbac_policy", ADMIN_OR_MEMBER),
    ("update_rbac_policy:target_tenant", ("admin", "not_wildcard")),
    ("delete_rbac_policy", ADMIN_OR_MEMBER),
    # routers
    ("create_router", ADMIN_OR_MEMBER),
    *_each(("create", "update"), "router", ("external_gateway_info:enable_snat",
                                            "external_gateway_info:external_fixed_ips"),
           ADMIN),
    *_each(("create", "update", "get"), "router", ("distributed", "ha"), ADMIN,
           "dvr / l3-ha: always true; only admins see or set them, as in Neutron"),
    ("get_router", ADMIN_OR_READER),
    ("update_router", ADMIN_OR_MEMBER),
    ("delete_router", ADMIN_OR_MEMBER),
    ("add_router_interface", ADMIN_OR_MEMBER),
    ("remove_router_interface", ADMIN_OR_MEMBER),
    ("add_extraroutes", ADMIN_OR_MEMBER),
    ("remove_extraroutes", ADMIN_OR_MEMBER),
    # floating IPs
    ("create_floatingip", ADMIN_OR_MEMBER),
    ("create_floatingip:floating_ip_address", ADMIN),
    ("get_floatingip", ADMIN_OR_READER),
    ("update_floatingip", ADMIN_OR_MEMBER),
    ("delete_floatingip", ADMIN_OR_MEMBER),
    # port forwardings (floating-ip-port-forwarding): owned through their floating IP
    ("create_floatingip_port_forwarding", ("admin", "parent_owner_member")),
    ("get_floatingip_port_forwarding", ("admin", "parent_owner_reader")),
    ("update_floatingip_port_forwarding", ("admin", "parent_owner_member")),
    ("delete_floatingip_port_forwarding", ("admin", "parent_owner_member")),
    # subnet pools and address scopes
    ("create_subnetpool", ADMIN_OR_MEMBER),
    *_each(("create",), "subnetpool", ("shared",), ADMIN),
    *_each(("create", "update"), "subnetpool", ("is_default",), ADMIN,
           "one default pool per IP version"),
    ("get_subnetpool", ADMIN_OR_READER + ("shared_object",)),
    ("update_subnetpool", ADMIN_OR_MEMBER),
    ("delete_subnetpool", ADMIN_OR_MEMBER),
    ("add_prefixes", ADMIN_OR_MEMBER, "`PUT /subnetpools/{id}/add_prefixes`"),
    ("remove_prefixes", ADMIN_OR_MEMBER, "`PUT /subnetpools/{id}/remove_prefixes`"),
    ("create_address_scope", ADMIN_OR_MEMBER),
    *_each(("create", "update"), "address_scope", ("shared",), ADMIN),
    ("get_address_scope", ADMIN_OR_READER + ("shared_object",)),
    ("update_address_scope", ADMIN_OR_MEMBER),
    ("delete_address_scope", ADMIN_OR_MEMBER),
    # QoS (neutron/conf/policies/qos.py): policies and rules are admin's to write; a
    # policy is read by its project's readers or when shared with the caller
    ("create_policy", ADMIN, "`POST /qos/policies`"),
    ("get_policy", ADMIN_OR_READER + ("shared_object",), "`GET /qos/policies[/{id}]`"),
    ("update_policy", ADMIN),
    ("delete_policy", ADMIN),
    ("get_rule_type", ("reader",), "`GET /qos/rule-types[/{type}]`: `role:reader`"),
    *[(f"{action}_policy_{kind}_rule", ADMIN_OR_READER + ("shared_object",)
       if action == "get" else ADMIN,
       f"`/qos/policies/{{id}}/{kind}_rules`" if action == "get" else "")
      for kind in ("bandwidth_limit", "dscp_marking", "minimum_bandwidth")
      for action in ("get", "create", "update", "delete")],
    # trunks (neutron/conf/policies/trunk.py)
    ("create_trunk", ADMIN_OR_MEMBER),
    ("get_trunk", ADMIN_OR_READER),
    ("update_trunk", ADMIN_OR_MEMBER),
    ("delete_trunk", ADMIN_OR_MEMBER),
    ("get_subports", ADMIN_OR_READER, "`GET /trunks/{id}/get_subports`"),
    ("add_subports", ADMIN_OR_MEMBER, "`PUT /trunks/{id}/add_subports`"),
    ("remove_subports", ADMIN_OR_MEMBER, "`PUT /trunks/{id}/remove_subports`"),
    # Octavia (octavia/policies/*.py, the keystone-default-roles defaults since 2024.2:
    # load-balancer:read = project reader or admin, write = project member or admin,
    # read-global = admin)
    *[(f"os_load-balancer_api:{kind}:{verb}",
       ADMIN if verb == "get_all-global" else
       ADMIN_OR_READER if verb.startswith("get") else ADMIN_OR_MEMBER,
       f"`/v2/lbaas/{kind}s`" if verb == "get_all" else "")
      for kind in ("loadbalancer", "listener", "pool", "member", "healthmonitor")
      for verb in ("post", "get_one", "get_all", "get_all-global", "put", "delete")
      + (("get_status",) if kind == "loadbalancer" else ())],
    # agents and the L3 agent scheduler
    ("get_agent", ADMIN),
    ("update_agent", ADMIN),
    ("delete_agent", ADMIN),
    ("get_l3-agents", ADMIN, "`GET /routers/{id}/l3-agents`"),
    ("get_l3-routers", ADMIN, "`GET /agents/{id}/l3-routers`"),
    ("create_l3-router", ADMIN, "`POST /agents/{id}/l3-routers`"),
    ("delete_l3-router", ADMIN, "`DELETE /agents/{id}/l3-routers/{router}`"),
    # quotas: the target is the project the quota belongs to
    ("get_quota", ADMIN_OR_READER, "`GET /quotas/{project}` (and `/default`, `/details`)"),
    ("list_quotas", ADMIN, "`GET /quotas`: every project with non-default quotas"),
    ("update_quota", ADMIN),
    ("delete_quota", ADMIN),
)

# Checks the service layer makes beyond the table (documented with it).
DEVICE_CHECKS = (
    ("ports: `device_owner` `network:router_interface*` / `network:router_gateway` with "
     "`device_id` naming a router", "the router belongs to the port's project (or admin); "
     "403 `DeviceIDNotOwnedByTenant`"),
    ("ports: `device_owner` `network:floatingip` with `device_id` naming a floating IP",
     "the floating IP belongs to the port's project (or admin); 403"),
    ("ports and subnets on a network that is neither the caller's nor shared with it",
     "admin only; 404 otherwise, as Neutron's ownership check (external networks too)"),
    ("delete of a port owned by a router or floating IP", "409 `ServicePortInUse` while "
     "the router or floating IP still holds it; a stale one (nothing behind it) is "
     "deleted, and goes with its network"),
)


# ---- targets and evaluation ---------------------------------------------------------------


class Target(Mapping):
    """An object as a policy target, with parent facts computed on first use.

    ``lazy`` maps a key (``network:tenant_id``) to a function returning a dict of
    facts; functions are called at most once."""

    def __init__(self, obj: Mapping, lazy: dict[str, Callable[[], dict]] | None = None):
        self.obj = obj
        self.lazy = lazy or {}
        self.facts: dict = {}

    def __getitem__(self, key):
        if key in self.facts:
            return self.facts[key]
        if key in self.lazy:
            self.facts.update(self.lazy.pop(key)() or {})
            for other in [k for k in self.lazy if k in self.facts]:
                self.lazy.pop(other)
            return self.facts.get(key)
        return self.obj[key]

    def get(self, key, default=None):
        try:
            value = self[key]
        except KeyError:
            return default
        return default if value is None else value

    def __iter__(self):
        return iter(self.obj)

    def __len__(self):
        return len(self.obj)


def network_facts(network: Mapping | None, access=None) -> dict:
    """The facts about a network (or a port's or subnet's network) that rules read, for
    the caller whose RBAC grants ``access`` holds (``services.rbac.Access``): shared when
    shared with every project (the stored flag) or with the caller's project; external
    when an ``access_as_external`` policy reaches the caller's project."""
    if network is None:
        return {"network:tenant_id": None, "network:shared": False,
                "network:router:external": False}
    grants = access.actions("network", network["id"]) if access is not None else None
    shared = bool(network.get("shared")) or bool(grants and "access_as_shared" in grants)
    external = bool(network.get("router:external")) and (
        grants is None or "access_as_external" in grants)
    return {"network:tenant_id": network.get("project_id"),
            "network:shared": shared, "network:router:external": external}


def rule(name: str) -> Rule | None:
    """The rule called ``name``, if the table has one."""
    return RULES.get(name)


def check(ctx, name: str, target: Mapping | None = None) -> bool:
    """Whether rule ``name`` allows ``ctx`` on ``target``; an action without a rule is
    allowed to admins and the object's project (Neutron's ``default``)."""
    found = RULES.get(name)
    target = target if target is not None else {}
    if found is None:
        return ctx.is_admin or _project(target) == ctx.project_id
    return any(CHECKS[c][0](ctx, target) for c in found.allow)


def _subattrs(value) -> set[str]:
    """The keys given inside an attribute's value (a dict, or a list of dicts)."""
    if isinstance(value, dict):
        return set(value)
    if isinstance(value, list):
        return {k for item in value if isinstance(item, dict) for k in item}
    return set()


def attribute_rules(action: str, resource: str, attrs: Mapping) -> list[str]:
    """The rules an action's explicitly set attributes call for, in table order."""
    out = []
    for name, value in attrs.items():
        base = f"{action}_{resource}:{name}"
        if base in RULES:
            out.append(base)
        for key in sorted(_subattrs(value)):
            if f"{base}:{key}" in RULES:
                out.append(f"{base}:{key}")
    return out


def enforce(ctx, action: str, target: Mapping | None = None,
            attrs: Mapping | None = None) -> None:
    """Allow ``action`` (``create_port``, ``update_network``, ``add_router_interface``)
    on ``target`` with the explicitly set ``attrs``, or raise 403 ``PolicyNotAuthorized``
    naming the failing rule. Callers first load the object with the ``get_`` rule, so
    one the caller may not see is 404 before it gets here (as Neutron answers)."""
    target = target if target is not None else {}
    if not check(ctx, action, target):
        raise errors.PolicyNotAuthorized(action)
    if attrs:
        verb, _, resource = action.partition("_")
        for name in attribute_rules(verb, resource, attrs):
            if not check(ctx, name, target):
                raise errors.PolicyNotAuthorized(name)


_READ_RULES: dict[str, list[tuple[str, str]]] = {}
for _name in RULES:
    if _name.startswith("get_") and ":" in _name:
        _res, _attr = _name[4:].split(":", 1)
        _READ_RULES.setdefault(_res, []).append((_attr, _name))


def hidden(ctx, resource: str) -> frozenset[str]:
    """Attributes of ``resource`` that ``ctx`` may not read (``get_<res>:<attr>``)."""
    return frozenset(attr for attr, name in _READ_RULES.get(resource, ())
                     if not check(ctx, name))


def admin_only(action: str, resource: str, name: str) -> bool:
    """Whether only admins may ``action`` (create, update, get) attribute ``name``."""
    found = RULES.get(f"{action}_{resource}:{name}")
    return found is not None and found.allow == ADMIN


def elevated(ctx):
    """The caller with admin rights, for the service ports a router or floating IP
    makes on its owner's behalf (as Neutron's ``context.elevated()``)."""
    return dataclasses.replace(ctx, roles=frozenset(_roles(ctx) | {"admin"}))


# ---- documentation ----------------------------------------------------------------------


def render_markdown() -> str:
    """The policy section of docs/api.md."""
    out = ["\n## Policy\n\n",
           "Generated from `src/plexus/api/policy.py`, the one table the API enforces "
           "(Neutron's default policies, secure-RBAC project member/reader flavour). A rule "
           "passes when any of its checks does. Attribute rules apply to attributes a create "
           "sets to other than their default and to every attribute an update names. A "
           "refused write is 403 `PolicyNotAuthorized` when the caller may see the object "
           "and 404 when it may not.\n\n",
           "| check | meaning |\n|---|---|\n"]
    out += [f"| `{name}` | {doc} |\n" for name, (_, doc) in CHECKS.items()]
    out.append("\n| rule | allowed | notes |\n|---|---|---|\n")
    for r in RULES.values():
        out.append(f"| `{r.name}` | {' or '.join(f'`{c}`' for c in r.allow)} | {r.doc} |\n")
    out.append("\nChecks beyond the table:\n\n| request | rule |\n|---|---|\n")
    out += [f"| {what} | {how} |\n" for what, how in DEVICE_CHECKS]
    return "".join(out)


if __name__ == "__main__":
    if "--markdown" in sys.argv[1:]:
        sys.stdout.write(render_markdown())
    else:
        print("usage: python -m plexus.api.policy --markdown", file=sys.stderr)
        sys.exit(2)
