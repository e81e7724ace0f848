"""Octavia v2 load balancing (``/v2/lbaas``, ``/v2.0/lbaas``): load balancers, listeners,
pools, members and health monitors, as Octavia validates and shows them, provided by
the chassis themselves (no amphora, no central node).

One load balancer is one store object, ``model/loadbalancers/<id>``, holding its whole
tree (``children``: listeners, pools, members, health monitors, each by id). Every
change to any of them is one compare-and-swap of that object (with, in the same
transaction, the VIP's Neutron port and the child-id index), so a load balancer is
never half written and concurrent changes to one tree serialise as Octavia's
``PENDING_UPDATE`` lock does, without a 409 for the loser: it re-plans. The tree is
also exactly what a chassis needs to program the VIP: one object per load balancer,
one event per change (``agent``/``pipeline`` read it as it is).

``/plexus/lbaas/child/<id>`` names the load balancer of each child, so a request for
a child costs two reads whatever the size of the cloud. Member health is reported by
the agents of the chassis hosting the members and kept on the member in the tree
(``model.keys.HEALTH_KEY``, hidden from the API; a change only when the verdict
changes), so the chassis that NAT to it learn in the same event stream; it is read
into ``operating_status`` when shown.

Provisioning is synchronous: a change the store accepted is ``ACTIVE`` (the store is
the provider's acceptance; agents program it from the watch).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from plexus.api import errors, policy
from plexus.api.query import matches, sort_and_page
from plexus.api.schemas.base import new_id
from plexus.api.schemas.lbaas import (
    L4_PROTOCOLS, LISTENER, LOADBALANCER, MEMBER, POOL, HEALTHMONITOR, PROVIDER,
    SUPPORTED_ALGORITHMS, SUPPORTED_MONITORS,
)
from plexus.api.services.base import Writes, model_key, now
from plexus.api.services.routers import delete_port, service_port
from plexus.model.keys import HEALTH_KEY

LB_OWNER = "Octavia"
CHILD = "/plexus/lbaas/child/"
KINDS = ("listeners", "pools", "members", "healthmonitors")
LABEL = {"loadbalancers": "Load Balancer", "listeners": "Listener", "pools": "Pool",
         "members": "Member", "healthmonitors": "Health Monitor"}
RESOURCE = {"loadbalancers": LOADBALANCER, "listeners": LISTENER, "pools": POOL,
            "members": MEMBER, "healthmonitors": HEALTHMONITOR}
# which pool protocols a listener protocol takes (Octavia's VALID_LISTENER_POOL_PROTOCOL_MAP)
POOL_FOR_LISTENER = {"TCP": ("TCP", "HTTP", "PROXY", "PROXYV2"), "UDP": ("UDP",)}


class LbError(errors.NeutronError):
    """An Octavia fault: ``{"faultcode", "faultstring", "debuginfo"}``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status

    def body(self) -> dict:
        return {"faultcode": "Client" if self.status < 500 else "Server",
                "faultstring": self.message, "debuginfo": None}


def fault(exc: errors.NeutronError) -> LbError:
    """Any error raised under /lbaas in Octavia's form (the shared validators raise
    Neutron's)."""
    if isinstance(exc, LbError):
        return exc
    message = exc.message
    if isinstance(exc, errors.PolicyNotAuthorized):
        message = "Policy does not allow this request to be performed."
    elif exc.status == 400 and message.startswith("Invalid input for operation: "):
        message = "Invalid input for field/attribute " + message[len(
            "Invalid input for operation: "):].rstrip(".")
    return LbError(exc.status, message)


def not_found(kind: str, ident: str) -> LbError:
    """Octavia's NotFound: ``<Label> <id> not found.``"""
    return LbError(404, f"{LABEL[kind]} {ident} not found.")


def invalid(detail: str) -> LbError:
    """Octavia's ValidationException."""
    return LbError(400, f"Validation failure: {detail}")


