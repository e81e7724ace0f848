"""Gateway scheduling: each router with an external gateway gets an ordered list of
gateway-capable chassis; the first alive one is its active gateway, every chassis
computing the same answer from the same list and liveness.

The list is stored on the router under the hidden key ``plexus:gateway_chassis`` (chassis
names, on the southbound stream with the router). ``schedule`` is a pure function of
the routers and the candidate chassis: new routers get the least-loaded alive chassis
first (ties broken by a per-router hash, so servers racing on creates still spread),
the first choices of routers nobody pinned are rebalanced with the fewest moves, and
the rest of each list is ordered by a per-router hash (rendezvous hashing), so that when
a chassis fails its routers spread over the others.

Admins pin routers to chassis through Neutron's l3-agent scheduler API: a pinned chassis
goes first (``plexus:gateway_pinned``); removing a router from a chassis unpins it and
keeps it off that router's list (``plexus:gateway_excluded``).

Every write is a store transaction. A generation key, bumped by every change to a
gateway-capable chassis, is part of every transaction that writes a schedule, so a
schedule computed from a stale set of chassis never commits: it is planned again."""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

import orjson

from plexus.api import errors, policy
from plexus.api.services.agents import agent_id
from plexus.api.services.base import ALLOC, MAX_ATTEMPTS, MODEL, Retry, Writes, now
from plexus.model.keys import GATEWAY_CHASSIS

PINNED = "plexus:gateway_pinned"
EXCLUDED = "plexus:gateway_excluded"
GENERATION = f"{ALLOC}gateway-chassis"
LOG = logging.getLogger(__name__)


# ---- the pure part ------------------------------------------------------------------


@dataclass(frozen=True)
class Chassis:
    """A gateway-capable chassis the scheduler may use."""

    name: str
    alive: bool = True


@dataclass(frozen=True)
class Intent:
    """What the scheduler needs of one router."""

    id: str
    gateway: bool
    current: tuple[str, ...] = ()
    pinned: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()


def intent(router: dict) -> Intent:
    """The scheduling facts of a stored router."""
    return Intent(router["id"], bool(router.get("gw_port_id")),
                  tuple(router.get(GATEWAY_CHASSIS) or ()), tuple(router.get(PINNED) or ()),
                  tuple(router.get(EXCLUDED) or ()))


def rank(router_id: str, name: str) -> bytes:
    """A stable per-(router, chassis) order: rendezvous hashing."""
    return hashlib.sha256(f"{router_id}/{name}".encode()).digest()


def schedule(routers: Iterable[Intent], chassis: Iterable[Chassis],
             limit: int = 0) -> dict[str, tuple[str, ...]]:
    """Every router's ordered gateway chassis (``limit`` long, 0 = all candidates).

    Pure and order-independent. Members a router already has keep their places (so
    nothing moves without a reason); a router without a gateway keeps only its pins."""
    candidates = {c.name: c.alive for c in chassis}
    names = sorted(candidates)
    alive = {n for n in names if candidates[n]}
    ordered = sorted(routers, key=lambda r: r.id)
    base: dict[str, list[str]] = {}
    pins: dict[str, list[str]] = {}
    for r in ordered:
        pins[r.id] = [p for p in dict.fromkeys(r.pinned) if p in candidates
                      and p not in r.excluded]
        kept = [c for c in dict.fromkeys(r.current) if c in candidates
                and c not in r.excluded and c not in pins[r.id]]
        base[r.id] = pins[r.id] + (kept if r.gateway else [])
    gateways = [r for r in ordered if r.gateway]
    load = Counter(base[r.id][0] for r in gateways if base[r.id])

    def allowed(r: Intent) -> list[str]:
        return [n for n in names if n not in r.excluded]

    for r in gateways:                       # first choice of new routers: least loaded
        if not base[r.id] and allowed(r):
            first = min(allowed(r), key=lambda n: (n not in alive, load[n], rank(r.id, n)))
            base[r.id] = [first]
            load[first] += 1
    _rebalance([r for r in gateways if base[r.id] and not pins[r.id]], base, load, alive)
    out = {}
    for r in ordered:
        if not r.gateway:
            out[r.id] = tuple(base[r.id])
            continue
        rest = sorted((n for n in allowed(r) if n not in base[r.id]),
                      key=lambda n: (n not in alive, rank(r.id, n)))
        full = base[r.id] + rest
        want = len(full) if limit <= 0 else max(min(limit, len(full)), len(pins[r.id]))
        out[r.id] = tuple(full[:want])
    return out


