"""l3_input: packets for a router.

From a VM, to a router port MAC on its (local) network: an ICMP echo to any address of
the router is answered in place; anything else to one of its interface addresses
drops; the rest is routed (``router`` := the router's zone, on to l3_route), the
gateway address included (hairpin: replies to a VM behind the router whose connection
to a floating IP was SNATed to the gateway address).

From an external network (``flags`` says patch port or a peer's tunnel):
- ARP for a floating IP is answered only on the chassis hosting its port, with the
  floating IP's MAC; ARP and ping for a router's gateway address only on its active
  gateway chassis, with the gateway port's MAC.
- To a floating IP (from the patch): DNAT to the fixed IP (conntrack, router zone), on
  to l3_route.
- A floating IP with port forwardings is answered (ARP) by its owner
  (``router.forwarding_owner``: the chassis of its forwardings' ports, or the active
  gateway when they are on several); each forwarded (protocol, external port) is
  DNATed to its internal address and port on the chassis of its port (from the patch
  there, or from the owner's tunnel), and sent there by the owner, stateless, through
  the tunnel (key: the external network's). Other ports of it are not claimed: they
  drop.
- TCP/UDP to a gateway address (from the patch, on the active gateway): one stateless
  flow per SNAT port block sends it through the tunnel (key: the external network's)
  to the chassis that owns the block; on that chassis (from the patch or a tunnel)
  conntrack reverses the NAT and l3_route takes it to the VM.
- Anything else to a gateway address (ICMP replies...) is unNATed on the active gateway.
- To an internal subnet of a router without SNAT, or one in the external network's
  address scope (active gateway): routed as is.
- Portless packets a chassis sends the router's active gateway (from a tunnel, source
  MAC the gateway port's) go on to l3_snat to be SNATed here.
- Everything else from outside drops, except from the patch on an external network
  bridged here (it has a local port: a VM on the external network), where it goes on
  to l2_lookup and the local ports.
Other packets go on to l2_lookup."""

from __future__ import annotations

import functools

from plexus.pipeline.flows import Controller, Ct, Flow, Move, Nat, Output, SetField
from plexus.pipeline.registry import FLAG_FROM_EXTERNAL, FLAG_FROM_TUNNEL
from plexus.pipeline.stages.acl import port_masks
from plexus.pipeline.stages.common import ETH_IP, as_match, default_flow, local_networks
from plexus.pipeline.stages.router import (
    PORT_FIELDS, ZONE_FORGET, Gateway, arp_answer, arp_request, back_out, blocks, echo_answer,
    echo_request, external_networks, forwarding_owner, forwardings, gateway, gateway6,
    interfaces, interfaces6, is_active, is_candidate, link_local, local_fips, patch_of,
    port_map, programmed, unnated,
)
from plexus.pipeline.view import RouterView, View

STAGE = "l3_input"
PRIO_ANSWER = 100       # ARP and ping answered in place
PRIO_TO_ROUTER = 90     # anything else to a router address drops; floating IP DNAT
PRIO_BLOCK = 80         # TCP/UDP to a gateway address, by port block
PRIO_GATEWAY = 70       # anything else to a gateway address: unNAT
PRIO_NO_SNAT = 60       # to an internal subnet of a router without SNAT
PRIO_ROUTE = 50         # from a VM to a router MAC; a peer's SNAT request
PRIO_NOT_IP = 40        # not IPv4 to a router MAC
PRIO_BRIDGED = 11       # anything else from the patch, on an external network bridged here
PRIO_OUTSIDE = 10       # anything else from outside

ETH_IP6 = 0x86DD
IP_ICMP6 = 58
ECHO6_REQUEST, ECHO6_REPLY = 128, 129
NEIGHBOR_SOLICITATION = 135
LINK_LOCAL, MULTICAST = "fe80::/10", "ff00::/8"
ND_GATEWAY = "nd:gateway"    # packet-in: a neighbour solicitation for a gateway address

FROM_PATCH = FLAG_FROM_EXTERNAL                       # exact flags of a patch packet
FROM_PEER = FLAG_FROM_EXTERNAL | FLAG_FROM_TUNNEL     # ... of a peer's tunnel packet