def unsupported(detail: str) -> LbError:
    """Octavia's ProviderUnsupportedOptionError (501)."""
    return LbError(501, f"Provider '{PROVIDER}' does not support a requested option: {detail}")


def child_key(ident: str) -> str:
    return CHILD + ident


def _rule(kind: str, verb: str) -> str:
    return f"os_load-balancer_api:{LABEL[kind].lower().replace(' ', '')}:{verb}"


class LbaasService:
    """The Octavia API over the store (module doc)."""

    def __init__(self, services):
        self.s = services

    # ---- store --------------------------------------------------------------------

    def key(self, lb_id: str) -> str:
        return model_key("loadbalancers", lb_id)

    def _tree(self, lb_id: str) -> tuple[dict, int] | None:
        return self.s.get(self.key(lb_id))

    def _locate(self, kind: str, ident: str) -> str | None:
        """The id of the load balancer holding child ``ident`` of ``kind``."""
        found = self.s.get(child_key(ident))
        if found is None or found[0].get("kind") != kind:
            return None
        return found[0]["lb"]

    def trees(self) -> list[dict]:
        """Every load balancer's tree."""
        return self.s.objects("loadbalancers")

    # ---- policy -------------------------------------------------------------------

    def _allowed(self, ctx, kind: str, verb: str, project: str | None) -> bool:
        return policy.check(ctx, _rule(kind, verb), {"project_id": project})

    def _enforce(self, ctx, kind: str, verb: str, project: str | None) -> None:
        if not self._allowed(ctx, kind, verb, project):
            raise LbError(403, "Policy does not allow this request to be performed.")

    def _visible_tree(self, ctx, kind: str, lb_id: str | None, ident: str) -> tuple[dict, int]:
        """The tree holding ``ident`` if the caller may read it; 404 otherwise."""
        found = self._tree(lb_id) if lb_id else None
        if found is None:
            raise not_found(kind, ident)
        tree, rev = found
        if not self._allowed(ctx, kind, "get_one", tree["project_id"]):
            if self._allowed(ctx, kind, "get_one", ctx.project_id):
                raise not_found(kind, ident)   # another project's: not there for the caller
            self._enforce(ctx, kind, "get_one", tree["project_id"])
        return tree, rev

    def _load(self, ctx, kind: str, ident: str) -> tuple[dict, int, dict]:
        """(tree, revision, object) for a visible object of ``kind``."""
        if kind == "loadbalancers":
            tree, rev = self._visible_tree(ctx, kind, ident, ident)
            return tree, rev, tree
        tree, rev = self._visible_tree(ctx, kind, self._locate(kind, ident), ident)
        obj = tree["children"][kind].get(ident)
        if obj is None:
            raise not_found(kind, ident)
        return tree, rev, obj

    # ---- reading ------------------------------------------------------------------

    def statuses(self, tree: dict, health: dict | None = None) -> dict[str, str]:
        """Operating status of every object of a tree (id → status)."""
        ch = tree["children"]
        if health is None:
            health = {i: m[HEALTH_KEY] for i, m in ch["members"].items() if m.get(HEALTH_KEY)}
        out: dict[str, str] = {}
        monitored = {hm["pool_id"] for hm in ch["healthmonitors"].values()
                     if hm.get("admin_state_up", True)}
        for hm in ch["healthmonitors"].values():
            out[hm["id"]] = "ONLINE" if hm.get("admin_state_up", True) else "OFFLINE"
        for m in ch["members"].values():
            if not m.get("admin_state_up", True):
                out[m["id"]] = "OFFLINE"
            elif m["pool_id"] not in monitored:
                out[m["id"]] = "NO_MONITOR"
            else:
                out[m["id"]] = health.get(m["id"]) or "ONLINE"
        for p in ch["pools"].values():
            states = [out[m["id"]] for m in ch["members"].values() if m["pool_id"] == p["id"]
                      and out[m["id"]] != "OFFLINE"]
            if not p.get("admin_state_up", True):
                out[p["id"]] = "OFFLINE"
            elif states and all(s == "ERROR" for s in states):
                out[p["id"]] = "ERROR"
            elif "ERROR" in states:
                out[p["id"]] = "DEGRADED"
            else:
                out[p["id"]] = "ONLINE"
        for li in ch["listeners"].values():
            pool = out.get(li.get("default_pool_id") or "", "ONLINE")
            out[li["id"]] = "OFFLINE" if not li.get("admin_state_up", True) else \
                "ONLINE" if pool in ("ONLINE", "OFFLINE") else "DEGRADED"
        worst = {out[i] for i in ch["listeners"]} | {out[i] for i in ch["pools"]}
        out[tree["id"]] = "OFFLINE" if not tree.get("admin_state_up", True) else \
            "ONLINE" if worst <= {"ONLINE", "OFFLINE"} else "DEGRADED"
        return out

    def _full(self, tree: dict, kind: str, obj: dict, status: dict[str, str]) -> dict:
        """One object with its references and computed fields (what is filtered on)."""
        ch = tree["children"]
        out = {k: v for k, v in obj.items() if k not in ("children", "vip_port_owned")}
        out["operating_status"] = status.get(obj["id"], "ONLINE")
        out.setdefault("provisioning_status", "ACTIVE")
        lbs = [{"id": tree["id"]}]
        if kind == "loadbalancers":
            out["listeners"] = [{"id": i} for i in ch["listeners"]]
            out["pools"] = [{"id": i} for i in ch["pools"]]
            out.setdefault("additional_vips", [])
        elif kind == "listeners":
            out.update(loadbalancers=lbs, loadbalancer_id=tree["id"], l7policies=[])
        elif kind == "pools":
            hm = [h["id"] for h in ch["healthmonitors"].values() if h["pool_id"] == obj["id"]]
            out.update(loadbalancers=lbs, loadbalancer_id=tree["id"],
                       listeners=[{"id": li["id"]} for li in ch["listeners"].values()
                                  if li.get("default_pool_id") == obj["id"]],
                       members=[{"id": m["id"]} for m in ch["members"].values()
                                if m["pool_id"] == obj["id"]],
                       healthmonitor_id=hm[0] if hm else None)
        elif kind == "healthmonitors":
            out["pools"] = [{"id": obj["pool_id"]}]
        return out

    def _view(self, ctx, kind: str, full: dict, fields=None) -> dict:
        return RESOURCE[kind].view(ctx, full, fields)

    def show(self, ctx, kind: str, ident: str, fields=None) -> dict:
        tree, _, obj = self._load(ctx, kind, ident)
        return self._view(ctx, kind, self._full(tree, kind, obj, self.statuses(tree)), fields)

    def list(self, ctx, kind: str, q, pool_id: str | None = None) -> tuple[list, bool, bool]:
        """Objects the caller may read (every project's for ``get_all-global``)."""
        everyone = self._allowed(ctx, kind, "get_all-global", None)
        if not everyone:
            self._enforce(ctx, kind, "get_all", ctx.project_id)
        trees = self.trees()
        if pool_id is not None:
            trees = [t for t in trees if pool_id in t["children"]["pools"]]
            if not trees or not self._allowed(ctx, "pools", "get_one", trees[0]["project_id"]):
                raise not_found("pools", pool_id)
        items = []
        for tree in trees:
            if not everyone and tree["project_id"] != ctx.project_id:
                continue
            objs = [tree] if kind == "loadbalancers" else tree["children"][kind].values()
            if pool_id is not None:
                objs = [m for m in objs if m["pool_id"] == pool_id]
            if not objs:
                continue
            status = self.statuses(tree)
            items += [f for o in objs if matches(RESOURCE[kind], f := self._full(
                tree, kind, o, status), q)]
        page, more, before = sort_and_page(items, q)
        return [self._view(ctx, kind, o, q.fields) for o in page], more, before

    def status_tree(self, ctx, lb_id: str) -> dict:
        """``GET /loadbalancers/{id}/status``: the tree with its statuses."""
        tree, _, _ = self._load(ctx, "loadbalancers", lb_id)
        self._enforce(ctx, "loadbalancers", "get_status", tree["project_id"])
        ch, st = tree["children"], self.statuses(tree)

        def node(obj, **more):
            return {"id": obj["id"], "name": obj.get("name") or "",
                    "operating_status": st[obj["id"]], "provisioning_status": "ACTIVE",
                    **more}

        def pool(p):
            more = {"members": [dict(node(m), address=m["address"],
                                     protocol_port=m["protocol_port"])
                                for m in ch["members"].values() if m["pool_id"] == p["id"]]}
            hms = [h for h in ch["healthmonitors"].values() if h["pool_id"] == p["id"]]
            if hms:
                more["health_monitor"] = dict(node(hms[0]), type=hms[0]["type"])
            return node(p, **more)
        listeners = [node(li, pools=[pool(ch["pools"][li["default_pool_id"]])]
                          if li.get("default_pool_id") in ch["pools"] else [])
                     for li in ch["listeners"].values()]
        return {"statuses": {"loadbalancer": node(tree, listeners=listeners)}}

    # ---- writing ------------------------------------------------------------------

    def _commit_tree(self, old: dict | None, rev: int, new: dict | None, w: Writes) -> None:
        key = self.key((old or new)["id"])
        w.expect(key, rev)
        if new is None:
            w.delete(key)
        else:
            w.put(key, new)
        self.s.commit(w)

    def _change(self, ctx, kind: str, ident: str | None, verb: str, plan) -> Any:
        """Load (the tree holding ``ident``, or ``ident`` the LB itself), check the
        write rule, let ``plan(tree, obj, w)`` change a copy, commit; retried."""
        def attempt(n: int):
            tree, rev, obj = self._load(ctx, kind, ident)
            self._enforce(ctx, kind, verb, tree["project_id"])
            new = _copy(tree)
            target = new if kind == "loadbalancers" else new["children"][kind][ident]
            w = Writes()
            result = plan(new, target, w)
            new["updated_at"] = now()
            self._commit_tree(tree, rev, result if result is not _DELETED else None, w)
            return result, target
        return self.s.retrying(attempt)

    # load balancers

    def create_loadbalancer(self, ctx, body) -> dict:
        attrs = LOADBALANCER.validate_create(ctx, body)
        self._check_project(ctx, attrs)
        self._enforce(ctx, "loadbalancers", "post", attrs["project_id"])
        if attrs.get("provider") not in (None, PROVIDER):
            raise LbError(400, f"Provider '{attrs['provider']}' is not enabled.")
        if attrs.get("flavor_id"):
            raise LbError(400, "Validation failure: Invalid flavor_id.")
        if not any(attrs.get(k) for k in ("vip_port_id", "vip_network_id", "vip_subnet_id")):
            raise invalid("VIP must contain one of: vip_port_id, vip_network_id, "
                          "vip_subnet_id.")
        stamp = now()
        tree = dict(attrs, id=new_id(), provider=PROVIDER, provisioning_status="ACTIVE",
                    created_at=stamp, updated_at=stamp, tags=sorted(attrs.get("tags") or []),
                    children={k: {} for k in KINDS})

        def plan(attempt: int) -> dict:
            w = Writes()
            made = dict(tree)
            made.update(self._vip(ctx, made, w, attempt))
            w.expect(self.key(made["id"]), 0)
            w.put(self.key(made["id"]), made)
            self.s.commit(w)
            return made
        made = self.s.retrying(plan)
        return self._view(ctx, "loadbalancers",
                          self._full(made, "loadbalancers", made, self.statuses(made, {})))

    def _check_project(self, ctx, attrs: dict) -> None:
        if not ctx.is_admin and attrs.get("project_id") not in (None, ctx.project_id):
            raise LbError(403, "Policy does not allow this request to be performed.")

    def _vip(self, ctx, lb: dict, w: Writes, attempt: int) -> dict:
        """The VIP: the given port (kept when the LB goes), or a new Neutron port on the
        given subnet or network (deleted with the LB). 400 for one the caller cannot use
        (as Octavia's ``InvalidSubresource``)."""
        ports, subnets, networks = self.s["ports"], self.s["subnets"], self.s["networks"]
        if lb.get("vip_port_id"):
            found = ports.get(lb["vip_port_id"])
            if found is None or not ports.visible(ctx, found[0]):
                raise LbError(400, f"Port {lb['vip_port_id']} not found.")
            port = found[0]
            ips = port.get("fixed_ips") or []
            pick = [ip for ip in ips if not lb.get("vip_address") or
                    ip["ip_address"] == lb["vip_address"]]
            if not pick:
                raise invalid(f"The VIP port {port['id']} has no usable address.")
            w.expect(ports.key(port["id"]), found[1])
            return {"vip_network_id": port["network_id"], "vip_subnet_id": pick[0]["subnet_id"],
                    "vip_address": pick[0]["ip_address"], "vip_port_owned": False}
        if lb.get("vip_subnet_id"):
            found = subnets.get(lb["vip_subnet_id"])
            if found is None or not subnets.visible(ctx, found[0]):
                raise LbError(400, f"Subnet {lb['vip_subnet_id']} not found.")
            subnet = found[0]
            if lb.get("vip_network_id") and lb["vip_network_id"] != subnet["network_id"]:
                raise invalid(f"Subnet {subnet['id']} is not on network "
                              f"{lb['vip_network_id']}.")
            net_id = subnet["network_id"]
            wanted = {"subnet_id": subnet["id"]}
        else:
            net_id = lb["vip_network_id"]
            found = networks.get(net_id)
            if found is None or not networks.visible(ctx, found[0]):
                raise LbError(400, f"Network {net_id} not found.")
            v4 = [s[0] for sid in found[0].get("subnets", []) if (s := subnets.get(sid))
                  and s[0]["ip_version"] == 4]
            if not v4:
                raise invalid(f"Network {net_id} has no IPv4 subnet for the VIP.")
            wanted = {"subnet_id": v4[0]["id"]}
        if lb.get("vip_address"):
            wanted["ip_address"] = lb["vip_address"]
        port = service_port(ctx, self.s, net_id, lb["project_id"], LB_OWNER,
                            f"lb-{lb['id']}", [wanted])
        port["name"] = f"octavia-lb-{lb['id']}"
        try:
            port = ports.plan_create(ctx, port, w, attempt)
        except LbError:
            raise
        except errors.NeutronError as exc:
            raise LbError(exc.status if exc.status in (400, 409) else 400, exc.message) \
                from None
        ip = port["fixed_ips"][0]
        return {"vip_network_id": net_id, "vip_subnet_id": ip["subnet_id"],
                "vip_address": ip["ip_address"], "vip_port_id": port["id"],
                "vip_port_owned": True}

    def update(self, ctx, kind: str, ident: str, body) -> dict:
        changes = RESOURCE[kind].validate_update(ctx, body)
        if "tags" in changes:
            changes["tags"] = sorted(changes["tags"])

        def plan(tree, obj, w):
            if kind == "listeners" and "default_pool_id" in changes:
                self._check_default_pool(tree, obj, changes["default_pool_id"])
            if kind == "pools":
                self._check_pool_options({**obj, **changes}, tree)
            if kind == "healthmonitors":
                self._check_monitor({**obj, **changes}, tree)
            obj.update(changes)
            obj["updated_at"] = now()
            return tree
        tree, obj = self._change(ctx, kind, ident, "put", plan)
        return self._view(ctx, kind, self._full(tree, kind, obj, self.statuses(tree)))

    def delete(self, ctx, kind: str, ident: str, cascade: bool = False) -> None:
        def plan(tree, obj, w):
            ch = tree["children"]
            if kind == "loadbalancers":
                if any(ch[k] for k in ("listeners", "pools")) and not cascade:
                    raise invalid(f"Cannot delete Load Balancer {ident} - it has children")
                for k in KINDS:
                    for child in ch[k]:
                        w.delete(child_key(child))
                if tree.get("vip_port_owned") and tree.get("vip_port_id"):
                    delete_port(ctx, self.s, tree["vip_port_id"], w)
                return _DELETED
            self._drop(tree, kind, ident, w)
            return tree
        self._change(ctx, kind, ident, "delete", plan)

    def _drop(self, tree: dict, kind: str, ident: str, w: Writes) -> None:
        """Remove one child and what hangs from it (a pool's members and monitor; a
        listener's default pool stays, as in Octavia)."""
        ch = tree["children"]
        obj = ch[kind].pop(ident)
        w.delete(child_key(ident))
        if kind == "pools":
            for k in ("members", "healthmonitors"):
                for child in [c for c in ch[k].values() if c["pool_id"] == ident]:
                    self._drop(tree, k, child["id"], w)
            for li in ch["listeners"].values():
                if li.get("default_pool_id") == ident:
                    li["default_pool_id"] = None
        del obj

    def _create_child(self, ctx, kind: str, lb_id: str | None, parent: tuple[str, str],
                      body, fill) -> dict:
        """Validate ``body``, then add it to the tree of its parent (``(kind, id)``,
        404 when the caller cannot see it); ``fill(tree, obj)`` checks and completes it."""
        attrs = RESOURCE[kind].validate_create(ctx, body)
        self._check_project(ctx, attrs)
        stamp = now()
        obj = dict(attrs, id=new_id(), provisioning_status="ACTIVE", created_at=stamp,
                   updated_at=stamp, tags=sorted(attrs.get("tags") or []))

        def attempt(n: int):
            pkind, pid = parent
            where = pid if pkind == "loadbalancers" else self._locate(pkind, pid)
            found = self._tree(where) if where else None
            if found is None or not self._allowed(ctx, pkind, "get_one",
                                                  found[0]["project_id"]):
                raise not_found(pkind, pid)
            tree, rev = found
            self._enforce(ctx, kind, "post", tree["project_id"])
            new = _copy(tree)
            made = dict(obj, project_id=tree["project_id"])
            fill(new, made)
            new["children"][kind][made["id"]] = made
            w = Writes()
            w.expect(child_key(made["id"]), 0)
            w.put(child_key(made["id"]), {"lb": tree["id"], "kind": kind})
            self._commit_tree(tree, rev, new, w)
            return new, made
        tree, made = self.s.retrying(attempt)
        return self._view(ctx, kind, self._full(tree, kind, made, self.statuses(tree)))

    # listeners

    def create_listener(self, ctx, body) -> dict:
        lb_id = body.get("loadbalancer_id") if isinstance(body, dict) else None

        def fill(tree, li):
            li.pop("loadbalancer_id", None)
            if li["protocol"] not in L4_PROTOCOLS:
                raise unsupported(f"The provider does not support the {li['protocol']} "
                                  f"protocol (TCP and UDP listeners only).")
            for other in tree["children"]["listeners"].values():
                if other["protocol_port"] == li["protocol_port"] and \
                        (other["protocol"] == "UDP") == (li["protocol"] == "UDP"):
                    raise LbError(409, f"Another Listener on this Load Balancer is already "
                                       f"using protocol {other['protocol']} and "
                                       f"protocol_port {li['protocol_port']}")
            if li.get("default_pool_id"):
                self._check_default_pool(tree, li, li["default_pool_id"])
        LISTENER.validate_create(ctx, body)        # the 400 before the lookup's 404
        return self._create_child(ctx, "listeners", lb_id, ("loadbalancers", str(lb_id)),
                                  body, fill)

    def _check_default_pool(self, tree: dict, li: dict, pool_id: str | None) -> None:
        if pool_id is None:
            return
        pool = tree["children"]["pools"].get(pool_id)
        if pool is None:
            raise LbError(404, f"Pool {pool_id} not found.")
        if pool["protocol"] not in POOL_FOR_LISTENER.get(li["protocol"], ()):
            raise invalid(f"The pool protocol '{pool['protocol']}' is invalid while the "
                          f"listener protocol is '{li['protocol']}'.")
        for other in tree["children"]["listeners"].values():
            if other["id"] != li.get("id") and other.get("default_pool_id") == pool_id:
                raise LbError(409, f"Pool {pool_id} is already in use by another listener.")

    # pools

    def create_pool(self, ctx, body) -> dict:
        attrs = POOL.validate_create(ctx, body)
        if attrs.get("listener_id"):
            parent = ("listeners", attrs["listener_id"])
        elif attrs.get("loadbalancer_id"):
            parent = ("loadbalancers", attrs["loadbalancer_id"])
        else:
            raise invalid("lb_id and listener_id cannot both be empty")

        def fill(tree, pool):
            listener_id = pool.pop("listener_id", None)
            lb_id = pool.pop("loadbalancer_id", None)
            if lb_id and lb_id != tree["id"]:
                raise invalid(f"Listener {listener_id} is not on load balancer {lb_id}.")
            self._check_pool_options(pool, tree)
            if listener_id:
                li = tree["children"]["listeners"][listener_id]
                if li.get("default_pool_id"):
                    raise LbError(409, "This listener already has a default pool")
                if pool["protocol"] not in POOL_FOR_LISTENER.get(li["protocol"], ()):
                    raise invalid(f"The pool protocol '{pool['protocol']}' is invalid while "
                                  f"the listener protocol is '{li['protocol']}'.")
                li["default_pool_id"] = pool["id"]
        return self._create_child(ctx, "pools", None, parent, body, fill)

    def _check_pool_options(self, pool: dict, tree: dict) -> None:
        if pool["protocol"] not in L4_PROTOCOLS:
            raise unsupported(f"The provider does not support the {pool['protocol']} pool "
                              f"protocol (TCP and UDP pools only).")
        if pool["lb_algorithm"] not in SUPPORTED_ALGORITHMS:
            raise unsupported(f"The provider does not support the {pool['lb_algorithm']} "
                              f"algorithm.")
        sp = pool.get("session_persistence")
        if sp:
            if sp["type"] != "SOURCE_IP":
                raise unsupported(f"The provider does not support {sp['type']} session "
                                  f"persistence (SOURCE_IP only).")
            if sp.get("cookie_name"):
                raise invalid("Cookie names are not supported for SOURCE_IP persistence.")

    # members

    def create_member(self, ctx, pool_id: str, body) -> dict:
        def fill(tree, m):
            m["pool_id"] = pool_id
            for other in tree["children"]["members"].values():
                if other["pool_id"] == pool_id and other["address"] == m["address"] and \
                        other["protocol_port"] == m["protocol_port"]:
                    raise LbError(409, f"Another member on this pool is already using ip "
                                       f"address {m['address']} on protocol_port "
                                       f"{m['protocol_port']}")
            if m.get("subnet_id"):
                subnets = self.s["subnets"]
                found = subnets.get(m["subnet_id"])
                if found is None or not subnets.visible(ctx, found[0]):
                    raise LbError(400, f"Subnet {m['subnet_id']} not found.")
                net = ipaddress.ip_network(found[0]["cidr"])
                if ipaddress.ip_address(m["address"]) not in net:
                    raise invalid(f"Member address {m['address']} is not in subnet "
                                  f"{m['subnet_id']}.")
            if m["address"] == tree.get("vip_address"):
                raise invalid(f"Member address {m['address']} is the load balancer's VIP.")
        return self._create_child(ctx, "members", None, ("pools", pool_id), body, fill)

    def member(self, ctx, pool_id: str, ident: str, fields=None) -> dict:
        """A member, 404 unless it is in ``pool_id``."""
        tree, _, obj = self._load(ctx, "members", ident)
        if obj["pool_id"] != pool_id:
            raise not_found("members", ident)
        return self._view(ctx, "members", self._full(tree, "members", obj,
                                                      self.statuses(tree)), fields)

    def in_pool(self, ctx, pool_id: str, ident: str) -> None:
        _, _, obj = self._load(ctx, "members", ident)
        if obj["pool_id"] != pool_id:
            raise not_found("members", ident)

    # health monitors

    def create_healthmonitor(self, ctx, body) -> dict:
        attrs = HEALTHMONITOR.validate_create(ctx, body)

        def fill(tree, hm):
            if any(h["pool_id"] == hm["pool_id"]
                   for h in tree["children"]["healthmonitors"].values()):
                raise LbError(409, f"Pool {hm['pool_id']} already has a health monitor")
            self._check_monitor(hm, tree)
            for m in tree["children"]["members"].values():
                if m["pool_id"] == hm["pool_id"]:   # a new monitor: no verdict yet (not
                    m.pop(HEALTH_KEY, None)         # one of an earlier monitor's)
        return self._create_child(ctx, "healthmonitors", None, ("pools", attrs["pool_id"]),
                                  body, fill)

    def _check_monitor(self, hm: dict, tree: dict) -> None:
        if hm["type"] not in SUPPORTED_MONITORS:
            raise unsupported(f"The provider does not support {hm['type']} health "
                              f"monitors (TCP and UDP-CONNECT only: the chassis hosting the "
                              f"members probe them).")
        pool = tree["children"]["pools"][hm["pool_id"]]
        if hm["type"] == "UDP-CONNECT" and pool["protocol"] != "UDP":
            raise invalid(f"The {hm['type']} type is only supported for pools of type UDP.")
        if pool["protocol"] == "UDP" and hm["type"] not in ("UDP-CONNECT", "TCP", "HTTP"):
            raise invalid("The associated pool protocol is UDP, so only a UDP-CONNECT, "
                          "TCP or HTTP type health monitor is supported.")
        if hm["delay"] < hm["timeout"]:
            raise invalid(f"The request delay value {hm['delay']} should be larger than the "
                          f"request timeout value {hm['timeout']} for {hm['type']} health "
                          f"monitor type.")
        if hm["type"] not in ("HTTP", "HTTPS") and any(
                hm.get(k) for k in ("http_method", "url_path", "expected_codes")):
            raise invalid(f"http_method, url_path and expected_codes are not valid for "
                          f"{hm['type']} health monitors.")

    # ---- southbound ---------------------------------------------------------------

    def report_health(self, member_id: str, status: str, host: str) -> bool:
        """An agent's verdict on a member (ONLINE / ERROR), kept on the member until it
        changes (the tree is rewritten only then); whether it changed anything."""
        if status not in ("ONLINE", "ERROR"):
            raise errors.InvalidInput(f"status '{status}' is not ONLINE or ERROR")

        def attempt(n: int) -> bool:
            lb_id = self._locate("members", member_id)
            found = self._tree(lb_id) if lb_id else None
            if found is None or member_id not in found[0]["children"]["members"]:
                raise errors.NotFound("member", member_id)
            tree, rev = found
            if tree["children"]["members"][member_id].get(HEALTH_KEY) == status:
                return False
            new = _copy(tree)
            new["children"]["members"][member_id][HEALTH_KEY] = status
            self._commit_tree(tree, rev, new, Writes())
            return True
        return self.s.retrying(attempt)


_DELETED = object()


def _copy(tree: dict) -> dict:
    """A copy of a tree deep enough to change any child."""
    out = dict(tree)
    out["children"] = {k: {i: dict(o) for i, o in tree["children"][k].items()} for k in KINDS}
    return out


