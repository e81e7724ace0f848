"""Which chassis the agent believes alive (docs/routing.md, gateway HA): those whose
liveness lease the store holds, minus those whose tunnel's BFD session went down after
having been up. BFD (OVS ``bfd:enable`` on the VXLAN port, 100 ms intervals) runs on
every tunnel with a gateway-capable chassis at either end, so both ends of a session
enable it; it detects a cut-off gateway in about 300 ms, the store's lease in seconds.
Pure but for the memory of which sessions have been up."""

from __future__ import annotations

from typing import Any, Mapping

from plexus.agent.relevant import catalog_of
from plexus.model import keys
from plexus.model.catalog import Catalog

Objects = Mapping[str, Mapping[str, Mapping[str, Any]]]


def gateway_capable(model: Catalog | Objects) -> set[str]:
    """Registered chassis that may host gateways (``configurations.gateway``)."""
    return {a.host for a in catalog_of(model).objects[keys.AGENTS].values() if a.gateway}


def gateway_peers(model: Catalog | Objects, chassis: str) -> dict[str, str]:
    """Tunnels a gateway candidate keeps even while standby (name → tunnel IP): toward
    the hosts of ports behind the routers it is a candidate of, and their other
    candidates — so BFD runs before it becomes active and its flows find the tunnels."""
    catalog = catalog_of(model)
    routers = catalog.each(keys.ROUTERS, catalog.routers_by_candidate.of(chassis))
    if not routers:
        return {}
    names = {c for r in routers for c in r.gateway_chassis}
    ports = catalog.objects[keys.PORTS]
    nets = {ports[p].network_id for r in routers for p in catalog.ports_by_device.of(r.id)
            if ports[p].device_owner in keys.INTERFACE_OWNERS}
    for net in nets:
        names |= catalog.hosts_on(net)
    out = {}
    for name in sorted(names - {chassis}):
        agent = catalog.agent(name)
        if agent is not None:
            out[name] = agent.tunnel_ip
    return out


def bfd_peers(model: Catalog | Objects, peers: Mapping[str, str], gateway: bool) -> frozenset:
    """The peers whose tunnel carries BFD: all of them on a gateway-capable chassis,
    else those that are gateway-capable."""
    if gateway:
        return frozenset(peers)
    catalog = catalog_of(model)
    return frozenset(c for c in peers if (a := catalog.agent(c)) is not None and a.gateway)


class Liveness:
    """The chassis believed alive, from the store and the tunnels' BFD states."""

    def __init__(self) -> None:
        self.seen_up: set[str] = set()

    def alive(self, objects: Catalog | Objects, bfd: Mapping[str, str]) -> set[str]:
        """Chassis with a liveness lease whose BFD session (if any) is not down after
        having been up; ``bfd``: chassis → BFD state of its tunnel."""
        self.seen_up |= {c for c, state in bfd.items() if state == "up"}
        self.seen_up &= set(bfd)
        down = {c for c, state in bfd.items() if state != "up" and c in self.seen_up}
        return catalog_of(objects).alive() - down

    def isolated(self, bfd: Mapping[str, str]) -> bool:
        """Whether every BFD session that has been up is down now: this chassis is cut
        off from the underlay, so it must not act as any router's active gateway (it
        would answer ARP for the gateway address on the external network and draw
        replies it cannot forward)."""
        return bool(self.seen_up) and all(bfd.get(c) != "up" for c in self.seen_up)
