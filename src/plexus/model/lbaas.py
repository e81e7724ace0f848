"""Load balancers as the data plane reads them: one typed object per stored tree
(``model/loadbalancers/<id>``, written by ``api.services.lbaas``), flattened to what a
chassis programs: the VIP, and per enabled listener its protocol, port, how it hashes
(source port or source address) and the members in selection (enabled, weight > 0,
not reported down by their chassis' health checks, not backups while a primary is
up). No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from plexus.model.keys import HEALTH_KEY

PROTOCOL_NUMBERS = {"TCP": 6, "UDP": 17}
HASH_SOURCE_IP = "source_ip"        # SOURCE_IP algorithm or SOURCE_IP persistence
HASH_SOURCE_PORT = "source_port"    # ROUND_ROBIN / SOURCE_IP_PORT: per connection


@dataclass(frozen=True)
class LbMember:
    """One backend in selection."""

    id: str
    address: str
    port: int
    weight: int


@dataclass(frozen=True)
class LbListener:
    """One VIP port with the members it NATs to."""

    id: str
    protocol: int                       # 6 or 17
    port: int
    hash: str                           # HASH_SOURCE_IP or HASH_SOURCE_PORT
    members: tuple[LbMember, ...]       # in selection, sorted by id


@dataclass(frozen=True)
class LoadBalancer:
    """A load balancer's VIP and enabled listeners."""

    id: str
    vip: str
    vip_network_id: str
    vip_port_id: str
    listeners: tuple[LbListener, ...]


def selection(members: list[dict], health: Mapping[str, str], monitored: bool
              ) -> tuple[LbMember, ...]:
    """The members traffic goes to: enabled, weight > 0, not reported ERROR (only a
    monitored pool's reports count); backups only when no primary is left."""
    def usable(m: dict) -> bool:
        return m.get("admin_state_up", True) and m.get("weight", 1) > 0 and not (
            monitored and health.get(m["id"]) == "ERROR")
    up = [m for m in members if usable(m)]
    chosen = [m for m in up if not m.get("backup")] or up
    return tuple(LbMember(m["id"], m["address"], int(m["protocol_port"]),
                          int(m.get("weight", 1))) for m in sorted(chosen, key=lambda m: m["id"]))


def to_loadbalancer(tree: Mapping, health: Mapping[str, str] | None = None) -> LoadBalancer:
    """The data plane's form of a stored tree (disabled: no listeners). ``health``:
    member id → ONLINE / ERROR, as the chassis reported (default: the reports kept on
    the members, ``HEALTH_KEY``)."""
    ch = tree.get("children") or {}
    if health is None:
        health = {i: m[HEALTH_KEY] for i, m in (ch.get("members") or {}).items()
                  if m.get(HEALTH_KEY)}
    if not tree.get("admin_state_up", True):
        return LoadBalancer(tree["id"], tree.get("vip_address") or "",
                            tree.get("vip_network_id") or "", tree.get("vip_port_id") or "",
                            ())
    pools, members = ch.get("pools") or {}, ch.get("members") or {}
    monitors = {hm["pool_id"] for hm in (ch.get("healthmonitors") or {}).values()
                if hm.get("admin_state_up", True)}
    listeners = []
    for li in sorted((ch.get("listeners") or {}).values(), key=lambda li: li["id"]):
        pool = pools.get(li.get("default_pool_id") or "")
        proto = PROTOCOL_NUMBERS.get(li.get("protocol"))
        if not li.get("admin_state_up", True) or proto is None:
            continue
        chosen: tuple[LbMember, ...] = ()
        hashing = HASH_SOURCE_PORT
        if pool is not None and pool.get("admin_state_up", True):
            persistence = (pool.get("session_persistence") or {}).get("type")
            if pool.get("lb_algorithm") == "SOURCE_IP" or persistence == "SOURCE_IP":
                hashing = HASH_SOURCE_IP
            chosen = selection([m for m in members.values() if m["pool_id"] == pool["id"]],
                               health, pool["id"] in monitors)
        listeners.append(LbListener(li["id"], proto, int(li["protocol_port"]), hashing,
                                    chosen))
    return LoadBalancer(tree["id"], tree["vip_address"], tree.get("vip_network_id") or "",
                        tree.get("vip_port_id") or "", tuple(listeners))


def slots(members: tuple[LbMember, ...]) -> tuple[int, tuple[LbMember, ...]]:
    """How a listener's hash space is cut: (bits, the member of each of the 2**bits
    slots). Slots are shared out by weight (largest remainder, ties by member order), so
    with uniform hash input each member's share is its weight's within 1/2**bits; the
    slots of one member are spread (interleaved), not contiguous. 8 slots per member,
    at most 256."""
    if not members:
        return 0, ()
    bits = 3
    while (1 << bits) < 8 * len(members) and bits < 8:
        bits += 1
    total = 1 << bits
    weight = sum(m.weight for m in members)
    exact = [total * m.weight / weight for m in members]
    counts = [int(x) for x in exact]
    left = total - sum(counts)
    for i in sorted(range(len(members)), key=lambda i: (counts[i] - exact[i], i))[:left]:
        counts[i] += 1
    # interleave: deal the slots round-robin among members that still have some
    order: list[LbMember] = []
    remaining = list(counts)
    while len(order) < total:
        for i, m in enumerate(members):
            if remaining[i]:
                order.append(m)
                remaining[i] -= 1
    return bits, tuple(order)
