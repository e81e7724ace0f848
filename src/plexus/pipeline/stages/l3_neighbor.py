"""l3_neighbor: the next hop's MAC, with no ARP on the data path. On an internal network
it is the MAC of the port holding the address (from the model; an address no port holds
drops): a fixed IP, or an allowed-address-pair host address (a VIP: ``x/32`` or a bare
address) that exactly one port of the network holds and no port has as a fixed IP; a VIP several
ports hold (keepalived style) goes to the port learned to hold it from its gratuitous
ARP (``View.vip_owners``, if that port still lists it), else it is not routed to. On an external network, for
an address of a programmed router there (its gateway, its floating IPs: hairpin) the MAC
from the model, else the MAC the agent resolved for it (``external_macs``; until it is
known the packet drops: data packets are never sent to the agent). Internal networks go
on to l2_lookup, external ones to l3_snat.

Two kinds of routed packets go to the agent instead, which answers with an ICMP error
(``agent.icmp``, rate-limited there): one l3_route marked too big for the next network
(``flags`` bit 2; fragmentation needed when DF is set), and, per router subnet, one to an
address of the subnet that no port holds (host unreachable)."""

from __future__ import annotations

import functools

from plexus.pipeline.flows import Controller, Flow, SetField
from plexus.pipeline.registry import FLAG_TOO_BIG
from plexus.pipeline.stages.common import as_match, default_flow, is_ipv4
from plexus.pipeline.stages.router import (
    contains, gateway, gateway6, hairpin_neighbours, interfaces, interfaces6, port_ips,
    programmed,
)
from plexus.pipeline.view import View

STAGE = "l3_neighbor"
PRIO_TOO_BIG = 100      # too big for the next network: to the agent (ICMP frag needed)
PRIO = 50
PRIO_UNKNOWN = 10       # an address of a router subnet no port holds: ICMP unreachable
TOO_BIG = "icmp:too-big"
UNREACHABLE = "icmp:unreachable"


def compile_l3_neighbor(view: View) -> list[Flow]:
    """One flow per port address of each routed-to internal network, and per resolved
    address on each external network of a programmed router; to the agent: one flow for
    packets too big for their next network (when any router is programmed), and one per
    router subnet for its addresses no port holds."""
    flows = [default_flow(STAGE)]
    internal, external, subnets, own = {}, {}, {}, {}
    for router, _ in programmed(view):
        internal.update({i.network.id: i.network for i in interfaces(view, router)})
        subnets.update({i.subnet.id: (i.network, i.subnet) for i in interfaces(view, router)})
        gw = gateway(view, router)
        if gw is not None:
            external[gw.network.id] = gw.network
            for ip, mac in hairpin_neighbours(view, router, gw):
                own.setdefault((gw.network.id, ip), mac)
    if internal:
        flows.append(Flow.make(STAGE, PRIO_TOO_BIG, {"flags": (FLAG_TOO_BIG, FLAG_TOO_BIG)},
                               [Controller(TOO_BIG)], cookie="pipeline:icmp",
                               note="too big for the next network: ICMP frag needed"))
    for sid in sorted(subnets):
        net, subnet = subnets[sid]
        flows.append(unknown_flow(net.key, subnet.cidr, sid))
    for nid in sorted(internal):
        net = internal[nid]
        seen: set[str] = set()
        ports = view.ports_on(nid)
        for port in ports:
            for ip in port_ips(port):
                if ip in seen:          # a stale duplicate: the first port (by id) wins
                    continue
                seen.add(ip)
                flows.append(port_flow(net.key, ip, port.mac, port.id))
        owners = {ip: pid for (n, ip), pid in view.vip_owners.items() if n == nid} \
            if view.vip_owners else {}
        flows += [port_flow(net.key, ip, port.mac, port.id)
                  for ip, port in vip_holders(ports, seen, owners)]
    flows += neighbours6(view)
    for nid in sorted(external):
        net = external[nid]
        cidrs = [s.cidr for s in view.subnets.values()
                 if s.network_id == nid and s.ip_version == 4]
        mine = {ip: mac for (n, ip), mac in own.items() if n == nid}
        for ip, mac in sorted(mine.items()):
            flows.append(Flow.make(STAGE, PRIO, {"net": net.key, "nexthop": ip},
                                   [SetField("eth_dst", mac)], "l3_snat", f"network:{nid}",
                                   note="hairpin: a router's own address, from the model"))
        for ip, mac in sorted(view.external_macs.items()):
            if ip not in mine and any(contains(c, ip) for c in cidrs):
                flows.append(Flow.make(STAGE, PRIO, {"net": net.key, "nexthop": ip},
                                       [SetField("eth_dst", mac)], "l3_snat",
                                       f"network:{nid}", note="resolved by the agent"))
    return flows


