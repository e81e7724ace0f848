"""What the L3 stages (l3_input, l3_route, l3_neighbor, l3_snat) and the stages they
extend (classify, l2_lookup, output) ask of a View about routers. Pure helpers,
deterministic order. docs/routing.md explains the design; in short:

- A router routes on the chassis where a packet enters it. Its routing table, its
  interfaces' MACs and every destination MAC are known from the model (no ARP).
- Which routers a chassis programs: those with an interface on a local network, and
  those whose active gateway chassis it is (``routers``).
- Each router has a conntrack zone of its own on each chassis (``zones``): 0xFF00 plus
  a slot from a hash of its id, in the 255 zones an OpenFlow port number (the security
  groups' zones) can never take.
- SNAT of ports without a floating IP leaves with a source MAC of the chassis' own for
  that router (``snat_mac``), so only the active gateway ever sends from the gateway
  port's MAC and the external switches learn that MAC at the active gateway only.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
from dataclasses import dataclass

from plexus.model import keys
from plexus.pipeline.flows import VLAN_PRESENT, Move, Output, PushVlan, SetField
from plexus.pipeline.stages.common import (
    ARP_REPLY, ARP_REQUEST, ETH_ARP, ETH_IP, ipv4_addresses, is_ipv4, local_networks,
    local_ports, peers,
)
from plexus.pipeline.view import (
    FloatingIPView, ForwardingView, NetworkView, PortView, RouterView, SubnetView, View,
)

IP_ICMP, IP_TCP, IP_UDP = 1, 6, 17
ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST = 0, 8
PORT_FIELDS = {IP_TCP: ("tcp_src", "tcp_dst"), IP_UDP: ("udp_src", "udp_dst")}
ZONE_BASE = 0xFF00        # OVS numbers OpenFlow ports below 0xFF00: no VIF's zone is here
ZONE_SLOTS = 255          # router zones 0xFF00..0xFFFE
# A zone nothing commits in: a lookup there (``forget_connection``) makes Open vSwitch's
# userspace conntrack drop the connection it cached on the packet after a NAT, which it
# would otherwise reuse for the next ct() in the same zone without looking the packet
# up (ct_clear cannot: after a patch port the translation no longer knows the packet
# was tracked and leaves it out). Hairpin frames looped back through the mapped bridge
# need it: NATed once in the router's zone, they are NATed there again.
ZONE_FORGET = 0xFFFF
GATEWAY_OWNER = keys.GATEWAY_OWNER
FLOATINGIP_OWNER = keys.FLOATINGIP_OWNER
EXTERNAL_OWNERS = keys.EXTERNAL_OWNERS


@dataclass(frozen=True)
class Interface:
    """A router's address on an internal subnet, with its port (MAC) and network."""

    port: PortView
    network: NetworkView
    subnet: SubnetView
    ip: str


@dataclass(frozen=True)
class Gateway:
    """A router's address on an external network; ``nexthop`` is the external subnet's
    gateway (the default route), ``patch`` this chassis' patch port toward the network's
    physical network (None: this chassis has no bridge mapping for it)."""

    port: PortView
    network: NetworkView
    subnet: SubnetView
    ip: str
    nexthop: str | None
    patch: int | None


# --- which routers, which interfaces -----------------------------------------------------

def ipv4_subnet(view: View, subnet_id: str) -> SubnetView | None:
    """The subnet if the view knows it and it is IPv4."""
    return _subnet(view, subnet_id, 4)


def _per_view(view: View, name, inputs: tuple, build):
    """``build()``, remembered in the view's derived-value cache while ``inputs`` (the
    view fields it reads, read here so that a tracing view records them) are the same
    objects: every stage asks the same questions of one view."""
    return view._cached(name, inputs, build)


def interfaces(view: View, router: RouterView) -> list[Interface]:
    """The router's IPv4 interfaces the view can use, sorted by network and address."""
    return list(_per_view(view, ("interfaces", router.id),
                          (view.ports, view.networks, view.subnets, router),
                          lambda: _interfaces(view, router, 4)))


def interfaces6(view: View, router: RouterView) -> list[Interface]:
    """The router's IPv6 interfaces the view can use, sorted by network and address (an
    interface port holding addresses of several IPv6 subnets gives one per address)."""
    return list(_per_view(view, ("interfaces6", router.id),
                          (view.ports, view.networks, view.subnets, router),
                          lambda: _interfaces(view, router, 6)))


