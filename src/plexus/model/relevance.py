"""What one chassis needs to know, as scopes (the rules both the server's per-chassis
stream and the agent's own filter use; docs/architecture.md).

Every object belongs to a few *scopes*; every chassis *subscribes* to a set of scopes;
an object is relevant to a chassis when the two meet. Scopes:

- ``("net", N)``       a network, its subnets, every port on it, its learned VIP
                       owners and the load balancers whose VIP is on it (so a load
                       balancer reaches the chassis with ports on its VIP's network or
                       on a network one of their routers connects to it)
- ``("netobj", N)``    a network and its subnets only (a router's external network: the
                       chassis needs its addresses, not every port on it)
- ``("dev", D)``       the ports whose ``device_id`` is D; for a router also the router,
                       its floating IPs and SNAT blocks
- ``("host", C)``      ports bound to chassis C and routers C is a gateway candidate of
- ``("sg", G)``        a security group
- ``("member", G)``    the ports in group G (their addresses form a remote group)
- ``("ag", A)``        address group A (its CIDRs are a remote side of rules)
- ``("chassis", C)``   chassis C's agent and liveness objects
- ``("qos", P)``       a QoS policy

A chassis X subscribes to: ``("host", X)``, ``("chassis", X)``; for each port bound to
it, its network, groups and QoS policy and its network's QoS policy; the remote groups
and address groups those groups' rules name; the routers
with an interface on one of its networks or with X as a gateway candidate, with their
interfaces' networks, their gateway's network (``netobj``) and their floating IPs'
ports; and the chassis hosting ports on every network it subscribes, its routers'
gateway candidates and SNAT block holders.

Every event that can change a chassis' subscriptions belongs to a scope the chassis
already subscribes to (its own ``host``, a network, group or router it has), so a
stream that forwards each event to the chassis whose scopes it meets, before and after
the change, never misses one; ``STRUCTURAL`` says which changes make the subscriptions
worth recomputing."""

from __future__ import annotations

from typing import Any

from plexus.model import keys
from plexus.model.catalog import Catalog, Change

Scope = tuple[str, str]


def scopes(collection: str, obj: Any) -> frozenset[Scope]:
    """The scopes one (typed) object belongs to."""
    if obj is None:
        return frozenset()
    if collection == keys.PORTS:
        out = {("net", obj.network_id)}
        if obj.device_id:
            out.add(("dev", obj.device_id))
        if obj.chassis:
            out.add(("host", obj.chassis))
        out.update(("member", g) for g in obj.security_groups)
        return frozenset(out)
    if collection == keys.NETWORKS:
        return frozenset({("net", obj.id), ("netobj", obj.id)})
    if collection == keys.SUBNETS:
        return frozenset({("net", obj.network_id), ("netobj", obj.network_id)})
    if collection == keys.ROUTERS:
        return frozenset({("dev", obj.id)} | {("host", c) for c in obj.gateway_chassis})
    if collection == keys.FLOATINGIPS:
        return frozenset({("dev", obj.id)} | ({("dev", obj.router_id)} if obj.router_id
                                               else set()))
    if collection == keys.SNAT_BLOCKS:
        return frozenset({("dev", obj.router_id)})
    if collection == keys.GROUPS:
        return frozenset({("sg", obj.id)})
    if collection == keys.ADDRESS_GROUPS:
        return frozenset({("ag", obj.id)})
    if collection in (keys.AGENTS, keys.LIVENESS):
        return frozenset({("chassis", obj.host)})
    if collection == keys.VIP_OWNERS:
        return frozenset({("net", obj.network_id)})
    if collection == keys.QOS:
        return frozenset({("qos", obj.id)})
    if collection == keys.LOADBALANCERS:
        return frozenset({("net", obj.vip_network_id)})
    return frozenset()


def change_scopes(change: Change) -> frozenset[Scope]:
    """The scopes a change touches: those of the object before and after it."""
    return scopes(change.collection, change.old) | scopes(change.collection, change.new)


def structural(change: Change) -> bool:
    """Whether a change can alter some chassis' subscriptions."""
    old, new, collection = change.old, change.new, change.collection
    if collection not in STRUCTURAL:
        return False
    if old is None or new is None:
        return True
    return any(getattr(old, f) != getattr(new, f) for f in STRUCTURAL[collection])


STRUCTURAL = {
    keys.PORTS: ("network_id", "chassis", "device_id", "device_owner", "security_groups",
                 "qos_policy_id"),
    keys.NETWORKS: ("qos_policy_id",),
    keys.ROUTERS: ("gateway_chassis", "gw_port_id"),
    keys.GROUPS: ("rules",),
    keys.FLOATINGIPS: ("router_id", "floating_port_id"),
    keys.SNAT_BLOCKS: ("chassis", "router_id"),
}