def _rebalance(movable: list[Intent], base: dict[str, list[str]], load: Counter,
               alive: set[str]) -> None:
    """Move first choices from the most to the least loaded alive chassis until no two
    differ by more than one (the fewest moves; each move is one failover)."""
    for _ in range(len(movable) * max(len(alive), 1)):
        if not alive:
            return
        dst = min(alive, key=lambda n: (load[n], n))
        best = None
        for r in movable:
            src = base[r.id][0]
            if src == dst or dst in r.excluded or load[src] - load[dst] <= 1:
                continue
            key = (-load[src], rank(r.id, dst))
            if best is None or key < best[0]:
                best = (key, r)
        if best is None:
            return
        r = best[1]
        src = base[r.id][0]
        base[r.id] = [dst] + [n for n in base[r.id] if n != dst]
        load[src] -= 1
        load[dst] += 1


def ha_states(schedule_: list[str], alive: set[str]) -> dict[str, str]:
    """Neutron's ``ha_state`` per scheduled chassis: the first alive one is "active",
    other alive ones "standby", dead ones "unknown"."""
    up = [n for n in schedule_ if n in alive]
    return {n: ("active" if up and n == up[0] else "standby" if n in alive else "unknown")
            for n in schedule_}


# ---- the service --------------------------------------------------------------------


def alive_chassis(store) -> set[str]:
    """Names of the chassis alive now (their leased liveness key exists)."""
    kvs, _ = store.range(f"{MODEL}liveness/")
    out = set()
    for kv in kvs:
        try:
            out.add(orjson.loads(kv.value)["host"])
        except (ValueError, KeyError, TypeError):
            continue
    return out


def flagged(agent: dict | None) -> bool:
    """Whether a chassis registered as gateway-capable (enabled or not)."""
    return bool(agent and (agent.get("configurations") or {}).get("gateway"))


def gateway_capable(agent: dict | None) -> bool:
    """Whether a registered chassis may be scheduled as a gateway."""
    return flagged(agent) and bool(agent.get("admin_state_up", True))