def _subnet(view: View, subnet_id: str, version: int) -> SubnetView | None:
    subnet = view.subnets.get(subnet_id)
    return subnet if subnet is not None and subnet.ip_version == version else None


def _interfaces(view: View, router: RouterView, version: int) -> list[Interface]:
    out = []
    for pid in router.interfaces:
        port = view.ports.get(pid)
        net = view.networks.get(port.network_id) if port else None
        if net is None:
            continue
        for sid, ip in port.ips:
            subnet = _subnet(view, sid, version)
            if subnet is not None and is_ipv4(ip) == (version == 4):
                out.append(Interface(port, net, subnet, ip))
    return sorted(out, key=lambda i: (i.network.id, i.subnet.cidr, i.ip, i.port.id))


def router_networks(view: View, router: RouterView) -> set[str]:
    """Ids of the internal networks the router has an interface on (IPv4 or IPv6)."""
    return {i.network.id for i in interfaces(view, router)} | {
        i.network.id for i in interfaces6(view, router)}


def gateway6(view: View, router: RouterView) -> Gateway | None:
    """The router's IPv6 gateway (its first IPv6 address on its external network; the
    next hop: that subnet's gateway), if any. IPv6 is routed without NAT."""
    return _gateway(view, router, 6)


def link_local(mac: str) -> str:
    """The EUI-64 link-local address (fe80::/64) of a MAC: a router port's source address
    for router advertisements and its next-hop address for the VMs (RFC 4291)."""
    return eui64("fe80::/64", mac)


@functools.lru_cache(maxsize=1 << 14)
def eui64(cidr: str, mac: str) -> str:
    """The EUI-64 address of ``mac`` in the /64 ``cidr`` (universal/local bit flipped)."""
    octets = [int(b, 16) for b in mac.split(":")]
    octets[0] ^= 0x02
    iid = bytes(octets[:3] + [0xFF, 0xFE] + octets[3:])
    net = ipaddress.IPv6Network(cidr, strict=False)
    return str(ipaddress.IPv6Address(int(net.network_address) | int.from_bytes(iid, "big")))


def gateway(view: View, router: RouterView) -> Gateway | None:
    """The router's gateway (its first IPv4 address on its external network), if any."""
    return _gateway(view, router, 4)


def _gateway(view: View, router: RouterView, version: int) -> Gateway | None:
    port = view.ports.get(router.gateway or "")
    net = view.networks.get(port.network_id) if port else None
    if net is None:
        return None
    for sid, ip in sorted(port.ips):
        subnet = _subnet(view, sid, version)
        if subnet is not None and is_ipv4(ip) == (version == 4):
            return Gateway(port, net, subnet, ip, subnet.gateway_ip, patch_of(view, net))
    return None


def scope_pairs(view: View, router: RouterView,
                ifaces: list[Interface] | None = None) -> list[tuple[str, str]]:
    """(source CIDR, destination CIDR) of the router's internal subnets that are in
    different address scopes (no scope counts as a scope of its own), as Neutron: a
    router routes between them only through NAT, so directly never (``ifaces``: its
    IPv6 interfaces for the IPv6 pairs; by default its IPv4 ones)."""
    ifaces = interfaces(view, router) if ifaces is None else ifaces
    out = set()
    for src in ifaces:
        for dst in ifaces:
            if src.subnet.id != dst.subnet.id \
                    and src.subnet.address_scope != dst.subnet.address_scope:
                out.add((src.subnet.cidr, dst.subnet.cidr))
    return sorted(out)


def unnated(gw: Gateway, iface: Interface) -> bool:
    """Whether the router routes the interface's subnet to and from its external network
    as is: the subnet is in the external subnet's address scope (Neutron: no SNAT
    within a scope; floating IPs still apply)."""
    return iface.subnet.address_scope is not None \
        and iface.subnet.address_scope == gw.subnet.address_scope


def patch_of(view: View, net: NetworkView) -> int | None:
    """This chassis' patch ofport toward a flat or VLAN network's physical network."""
    if net.network_type not in ("flat", "vlan") or not net.physical_network:
        return None
    if net.network_type == "vlan" and not net.segmentation_id:
        return None
    return view.patch_ofports.get(net.physical_network)


def _routing_inputs(view: View) -> tuple:
    """The view fields ``routers``, ``zones`` and ``programmed`` read."""
    return (view.ports, view.chassis, view.networks, view.subnets, view.routers,
            view.active_gateway)


