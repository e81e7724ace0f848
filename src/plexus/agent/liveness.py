"""Which chassis the agent believes alive (docs/routing.md, gateway HA): those whose
liveness lease the store holds, minus those whose tunnel's BFD session went down after
having been up. BFD (OVS ``bfd:enable`` on the VXLAN port, 100 ms intervals) runs on
every tunnel with a gateway-capable chassis at either end, so both ends of a session
enable it; it detects a cut-off gateway in about 300 ms, the store's lease in seconds.
Pure but for the memory of which sessions have been up."""

from __future__ import annotations

from typing import Any, Mapping

from plexus.agent.relevant import alive_chassis, registered_chassis
from plexus.pipeline.l3 import GATEWAY_CHASSIS, INTERFACE_OWNERS

Objects = Mapping[str, Mapping[str, Mapping[str, Any]]]


def gateway_capable(objects: Objects) -> set[str]:
    """Registered chassis that may host gateways (``configurations.gateway``)."""
    out = set()
    for obj in (objects.get("agents") or {}).values():
        config = obj.get("configurations") if isinstance(obj, Mapping) else None
        if isinstance(config, Mapping) and config.get("gateway") is True:
            out.add(obj.get("host"))
    return out


def gateway_peers(objects: Objects, chassis: str) -> dict[str, str]:
    """Tunnels a gateway candidate keeps even while standby (name → tunnel IP): toward
    the hosts of ports behind the routers it is a candidate of, and their other
    candidates — so BFD runs before it becomes active and its flows find the tunnels."""
    routers = {rid for rid, r in (objects.get("routers") or {}).items()
               if isinstance(r, Mapping) and chassis in (r.get(GATEWAY_CHASSIS) or ())}
    if not routers:
        return {}
    names = {c for rid in routers for c in objects["routers"][rid].get(GATEWAY_CHASSIS)}
    ports = [p for p in (objects.get("ports") or {}).values() if isinstance(p, Mapping)]
    nets = {p.get("network_id") for p in ports if p.get("device_id") in routers
            and p.get("device_owner") in INTERFACE_OWNERS}
    names |= {p.get("binding:host_id") for p in ports if p.get("network_id") in nets}
    known = registered_chassis(objects)
    return {c: known[c].tunnel_ip for c in sorted(n for n in names if n in known)
            if c != chassis}


def bfd_peers(objects: Objects, peers: Mapping[str, str], gateway: bool) -> frozenset:
    """The peers whose tunnel carries BFD: all of them on a gateway-capable chassis,
    else those that are gateway-capable."""
    capable = gateway_capable(objects)
    return frozenset(c for c in peers if gateway or c in capable)


class Liveness:
    """The chassis believed alive, from the store and the tunnels' BFD states."""

    def __init__(self) -> None:
        self.seen_up: set[str] = set()

    def alive(self, objects: Objects, bfd: Mapping[str, str]) -> set[str]:
        """Chassis with a liveness lease whose BFD session (if any) is not down after
        having been up; ``bfd``: chassis → BFD state of its tunnel."""
        self.seen_up |= {c for c, state in bfd.items() if state == "up"}
        self.seen_up &= set(bfd)
        down = {c for c, state in bfd.items() if state != "up" and c in self.seen_up}
        return alive_chassis(objects) - down

    def isolated(self, bfd: Mapping[str, str]) -> bool:
        """Whether every BFD session that has been up is down now: this chassis is cut
        off from the underlay, so it must not act as any router's active gateway (it
        would answer ARP for the gateway address on the external network and draw
        replies it cannot forward)."""
        return bool(self.seen_up) and all(bfd.get(c) != "up" for c in self.seen_up)
