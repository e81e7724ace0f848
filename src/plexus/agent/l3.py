"""The agent's routing duties around the L3 stages (docs/routing.md): which tunnels its
routers need, which external next hops to resolve (ARP probes), what to announce with
gratuitous ARPs, which router conntrack zones exist, what to report for routers and
floating IPs, and which routers to lease SNAT port blocks of — each a pure function of
the chassis' View. ``with_l3`` builds the routing part of a View from wire objects (the
reference path; the agent itself reads its catalog through ``plexus.agent.view``)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from plexus.agent import view as views
from plexus.model.catalog import Catalog
from plexus.pipeline.stages import router as rt
from plexus.pipeline.view import View

Objects = Mapping[str, Mapping[str, Mapping[str, Any]]]


def with_l3(view: View, objects: Objects, *, alive: Iterable[str] = (),
            bridge_mappings: Mapping[str, str] | None = None,
            patch_ofports: Mapping[str, int] | None = None,
            tunnel_ofports: Mapping[str, int] | None = None,
            external_macs: Mapping[str, str] | None = None,
            problems: list | None = None) -> View:
    """``view`` (from ``relevant.build_view``) with the routing part built from wire
    ``objects`` (collection → id → object): ``plexus.agent.view.with_routing`` over a
    catalog made of them. Objects that cannot be used are reported in ``problems``."""
    catalog, bad = Catalog.from_wire(objects)
    if problems is not None:
        problems.extend((c, i, f"unusable for routing: {why}") for c, i, why in bad)
    return views.with_routing(view, catalog, alive=alive, bridge_mappings=bridge_mappings,
                              patch_ofports=patch_ofports, tunnel_ofports=tunnel_ofports,
                              external_macs=external_macs, problems=problems)


# --- what else the agent needs ---------------------------------------------------------

def tunnel_peers(view: View) -> dict[str, str]:
    """Chassis this one needs a tunnel to for routing (hosts of ports behind its routers,
    their active gateways, the owners of their SNAT blocks): name → tunnel IP. The agent
    keeps these besides ``relevant.tunnel_peers``."""
    names = {c for r in view.routers.values() for c in rt.router_chassis(view, r)}
    return {c: view.chassis_by_name[c].tunnel_ip for c in sorted(names)
            if c in view.chassis_by_name}


@dataclass(frozen=True)
class Nexthop:
    """An address on an external network whose MAC the agent resolves (ARP on the
    network's bridge: ``arp_probe``), to put into ``external_macs``."""

    network_id: str
    ip: str
    physical_network: str
    vlan: int | None            # the VLAN id for a VLAN network
    patch_ofport: int | None    # br-int's patch port toward the bridge


def external_nexthops(view: View) -> list[Nexthop]:
    """External addresses the routers here send to: each gateway subnet's gateway and the
    extra routes' next hops there (IPv4, and IPv6 on the gateway's IPv6 subnet), sorted."""
    found = set()
    for router in view.routers.values():
        gw = rt.gateway(view, router)
        if gw is None or not gw.network.physical_network:
            continue
        hops = {gw.nexthop} | {nh for _, nh in router.routes if rt.contains(gw.subnet.cidr, nh)}
        vlan = gw.network.segmentation_id if gw.network.network_type == "vlan" else None
        found |= {Nexthop(gw.network.id, ip, gw.network.physical_network, vlan, gw.patch)
                  for ip in hops if ip}
    for router in view.routers.values():     # IPv6: resolved by neighbour solicitation
        gw6 = rt.gateway6(view, router)
        if gw6 is None or not gw6.network.physical_network:
            continue
        hops = {gw6.nexthop} | {nh for _, nh in router.routes
                                if ":" in nh and rt.contains(gw6.subnet.cidr, nh)}
        vlan = gw6.network.segmentation_id if gw6.network.network_type == "vlan" else None
        found |= {Nexthop(gw6.network.id, ip, gw6.network.physical_network, vlan, gw6.patch)
                  for ip in hops if ip}
    return sorted(found, key=lambda n: (n.network_id, ipaddress.ip_address(n.ip).version,
                                        ipaddress.ip_address(n.ip)))


@dataclass(frozen=True)
class Announcement:
    """A gratuitous ARP to send out of a patch port (a packet-out on br-int)."""

    ofport: int
    ip: str
    mac: str
    frame: bytes


def announcements(view: View) -> list[Announcement]:
    """Gratuitous ARPs for what this chassis answers on external networks: floating IPs
    of ports plugged here, floating IPs with port forwardings it owns, and gateway
    addresses of routers whose active gateway it is.
    Send them when one appears (associate, move, failover), and again a few times."""
    from plexus.pipeline.stages.common import local_ports
    local = {p.id for p in local_ports(view)}
    out = []
    for router, _ in rt.programmed(view):
        gw = rt.gateway(view, router)
        if gw is None or gw.patch is None:
            continue
        vlan = gw.network.segmentation_id if gw.network.network_type == "vlan" else None
        owned = [(f.address, f.mac) for f in rt.local_fips(view, router, gw)
                 if f.port_id in local]
        owned += [(pfs[0].address, pfs[0].mac)
                  for _, pfs in rt.forwardings(view, router, gw.network.id)
                  if rt.forwarding_owner(view, router, pfs) == view.chassis]
        if rt.is_active(view, router):
            owned.append((gw.ip, gw.port.mac))
        out += [Announcement(gw.patch, ip, mac, garp(mac, ip, vlan)) for ip, mac in owned]
    return sorted(out, key=lambda a: (a.ofport, ipaddress.ip_address(a.ip)))


def loopback_macs(view: View) -> dict[str, tuple[str, ...]]:
    """Mapped bridge → the MACs of ``announcements`` on it (what br-int answers for on
    that external network). A frame br-int sends out of its patch to one of them — a
    hairpin to a floating IP or gateway of this very chassis — must come straight back
    into br-int; the bridge's NORMAL would drop it (docs/routing.md, "Hairpin")."""
    physnet = {ofport: name for name, ofport in view.patch_ofports.items()}
    out: dict[str, set[str]] = {}
    for a in announcements(view):
        bridge = view.bridge_mappings.get(physnet.get(a.ofport, ""))
        if bridge:
            out.setdefault(bridge, set()).add(a.mac)
    return {b: tuple(sorted(m)) for b, m in sorted(out.items())}


def garp(mac: str, ip: str, vlan: int | None = None) -> bytes:
    """A gratuitous ARP request (sender and target ``ip``) broadcast from ``mac``."""
    return _arp_frame(mac, "ff:ff:ff:ff:ff:ff", ip, "00:00:00:00:00:00", ip, vlan)


def arp_probe(mac: str, ip: str, vlan: int | None = None) -> bytes:
    """An ARP request for ``ip`` from ``mac`` with sender address 0.0.0.0 (RFC 5227): the
    owner answers to ``mac`` without learning any address from it, so a chassis can
    resolve without touching the upstream router's ARP cache for the gateway."""
    return _arp_frame(mac, "ff:ff:ff:ff:ff:ff", "0.0.0.0", "00:00:00:00:00:00", ip, vlan)


def _arp_frame(src: str, dst: str, spa: str, tha: str, tpa: str, vlan: int | None) -> bytes:
    from os_ken.lib.packet import arp, ethernet, ether_types, packet
    from os_ken.lib.packet import vlan as vlan_hdr
    pkt = packet.Packet()
    if vlan is None:
        pkt.add_protocol(ethernet.ethernet(dst, src, ether_types.ETH_TYPE_ARP))
    else:
        pkt.add_protocol(ethernet.ethernet(dst, src, ether_types.ETH_TYPE_8021Q))
        pkt.add_protocol(vlan_hdr.vlan(vid=vlan, ethertype=ether_types.ETH_TYPE_ARP))
    pkt.add_protocol(arp.arp(opcode=arp.ARP_REQUEST, src_mac=src, src_ip=spa, dst_mac=tha,
                             dst_ip=tpa))
    pkt.serialize()
    return bytes(pkt.data)


def snat_routers(view: View) -> list[str]:
    """Routers this chassis should hold SNAT port blocks of: SNAT on, a gateway on an
    external network it has a bridge mapping for, and a port bound here behind them."""
    bound = {p.network_id for p in view.ports.values() if p.chassis == view.chassis}
    out = []
    for router in view.routers.values():
        gw = rt.gateway(view, router)
        if (router.enable_snat and router.admin_up and gw is not None
                and gw.patch is not None
                and any(i.network.id in bound for i in rt.interfaces(view, router))):
            out.append(router.id)
    return sorted(out)


def zones(view: View) -> dict[str, int]:
    """Router id → its conntrack zone on this chassis (to flush a zone that goes away)."""
    return rt.zones(view)


def statuses(view: View) -> dict[str, dict[str, str]]:
    """What this chassis can report: ACTIVE for routers it is the active gateway of (and
    programs: it has a patch port to the gateway's network), for floating IPs of ports
    plugged here that it programs and for floating IPs with port forwardings it owns."""
    routers, fips = {}, {}
    for router, _ in rt.programmed(view):
        gw = rt.gateway(view, router)
        if gw is None or gw.patch is None:
            continue
        if rt.is_active(view, router):
            routers[router.id] = "ACTIVE"
        fips.update({f.id: "ACTIVE" for f in rt.local_fips(view, router, gw)})
        fips.update({fid: "ACTIVE" for fid, pfs in rt.forwardings(view, router, gw.network.id)
                     if rt.forwarding_owner(view, router, pfs) == view.chassis})
    return {"routers": routers, "floatingips": fips}


# --- SNAT port blocks on demand ------------------------------------------------------------

# Conntrack timeouts (seconds) of the router zones (OVSDB zone timeout policies, honoured
# by the userspace datapath): closed connections give their SNAT port back within
# seconds. docs/routing.md explains each; ``LONGEST_ROUTER_CT_TIMEOUT`` bounds how long
# a port can stay taken by a connection nobody uses (a block's quarantine exceeds it).
ROUTER_ZONE_TIMEOUTS = {
    "tcp_syn_sent": 30, "tcp_syn_recv": 30, "tcp_established": 7200,
    "tcp_fin_wait": 120, "tcp_close_wait": 60, "tcp_last_ack": 30,
    "tcp_time_wait": 2, "tcp_close": 2,
    "udp_first": 30, "udp_single": 30, "udp_multiple": 120,
    "icmp_first": 10, "icmp_reply": 10,
}
LONGEST_ROUTER_CT_TIMEOUT = max(ROUTER_ZONE_TIMEOUTS.values())
# lease more when a destination uses this share of the ports held: conntrack finds a
# free port by probing at most 128 + 64 + 32 + 16 ports from a start point, and used
# ports cluster, so a range fuller than about half starts to refuse new connections
GROW_AT = 0.5
SNAT_PROTOCOLS = {"tcp": 6, "udp": 17}
_ZONE = re.compile(r"\bzone=(\d+)")


@dataclass(frozen=True)
class SnatRouter:
    """A router this chassis SNATs for: its conntrack zone, SNAT address, and this
    chassis' blocks of it ((first, last) ports, by first port)."""

    id: str
    zone: int
    ip: str
    blocks: tuple[tuple[int, int], ...]


def snat_state(view: View) -> list[SnatRouter]:
    """The routers of ``snat_routers`` with what the demand check needs of each."""
    zones = rt.zones(view)
    out = []
    for rid in snat_routers(view):
        router, zone = view.routers[rid], zones.get(rid)
        gw = rt.gateway(view, router)
        if zone is None or gw is None:
            continue
        mine = tuple((lo, hi) for c, lo, hi in rt.blocks(view, router) if c == view.chassis)
        out.append(SnatRouter(rid, zone, gw.ip, mine))
    return out


@dataclass(frozen=True)
class SnatUse:
    """What the SNAT connections of one router zone use of this chassis' blocks: the
    most connections to one destination (protocol, address, port: each needs its own
    source port), and the blocks (by first port) any connection uses."""

    peak: int = 0
    busy: frozenset = frozenset()


def snat_use(dump: str, zones: dict[int, tuple[str, list[tuple[int, int]]]]
             ) -> dict[int, SnatUse]:
    """From ``ovs-appctl dpctl/dump-conntrack``: per router zone (zone → its SNAT address
    and this chassis' blocks), the TCP/UDP connections translated into those blocks."""
    per_dest: dict[int, dict[tuple, int]] = {z: {} for z in zones}
    busy: dict[int, set[int]] = {z: set() for z in zones}
    for line in dump.splitlines():
        proto, _, rest = line.partition(",orig=(")
        if proto not in SNAT_PROTOCOLS or "zone=" not in rest:
            continue
        zm = _ZONE.search(rest)
        zone = int(zm.group(1)) if zm else None
        if zone not in zones:
            continue
        reply = rest.partition("reply=(")[2].partition(")")[0]
        fields = dict(kv.split("=", 1) for kv in reply.split(",") if "=" in kv)
        ip, blocks = zones[zone]
        try:
            port = int(fields.get("dport", "0"))
        except ValueError:
            continue
        if fields.get("dst") != ip:
            continue
        first = next((lo for lo, hi in blocks if lo <= port <= hi), None)
        if first is None:
            continue
        busy[zone].add(first)
        dest = (proto, fields.get("src"), fields.get("sport"))
        per_dest[zone][dest] = per_dest[zone].get(dest, 0) + 1
    return {z: SnatUse(max(per_dest[z].values(), default=0), frozenset(busy[z]))
            for z in zones}


def snat_wanted_count(held: int, size: int, use: SnatUse, dropped: int,
                      maximum: int) -> int:
    """How many blocks a chassis should hold on a router: more when the busiest
    destination uses ``GROW_AT`` of its ports or the guard dropped packets (room for
    what was dropped twice over; room for twice the drops; at least twice as many while
    busy and dropping), never past ``maximum``; never fewer here
    (idle blocks are given back one by one, see ``snat_idle``)."""
    demand = use.peak + dropped
    busy = demand >= GROW_AT * held * size
    if held and not busy and not dropped:
        return held
    target = -(-int(demand / GROW_AT) // size) if size else held + 1
    if dropped:                 # connections fail now: room for twice the drops
        target = max(target, held + -(-2 * dropped // max(size, 1)))
    if dropped and busy:        # ... and for want of ports: double
        target = max(target, 2 * held)
    return max(1, min(maximum, max(held + 1, target)))


def snat_idle(blocks: list[int], size: int, use: SnatUse) -> list[int]:
    """Blocks (first ports) with no connection that can go back without the rest
    getting busier than ``GROW_AT`` / 2; one block always stays."""
    idle = sorted((b for b in blocks if b not in use.busy), reverse=True)
    out = []
    left = len(blocks)
    for b in idle:
        if left <= 1 or use.peak >= GROW_AT / 2 * (left - 1) * size:
            break
        out.append(b)
        left -= 1
    return out


def gateway_advert(view: View, data: bytes, vlan_of=None) -> bytes | None:
    """The neighbour advertisement answering a solicitation (punted by l3_input from an
    external network) for the IPv6 gateway address of a router whose active gateway
    this chassis is, or None: from the gateway port's MAC, to the solicitation's source
    (all nodes when it is unspecified: duplicate address detection), re-tagged for a VLAN
    network. Cost: the routers of the view."""
    from plexus.agent import ipv6
    found = ipv6.nd_message(data, ipv6.NEIGHBOR_SOLICITATION)
    if found is None:
        return None
    pkt, target, _ = found
    for router in view.routers.values():
        gw6 = rt.gateway6(view, router)
        if gw6 is None or gw6.ip != target or not rt.is_active(view, router):
            continue
        vlan = gw6.network.segmentation_id if gw6.network.network_type == "vlan" else None
        dad = pkt.src == "::"
        return ipv6.neighbor_advert(gw6.port.mac, target,
                                    "33:33:00:00:00:01" if dad else pkt.src_mac,
                                    ipv6.ALL_NODES if dad else pkt.src, solicited=not dad,
                                    vlan=vlan)
    return None