def routers(view: View) -> list[RouterView]:
    """Routers this chassis routes for, by id: admin up, and with an interface on a local
    network or this chassis as their active gateway."""
    return list(_per_view(view, "routers", _routing_inputs(view), lambda: _routers(view)))


def _routers(view: View) -> list[RouterView]:
    local = {n.id for n in local_networks(view)}
    out = []
    for router in view.routers.values():
        if not router.admin_up:
            continue
        if is_active(view, router) or router_networks(view, router) & local:
            out.append(router)
    return sorted(out, key=lambda r: r.id)


def is_active(view: View, router: RouterView) -> bool:
    """Whether this chassis is (believes it is) the router's active gateway."""
    return view.active_gateway.get(router.id) == view.chassis


def zones(view: View) -> dict[str, int]:
    """Each routing router's conntrack zone: 0xFF00 + a slot hashed from its id; on a
    collision the later id (sorted) probes on. Beyond 255 routers a chassis has no zone
    left and the rest are not programmed."""
    return dict(_per_view(view, "zones", _routing_inputs(view), lambda: _zones(view)))


def _zones(view: View) -> dict[str, int]:
    out: dict[str, int] = {}
    taken: set[int] = set()
    for router in routers(view):
        digest = hashlib.blake2b(router.id.encode(), digest_size=4).digest()
        slot = int.from_bytes(digest, "big") % ZONE_SLOTS
        for _ in range(ZONE_SLOTS):
            if slot not in taken:
                taken.add(slot)
                out[router.id] = ZONE_BASE + slot
                break
            slot = (slot + 1) % ZONE_SLOTS
    return out


def programmed(view: View) -> list[tuple[RouterView, int]]:
    """(router, zone) of the routers this chassis programs, by id."""
    return list(_per_view(view, "programmed", _routing_inputs(view), lambda: [
        (r, z) for r, z in ((r, zones(view).get(r.id)) for r in routers(view))
        if z is not None]))


def snat_mac(router_id: str, chassis: str) -> str:
    """The source MAC a chassis uses for a router's traffic on the external network
    (SNAT in its own port blocks, or a router without SNAT): locally administered,
    unicast (first octet 0x0a), the rest a hash of router id and chassis name."""
    digest = hashlib.blake2b(f"{router_id}/{chassis}".encode(), digest_size=5).digest()
    return "0a:" + ":".join(f"{b:02x}" for b in digest)


# --- external networks, floating IPs, port blocks ----------------------------------------

def blocks(view: View, router: RouterView) -> list[tuple[str, int, int]]:
    """Every chassis' SNAT port blocks of the router: (chassis, first, last), sorted. The
    server never gives a port twice; should blocks overlap anyway, the one with the lower
    first port (then chassis name) keeps the overlap and the other is left out."""
    kept: list[tuple[str, int, int]] = []
    for lo, chassis, hi in sorted({(int(lo), c, int(hi))
                                   for c, lo, hi in view.snat_blocks.get(router.id, ())}):
        if 0 < lo <= hi <= 0xFFFF and all(hi < a or lo > b for _, a, b in kept):
            kept.append((chassis, lo, hi))
    return sorted(kept)


def own_ranges(view: View, router: RouterView) -> list[tuple[int, int]]:
    """This chassis' blocks of the router, adjacent ones merged, sorted."""
    out: list[list[int]] = []
    for chassis, lo, hi in blocks(view, router):
        if chassis != view.chassis:
            continue
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [(lo, hi) for lo, hi in out]


def local_fips(view: View, router: RouterView, gw: Gateway) -> list[FloatingIPView]:
    """Floating IPs of the router on its gateway's network whose port is plugged here
    (and admin up), by address. One per fixed IP: the first by address wins."""
    local = {p.id: p for p in local_ports(view)}
    seen: set[str] = set()
    out = []
    for fip in sorted(view.floating_ips.values(), key=lambda f: (f.address, f.id)):
        port = local.get(fip.port_id)
        if (fip.router_id != router.id or fip.network_id != gw.network.id or port is None
                or fip.fixed_ip not in port.addresses() or fip.fixed_ip in seen
                or not is_ipv4(fip.address)):
            continue
        seen.add(fip.fixed_ip)
        out.append(fip)
    return out