def compile_l3_input(view: View) -> list[Flow]:
    """Per programmed router: its internal side on local networks, its external side;
    per external network: drop what no flow claimed."""
    flows = [default_flow(STAGE, goto="l2_lookup")]
    for router, zone in programmed(view):
        flows += internal_flows(view, router, zone)
        gw = gateway(view, router)
        if gw is not None:
            flows += external_flows(view, router, zone, gw)
        gw6 = gateway6(view, router)
        if gw6 is not None:
            flows += external_flows6(view, router, zone, gw6)
    local = {n.id for n in local_networks(view)}
    for net, _ in external_networks(view):
        if net.id in local and patch_of(view, net) is not None:
            flows.append(Flow.make(STAGE, PRIO_BRIDGED, {"net": net.key, "flags": FROM_PATCH},
                                   goto="l2_lookup", cookie=f"network:{net.id}",
                                   note="from the physical network: on to the local ports"))
        flows.append(Flow.make(STAGE, PRIO_OUTSIDE,
                               {"net": net.key, "flags": (FLAG_FROM_EXTERNAL,
                                                          FLAG_FROM_EXTERNAL)},
                               cookie=f"network:{net.id}", note="from outside: unclaimed"))
    return flows


def internal_flows(view: View, router: RouterView, zone: int) -> list[Flow]:
    """Ping, drop and route flows for each router port on a local network (IPv4 and
    IPv6)."""
    local = {n.id for n in local_networks(view)}
    gw = gateway(view, router)
    own = tuple(sorted({i.ip for i in interfaces(view, router)}))
    flows = []
    ports = {i.port.id: i for i in interfaces(view, router) if i.network.id in local}
    for iface in ports.values():
        flows += interface_flows(router.id, zone, iface.network.key, iface.port.mac,
                                 iface.port.id, own, gw.ip if gw else None)
    six = interfaces6(view, router)
    if six:
        gw6 = gateway6(view, router)
        own6 = tuple(sorted({i.ip for i in six} | ({gw6.ip} if gw6 else set())))
        ports6 = {i.port.id: i for i in six if i.network.id in local}
        for iface in ports6.values():
            flows += interface_flows6(router.id, zone, iface.network.key, iface.port.mac,
                                      iface.port.id, own6)
    return flows


@functools.lru_cache(maxsize=1 << 12)
def interface_flows6(router_id: str, zone: int, net_key: int, mac: str, port_id: str,
                     own: tuple[str, ...]) -> tuple[Flow, ...]:
    """IPv6 on one router port of a local network: an echo request to any of the
    router's IPv6 addresses (its link-local one on this port included) is answered in
    place, anything else to them drops, as does anything to a link-local or multicast
    destination (never routed); the rest is routed."""
    flows = []
    me = {"net": net_key, "eth_dst": mac, "eth_type": ETH_IP6}
    cookie = f"router:{router_id}:port:{port_id}"

    def add(prio, match, actions=(), goto=None, note=""):
        flows.append(Flow.make(STAGE, prio, {**me, **match}, actions, goto, cookie, note))
    lla = link_local(mac)
    for ip in sorted({*own, lla}):
        add(PRIO_ANSWER, {"ip_proto": IP_ICMP6, "icmpv6_type": ECHO6_REQUEST, "ipv6_dst": ip},
            [Move("eth_src", "eth_dst"), SetField("eth_src", mac),
             Move("ipv6_src", "ipv6_dst"), SetField("ipv6_src", ip),
             SetField("icmpv6_type", ECHO6_REPLY), Output("in_port")],
            note="ping a router IPv6 address")
    for ip in own:
        add(PRIO_TO_ROUTER, {"ipv6_dst": ip}, note="nothing else for the router itself")
    for scope in (LINK_LOCAL, MULTICAST):
        add(PRIO_TO_ROUTER, {"ipv6_dst": as_match(scope)}, note="not routed: " + scope)
    add(PRIO_ROUTE, {}, [SetField("router", zone)], goto="l3_route")
    return tuple(flows)


@functools.lru_cache(maxsize=1 << 12)
def interface_flows(router_id: str, zone: int, net_key: int, mac: str, port_id: str,
                    own: tuple[str, ...], gateway_ip: str | None) -> tuple[Flow, ...]:
    """The flows of one router port on a local network (by value: an unchanged interface
    keeps the same flow objects from compile to compile). The gateway address answers
    ping; anything else to it is routed (hairpin: replies to connections a VM behind the
    router made to a floating IP, SNATed to the gateway address)."""
    flows = []
    me = {"net": net_key, "eth_dst": mac}
    cookie = f"router:{router_id}:port:{port_id}"

    def add(prio, match, actions=(), goto=None, note=""):
        flows.append(Flow.make(STAGE, prio, {**me, **match}, actions, goto, cookie, note))
    for ip in sorted(own + ((gateway_ip,) if gateway_ip else ())):
        add(PRIO_ANSWER, echo_request(ip), echo_answer(mac, ip, back_out()),
            note="ping a router address")
    for ip in own:
        add(PRIO_TO_ROUTER, {"eth_type": ETH_IP, "ipv4_dst": ip},
            note="nothing else for the router itself")
    add(PRIO_ROUTE, {"eth_type": ETH_IP}, [SetField("router", zone)], goto="l3_route")
    add(PRIO_NOT_IP, {}, note="not IPv4")
    return tuple(flows)


