"""SNAT port blocks: chassis lease aligned blocks of source ports on a router's gateway
IPv4 address, to SNAT their own VMs' TCP and UDP flows without a central node.

Each block is a model object (collection ``snat_blocks``, id ``<router id>:<port_min>``)
attached to the owning chassis' liveness lease, so every chassis sees on the stream who
owns which block, and a chassis that dies loses its blocks to whoever asks next.

A block is claimed with a create-if-absent compare, and every claim on a router also
rewrites the router's claim generation key. A router change that moves, clears or stops
SNAT on the gateway address compares and deletes that key in its own transaction, so no
claim planned against the old address can commit after it; the blocks left on the old
address are then swept in small transactions (etcd caps a transaction's operations),
and are ignored by agents (their ``ip`` is not the gateway's) until they are. A chassis
that registers again while its old lease still runs (an agent restart) keeps its blocks:
they move to the new lease. Deleting an agent releases its blocks."""

from __future__ import annotations

import ipaddress

import orjson

from plexus.api import errors
from plexus.api.services.agents import agent_id, liveness_key
from plexus.api.services.base import ALLOC, MODEL, Retry, Writes, now
from plexus.store import LeaseNotFound

COLLECTION = "snat_blocks"
BATCH = 50              # keys per sweeping transaction (etcd allows 128 operations)


def block_key(router_id: str, port_min: int) -> str:
    """Store key of one block (a model object, so it is on the southbound stream)."""
    return f"{MODEL}{COLLECTION}/{router_id}:{port_min}"


def generation_key(router_id: str) -> str:
    """Rewritten by every claim on the router; compared by whatever moves its address."""
    return f"{ALLOC}snat/{router_id}"