def forwardings(view: View, router: RouterView, network_id: str
                ) -> list[tuple[str, list[ForwardingView]]]:
    """The router's port forwardings on its external network, grouped by floating IP:
    (floating IP id, its forwardings by external port), by floating IP address."""
    grouped: dict[str, list[ForwardingView]] = {}
    for pf in view.port_forwardings.values():
        if pf.router_id == router.id and pf.network_id == network_id \
                and is_ipv4(pf.address):
            grouped.setdefault(pf.fip_id, []).append(pf)
    return [(fid, sorted(pfs, key=lambda p: (p.protocol, p.external, p.id)))
            for fid, pfs in sorted(grouped.items(), key=lambda g: (g[1][0].address, g[0]))]


def forwarding_owner(view: View, router: RouterView, pfs: list[ForwardingView]) -> str | None:
    """The chassis answering for a floating IP with port forwardings on its external
    network (ARP, and every packet to it): the chassis of its forwardings' ports when
    they are all on one (NATed where the VM is, like a floating IP); when they are on
    several, the router's active gateway, which sends each forwarding's packets,
    stateless, through the tunnel to its port's chassis (docs/routing.md, "Port
    forwarding"). A floating IP has one MAC, which the external network can learn at
    one place only."""
    hosts = {pf.chassis for pf in pfs}
    if len(hosts) == 1:
        return next(iter(hosts))
    return view.active_gateway.get(router.id)


def port_map(pf: ForwardingView) -> list[tuple[int, int, int, int]]:
    """(external first, external last, internal first, internal last) pieces of a
    forwarding: one for N ports to one (any external port to the internal one) or one
    to one, and one per port for N to N (conntrack picks any port of a range, so a
    port-preserving N-N map is spelled out)."""
    (elo, ehi), (ilo, ihi) = pf.external, pf.internal
    if ilo == ihi:
        return [(elo, ehi, ilo, ihi)]
    return [(elo + i, elo + i, ilo + i, ilo + i) for i in range(ehi - elo + 1)]


def router_fips(view: View, router: RouterView) -> list[FloatingIPView]:
    """The router's associated floating IPs wherever their ports are bound, by address
    (the view holds them all; ``local_fips`` keeps those plugged here)."""
    grouped = _per_view(view, "fips_by_router", (view.floating_ips,), lambda: _by_router(view))
    return list(grouped.get(router.id, ()))


def _by_router(view: View) -> dict[str, tuple[FloatingIPView, ...]]:
    out: dict[str, list[FloatingIPView]] = {}
    for fip in sorted(view.floating_ips.values(), key=lambda f: (f.address, f.id)):
        out.setdefault(fip.router_id, []).append(fip)
    return {k: tuple(v) for k, v in out.items()}


def hairpin_neighbours(view: View, router: RouterView, gw: Gateway) -> list[tuple[str, str]]:
    """(address, MAC) of the router's own addresses on its external subnet, known from
    the model: its gateway (the gateway port's MAC) and its floating IPs (each one's own
    MAC), by address. A VM behind the router reaches them across the external network
    like any outside host — SNATed on the way out, DNATed (or unNATed) where the
    address lives — instead of through the upstream router (docs/routing.md,
    "Hairpin")."""
    found = {gw.ip: gw.port.mac}
    for fip in router_fips(view, router):
        if fip.network_id == gw.network.id and is_ipv4(fip.address):
            found.setdefault(fip.address, fip.mac)
    return sorted(found.items())


def external_networks(view: View) -> list[tuple[NetworkView, int]]:
    """External networks of programmed routers reachable from here: (network, patch)."""
    found = {}
    for router, _ in programmed(view):
        gw = gateway(view, router)
        if gw is not None and gw.patch is not None:
            found[gw.network.id] = (gw.network, gw.patch)
    return [found[k] for k in sorted(found)]


def vlan_match(net: NetworkView) -> int:
    """The vlan_vid of the network's frames on the patch port (0: untagged)."""
    return VLAN_PRESENT | net.segmentation_id if net.network_type == "vlan" else 0


def vlan_push(net: NetworkView) -> list:
    """Actions that tag a frame for the network's VLAN (none for a flat network)."""
    if net.network_type != "vlan":
        return []
    return [PushVlan(), SetField("vlan_vid", VLAN_PRESENT | net.segmentation_id)]


# --- networks and chassis a router reaches ---------------------------------------------