def forwarding_flows(view: View, router: RouterView, ext, to_router: list,
                     zone: int) -> list[Flow]:
    """ARP for the floating IPs with port forwardings this chassis owns, and each
    forwarding's DNAT (where its port is) or tunnel (from the owner)."""
    flows = []
    me = view.chassis
    for fip_id, pfs in forwardings(view, router, ext.id):
        owner = forwarding_owner(view, router, pfs)
        head = pfs[0]
        if owner == me:
            flows.append(Flow.make(
                STAGE, PRIO_ANSWER, {**arp_request(ext, head.address), "flags": FROM_PATCH},
                arp_answer(head.mac, head.address, back_out(ext)),
                cookie=f"floatingip:{fip_id}", note="port forwarding floating IP: its owner"))
        for pf in pfs:
            cookie = f"floatingip:{fip_id}:pf:{pf.id}"
            _, dst = PORT_FIELDS[pf.protocol]
            base = {"net": ext.key, "eth_type": ETH_IP, "eth_dst": pf.mac,
                    "ipv4_dst": pf.address, "ip_proto": pf.protocol}
            if pf.chassis == me:
                flags = FROM_PATCH if owner == me else FROM_PEER
                for elo, ehi, ilo, ihi in port_map(pf):
                    dnat = to_router + [Ct(zone, commit=True, table="l3_route",
                                           nat=Nat("dst", pf.internal_ip, ilo, ihi))]
                    flows += [Flow.make(STAGE, PRIO_TO_ROUTER,
                                        {**base, dst: mask, "flags": flags}, dnat,
                                        cookie=cookie,
                                        note=f"forward to {pf.internal_ip}:{ilo}")
                              for mask in port_masks(elo, ehi)]
            elif owner == me:
                tunnel = view.tunnel_ofports.get(pf.chassis)
                actions = [SetField("tunnel_id", ext.key), Output(tunnel)] \
                    if tunnel is not None else []
                note = f"forwarded on {pf.chassis}: " + (
                    "stateless, to its tunnel" if tunnel is not None else "no tunnel to it")
                flows += [Flow.make(STAGE, PRIO_TO_ROUTER,
                                    {**base, dst: mask, "flags": FROM_PATCH}, actions,
                                    cookie=cookie, note=note)
                          for mask in port_masks(*pf.external)]
    return flows