def layout(port_range: tuple[int, int], size: int) -> range:
    """The first port of every block: aligned to ``size`` (a power of two, so a block
    is one masked match on the port) and wholly inside ``port_range``."""
    lo, hi = port_range
    if size < 1 or size & (size - 1) or size > 32768:
        raise ValueError(f"snat_block_size {size} must be a power of two up to 32768")
    if not 1 <= lo <= hi <= 65535:
        raise ValueError(f"snat_port_range {port_range} must lie within 1-65535")
    first = -(-lo // size) * size
    end = (hi + 1) // size * size         # one past the last block's last port
    if first >= end:
        raise ValueError(f"snat_port_range {port_range} holds no aligned block of {size}")
    return range(first, end, size)


def gateway_ipv4(router: dict, services) -> str | None:
    """The router's gateway IPv4 address, if it has a gateway."""
    gw = services["routers"].gateway_port(router)
    for ip in (gw or {}).get("fixed_ips", []):
        if ipaddress.ip_address(ip["ip_address"]).version == 4:
            return ip["ip_address"]
    return None


def preferred(starts: range, used: set[int], mine: set[int]) -> list[int]:
    """The free blocks in the order a chassis holding ``mine`` should take them, so its
    blocks stay contiguous (one NAT range on its agent): nearest to its own blocks first.
    A chassis holding none starts in the largest free run: at its start, or at its middle
    when the run's start borders another chassis' block (room for both to grow)."""
    size = starts.step
    free = [p for p in starts if p not in used]
    if not free:
        return []
    if not mine:
        runs: list[list[int]] = []
        for p in free:
            if runs and runs[-1][-1] + size == p:
                runs[-1].append(p)
            else:
                runs.append([p])
        run = max(runs, key=lambda r: (len(r), -r[0]))
        mine = {run[len(run) // 2] if run[0] - size in used else run[0]}
    return sorted(free, key=lambda p: (min(abs(p - m) for m in mine), p))


class SnatBlocks:
    """Leasing, releasing, sweeping and adopting SNAT port blocks."""

    def __init__(self, services):
        self.s = services
        net = services.config.network
        self.size = net.snat_block_size
        self.starts = layout(net.snat_port_range, self.size)
        self.max_count = net.snat_max_blocks   # blocks one chassis may hold on one router
        services.add_hook("agent_changed", self._on_agent_changed)

    # ---- reading -------------------------------------------------------------------

    def _kvs(self, router_id: str | None = None) -> list:
        prefix = f"{MODEL}{COLLECTION}/" + (f"{router_id}:" if router_id else "")
        return self.s.store.range(prefix)[0]

    def held(self, router_id: str) -> list[dict]:
        """A router's blocks, by first port."""
        return sorted((orjson.loads(kv.value) for kv in self._kvs(router_id)),
                      key=lambda b: b["port_min"])

    def list(self, router_id: str, chassis: str | None = None) -> list[dict]:
        """A router's blocks (of one chassis, if given)."""
        self._router(router_id)
        return [b for b in self.held(router_id) if chassis in (None, b["chassis"])]

    def _router(self, router_id: str) -> tuple[dict, int]:
        found = self.s["routers"].get(router_id)
        if found is None:
            raise errors.NotFound("router", router_id)
        return found

    def _address(self, router: dict | None) -> str | None:
        """The address a router's blocks are leased on now (None: none may be)."""
        if router is None or not router.get("enable_snat", True):
            return None
        return gateway_ipv4(router, self.s)

    # ---- leasing -------------------------------------------------------------------

    def lease(self, router_id: str, chassis: str, count) -> list[dict]:
        """Make ``chassis`` hold ``count`` blocks on the router's gateway address (at least:
        blocks it holds are kept, more are claimed if it holds fewer); returns its blocks.
        All or nothing: 409 when too few blocks are free."""
        if not isinstance(count, int) or isinstance(count, bool) or not 0 < count <= self.max_count:
            raise errors.InvalidInput(f"count must be an integer from 1 to {self.max_count}, "
                                      f"not {count!r}")

        def plan(attempt: int) -> list[dict]:
            router, rev = self._router(router_id)
            ip = gateway_ipv4(router, self.s)
            if ip is None:
                raise errors.Conflict(f"Router {router_id} has no external gateway with an "
                                      f"IPv4 address.", type_name="RouterHasNoGateway")
            if not router.get("enable_snat", True):
                raise errors.Conflict(f"SNAT is disabled on router {router_id}.",
                                      type_name="SnatDisabled")
            live = self.s.store.get(liveness_key(agent_id(chassis)))
            if live is None or not live.lease:
                raise errors.Conflict(f"Chassis {chassis} is not alive; it must register "
                                      f"before leasing SNAT ports.", type_name="ChassisNotAlive")
            gen = self.s.store.get(generation_key(router_id))
            held = self.held(router_id)
            if any(b.get("ip") != ip for b in held):
                self.sweep(router_id)                 # left over from an older address
                raise Retry()
            mine = [b for b in held if b["chassis"] == chassis]
            need = count - len(mine)
            if need <= 0:
                return mine
            used = {b["port_min"] for b in held}
            free = preferred(self.starts, used, {b["port_min"] for b in mine})[:need]
            if len(free) < need:
                raise errors.Conflict(
                    f"Only {len(free)} of the {need} SNAT port blocks asked for are free on "
                    f"router {router_id}.", type_name="SnatPortBlocksExhausted")
            w = Writes()
            w.expect(self.s["routers"].key(router_id), rev)
            w.expect(liveness_key(agent_id(chassis)), live.mod_revision)
            w.expect(generation_key(router_id), gen.mod_revision if gen else 0)
            w.put(generation_key(router_id), {"router_id": router_id, "claimed_at": now()})
            fresh = []
            for port in free:
                block = {"id": f"{router_id}:{port}", "router_id": router_id,
                         "chassis": chassis, "ip": ip, "port_min": port,
                         "port_max": port + self.size - 1}
                w.expect(block_key(router_id, port), 0)
                w.put(block_key(router_id, port), block, lease=live.lease)
                fresh.append(block)
            try:
                self.s.commit(w)
            except LeaseNotFound:
                raise Retry() from None
            return sorted(mine + fresh, key=lambda b: b["port_min"])
        return self.s.retrying(plan)

    def release(self, router_id: str, chassis: str, port_min: int | None = None) -> int:
        """Give back one block (by its first port) or all blocks of ``chassis`` on the
        router; returns how many were released."""
        self._router(router_id)
        if port_min is not None and not any(
                b["chassis"] == chassis and b["port_min"] == port_min
                for b in self.held(router_id)):
            raise errors.ResourceNotFound(
                f"Chassis {chassis} holds no SNAT port block starting at {port_min} on "
                f"router {router_id}.", type_name="SnatPortBlockNotFound")
        return self._delete_where(router_id, lambda b: b["chassis"] == chassis and
                                  port_min in (None, b["port_min"]))

    # ---- following router and chassis changes -----------------------------------------

    def plan_drop(self, router_id: str, w: Writes) -> None:
        """In a transaction that moves, clears or stops SNAT on a router's gateway address:
        end the claim generation, so claims planned on the old address cannot commit.
        ``sweep`` removes the old blocks once it has committed."""
        gen = self.s.store.get(generation_key(router_id))
        w.expect(generation_key(router_id), gen.mod_revision if gen else 0)
        if gen is not None:
            w.delete(generation_key(router_id))

    def sweep(self, router_id: str) -> int:
        """Delete the router's blocks that are not on its current SNAT address (all of
        them when it has none, or is gone); returns how many."""
        found = self.s["routers"].get(router_id)
        ip = self._address(found[0] if found else None)
        return self._delete_where(router_id, lambda b: ip is None or b.get("ip") != ip)

    def _delete_where(self, router_id: str | None, doomed) -> int:
        """Delete the blocks (of a router, or all) that ``doomed(block)`` picks, a batch per
        transaction, each block only if unchanged since read."""
        done = 0
        while True:
            def plan(attempt: int) -> int:
                picked = [kv for kv in self._kvs(router_id) if doomed(orjson.loads(kv.value))]
                w = Writes()
                for kv in picked[:BATCH]:
                    w.expect(kv.key, kv.mod_revision)
                    w.delete(kv.key)
                if picked:
                    self.s.commit(w)
                return len(picked[:BATCH])
            batch = self.s.retrying(plan)
            done += batch
            if batch < BATCH:
                return done

    def _on_agent_changed(self, old: dict | None, new: dict | None) -> None:
        """A deleted chassis releases its blocks; a registered one adopts those still on
        an older lease of its own (an agent restart keeps its blocks)."""
        if new is None and old is not None:
            self._delete_where(None, lambda b: b.get("chassis") == old["host"])
        elif new is not None:
            self._adopt(new["host"])

    def _adopt(self, chassis: str) -> None:
        """Move the chassis' blocks to its current liveness lease, a batch at a time."""
        def plan(attempt: int) -> int:
            live = self.s.store.get(liveness_key(agent_id(chassis)))
            if live is None or not live.lease:
                return 0
            stale = [kv for kv in self._kvs() if kv.lease != live.lease
                     and orjson.loads(kv.value).get("chassis") == chassis][:BATCH]
            if not stale:
                return 0
            w = Writes()
            w.expect(liveness_key(agent_id(chassis)), live.mod_revision)
            for kv in stale:
                w.expect(kv.key, kv.mod_revision)
                w.put(kv.key, kv.value, lease=live.lease)
            try:
                self.s.commit(w)
            except LeaseNotFound:
                raise Retry() from None
            return len(stale)
        while self.s.retrying(plan) == BATCH:
            pass
