"""Routers and floating IPs as the L3 stages see them, built from the southbound objects
(the store's form: routers with ``routes``, ``enable_snat``, ``gw_port_id`` and the
hidden ``plexus:gateway_chassis``; router ports found by ``device_id`` and
``device_owner``; floating IPs with ``floating_port_id``; the ``snat_blocks``
collection), plus what only the agent knows: which chassis are alive, its bridge
mappings and patch ports, its tunnels, and the MACs it resolved on external networks.
Pure: nothing here does I/O. docs/routing.md explains the design.

The agent calls, after ``relevant.build_view``::

    view = l3.with_l3(view, objects, alive=alive_chassis,
                      bridge_mappings=mappings, patch_ofports=patches,
                      tunnel_ofports=all_tunnel_ofports, external_macs=resolved,
                      problems=problems)

and then: ``l3.tunnel_peers(view)`` (tunnels it needs besides ``relevant.tunnel_peers``),
``l3.external_nexthops(view)`` (addresses to resolve by ARP on the external bridges,
with ``l3.arp_probe`` frames), ``l3.announcements(view)`` (gratuitous ARPs to send out
of a patch port whenever one appears: a floating IP now hosted here, a gateway now
active here), ``l3.zones(view)`` (router conntrack zones, to flush one that goes away)
``l3.statuses(view)`` (what to report for routers and floating IPs) and
``l3.snat_routers(view)`` (routers to lease SNAT port blocks of)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping

from plexus.pipeline.stages import router as rt
from plexus.pipeline.view import (
    ChassisView, FloatingIPView, NetworkView, PortView, RouterView, SubnetView, View,
)

KEY = "plexus:key"
GATEWAY_CHASSIS = "plexus:gateway_chassis"
INTERFACE_OWNERS = ("network:router_interface", "network:router_interface_distributed",
                    "network:ha_router_replicated_interface")
Objects = Mapping[str, Mapping[str, Mapping[str, Any]]]


# --- wire objects → view values ------------------------------------------------------

def to_network(obj: Mapping) -> NetworkView:
    """A network with its provider fields (physical network, VLAN) and external flag."""
    key = obj[KEY]
    if not isinstance(key, int) or isinstance(key, bool) or not 0 < key < 2 ** 24:
        raise ValueError(f"{KEY}={key!r} is not a datapath key")
    seg = obj.get("provider:segmentation_id")
    mtu = obj.get("mtu")
    return NetworkView(id=str(obj["id"]), key=key,
                       network_type=obj.get("provider:network_type") or "vxlan",
                       mtu=mtu if isinstance(mtu, int) and not isinstance(mtu, bool) else 1450,
                       port_security_enabled=obj.get("port_security_enabled") is not False,
                       physical_network=obj.get("provider:physical_network") or None,
                       segmentation_id=seg if isinstance(seg, int) else None,
                       external=bool(obj.get("router:external")))


def to_subnet(obj: Mapping) -> SubnetView:
    """A subnet as the compiler sees it."""
    net = ipaddress.ip_network(obj["cidr"])
    gateway = obj.get("gateway_ip")
    return SubnetView(id=str(obj["id"]), network_id=str(obj["network_id"]), cidr=str(net),
                      ip_version=net.version,
                      gateway_ip=str(ipaddress.ip_address(gateway)) if gateway else None,
                      enable_dhcp=obj.get("enable_dhcp") is not False,
                      dns_nameservers=tuple(str(ipaddress.ip_address(d))
                                            for d in obj.get("dns_nameservers") or ()),
                      host_routes=tuple((str(ipaddress.ip_network(r["destination"])),
                                         str(ipaddress.ip_address(r["nexthop"])))
                                        for r in obj.get("host_routes") or ()))


def to_port(obj: Mapping) -> PortView:
    """A port as the compiler sees it (as ``relevant.to_port`` does)."""
    key = obj[KEY]
    if not isinstance(key, int) or isinstance(key, bool) or not 0 < key < 0xFFFF:
        raise ValueError(f"{KEY}={key!r} is not a port key")
    mac = str(obj["mac_address"]).lower()
    pairs = []
    for pair in obj.get("allowed_address_pairs") or ():
        address = str(pair["ip_address"])
        address = (str(ipaddress.ip_network(address, strict=False)) if "/" in address
                   else str(ipaddress.ip_address(address)))
        pairs.append((address, str(pair.get("mac_address") or mac).lower()))
    return PortView(id=str(obj["id"]), key=key, network_id=str(obj["network_id"]), mac=mac,
                    ips=tuple((str(ip["subnet_id"]), str(ipaddress.ip_address(ip["ip_address"])))
                              for ip in obj.get("fixed_ips") or ()),
                    chassis=obj.get("binding:host_id") or "",
                    device_owner=obj.get("device_owner") or "",
                    port_security=obj.get("port_security_enabled") is not False,
                    allowed_pairs=tuple(pairs), admin_up=obj.get("admin_state_up") is not False)


def to_chassis(obj: Mapping) -> ChassisView:
    """A registered chassis (an agents object)."""
    return ChassisView(name=str(obj["host"]),
                       tunnel_ip=str(ipaddress.ip_address(obj["configurations"]["tunnel_ip"])))


def _converted(objects: Objects, collection: str, convert, problems: list | None) -> dict:
    out = {}
    for ident, obj in sorted((objects.get(collection) or {}).items()):
        try:
            out[ident] = convert(obj)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if problems is not None:
                problems.append((collection, ident, f"unusable for routing: {exc}"))
    return out


def to_router(obj: Mapping, ports: Mapping[str, PortView],
              wire_ports: Mapping[str, Mapping]) -> RouterView:
    """A router with its interface and gateway ports (found by device_id and owner)."""
    rid = str(obj["id"])
    mine = [pid for pid, p in wire_ports.items()
            if isinstance(p, Mapping) and p.get("device_id") == rid and pid in ports]
    interfaces = tuple(sorted(pid for pid in mine
                              if ports[pid].device_owner in INTERFACE_OWNERS))
    gateways = sorted(pid for pid in mine if ports[pid].device_owner == rt.GATEWAY_OWNER)
    gw = obj.get("gw_port_id")
    gateway = gw if gw in gateways else (gateways[0] if gateways else None)
    routes = tuple(sorted((str(ipaddress.ip_network(r["destination"])),
                           str(ipaddress.ip_address(r["nexthop"])))
                          for r in obj.get("routes") or ()))
    candidates = obj.get(GATEWAY_CHASSIS) or ()
    return RouterView(id=rid, interfaces=interfaces, gateway=gateway, routes=routes,
                      enable_snat=obj.get("enable_snat") is not False,
                      admin_up=obj.get("admin_state_up") is not False,
                      gateway_chassis=tuple(str(c) for c in candidates) if gateway else ())


def active_gateway(obj: Mapping, alive: Iterable[str]) -> str | None:
    """A router's active gateway: the first alive chassis of its ordered list (the same
    answer on every chassis that sees the same list and the same liveness)."""
    up = set(alive)
    return next((c for c in obj.get(GATEWAY_CHASSIS) or () if c in up), None)


# --- the view ----------------------------------------------------------------------

def with_l3(view: View, objects: Objects, *, alive: Iterable[str] = (),
            bridge_mappings: Mapping[str, str] | None = None,
            patch_ofports: Mapping[str, int] | None = None,
            tunnel_ofports: Mapping[str, int] | None = None,
            external_macs: Mapping[str, str] | None = None,
            problems: list | None = None) -> View:
    """``view`` (from ``relevant.build_view``) with what the L3 stages need: the routers
    with an interface on a network with a port bound here or whose active gateway this
    chassis is (``alive``: the chassis this one believes alive; it counts itself), their
    networks, subnets and ports, the floating IPs of ports bound here, every chassis'
    SNAT blocks of those routers (on their current gateway address), the chassis and
    tunnels they involve, and the agent's local facts.

    ``objects`` holds the southbound collections (``routers``, ``floatingips``,
    ``snat_blocks``, ``ports``, ``networks``, ``subnets``, ``agents``);
    ``tunnel_ofports`` every tunnel the agent has (chassis → ofport). Objects that cannot
    be used are left out and, when ``problems`` is a list, reported there."""
    up = set(alive) | {view.chassis}
    wire_ports = {k: v for k, v in (objects.get("ports") or {}).items()
                  if isinstance(v, Mapping)}
    ports = _converted(objects, "ports", to_port, problems)
    networks = _converted(objects, "networks", to_network, problems)
    subnets = _converted(objects, "subnets", to_subnet, problems)
    wire_routers = {k: v for k, v in (objects.get("routers") or {}).items()
                    if isinstance(v, Mapping)}
    routers = _converted({"routers": wire_routers}, "routers",
                         lambda o: to_router(o, ports, wire_ports), problems)
    active = {rid: a for rid, obj in wire_routers.items() if rid in routers
              and (a := active_gateway(obj, up))}
    bound = {p.network_id for p in ports.values() if p.chassis == view.chassis}
    bound |= {p.network_id for p in view.ports.values() if p.chassis == view.chassis}
    relevant = {rid: r for rid, r in routers.items()
                if active.get(rid) == view.chassis
                or any(ports[i].network_id in bound for i in r.interfaces)}
    internal = {ports[i].network_id for r in relevant.values() for i in r.interfaces}
    external = {ports[r.gateway].network_id for r in relevant.values() if r.gateway}
    wanted = {n for n in internal | external if n in networks}
    routed = internal & wanted
    added = {pid: p for pid, p in ports.items() if p.network_id in routed}
    added.update({r.gateway: ports[r.gateway] for r in relevant.values()
                  if r.gateway and ports[r.gateway].network_id in wanted})
    nets = {n: networks[n] for n in sorted(wanted)}
    for nid, net in view.networks.items():      # the agent's own wins; external facts added
        nets[nid] = replace(net, physical_network=networks[nid].physical_network,
                            segmentation_id=networks[nid].segmentation_id,
                            external=networks[nid].external) if nid in networks else net
    fips = floating_ips(objects, relevant, ports, view.chassis, problems)
    blocks = snat_blocks(objects, relevant, ports, subnets)
    new = replace(
        view, networks=nets,
        subnets={**{s.id: s for s in subnets.values() if s.network_id in wanted},
                 **view.subnets},
        ports={**added, **view.ports}, routers=relevant, floating_ips=fips,
        bridge_mappings=dict(bridge_mappings or {}), patch_ofports=dict(patch_ofports or {}),
        active_gateway={rid: a for rid, a in active.items() if rid in relevant},
        snat_blocks=blocks)
    registered = _converted(objects, "agents", to_chassis, None)
    chassis = {c.name: c for c in registered.values()}
    needed = {c for r in relevant.values() for c in rt.router_chassis(new, r)}
    known = dict(new.chassis_by_name)
    known.update({c: chassis[c] for c in sorted(needed) if c in chassis})
    tunnels = dict(new.tunnel_ofports)
    tunnels.update({c: o for c, o in (tunnel_ofports or {}).items()
                    if c in known and c != view.chassis})
    cidrs = [new.subnets[s].cidr for s in new.subnets
             if new.subnets[s].network_id in external and new.subnets[s].ip_version == 4]
    macs = {ip: mac.lower() for ip, mac in (external_macs or {}).items()
            if any(rt.contains(c, ip) for c in cidrs)}
    return replace(new, chassis_by_name=known, tunnel_ofports=tunnels, external_macs=macs)


def floating_ips(objects: Objects, routers: Mapping[str, RouterView],
                 ports: Mapping[str, PortView], chassis: str,
                 problems: list | None = None) -> dict[str, FloatingIPView]:
    """Associated floating IPs of ports bound to ``chassis`` through ``routers``."""
    out = {}
    for fid, obj in sorted((objects.get("floatingips") or {}).items()):
        if not isinstance(obj, Mapping) or obj.get("router_id") not in routers:
            continue
        port = ports.get(obj.get("port_id") or "")
        if port is None or port.chassis != chassis:
            continue
        own = ports.get(obj.get("floating_port_id") or "")
        try:
            if own is None:
                raise ValueError("its own port is unknown")
            out[fid] = FloatingIPView(
                id=fid, address=str(ipaddress.IPv4Address(obj["floating_ip_address"])),
                mac=own.mac, network_id=str(obj["floating_network_id"]),
                router_id=str(obj["router_id"]), port_id=port.id,
                fixed_ip=str(ipaddress.IPv4Address(obj["fixed_ip_address"])))
        except (KeyError, TypeError, ValueError) as exc:
            if problems is not None:
                problems.append(("floatingips", fid, f"unusable: {exc}"))
    return out


def snat_blocks(objects: Objects, routers: Mapping[str, RouterView],
                ports: Mapping[str, PortView],
                subnets: Mapping[str, SubnetView]) -> dict[str, tuple[tuple[str, int, int], ...]]:
    """Every chassis' SNAT blocks of the SNATing ``routers``, on their current gateway
    IPv4 address (a block leased on an old address is ignored)."""
    gw_ip = {}
    for rid, router in routers.items():
        port = ports.get(router.gateway or "")
        if port is not None and router.enable_snat:
            v4 = [ip for sid, ip in sorted(port.ips)
                  if sid in subnets and subnets[sid].ip_version == 4]
            if v4:
                gw_ip[rid] = v4[0]
    found: dict[str, set] = {}
    for obj in (objects.get("snat_blocks") or {}).values():
        try:
            rid, ip = obj["router_id"], obj["ip"]
            block = (str(obj["chassis"]), int(obj["port_min"]), int(obj["port_max"]))
        except (KeyError, TypeError, ValueError):
            continue
        if gw_ip.get(rid) == ip and 0 < block[1] <= block[2] <= 0xFFFF:
            found.setdefault(rid, set()).add(block)
    return {rid: tuple(sorted(b)) for rid, b in sorted(found.items())}


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
    extra routes' next hops there, sorted."""
    found = set()
    for router in view.routers.values():
        gw = rt.gateway(view, router)
        if gw is None or not gw.network.physical_network:
            continue
        hops = {gw.nexthop} | {nh for _, nh in router.routes if rt.contains(gw.subnet.cidr, nh)}
        vlan = gw.network.segmentation_id if gw.network.network_type == "vlan" else None
        found |= {Nexthop(gw.network.id, ip, gw.network.physical_network, vlan, gw.patch)
                  for ip in hops if ip}
    return sorted(found, key=lambda n: (n.network_id, ipaddress.ip_address(n.ip)))


@dataclass(frozen=True)
class Announcement:
    """A gratuitous ARP to send out of a patch port (a packet-out on br-int)."""

    ofport: int
    ip: str
    mac: str
    frame: bytes


def announcements(view: View) -> list[Announcement]:
    """Gratuitous ARPs for what this chassis answers on external networks: floating IPs
    of ports plugged here, and gateway addresses of routers whose active gateway it is.
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
        if rt.is_active(view, router):
            owned.append((gw.ip, gw.port.mac))
        out += [Announcement(gw.patch, ip, mac, garp(mac, ip, vlan)) for ip, mac in owned]
    return sorted(out, key=lambda a: (a.ofport, ipaddress.ip_address(a.ip)))


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
    programs: it has a patch port to the gateway's network) and for floating IPs of ports
    plugged here that it programs."""
    routers, fips = {}, {}
    for router, _ in rt.programmed(view):
        gw = rt.gateway(view, router)
        if gw is None or gw.patch is None:
            continue
        if rt.is_active(view, router):
            routers[router.id] = "ACTIVE"
        fips.update({f.id: "ACTIVE" for f in rt.local_fips(view, router, gw)})
    return {"routers": routers, "floatingips": fips}
