"""l3_route: each programmed router's routing table, matched on the ``router`` register
and the destination, longest prefix first (priority 100 + 2 × prefix length, + 1 for a
connected route, so a subnet beats an extra route of the same prefix).

Routes: the router's connected subnets (next hop: the destination itself), its extra
routes (next hop: the route's, on a subnet of the router; with several next hops for one
destination the lowest wins — no ECMP), and through its gateway: a host route per
address of the router's own there (its gateway and floating IPs: hairpin), per
external address the agent resolved on the external subnet, the external subnet (via
its gateway) and the default route (via the same). Routes out of the gateway never
match a packet that came from outside (``flags`` bit 1), so nothing is routed back out.

TTL is decremented by ``dec_ttl``, which stops a packet with TTL 0 or 1 and sends it to
the agent as an invalid-TTL packet-in (the agent answers ICMP time exceeded,
``agent.icmp``; no TTL match: OVS refuses nw_ttl as os-ken orders it); a frame longer
than the next network's MTU + 14 (its Ethernet header) sets ``flags`` bit 2
(``check_pkt_larger``), which l3_neighbor sends to the agent; the source MAC
becomes the router port's on the next network (on the external network l3_snat chooses
it), ``net`` becomes the next network and ``nexthop`` the next hop; on to l3_neighbor."""

from __future__ import annotations

import functools
import ipaddress

from plexus.pipeline.flows import CheckPktLarger, DecTtl, Flow, Move, SetField
from plexus.pipeline.registry import FLAG_FROM_EXTERNAL, FLAG_TOO_BIG_BIT
from plexus.pipeline.stages.common import ETH_IP, as_match, default_flow
from plexus.pipeline.stages.router import (
    contains, gateway, gateway6, hairpin_neighbours, interfaces, interfaces6, prefix_len,
    programmed, scope_pairs,
)
from plexus.pipeline.view import RouterView, View

STAGE = "l3_route"
NEXT = "l3_neighbor"
PRIO_ROUTE = 100
PRIO_SCOPE = 300        # between subnets of different address scopes: above every route
PRIO_SCOPE6 = 400       # ... for IPv6 (its routes reach 100 + 2 × 128 + 1)
ETH_IP6 = 0x86DD
ETH_HEADER = 14         # check_pkt_larger counts the Ethernet header (untagged in br-int)
FROM_INSIDE = (0, FLAG_FROM_EXTERNAL)


def compile_l3_route(view: View) -> list[Flow]:
    """Each programmed router's routes."""
    flows = [default_flow(STAGE)]
    for router, zone in programmed(view):
        flows += router_flows(view, router, zone)
        flows += router_flows6(view, router, zone)
    return flows


def router_flows6(view: View, router: RouterView, zone: int) -> list[Flow]:
    """The router's IPv6 table, as ``router_flows``'s IPv4 one without NAT or hairpin:
    connected IPv6 subnets (next hop: the destination), IPv6 extra routes, and through
    its IPv6 gateway the external subnet, the resolved external hosts and the default
    route (via the external subnet's gateway). The next hop goes into ``nexthop6``; the
    hop limit is decremented by dec_ttl as IPv4's TTL is. Between IPv6 subnets of
    different address scopes: dropped, above every route."""
    ifaces = interfaces6(view, router)
    if not ifaces:
        return []
    table = _table(view, router, ifaces, gateway6(view, router), 6)
    return [Flow.make(STAGE, PRIO_SCOPE6, {"router": zone, "eth_type": ETH_IP6,
                                           "ipv6_src": as_match(src), "ipv6_dst": as_match(dst)},
                      cookie=f"router:{router.id}", note="address scopes differ: not routed")
            for src, dst in scope_pairs(view, router, ifaces)] + _flows(router, zone, table, 6)


@functools.lru_cache(maxsize=1 << 16)
def _normal(cidr: str) -> str:
    """A CIDR in its normal form (host bits cleared)."""
    return str(ipaddress.ip_network(cidr, strict=False))


