"""Load balancers as the data plane reads them: one typed object per stored tree
(``model/loadbalancers/<id>``, written by ``api.services.lbaas``), flattened to what a
chassis programs: the VIP, and per enabled listener its protocol, port, how it hashes
(source port or source address) and the members in selection (enabled, weight > 0,
not reported down by their chassis' health checks, not backups while a primary is
up), and per health monitor what the chassis hosting its members probe
(``agent.lbhealth``). No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from plexus.model.keys import HEALTH_KEY

PROTOCOL_NUMBERS = {"TCP": 6, "UDP": 17}
HASH_SOURCE_IP = "source_ip"        # SOURCE_IP algorithm or SOURCE_IP persistence
HASH_SOURCE_PORT = "source_port"    # ROUND_ROBIN / SOURCE_IP_PORT: per connection
PROBED_MONITORS = ("TCP", "UDP-CONNECT")    # the monitor types the chassis probe


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
class LbProbe:
    """One member a health monitor checks: where its probes go (its ``monitor_address``
    and ``monitor_port`` when set, else its own) and the verdict last reported for it
    (``""``: none yet)."""

    member_id: str
    address: str
    port: int
    health: str = ""


@dataclass(frozen=True)
class LbMonitor:
    """An enabled health monitor of an enabled pool, with its enabled members. Octavia's
    semantics: a probe every ``delay`` s, answered within ``timeout`` s or failed;
    ``max_retries`` successes in a row make a member ONLINE, ``max_retries_down``
    failures in a row ERROR."""

    id: str
    pool_id: str
    type: str                           # PROBED_MONITORS
    delay: int
    timeout: int
    max_retries: int
    max_retries_down: int
    probes: tuple[LbProbe, ...]         # sorted by member id


@dataclass(frozen=True)
class LoadBalancer:
    """A load balancer's VIP and enabled listeners (and health monitors)."""

    id: str
    vip: str
    vip_network_id: str
    vip_port_id: str
    listeners: tuple[LbListener, ...]
    monitors: tuple[LbMonitor, ...] = ()


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
    checks = tuple(_monitor(hm, pools, members, health) for hm in sorted(
        (ch.get("healthmonitors") or {}).values(), key=lambda hm: hm["id"])
        if hm.get("admin_state_up", True) and hm.get("type") in PROBED_MONITORS
        and (pools.get(hm.get("pool_id")) or {}).get("admin_state_up", False))
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
                        tree.get("vip_port_id") or "", tuple(listeners), checks)


def _monitor(hm: Mapping, pools: Mapping, members: Mapping, health: Mapping[str, str]
             ) -> LbMonitor:
    """A health monitor with the enabled members of its pool (whatever their weight:
    a weight-0 member is still checked, as Octavia does)."""
    probes = tuple(
        LbProbe(m["id"], m.get("monitor_address") or m["address"],
                int(m.get("monitor_port") or m["protocol_port"]), health.get(m["id"], ""))
        for m in sorted(members.values(), key=lambda m: m["id"])
        if m["pool_id"] == hm["pool_id"] and m.get("admin_state_up", True))
    def number(key: str, default: int) -> int:
        value = hm.get(key)
        return max(1, int(default if value is None else value))
    delay = number("delay", 5)          # at least 1 s (the API takes 0: no busy probing)
    return LbMonitor(hm["id"], hm["pool_id"], hm["type"], delay,
                     min(number("timeout", 5), delay), number("max_retries", 3),
                     number("max_retries_down", 3), probes)


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