def local_routers(catalog: Catalog, chassis: str) -> set[str]:
    """Routers a chassis routes for or may be the gateway of: those with an interface on
    a network with a port bound to it, and those it is a gateway candidate of."""
    nets = {catalog.objects[keys.PORTS][p].network_id
            for p in catalog.ports_by_chassis.of(chassis)}
    out = set(catalog.routers_by_candidate.of(chassis))
    for net in nets:
        out |= catalog.routers_on(net)
    return out


def subscriptions(catalog: Catalog, chassis: str) -> set[Scope]:
    """The scopes chassis ``chassis`` subscribes to (see the module doc). Costs what the
    chassis hosts and routes, not what the cloud holds."""
    ports, groups = catalog.objects[keys.PORTS], catalog.objects[keys.GROUPS]
    out: set[Scope] = {("host", chassis), ("chassis", chassis)}
    nets: set[str] = set()
    for pid in catalog.ports_by_chassis.of(chassis):
        port = ports[pid]
        nets.add(port.network_id)
        if port.qos_policy_id:
            out.add(("qos", port.qos_policy_id))
        for gid in port.security_groups:
            out.add(("sg", gid))
            group = groups.get(gid)
            if group is not None:
                out.update(("member", g) for g in group.remote_groups())
                out.update(("ag", a) for a in group.remote_address_groups())
    for net in nets:
        network = catalog.objects[keys.NETWORKS].get(net)
        if network is not None and network.qos_policy_id:
            out.add(("qos", network.qos_policy_id))
    routers = set(catalog.routers_by_candidate.of(chassis))
    for net in nets:
        routers |= catalog.routers_on(net)
    hosts: set[str] = set()
    for rid in routers:
        out.add(("dev", rid))
        router = catalog.objects[keys.ROUTERS].get(rid)
        if router is not None:
            hosts.update(router.gateway_chassis)
        for pid in catalog.ports_by_device.of(rid):
            port = ports[pid]
            if port.device_owner in keys.INTERFACE_OWNERS:
                nets.add(port.network_id)
            elif port.device_owner == keys.GATEWAY_OWNER:
                out.add(("netobj", port.network_id))
        out.update(("dev", f) for f in catalog.fips_by_router.of(rid))
        hosts.update(catalog.objects[keys.SNAT_BLOCKS][b].chassis
                     for b in catalog.snat_by_router.of(rid))
    for net in nets:
        out.add(("net", net))
        hosts |= catalog.hosts_on(net)
    out.update(("chassis", h) for h in hosts if h)
    return out


def relevant(scopes_of_object: frozenset[Scope], subscribed: set[Scope]) -> bool:
    """Whether an object (or change) with these scopes concerns a chassis."""
    return not scopes_of_object.isdisjoint(subscribed)


def select(catalog: Catalog, subscribed: set[Scope]) -> dict[str, dict[str, Any]]:
    """The objects of a catalog in the subscribed scopes (collection → id → object).
    Looks up each scope's members through the catalog's indexes."""
    out: dict[str, dict[str, Any]] = {c: {} for c in keys.COLLECTIONS}
    objects = catalog.objects

    def take(collection: str, idents) -> None:
        table = objects[collection]
        for ident in idents:
            if ident in table:
                out[collection][ident] = table[ident]

    for kind, name in subscribed:
        if kind in ("net", "netobj"):
            take(keys.NETWORKS, (name,))
            take(keys.SUBNETS, catalog.subnets_by_network.of(name))
            if kind == "net":
                take(keys.PORTS, catalog.ports_by_network.of(name))
                take(keys.VIP_OWNERS, catalog.vip_owners_by_network.of(name))
                take(keys.LOADBALANCERS, catalog.lbs_by_network.of(name))
        elif kind == "dev":
            take(keys.PORTS, catalog.ports_by_device.of(name))
            take(keys.ROUTERS, (name,))
            take(keys.FLOATINGIPS, (name,))
            take(keys.FLOATINGIPS, catalog.fips_by_router.of(name))
            take(keys.SNAT_BLOCKS, catalog.snat_by_router.of(name))
        elif kind == "host":
            take(keys.PORTS, catalog.ports_by_chassis.of(name))
            take(keys.ROUTERS, catalog.routers_by_candidate.of(name))
        elif kind == "sg":
            take(keys.GROUPS, (name,))
        elif kind == "qos":
            take(keys.QOS, (name,))
        elif kind == "member":
            take(keys.PORTS, catalog.ports_by_group.of(name))
        elif kind == "ag":
            take(keys.ADDRESS_GROUPS, (name,))
        elif kind == "chassis":
            agent = catalog.agent_by_host.get(name)
            if agent:
                take(keys.AGENTS, (agent,))
            take(keys.LIVENESS, catalog.liveness_by_host.of(name))
    return out