def external_flows(view: View, router: RouterView, zone: int, gw: Gateway) -> list[Flow]:
    """The router's external side: floating IPs hosted here, port blocks, and (on the
    active gateway) the gateway address."""
    if gw.patch is None:
        return []
    ext = gw.network
    cookie = f"router:{router.id}"
    flows = []

    def add(prio, match, actions=(), goto=None, cookie=cookie, note=""):
        flows.append(Flow.make(STAGE, prio, {"net": ext.key, **match}, actions, goto, cookie,
                               note))
    to_router = [SetField("router", zone)]
    # a lookup in ZONE_FORGET first: a hairpin frame looped back by the mapped bridge
    # still carries the connection its NAT on this chassis cached on it in this zone
    forget = Ct(ZONE_FORGET)
    unnat = to_router + [forget, Ct(zone, table="l3_route", nat=Nat())]
    for fip in local_fips(view, router, gw):
        fcookie = f"floatingip:{fip.id}"
        add(PRIO_ANSWER, {**arp_request(ext, fip.address), "flags": FROM_PATCH},
            arp_answer(fip.mac, fip.address, back_out(ext)), cookie=fcookie,
            note="floating IP: answered where its port is")
        add(PRIO_TO_ROUTER, {"flags": FROM_PATCH, "eth_type": ETH_IP, "eth_dst": fip.mac,
                             "ipv4_dst": fip.address},
            to_router + [forget, Ct(zone, commit=True, table="l3_route",
                                    nat=Nat("dst", fip.fixed_ip))], cookie=fcookie,
            note=f"DNAT to {fip.fixed_ip}")
    flows += forwarding_flows(view, router, ext, to_router + [forget], zone)
    to_gw = {"eth_type": ETH_IP, "eth_dst": gw.port.mac, "ipv4_dst": gw.ip}
    if router.enable_snat:
        for chassis, lo, hi in blocks(view, router):
            mine = chassis == view.chassis
            if not mine and not is_active(view, router):
                continue
            tunnel = view.tunnel_ofports.get(chassis)
            for proto, (_, dst) in PORT_FIELDS.items():
                for mask in port_masks(lo, hi):
                    match = {**to_gw, "ip_proto": proto, dst: mask}
                    bcookie = f"router:{router.id}:snat:{chassis}"
                    if mine:
                        add(PRIO_BLOCK, {**match, "flags": FROM_PEER}, unnat, cookie=bcookie,
                            note="own block, from the active gateway: unNAT")
                        if is_active(view, router):
                            add(PRIO_BLOCK, {**match, "flags": FROM_PATCH}, unnat,
                                cookie=bcookie, note="own block: unNAT")
                    elif tunnel is not None:
                        add(PRIO_BLOCK, {**match, "flags": FROM_PATCH},
                            [SetField("tunnel_id", ext.key), Output(tunnel)], cookie=bcookie,
                            note=f"block of {chassis}: stateless, to its tunnel")
                    else:
                        add(PRIO_BLOCK, {**match, "flags": FROM_PATCH}, cookie=bcookie,
                            note=f"block of {chassis}: no tunnel to it")
    if router.enable_snat and is_candidate(view, router):
        add(PRIO_ROUTE, {"flags": FROM_PEER, "eth_type": ETH_IP, "eth_src": gw.port.mac},
            to_router, goto="l3_snat", note="a chassis asks its active gateway to SNAT")
    if not is_active(view, router):
        return flows
    add(PRIO_ANSWER, {**arp_request(ext, gw.ip), "flags": FROM_PATCH},
        arp_answer(gw.port.mac, gw.ip, back_out(ext)), note="gateway: on its active chassis")
    add(PRIO_ANSWER, {**echo_request(gw.ip), "eth_dst": gw.port.mac, "flags": FROM_PATCH},
        echo_answer(gw.port.mac, gw.ip, back_out(ext)), note="ping the gateway")
    if router.enable_snat:
        add(PRIO_GATEWAY, {**to_gw, "flags": FROM_PATCH}, unnat,
            note="portless (ICMP...) SNATed here: unNAT")
    for iface in interfaces(view, router):
        if not router.enable_snat or unnated(gw, iface):
            add(PRIO_NO_SNAT, {"flags": FROM_PATCH, "eth_type": ETH_IP,
                               "eth_dst": gw.port.mac, "ipv4_dst": as_match(iface.subnet.cidr)},
                to_router, goto="l3_route",
                note="no SNAT (router, or subnet in the external network's address scope): "
                     "routed as is")
    return flows



def external_flows6(view: View, router: RouterView, zone: int, gw: Gateway) -> list[Flow]:
    """The router's IPv6 side on its external network, on its active gateway chassis
    only (no NAT: the upstream router routes the router's IPv6 subnets to its gateway
    address): a neighbour solicitation for the gateway address goes to the agent, which
    answers it (``agent.nd``); an echo request to it is answered in place; packets to
    the router's IPv6 subnets are routed as they are."""
    if gw.patch is None or not is_active(view, router):
        return []
    ext = gw.network
    cookie = f"router:{router.id}"
    flows = []

    def add(prio, match, actions=(), goto=None, note=""):
        flows.append(Flow.make(STAGE, prio, {"net": ext.key, "flags": FROM_PATCH,
                                             "eth_type": ETH_IP6, **match},
                               actions, goto, cookie, note))
    add(PRIO_ANSWER, {"ip_proto": IP_ICMP6, "icmpv6_type": NEIGHBOR_SOLICITATION,
                      "ipv6_nd_target": gw.ip}, [Controller(ND_GATEWAY)],
        note="IPv6 gateway: neighbour solicitation answered by the agent")
    add(PRIO_ANSWER, {"eth_dst": gw.port.mac, "ip_proto": IP_ICMP6,
                      "icmpv6_type": ECHO6_REQUEST, "ipv6_dst": gw.ip},
        [Move("eth_src", "eth_dst"), SetField("eth_src", gw.port.mac),
         Move("ipv6_src", "ipv6_dst"), SetField("ipv6_src", gw.ip),
         SetField("icmpv6_type", ECHO6_REPLY), *back_out(ext)], note="ping the IPv6 gateway")
    for cidr in sorted({i.subnet.cidr for i in interfaces6(view, router)}):
        add(PRIO_NO_SNAT, {"eth_dst": gw.port.mac, "ipv6_dst": as_match(cidr)},
            [SetField("router", zone)], goto="l3_route", note="IPv6: routed as is (no NAT)")
    return flows
