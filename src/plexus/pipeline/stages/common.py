"""What several stage compilers ask of a View: the ports that really are local, the
networks they make local, the tunnels toward chassis that share a network, and the
IPv4 and IPv6 addresses a port owns or may use. Pure helpers, deterministic order."""

from __future__ import annotations

import functools
import ipaddress

from plexus.pipeline.flows import VLAN_PRESENT, Flow, Output, PopVlan, PushVlan, SetField
from plexus.pipeline.view import NetworkView, PortView, View

ETH_IP = 0x0800
ETH_ARP = 0x0806
ETH_IPV6 = 0x86DD
IP_UDP = 17
IP_ICMPV6 = 58
ND_RS, ND_RA, ND_NS, ND_NA = 133, 134, 135, 136     # ICMPv6 neighbour discovery types
MLD_QUERY, MLD_REPORT, MLD_DONE, MLD2_REPORT = 130, 131, 132, 143
UNSPECIFIED6 = "::"
LINK_LOCAL6 = "fe80::/64"
ARP_REQUEST = 1
ARP_REPLY = 2
GROUP_MACS = ("01:00:00:00:00:00", "01:00:00:00:00:00")   # broadcast and multicast

Address = str | tuple[str, str]     # an exact IPv4 address, or (network, netmask)


def bound_ports(view: View) -> list[PortView]:
    """Ports bound here, admin up, on a known network, plugged or not; by id. A port's
    flows that do not name its OpenFlow port number (port security, ARP, DHCP, ACL
    rules, its network's L2 and L3 flows) are compiled from these, so they are in
    before its VIF is plugged: they match its logical key, which no packet carries
    until ``classify`` maps its in_port (plug time), and ``output`` sends nothing to it
    until then either."""
    return [p for p in view.bound_ports() if p.admin_up and p.network_id in view.networks]


def local_ports(view: View) -> list[PortView]:
    """``bound_ports`` whose VIF is plugged (have an ofport): the only ones whose flows
    name it (classify's in_port, output's VIF, the conntrack zone); by id."""
    vifs = view.vif_ofports
    return [p for p in bound_ports(view) if p.id in vifs]


def to_vif(view: View, port: PortView) -> list:
    """Actions that deliver a frame to a local port: out of its VIF; a trunk's subport
    rides its parent's VIF, tagged with its VLAN (the tag popped again after, so a flood's
    next output is as it was)."""
    out = Output(view.vif_ofports[port.id])
    if not port.parent:
        return [out]
    return [PushVlan(), SetField("vlan_vid", VLAN_PRESENT | port.vlan), out, PopVlan()]


def local_networks(view: View) -> list[NetworkView]:
    """Networks with at least one port bound here (as ``bound_ports`` counts them),
    plugged or not, by id: a network is local from its first binding here."""
    ids = sorted({p.network_id for p in bound_ports(view)})
    return [view.networks[i] for i in ids]


def peers(view: View, network_id: str) -> dict[str, int]:
    """Other chassis sharing the network that have a tunnel: name → tunnel ofport."""
    return {c: view.tunnel_ofports[c] for c in view.remote_chassis_of(network_id)
            if c in view.tunnel_ofports}


@functools.lru_cache(maxsize=65536)
def is_ipv4(address: str) -> bool:
    """Whether an address or CIDR is IPv4."""
    return ipaddress.ip_network(address, strict=False).version == 4


def ipv4_addresses(port: PortView) -> list[str]:
    """The port's fixed IPv4 addresses, sorted."""
    return list(_ipv4_of(port.ips))


@functools.lru_cache(maxsize=65536)
def _ipv4_of(ips: tuple) -> tuple[str, ...]:
    return tuple(sorted(ip for _, ip in ips if is_ipv4(ip)))


def ipv6_addresses(port: PortView) -> list[str]:
    """The port's fixed IPv6 addresses, sorted."""
    return list(_ipv6_of(port.ips))


@functools.lru_cache(maxsize=65536)
def _ipv6_of(ips: tuple) -> tuple[str, ...]:
    return tuple(sorted(str(ipaddress.IPv6Address(ip)) for _, ip in ips if not is_ipv4(ip)))


@functools.lru_cache(maxsize=65536)
def link_local(mac: str) -> str:
    """The link-local address a host derives from ``mac`` (EUI-64, RFC 4291 appendix A):
    fe80::, the MAC's halves around ff:fe, the universal/local bit flipped."""
    octets = [int(part, 16) for part in mac.split(":")]
    octets[0] ^= 0x02
    iid = int.from_bytes(bytes(octets[:3] + [0xFF, 0xFE] + octets[3:]), "big")
    return str(ipaddress.IPv6Address((0xFE80 << 112) | iid))


def sources6(port: PortView) -> list[tuple[str, Address]]:
    """(MAC, IPv6 address or masked network) pairs the port may send from, sorted: its
    fixed IPv6 addresses and its link-local address with its MAC, and its IPv6 allowed
    address pairs (CIDRs included) with the link-local address of each pair's MAC, as
    Neutron's firewalls allow."""
    found = {(port.mac, ip) for ip in ipv6_addresses(port)} | {(port.mac, link_local(port.mac))}
    for ip, mac in port.allowed_pairs:
        if not is_ipv4(ip):
            found.add((mac or port.mac, as_match(ip)))
            found.add((mac or port.mac, link_local(mac or port.mac)))
    return sorted(found, key=str)


@functools.lru_cache(maxsize=65536)
def as_match(cidr: str) -> Address:
    """An IPv4 or IPv6 address or CIDR as a match value: exact for a host (/32, /128),
    else (network, mask)."""
    net = ipaddress.ip_network(cidr, strict=False)
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return (str(net.network_address), str(net.netmask))


def sources(port: PortView) -> list[tuple[str, Address]]:
    """(MAC, IPv4 address or masked network) pairs the port may send from, sorted:
    its fixed IPs with its MAC, and its IPv4 allowed address pairs (CIDRs included)."""
    found = {(port.mac, ip) for ip in ipv4_addresses(port)}
    found |= {(mac or port.mac, as_match(ip)) for ip, mac in port.allowed_pairs if is_ipv4(ip)}
    return sorted(found, key=str)


def default_flow(stage: str, goto: str | None = None) -> Flow:
    """The stage's lowest-priority flow: drop, or continue to ``goto``."""
    return Flow.make(stage, 0, goto=goto, cookie=f"pipeline:{stage}",
                     note="drop" if goto is None else "not handled here")