def neighbours6(view: View) -> list[Flow]:
    """The IPv6 next hops: per IPv6 address of a port on a network a programmed router has
    an IPv6 interface on (from the model: SLAAC addresses are the EUI-64 ones the API
    assigned), and per address the agent resolved on an IPv6 external subnet
    (``external_macs``, by neighbour solicitation); an address of a router's IPv6 subnet
    that no port holds goes to the agent (ICMPv6 address unreachable), any other drops."""
    internal, external = {}, {}
    for router, _ in programmed(view):
        internal.update({i.network.id: i.network for i in interfaces6(view, router)})
        gw = gateway6(view, router)
        if gw is not None:
            external.setdefault(gw.network.id, (gw.network, set()))[1].add(gw.subnet.cidr)
    flows = []
    subnets = {i.subnet.id: (i.network, i.subnet) for r, _ in programmed(view)
               for i in interfaces6(view, r)}
    for sid in sorted(subnets):
        net, subnet = subnets[sid]
        flows.append(unknown_flow(net.key, subnet.cidr, sid, "nexthop6"))
    for nid in sorted(internal):
        net = internal[nid]
        seen: set[str] = set()
        for port in view.ports_on(nid):
            for _, ip in port.ips:
                if ":" in ip and ip not in seen:
                    seen.add(ip)
                    flows.append(port_flow6(net.key, ip, port.mac, port.id))
    for nid in sorted(external):
        net, cidrs = external[nid]
        for ip, mac in sorted(view.external_macs.items()):
            if ":" in ip and any(contains(c, ip) for c in cidrs):
                flows.append(Flow.make(STAGE, PRIO, {"net": net.key, "nexthop6": ip},
                                       [SetField("eth_dst", mac)], "l3_snat",
                                       f"network:{nid}", note="resolved by the agent"))
    return flows


@functools.lru_cache(maxsize=1 << 16)
def port_flow6(key: int, ip: str, mac: str, port_id: str) -> Flow:
    """IPv6 next hop ``ip`` on the network with ``key`` → the MAC of the port holding it."""
    return Flow.make(STAGE, PRIO, {"net": key, "nexthop6": ip}, [SetField("eth_dst", mac)],
                     "l2_lookup", f"port:{port_id}")


def vip_holders(ports, fixed: set[str], owners: dict[str, str] | None = None
                ) -> list[tuple[str, object]]:
    """(VIP, the port holding it) of a network's ports, by address: allowed-address pair
    host addresses no fixed IP of the network shadows and exactly one port holds, or that
    several hold and ``owners`` (VIP → port id, learned from gratuitous ARP) names one of
    them (a stale owner, no longer listing the VIP, is ignored). The port's own MAC: the
    frame reaches the port; a pair's own MAC is not looked up by l2_lookup. Cost: one
    pass over the network's ports, as for the fixed IPs."""
    owners = owners or {}
    out = []
    for ip, found in sorted(_holders(ports, fixed).items()):
        if len(found) == 1:
            out.append((ip, found[0]))
        else:
            owner = next((p for p in found if p.id == owners.get(ip)), None)
            if owner is not None:
                out.append((ip, owner))
    return out


def shared_vips(ports, fixed: set[str] | None = None) -> set[str]:
    """The VIPs (host addresses of allowed address pairs, not a fixed IP of the network)
    that several of a network's ports list: those whose owner is learned from GARP."""
    if fixed is None:
        fixed = {ip for p in ports for ip in p.addresses()}
    return {ip for ip, found in _holders(ports, fixed).items() if len(found) > 1}


def _holders(ports, fixed: set[str]) -> dict[str, list]:
    holders: dict[str, list] = {}
    for port in ports:
        for ip in vip_addresses(port.allowed_pairs):
            if ip not in fixed:
                holders.setdefault(ip, []).append(port)
    return holders


@functools.lru_cache(maxsize=1 << 16)
def vip_addresses(pairs) -> tuple[str, ...]:
    """The IPv4 host addresses (``x`` or ``x/32``) among allowed address pairs."""
    out = set()
    for ip, _ in pairs:
        host = ip[:-3] if ip.endswith("/32") else ip
        if "/" not in host and is_ipv4(host):
            out.add(host)
    return tuple(sorted(out))


@functools.lru_cache(maxsize=1 << 16)
def port_flow(key: int, ip: str, mac: str, port_id: str) -> Flow:
    """Next hop ``ip`` on the network with ``key`` → the MAC of the port holding it (one
    flow object per distinct value: unchanged ports keep theirs from compile to compile)."""
    return Flow.make(STAGE, PRIO, {"net": key, "nexthop": ip}, [SetField("eth_dst", mac)],
                     "l2_lookup", f"port:{port_id}")


@functools.lru_cache(maxsize=1 << 12)
def unknown_flow(key: int, cidr: str, subnet_id: str, register: str = "nexthop") -> Flow:
    """An address of a router subnet no port holds: to the agent (ICMP host unreachable;
    ``register`` nexthop6 for an IPv6 subnet: ICMPv6 address unreachable)."""
    return Flow.make(STAGE, PRIO_UNKNOWN, {"net": key, register: as_match(cidr)},
                     [Controller(UNREACHABLE)], cookie=f"subnet:{subnet_id}",
                     note="no port holds it: ICMP" + ("v6 address" if register == "nexthop6"
                                                      else " host") + " unreachable")