def routed_networks(view: View) -> list[NetworkView]:
    """Internal networks of programmed routers that have no local port, by id (they get
    L2 lookup and output flows toward their ports, no floods)."""
    local = {n.id for n in local_networks(view)}
    found = {i.network.id: i.network for r, _ in programmed(view)
             for i in interfaces(view, r) + interfaces6(view, r) if i.network.id not in local}
    return [found[k] for k in sorted(found)]


def is_candidate(view: View, router: RouterView) -> bool:
    """Whether this chassis is one of the router's gateway chassis (or its active one)."""
    return view.chassis in router.gateway_chassis or is_active(view, router)


def router_chassis(view: View, router: RouterView) -> set[str]:
    """Chassis a router's traffic may come from or go to: hosts of ports on its internal
    networks, its gateway chassis (any may believe itself active), the owners of its
    SNAT blocks."""
    return set(_per_view(view, ("router_chassis", router.id),
                         (view.ports, view.networks, view.subnets, view.snat_blocks,
                          view.active_gateway, view.chassis, router),
                         lambda: _router_chassis(view, router)))


def _router_chassis(view: View, router: RouterView) -> set[str]:
    nets = router_networks(view, router)
    found = {p.chassis for n in nets for p in view.ports_on(n) if p.chassis}
    found |= {c for c, _, _ in blocks(view, router)} | set(router.gateway_chassis)
    if view.active_gateway.get(router.id):
        found.add(view.active_gateway[router.id])
    found.discard(view.chassis)
    return found


def router_peers(view: View, router: RouterView) -> dict[str, int]:
    """``router_chassis`` that have a tunnel from here: name → tunnel ofport."""
    return {c: view.tunnel_ofports[c] for c in sorted(router_chassis(view, router))
            if c in view.tunnel_ofports}


def tunnel_sources(view: View, net: NetworkView) -> dict[str, int]:
    """Chassis whose tunnel may bring packets of a local network: those sharing it, and
    for a network behind a programmed router, that router's peers (they route into it)."""
    out = dict(peers(view, net.id))
    for router, _ in programmed(view):
        if net.id in router_networks(view, router):
            out.update(router_peers(view, router))
    return dict(sorted(out.items()))


# --- answers built in place ----------------------------------------------------------

def arp_request(net: NetworkView, ip: str) -> dict:
    """Match of an ARP request for ``ip`` on a network."""
    return {"net": net.key, "eth_type": ETH_ARP, "arp_op": ARP_REQUEST, "arp_tpa": ip}


def arp_answer(mac: str, ip: str, tail: list) -> list:
    """Turn an ARP request into the reply of ``mac``/``ip``; then ``tail`` (the output)."""
    return [Move("eth_src", "eth_dst"), SetField("eth_src", mac), SetField("arp_op", ARP_REPLY),
            Move("arp_sha", "arp_tha"), SetField("arp_sha", mac),
            Move("arp_spa", "arp_tpa"), SetField("arp_spa", ip), *tail]


def echo_request(ip: str) -> dict:
    """Match of an ICMP echo request to ``ip``."""
    return {"eth_type": ETH_IP, "ip_proto": IP_ICMP, "icmpv4_type": ICMP_ECHO_REQUEST,
            "ipv4_dst": ip}


def echo_answer(mac: str, ip: str, tail: list) -> list:
    """Turn an echo request to ``ip`` into the echo reply from ``mac``; then ``tail``."""
    return [Move("eth_src", "eth_dst"), SetField("eth_src", mac),
            Move("ipv4_src", "ipv4_dst"), SetField("ipv4_src", ip),
            SetField("icmpv4_type", ICMP_ECHO_REPLY), *tail]


def back_out(net: NetworkView | None = None) -> list:
    """Send back where the packet came from (re-tagged for a VLAN external network)."""
    return (vlan_push(net) if net is not None else []) + [Output("in_port")]


@functools.lru_cache(maxsize=65536)
def prefix_len(cidr: str) -> int:
    """Prefix length of a CIDR."""
    return ipaddress.ip_network(cidr, strict=False).prefixlen


@functools.lru_cache(maxsize=65536)
def contains(cidr: str, ip: str) -> bool:
    """Whether an IPv4 address is inside a CIDR."""
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False


def port_ips(port: PortView) -> list[str]:
    """A port's fixed IPv4 addresses (re-exported for the L3 stages)."""
    return ipv4_addresses(port)
