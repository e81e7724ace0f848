"""SNAT port blocks: chassis lease aligned blocks of source ports on a router's gateway
IPv4 address, to SNAT their own VMs' TCP and UDP flows without a central node.

Each block is a model object (collection ``snat_blocks``, id ``<router id>:<port_min>``),
so every chassis sees on the stream who owns which block. Blocks are sticky: they are
not tied to the owner's liveness lease, so an agent restart or a control-plane outage
(every lease expires) leaves them, and the gateways' return flows for them, in place;
the chassis has the same blocks when it registers again. A chassis that is not alive is
marked orphaned (one key per chassis, ``/plexus/alloc/snat-orphan/<agent id>``, holding
the time it was first seen dead): by the claim that first finds it dead among a router's
block owners, or by the server when the agent stops cleanly. Its blocks may go to
another chassis only once the mark is older than ``network.snat_quarantine`` (longer than
the longest conntrack timeout, so no session the dead chassis may still carry shares
ports with the new owner); registering again deletes the mark in the registration's own
transaction, so a claim planned against the mark cannot commit after it.

A block is claimed with a create-if-absent compare (a quarantined one: a compare on its
revision and on its owner's mark), and every claim on a router also rewrites the
router's claim generation key. A router change that moves, clears or stops SNAT on the
gateway address compares and deletes that key in its own transaction, so no claim
planned against the old address can commit after it; the blocks left on the old
address are then swept in small transactions (etcd caps a transaction's operations),
and are ignored by agents (their ``ip`` is not the gateway's) until they are. Deleting
an agent through the API releases its blocks at once."""

from __future__ import annotations

import ipaddress
import time

import orjson

from plexus.api import errors
from plexus.api.services.agents import agent_id, liveness_key
from plexus.api.services.base import ALLOC, MODEL, Retry, Writes, now

COLLECTION = "snat_blocks"
CLAIM_BATCH = 40        # blocks claimed per transaction (3 operations each at most)
BATCH = 50              # keys per sweeping transaction (etcd allows 128 operations)
MARKS = 40              # orphan marks per transaction (two compares and a put each)


def block_key(router_id: str, port_min: int) -> str:
    """Store key of one block (a model object, so it is on the southbound stream)."""
    return f"{MODEL}{COLLECTION}/{router_id}:{port_min}"


def generation_key(router_id: str) -> str:
    """Rewritten by every claim on the router; compared by whatever moves its address."""
    return f"{ALLOC}snat/{router_id}"


