"""Quotas (Neutron's ``quotas``, ``quota_details`` and ``quota-check-limit`` extensions)
and the per-object list limits, both enforced inside the transaction of the write they
limit.

Usage is kept exactly, per project and resource, in one counter key
(``/plexus/quota/usage/<project>/<resource>``). Every transaction goes through
``Services.commit``, whose "commit" hook lands here just before the transaction is sent:
the hook finds the model objects the transaction creates and deletes (whoever planned
it: a create, a cascade of a network, router, floating IP or security group delete, the
default security group), reads each touched counter, requires it unchanged with a
compare, and writes its new value. So a create and its usage commit together or not at
all, concurrent creates of one project serialise on the counter (the loser re-plans and
sees the winner's count), and the cost of a write is a point read per object it creates
or deletes and per counter it moves — never a scan of the cloud.

What is *enforced* follows Neutron, which checks quotas for the resource an API request
creates and counts (but does not refuse) what it creates on the side: the objects a
create request names (recorded by the "create" hook) and rules created on their own are
checked against the limit; gateway, interface and floating IP ports, the default
security group and the rules a new group starts with are counted only.

List limits (tags, allowed address pairs, fixed IPs, host routes, DNS servers) are
checked on the same hook against the object as it will be stored, so every path — create,
bulk create, update, and the tags sub-resource — is covered, and concurrent tag additions
cannot together pass the limit. A write that does not grow a list past the limit is
never refused (an object stored under an older, larger limit can still be updated).
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import orjson

from plexus.api import errors, policy
from plexus.api.services.base import MODEL, Retry, Writes
from plexus.store import Compare, Delete, Put

QUOTA = "/plexus/quota/"
LIMITS = f"{QUOTA}limits/"
USAGE = f"{QUOTA}usage/"
COUNTED = f"{QUOTA}counted"
REQUESTED = "_quota_requested"       # attribute of a Writes: objects a create request names
DB_INTEGER_MAX_VALUE = 2 ** 31 - 1
COUNT_ATTEMPTS = 10

# collection -> Neutron's quota resource name, in the order Neutron lists them.
RESOURCES: dict[str, str] = {
    "networks": "network", "subnets": "subnet", "ports": "port", "routers": "router",
    "floatingips": "floatingip", "security-groups": "security_group",
    "security-group-rules": "security_group_rule",
}
NAMES = tuple(RESOURCES.values())


class AdminRequired(errors.NeutronError):
    """403: only an admin may do this (Neutron's AdminRequired)."""

    status = 403
    type_name = "AdminRequired"


class TenantQuotaNotFound(errors.NeutronError):
    """404: the project has no non-default quota to delete."""

    status = 404
    type_name = "TenantQuotaNotFound"


def limits_key(project_id: str) -> str:
    """Store key of a project's non-default quota limits."""
    return f"{LIMITS}{project_id}"


def usage_key(project_id: str, resource: str) -> str:
    """Store key of a project's usage counter of one resource."""
    return f"{USAGE}{project_id}/{resource}"


# ---- list limits ------------------------------------------------------------------------

def _tags_error(limit: int, obj: dict, creating: bool) -> errors.NeutronError:
    # Neutron has no tag limit; the message follows its other list limits.
    return errors.InvalidInput(f"The number of tags exceeds the limit {limit}")


def _pairs_error(limit: int, obj: dict, creating: bool) -> errors.NeutronError:
    return errors.BadRequest(f"The number of allowed address pair exceeds the maximum {limit}.",
                             type_name="AllowedAddressPairExhausted")


def _fixed_ips_error(limit: int, obj: dict, creating: bool) -> errors.NeutronError:
    return errors.InvalidInput("Exceeded maximum amount of fixed ips per port")


def _subnet_subject(obj: dict, creating: bool) -> str:
    return "new subnet" if creating else obj["id"]


def _routes_error(limit: int, obj: dict, creating: bool) -> errors.NeutronError:
    return errors.BadRequest(f"Unable to complete operation for {_subnet_subject(obj, creating)}. "
                             f"The number of host routes exceeds the limit {limit}.",
                             type_name="HostRoutesExhausted")


def _dns_error(limit: int, obj: dict, creating: bool) -> errors.NeutronError:
    return errors.BadRequest(f"Unable to complete operation for {_subnet_subject(obj, creating)}. "
                             f"The number of DNS nameservers exceeds the limit {limit}.",
                             type_name="DNSNameServersExhausted")


def _trusted(obj: dict) -> bool:
    """Neutron's is_port_trusted: ports of network services skip the fixed IP limit."""
    return str(obj.get("device_owner") or "").startswith("network:")


# (attribute, LimitsConfig field, error, exempt) per collection; tags apply to all.
LIST_LIMITS: dict[str, tuple] = {
    "ports": (("allowed_address_pairs", "max_allowed_address_pairs", _pairs_error, None),
              ("fixed_ips", "max_fixed_ips_per_port", _fixed_ips_error, _trusted)),
    "subnets": (("host_routes", "max_subnet_host_routes", _routes_error, None),
                ("dns_nameservers", "max_dns_nameservers", _dns_error, None)),
}
TAGS_LIMIT = ("tags", "max_tags", _tags_error, None)


class QuotaService:
    """Per-project quotas over the store, and the hooks that enforce quotas and limits."""

    def __init__(self, services):
        self.s = services
        self._counted = False
        self._lock = threading.Lock()
        services.quotas = self
        services.add_hook("create", self._on_create)
        services.add_hook("commit", self._on_commit)

    # ---- limits and usage ---------------------------------------------------------

    def defaults(self) -> dict[str, int]:
        """The configured default limits."""
        config = self.s.config.quotas
        return {name: int(getattr(config, name)) for name in NAMES}

    def _read_limits(self, project_id: str) -> tuple[dict[str, int], int]:
        """The project's effective limits and the revision of its overrides (0 = none)."""
        limits = self.defaults()
        found = self.s.get(limits_key(project_id))
        if found is None:
            return limits, 0
        overrides, rev = found
        limits.update({k: v for k, v in overrides.items() if k in limits})
        return limits, rev

    def limits(self, project_id: str) -> dict[str, int]:
        """The project's effective limits (defaults with its overrides)."""
        return self._read_limits(project_id)[0]

    def usage(self, project_id: str) -> dict[str, int]:
        """The project's usage of every resource (one range of the project's counters)."""
        self._ensure_counted()
        prefix = f"{USAGE}{project_id}/"
        kvs, _ = self.s.store.range(prefix)
        used = dict.fromkeys(NAMES, 0)
        for kv in kvs:
            name = kv.key[len(prefix):]
            if name in used:
                used[name] = int(kv.value)
        return used

    # ---- the API ----------------------------------------------------------------------

    @staticmethod
    def _enforce(ctx, action: str, project_id: str | None = None) -> None:
        """The policy table's quota rules, with the quota's project as the target."""
        policy.enforce(ctx, action, {"project_id": project_id})

    def show(self, ctx, project_id: str) -> dict[str, int]:
        """``GET /v2.0/quotas/{project_id}``: a member reads their own project's only."""
        self._enforce(ctx, "get_quota", project_id)
        return self.limits(project_id)

    def default(self, ctx, project_id: str) -> dict[str, int]:
        """``GET /v2.0/quotas/{project_id}/default``."""
        self._enforce(ctx, "get_quota", project_id)
        return self.defaults()

    def details(self, ctx, project_id: str) -> dict[str, dict]:
        """``GET /v2.0/quotas/{project_id}/details``: used, limit and reserved (always 0)."""
        if not policy.check(ctx, "get_quota", {"project_id": project_id}):
            raise AdminRequired("User does not have admin privileges: Only admin is "
                                "authorized to access quotas for another tenant.")
        limits, used = self.limits(project_id), self.usage(project_id)
        return {name: {"used": used[name], "limit": limits[name], "reserved": 0}
                for name in NAMES}

    def list(self, ctx) -> list[dict]:
        """``GET /v2.0/quotas``: every project with non-default limits (admin only)."""
        self._enforce(ctx, "list_quotas")
        kvs, _ = self.s.store.range(LIMITS)
        out = []
        for kv in kvs:
            project_id = kv.key[len(LIMITS):]
            limits = self.defaults()
            limits.update({k: v for k, v in orjson.loads(kv.value).items() if k in limits})
            out.append(dict(limits, project_id=project_id, tenant_id=project_id))
        return out

    def update(self, ctx, project_id: str, body: Any) -> dict[str, int]:
        """``PUT /v2.0/quotas/{project_id}`` (admin only); with ``check_limit`` a limit
        below the current usage is refused, atomically with that usage."""
        self._enforce(ctx, "update_quota", project_id)
        changes, check_limit = parse_update(body)

        def plan(attempt: int) -> dict[str, int]:
            w = Writes()
            found = self.s.get(limits_key(project_id))
            overrides, rev = found if found is not None else ({}, 0)
            w.expect(limits_key(project_id), rev)
            if check_limit:
                self._ensure_counted()
                for name, limit in changes.items():
                    kv = self.s.store.get(usage_key(project_id, name))
                    used = int(kv.value) if kv is not None else 0
                    w.expect(usage_key(project_id, name), kv.mod_revision if kv else 0)
                    if limit >= 0 and used > limit:
                        raise errors.BadRequest(
                            f"Quota limit {limit} for {name} must be greater than or equal "
                            f"to already used {used}", type_name="HTTPBadRequest")
            overrides = dict(overrides, **changes)
            w.put(limits_key(project_id), overrides)
            self.s.commit(w)
            limits = self.defaults()
            limits.update(overrides)
            return limits
        return self.s.retrying(plan)

    def delete(self, ctx, project_id: str) -> None:
        """``DELETE /v2.0/quotas/{project_id}``: back to the defaults (admin only)."""
        self._enforce(ctx, "delete_quota", project_id)

        def plan(attempt: int) -> None:
            kv = self.s.store.get(limits_key(project_id))
            if kv is None:
                raise TenantQuotaNotFound(f"Quota for tenant {project_id} could not be found.")
            w = Writes()
            w.expect(kv.key, kv.mod_revision)
            w.delete(kv.key)
            self.s.commit(w)
        self.s.retrying(plan)

    # ---- hooks --------------------------------------------------------------------------

    def _on_create(self, ctx, collection: str, objs: list[dict], w: Writes) -> None:
        """Record the objects a create request names: their resource's quota is enforced."""
        if collection in RESOURCES:
            w.__dict__.setdefault(REQUESTED, set()).update(
                (collection, obj["id"]) for obj in objs)

    def _pin(self, w: Writes, key: str):
        """Read ``key`` and require it unchanged at commit; a planner that already
        expected another revision planned on a state that is gone: re-plan."""
        kv = self.s.store.get(key)
        rev = kv.mod_revision if kv is not None else 0
        if w.compares.get(key, rev) != rev:
            raise Retry()
        w.expect(key, rev)
        return kv

    def _on_commit(self, w: Writes) -> None:
        """Check list limits, and move (and enforce) usage counters, in ``w`` itself."""
        final: dict[str, Any] = {}
        for op in w.ops:
            if op.key.startswith(MODEL):
                final[op.key] = op
        if not final:
            return
        requested = w.__dict__.get(REQUESTED, set())
        deltas: Counter = Counter()
        enforce: set[tuple[str, str]] = set()
        groups_created, lone_rules = False, []
        for key, op in final.items():
            collection, _, ident = key[len(MODEL):].partition("/")
            resource = RESOURCES.get(collection)
            if isinstance(op, Put):
                obj = None
                if resource is not None or collection in LIST_LIMITS:
                    obj = orjson.loads(op.value)
                    self._check_lists(collection, key, obj, w)
                if resource is None:
                    continue
                if (collection, ident) in requested:      # a fresh id: certainly new
                    if w.compares.get(key, 0) != 0:
                        raise Retry()
                    w.expect(key, 0)
                    new = True
                elif key in w.compares:
                    new = w.compares[key] == 0
                else:
                    new = self._pin(w, key) is None
                if not new:
                    continue
                project = obj.get("project_id") or ""
                if not project:
                    continue
                deltas[(project, resource)] += 1
                if (collection, ident) in requested:
                    enforce.add((project, resource))
                groups_created |= collection == "security-groups"
                if collection == "security-group-rules":
                    lone_rules.append(project)
            elif isinstance(op, Delete) and resource is not None:
                kv = self._pin(w, key)
                if kv is None:
                    continue
                project = orjson.loads(kv.value).get("project_id") or ""
                if project:
                    deltas[(project, resource)] -= 1
        # The rule service plans its own transaction for rules created on their own (an
        # API request); rules written with a new group are the group's starting rules.
        if lone_rules and not groups_created and not requested:
            enforce.update((p, "security_group_rule") for p in lone_rules)
        moved = {k: d for k, d in deltas.items() if d}
        if not moved:
            return
        self._ensure_counted()
        over, limits = set(), {}
        for (project, resource), delta in sorted(moved.items()):
            kv = self._pin(w, usage_key(project, resource))
            used = max(0, (int(kv.value) if kv is not None else 0) + delta)
            if delta > 0 and (project, resource) in enforce:
                if project not in limits:
                    limits[project], rev = self._read_limits(project)
                    if w.compares.get(limits_key(project), rev) != rev:
                        raise Retry()
                    w.expect(limits_key(project), rev)
                limit = limits[project][resource]
                if 0 <= limit < used:
                    over.add(resource)
            w.put(usage_key(project, resource), str(used).encode())
        if over:
            raise errors.OverQuota(f"Quota exceeded for resources: {sorted(over)}.")

    def _check_lists(self, collection: str, key: str, obj: dict, w: Writes) -> None:
        """Refuse an object whose list grows past its configured limit."""
        config, old = self.s.config.limits, ...
        for attr, field, error, exempt in (TAGS_LIMIT, *LIST_LIMITS.get(collection, ())):
            items = obj.get(attr)
            limit = getattr(config, field)
            if not isinstance(items, list) or len(items) <= limit:
                continue
            if exempt is not None and exempt(obj):
                continue
            if old is ...:
                found = self.s.get(key)
                old = found[0] if found is not None else None
            if old is None or len(items) > len(old.get(attr) or ()):
                raise error(limit, obj, old is None)

    # ---- counting what exists -------------------------------------------------------

    def _ensure_counted(self) -> None:
        """Make sure the counters exist: on a store written before quotas were kept (no
        ``counted`` marker), count every project's objects once, atomically with the marker.
        Any server's commit first passes here, so no usage change is lost meanwhile."""
        if self._counted:
            return
        with self._lock:
            for _ in range(COUNT_ATTEMPTS):
                if self.s.store.get(COUNTED) is not None:
                    self._counted = True
                    return
                self._count_all()
        raise errors.ServiceUnavailable("Quota usage could not be counted: the store kept "
                                        "changing; retry.")

    def _count_all(self) -> None:
        usage_kvs, _ = self.s.store.range(USAGE)
        counts: Counter = Counter()
        for collection, resource in RESOURCES.items():
            kvs, _ = self.s.store.range(f"{MODEL}{collection}/")
            for kv in kvs:
                project = orjson.loads(kv.value).get("project_id")
                if project:
                    counts[(project, resource)] += 1
        existing = {kv.key: kv.mod_revision for kv in usage_kvs}
        compares = [Compare(COUNTED, 0)] + [Compare(k, r) for k, r in existing.items()]
        ops: list = []
        for (project, resource), n in counts.items():
            key = usage_key(project, resource)
            if key not in existing:
                compares.append(Compare(key, 0))
            ops.append(Put(key, str(n).encode()))
        wanted = {usage_key(p, r) for p, r in counts}
        ops += [Delete(k) for k in existing if k not in wanted]
        ops.append(Put(COUNTED, b"1"))
        self.s.store.txn(compares, ops)     # lost to a concurrent writer: the caller loops


def parse_update(body: Any) -> tuple[dict[str, int], bool]:
    """A quota update body, validated as Neutron's prepare_request_body does; returns the
    new limits and whether to check them against the usage."""
    if not body:
        raise errors.BadRequest("Resource body required", type_name="HTTPBadRequest")
    if not isinstance(body, dict) or not isinstance(body.get("quota"), dict):
        raise errors.BadRequest("Unable to find 'quota' in request body",
                                type_name="HTTPBadRequest")
    values = dict(body["quota"])
    values.pop("force", None)
    check = values.pop("check_limit", False)
    check_limit = check is True or (isinstance(check, str) and check.lower() in ("true", "1"))
    unknown = [k for k in values if k not in NAMES]
    if unknown:
        raise errors.BadRequest(f"Unrecognized attribute(s) '{', '.join(unknown)}'",
                                type_name="HTTPBadRequest")
    out = {}
    for name, value in values.items():
        try:
            if isinstance(value, bool) or (isinstance(value, float) and value != int(value)):
                raise ValueError
            number = int(value)
        except (TypeError, ValueError):
            raise errors.InvalidInput(f"'{value}' is not an integer") from None
        if number < -1:
            reason = f"'{number}' is too small - must be at least '-1'"
        elif number > DB_INTEGER_MAX_VALUE:
            reason = f"'{number}' is too large - must be no larger than '{DB_INTEGER_MAX_VALUE}'"
        else:
            out[name] = number
            continue
        raise errors.BadRequest(f"Invalid input for {name}. Reason: {reason}.",
                                type_name="HTTPBadRequest")
    return out, check_limit


def render_markdown() -> str:
    """The limits and quotas section of docs/api.md (defaults from the config classes)."""
    from plexus.config import LimitsConfig, QuotaConfig
    limits, quotas = LimitsConfig(), QuotaConfig()
    rows = [("every taggable resource", *TAGS_LIMIT)] + [
        (collection, *limit) for collection, entries in LIST_LIMITS.items() for limit in entries]
    out = ["\n## Limits and quotas\n\n"
           f"**Request body**: a body larger than `limits.max_body_bytes` (default "
           f"{limits.max_body_bytes} bytes) is refused with 413 `HTTPRequestEntityTooLarge` — "
           "from `Content-Length` before anything is read, and while a chunked body is read, "
           "so no more than the limit is ever held; the connection is then closed.\n\n"
           "**List limits** (400; configurable under `limits:`). They are checked on the object "
           "as it will be stored, in the transaction that stores it, so creates, bulk creates, "
           "updates and the tags sub-resource (`PUT .../tags`, `PUT .../tags/{tag}`, "
           "`POST .../tags`) are all covered; a write that does not grow a list past its "
           "limit is never refused.\n\n"
           "| list | on | default | setting | error type |\n|---|---|---|---|---|\n"]
    for collection, attr, field, error, _ in rows:
        sample = error(getattr(limits, field), {"id": "ID"}, True)
        out.append(f"| `{attr}` | {collection} | {getattr(limits, field)} | "
                   f"`limits.{field}` | {sample.status} `{sample.type_name}` |\n")
    out.append(
        "\nFixed IPs of ports whose `device_owner` starts with `network:` are exempt, as in "
        "Neutron. Neutron has no tag count limit; the error follows its other list limits.\n\n"
        "**Quotas** (extensions `quotas`, `quota_details`, `quota-check-limit`; defaults "
        "under `quotas:`, -1 = unlimited):\n\n| resource | default |\n|---|---|\n")
    out += [f"| `{name}` | {getattr(quotas, name)} |\n" for name in NAMES]
    out.append(
        "\n| request | who |\n|---|---|\n"
        "| `GET /v2.0/quotas/{project_id}` | admin; a project's own members and readers |\n"
        "| `GET /v2.0/quotas/{project_id}/default` | admin; the project's own |\n"
        "| `GET /v2.0/quotas/{project_id}/details` (`used`, `limit`, `reserved`) | admin; "
        "the project's own (others: 403 `AdminRequired`) |\n"
        "| `GET /v2.0/quotas` (projects with non-default quotas) | admin |\n"
        "| `PUT /v2.0/quotas/{project_id}` (`check_limit: true` refuses a limit below the "
        "usage; `force` is accepted) | admin |\n"
        "| `DELETE /v2.0/quotas/{project_id}` (back to the defaults; 404 "
        "`TenantQuotaNotFound` when there were none) | admin |\n"
        "| `GET /v2.0/quotas/project`, `/tenant` | anyone: the caller's project id |\n\n"
        "A create that would take the project past its limit is refused with 409 "
        "`OverQuota` (\"Quota exceeded for resources: ['port'].\"); a bulk create counts every "
        "object and is all or nothing. The check is atomic with the create: each project "
        "keeps one usage counter per resource in the store, and the transaction that creates "
        "(or deletes) objects also compares-and-sets the counters it moves, so concurrent "
        "creates on any number of servers never pass the limit, and the loser of a race "
        "re-plans against the winner's count. What a request asks for is enforced; what it "
        "makes on the side is counted, as Neutron does: gateway, interface and floating IP "
        "ports, the default security group (made when a project first needs it) and its "
        "rules, and the egress rules a new group starts with. Deletes give usage back, "
        "cascades included (a network's subnets, a floating IP's or router's ports, a "
        "group's rules and other groups' rules that name it), so `used` always equals what "
        "the project has. A create or delete costs a point read per object it writes and per "
        "counter it moves; nothing scans more than the project. A store written before "
        "quotas were kept is counted once, by the first server that needs the counters.\n\n"
        "**Subnet CIDRs** (400 `InvalidInput`, Neutron's messages): the CIDR must match "
        "`ip_version`; a /0 is refused; with `enable_dhcp` (on create, or when an update "
        "turns it on) IPv4 prefixes longer than /30 and IPv6 longer than /126 (`/31`, `/32`, "
        "`/127`, `/128`, `::1/128`), multicast (`224.0.0.0/4`, `ff00::/8` such as "
        "`ff02::/16`), loopback (`127.0.0.0/8`, `::1`) and IPv4 networks starting at "
        "`0.0.0.0` are refused.\n")
    return "".join(out)