# per IP version: eth_type, destination field, next-hop register, default route, host length
FAMILY = {4: (ETH_IP, "ipv4_dst", "nexthop", "0.0.0.0/0", 32),
          6: (ETH_IP6, "ipv6_dst", "nexthop6", "::/0", 128)}


def router_flows(view: View, router: RouterView, zone: int) -> list[Flow]:
    """One flow per destination prefix of the router's table."""
    table = _table(view, router, interfaces(view, router), gateway(view, router), 4)
    return [Flow.make(STAGE, PRIO_SCOPE, {"router": zone, "eth_type": ETH_IP,
                                          "ipv4_src": as_match(src), "ipv4_dst": as_match(dst)},
                      cookie=f"router:{router.id}",
                      note="address scopes differ: routed only through NAT")
            for src, dst in scope_pairs(view, router)] + _flows(router, zone, table, 4)


def _table(view: View, router: RouterView, ifaces, gw, version: int) -> dict:
    """(cidr, connected) → (network, source MAC, next hop, external, note) of one IP
    version's routes (the router's own external addresses, hairpin, for IPv4 only)."""
    table: dict[tuple[str, bool], tuple] = {}
    _, _, _, default, host = FAMILY[version]

    def add(cidr, connected, net, mac, nexthop, external, note):
        table.setdefault((_normal(cidr), connected), (net, mac, nexthop, external, note))
    for iface in ifaces:
        add(iface.subnet.cidr, True, iface.network, iface.port.mac, None, False,
            f"connected {iface.subnet.cidr}")
    routes = [(d, h) for d, h in router.routes if (":" in h) == (version == 6)]
    for dest, nexthop in sorted(routes, key=lambda r: (prefix_len(r[0]), r)):
        via = next((i for i in ifaces if contains(i.subnet.cidr, nexthop)), None)
        if via is not None:
            add(dest, False, via.network, via.port.mac, nexthop, False, "extra route")
        elif gw is not None and contains(gw.subnet.cidr, nexthop):
            add(dest, False, gw.network, None, nexthop, True, "extra route, outside")
    if gw is not None:
        if version == 4:
            for ip, _ in hairpin_neighbours(view, router, gw):
                add(f"{ip}/32", True, gw.network, None, ip, True, "hairpin: the router's own")
        for ip in sorted(view.external_macs):
            if contains(gw.subnet.cidr, ip):
                add(f"{ip}/{host}", True, gw.network, None, ip, True, "resolved external host")
        if gw.nexthop:
            add(gw.subnet.cidr, True, gw.network, None, gw.nexthop, True, "external subnet")
            add(default, False, gw.network, None, gw.nexthop, True, "default route")
    return table


def _flows(router: RouterView, zone: int, table: dict, version: int) -> list[Flow]:
    eth_type, dst, register, _, _ = FAMILY[version]
    flows = []
    for (cidr, connected), (net, mac, nexthop, external, note) in table.items():
        match = {"router": zone, "eth_type": eth_type}
        if prefix_len(cidr):
            match[dst] = as_match(cidr)
        if external:
            match["flags"] = FROM_INSIDE
        actions = [DecTtl(), too_big(net.mtu)] + ([SetField("eth_src", mac)] if mac else [])
        actions += [SetField("net", net.key),
                    SetField(register, nexthop) if nexthop else Move(dst, register)]
        flows.append(Flow.make(STAGE, PRIO_ROUTE + 2 * prefix_len(cidr) + int(connected),
                               match, actions, NEXT, f"router:{router.id}", note))
    return flows


@functools.lru_cache(maxsize=256)
def too_big(mtu: int) -> CheckPktLarger:
    """Flags bit 2 := the frame is longer than a network of this MTU carries."""
    return CheckPktLarger(mtu + ETH_HEADER, "flags", FLAG_TOO_BIG_BIT)