def orphan_key(chassis: str) -> str:
    """Present while ``chassis`` is known dead: ``{"chassis", "since"}`` (epoch seconds
    it was first seen dead). Deleted when it registers again (or is deleted)."""
    return f"{ALLOC}snat-orphan/{agent_id(chassis)}"


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
        self.quarantine = float(net.snat_quarantine)
        self.max_count = net.snat_max_blocks   # blocks one chassis may hold on one router
        services.add_hook("agent_changed", self._on_agent_changed)
        services.add_hook("chassis_registered", self._on_registered)
        services.add_hook("chassis_unregistered", self._on_unregistered)

    # ---- reading -------------------------------------------------------------------

    def _kvs(self, router_id: str | None = None) -> list:
        prefix = f"{MODEL}{COLLECTION}/" + (f"{router_id}:" if router_id else "")
        return self.s.store.range(prefix)[0]

    def held(self, router_id: str) -> list[dict]:
        """A router's blocks, by first port."""
        return sorted((orjson.loads(kv.value) for kv in self._kvs(router_id)),
                      key=lambda b: b["port_min"])

    def list(self, router_id: str, chassis: str | None = None) -> list[dict]:
        """A router's blocks (of one chassis, if given); a block whose owner is marked
        orphaned carries ``orphaned_since`` (when it was first seen dead, UTC)."""
        self._router(router_id)
        blocks = [b for b in self.held(router_id) if chassis in (None, b["chassis"])]
        marks = {}
        for owner in sorted({b["chassis"] for b in blocks}):
            kv = self.s.store.get(orphan_key(owner))
            if kv is not None:
                marks[owner] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(
                    orjson.loads(kv.value)["since"]))
        return [dict(b, orphaned_since=marks[b["chassis"]]) if b["chassis"] in marks else b
                for b in blocks]

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
        409 when too few blocks are free (then nothing is claimed); more than CLAIM_BATCH
        new blocks commit in several transactions, each all or nothing."""
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
            kvs = self._kvs(router_id)
            held = [orjson.loads(kv.value) for kv in kvs]
            if any(b.get("ip") != ip for b in held):
                self.sweep(router_id)                 # left over from an older address
                raise Retry()
            mine = [b for b in held if b["chassis"] == chassis]
            need = count - len(mine)
            if need <= 0:
                return sorted(mine, key=lambda b: b["port_min"])
            # dead owners: marked now if not yet; past quarantine, their blocks are free
            marks = self._orphans({b["chassis"] for b in held} - {chassis})
            expired = {c: m for c, m in marks.items()
                       if time.time() - m[0] >= self.quarantine}
            used = {b["port_min"] for b in held}
            free = preferred(self.starts, used, {b["port_min"] for b in mine})[:need]
            stale = sorted((b["port_min"], kv, b["chassis"]) for kv, b in zip(kvs, held)
                           if b["chassis"] in expired)
            taken = stale[:need - len(free)]
            if len(free) + len(taken) < need:
                raise errors.Conflict(
                    f"Only {len(free) + len(taken)} of the {need} SNAT port blocks asked "
                    f"for are free on router {router_id}.",
                    type_name="SnatPortBlocksExhausted")
            # etcd takes at most 128 operations per transaction: a big claim commits
            # CLAIM_BATCH blocks at a time (``lease`` plans again for the rest)
            free = free[:CLAIM_BATCH]
            taken = taken[:CLAIM_BATCH - len(free)]
            w = Writes()
            w.expect(self.s["routers"].key(router_id), rev)
            w.expect(liveness_key(agent_id(chassis)), live.mod_revision)
            w.expect(generation_key(router_id), gen.mod_revision if gen else 0)
            w.put(generation_key(router_id), {"router_id": router_id, "claimed_at": now()})
            for _, kv, owner in taken:   # owner still dead since the mark read: unchanged
                w.expect(kv.key, kv.mod_revision)
                w.expect(orphan_key(owner), expired[owner][1])
            fresh = []
            for port in sorted(free + [p for p, _, _ in taken]):
                block = {"id": f"{router_id}:{port}", "router_id": router_id,
                         "chassis": chassis, "ip": ip, "port_min": port,
                         "port_max": port + self.size - 1}
                if port in free:
                    w.expect(block_key(router_id, port), 0)
                w.put(block_key(router_id, port), block)
                fresh.append(block)
            self.s.commit(w)
            return sorted(mine + fresh, key=lambda b: b["port_min"])
        while True:
            blocks = self.s.retrying(plan)
            if len(blocks) >= count:
                return blocks

    def _orphans(self, owners: set[str]) -> dict[str, tuple[float, int]]:
        """The dead ones of ``owners``: their mark's (time first seen dead, revision);
        marks the dead ones not marked yet (as of now), ``MARKS`` per transaction, each
        only if the chassis is still not alive and not marked when it commits. Reads one
        liveness key per owner (and one mark per dead owner)."""
        found, unmarked = {}, []
        for owner in sorted(owners):
            if self.s.store.get(liveness_key(agent_id(owner))) is not None:
                continue
            kv = self.s.store.get(orphan_key(owner))
            if kv is None:
                unmarked.append(owner)
            else:
                found[owner] = (orjson.loads(kv.value)["since"], kv.mod_revision)
        for i in range(0, len(unmarked), MARKS):
            batch, since = unmarked[i:i + MARKS], time.time()
            revision = self._mark(batch, since)        # Retry: the whole claim re-plans
            found.update({owner: (since, revision) for owner in batch})
        return found

    def _mark(self, chassis: list[str], since: float) -> int:
        """Mark ``chassis`` orphaned since ``since``, each only if it is still not alive
        and not marked; one transaction (Retry when a compare fails)."""
        w = Writes()
        for name in chassis:
            w.expect(liveness_key(agent_id(name)), 0)
            w.expect(orphan_key(name), 0)
            w.put(orphan_key(name), {"chassis": name, "since": since})
        return self.s.commit(w)

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
        """A deleted chassis releases its blocks at once (and its orphan mark)."""
        if new is None and old is not None:
            self._delete_where(None, lambda b: b.get("chassis") == old["host"])
            self.s.store.delete(orphan_key(old["host"]))

    def _on_registered(self, chassis: str, w: Writes) -> None:
        """In the registration's transaction: the chassis is alive again and keeps its
        blocks; a claim planned against its mark fails its compare and plans again."""
        w.delete(orphan_key(chassis))

    def _on_unregistered(self, chassis: str) -> None:
        """A chassis that stopped cleanly is dead from now: mark it (if it is not alive
        and not marked yet), so the quarantine starts at once."""
        try:
            self._mark([chassis], time.time())
        except Retry:
            pass              # it registered again meanwhile, or was marked: nothing to do