class GatewayScheduler:
    """Keeps every router's gateway chassis list current, and serves the l3-agent views."""

    def __init__(self, services):
        self.s = services
        services.add_hook("agent_write", self._on_agent_write)
        services.add_hook("agent_changed", self._on_agent_changed)

    @property
    def limit(self) -> int:
        """How many chassis each router gets (0 = all)."""
        return self.s.config.network.gateway_chassis_per_router

    # ---- reading -------------------------------------------------------------------

    def alive(self) -> set[str]:
        """Names of the chassis alive now."""
        return alive_chassis(self.s.store)

    def candidates(self) -> list[Chassis]:
        """Gateway-capable, enabled chassis, with their liveness."""
        alive = self.alive()
        return [Chassis(a["host"], a["host"] in alive)
                for a in self.s.objects("agents") if gateway_capable(a)]

    def generation(self) -> int:
        """Mod revision of the generation key (0 when never written)."""
        kv = self.s.store.get(GENERATION)
        return kv.mod_revision if kv else 0

    # ---- planning inside other transactions -------------------------------------------

    def plan_router(self, router: dict, w: Writes) -> dict:
        """Set ``router``'s schedule (in its own create or update transaction), guarded by
        the generation of the chassis set it was computed from."""
        w.expect(GENERATION, self.generation())
        others = [intent(r) for r in self.s.objects("routers") if r["id"] != router["id"]]
        plan = schedule(others + [intent(router)], self.candidates(), self.limit)
        router[GATEWAY_CHASSIS] = list(plan[router["id"]])
        router.setdefault(PINNED, [])
        router.setdefault(EXCLUDED, [])
        return router

    def _on_agent_write(self, old: dict | None, new: dict | None, w: Writes) -> None:
        """A change to a gateway-capable chassis makes every schedule in flight re-plan."""
        if gateway_capable(old) or gateway_capable(new):
            w.put(GENERATION, {"changed_at": now()})

    def _on_agent_changed(self, old: dict | None, new: dict | None) -> None:
        """After a chassis that is (or was) a gateway registered, changed or was deleted:
        reschedule. The change is committed either way; a reschedule that keeps
        conflicting is left to the next one."""
        if not (flagged(old) or flagged(new)):
            return
        try:
            self.reschedule()
        except errors.NeutronError as exc:
            LOG.warning("gateway rescheduling gave up: %s", exc)

    # ---- rescheduling ----------------------------------------------------------------

    def reschedule(self) -> int:
        """Recompute every router's list and write those that changed, one transaction
        per router; starts over whenever a router or the chassis set changed meanwhile.
        Returns how many routers were rewritten."""
        for attempt in range(MAX_ATTEMPTS):
            generation = self.generation()
            kvs, _ = self.s.store.range(f"{MODEL}routers/")   # routers before chassis
            routers = [(orjson.loads(kv.value), kv.mod_revision) for kv in kvs]
            plan = schedule([intent(r) for r, _ in routers], self.candidates(), self.limit)
            written = 0
            try:
                for router, rev in routers:
                    wanted = list(plan[router["id"]])
                    if router.get(GATEWAY_CHASSIS, []) == wanted:
                        continue
                    w = Writes()
                    w.expect(GENERATION, generation)
                    w.expect(f"{MODEL}routers/{router['id']}", rev)
                    w.put(f"{MODEL}routers/{router['id']}", {**router, GATEWAY_CHASSIS: wanted})
                    self.s.commit(w)
                    written += 1
                return written
            except Retry:
                time.sleep(min(0.002 * (attempt + 1), 0.05))
        raise errors.Conflict("Gateway scheduling kept conflicting with concurrent changes.",
                              type_name="ConcurrentModification")

    # ---- Neutron's l3-agent scheduler views -------------------------------------------

    @staticmethod
    def _admin(ctx, action: str) -> None:
        policy.enforce(ctx, action)

    def _router(self, ident: str) -> tuple[dict, int]:
        found = self.s["routers"].get(ident)
        if found is None:
            raise errors.NotFound("router", ident)
        return found

    def _agent(self, ident: str) -> dict:
        found = self.s["agents"].get(ident)
        if found is None:
            raise errors.NotFound("agent", ident)
        return found[0]

    def agents_hosting(self, ctx, router_id: str) -> list[dict]:
        """``GET /v2.0/routers/{id}/l3-agents``: the router's chassis as agents, in
        schedule order, with ``ha_state`` (None for a router without a gateway)."""
        self._admin(ctx, "get_l3-agents")
        router, _ = self._router(router_id)
        names = router.get(GATEWAY_CHASSIS) or []
        states = ha_states(names, self.alive())
        agents = self.s["agents"]
        out = []
        for name in names:
            found = agents.get(agent_id(name))
            if found is None:
                continue
            view = agents.view(ctx, found[0])
            view["ha_state"] = states[name] if router.get("gw_port_id") else None
            out.append(view)
        return out

    def routers_on(self, ctx, ident: str) -> list[dict]:
        """``GET /v2.0/agents/{id}/l3-routers``: the routers scheduled on a chassis."""
        self._admin(ctx, "get_l3-routers")
        host = self._agent(ident)["host"]
        routers = self.s["routers"]
        hosted = [r for r in routers.all() if host in (r.get(GATEWAY_CHASSIS) or [])]
        return [routers.view(ctx, r) for r in routers.present(hosted)]

    def pin(self, ctx, ident: str, body) -> None:
        """``POST /v2.0/agents/{id}/l3-routers {"router_id"}``: schedule the router on this
        chassis first (and keep it there: a pin is never rebalanced)."""
        self._admin(ctx, "create_l3-router")
        if not isinstance(body, dict) or not isinstance(body.get("router_id"), str):
            raise errors.BadRequest("Bad l3-router request: router_id is required.",
                                    type_name="BadRequest")
        extra = set(body) - {"router_id"}
        if extra:
            raise errors.InvalidInput(f"Unrecognized attribute(s) '{', '.join(sorted(extra))}'"
                                      f" (ha_chassis_priority is not supported: the order "
                                      f"is the priority, and a pinned chassis goes first)")
        agent = self._agent(ident)
        if not gateway_capable(agent):
            raise errors.ResourceNotFound(f"Agent {ident} is not a L3 Agent or has been "
                                          f"disabled", type_name="InvalidL3Agent")
        name = agent["host"]

        def change(router: dict) -> dict:
            pinned = [name] + [p for p in router.get(PINNED) or [] if p != name]
            excluded = [e for e in router.get(EXCLUDED) or [] if e != name]
            return {**router, PINNED: pinned, EXCLUDED: excluded}
        self._change(body["router_id"], change)

    def unpin(self, ctx, ident: str, router_id: str) -> None:
        """``DELETE /v2.0/agents/{id}/l3-routers/{router_id}``: take the router off this
        chassis (unpinned, and excluded from its list until pinned again)."""
        self._admin(ctx, "delete_l3-router")
        name = self._agent(ident)["host"]
        router, _ = self._router(router_id)
        if name not in (router.get(GATEWAY_CHASSIS) or []):
            raise errors.Conflict(f"The router {router_id} is not hosted by L3 agent {ident}.",
                                  type_name="RouterNotHostedByL3Agent")

        def change(router: dict) -> dict:
            pinned = [p for p in router.get(PINNED) or [] if p != name]
            excluded = [e for e in router.get(EXCLUDED) or [] if e != name] + [name]
            return {**router, PINNED: pinned, EXCLUDED: excluded}
        self._change(router_id, change)

    def _change(self, router_id: str, change) -> None:
        """Apply an admin's pin or unpin to the router and reschedule it, atomically."""
        routers = self.s["routers"]

        def plan(attempt: int) -> None:
            router, rev = self._router(router_id)
            new = self.plan_router(change(router), w := Writes())
            if new == router:
                return
            w.expect(routers.key(router_id), rev)
            w.put(routers.key(router_id), new)
            self.s.commit(w)
        self.s.retrying(plan)

