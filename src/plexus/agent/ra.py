"""Router advertisements, sent by the agent for each router port with an IPv6 subnet on
a network with ports here (``plexus.pipeline.stages.dhcp.ra_ports``) — what Neutron's
L3 agent has radvd send (``neutron/agent/linux/ra.py``), without a namespace:

- from the router port's link-local address (EUI-64 of its MAC, ``router.link_local``)
  and its MAC (source link-layer address option), to ff02::1, hop limit 255;
- router lifetime 3 × ``MAX_INTERVAL`` (radvd's default): the VMs take the router as
  their default router; reachable time and retransmit timer unspecified;
- the MTU option with the network's MTU (when it is at least 1280);
- the M flag when a subnet of the port has ``ipv6_ra_mode`` dhcpv6-stateful, the O flag
  when one has dhcpv6-stateless;
- a prefix information option per subnet of the port with an ``ipv6_ra_mode``: on-link,
  autonomous for slaac and dhcpv6-stateless, not autonomous for dhcpv6-stateful
  (radvd's defaults: valid 86400 s, preferred 14400 s); a subnet without an RA mode is
  advertised by no prefix (its hosts are configured otherwise);
- RDNSS (RFC 8106) with the DNS servers of the port's slaac subnets (at most 3), as
  Neutron's template.

A router solicitation punted by the ``dhcp`` stage is answered at once (to ff02::1, out
of the soliciting port's VIF only); unsolicited advertisements go out of every local
VIF of the network every ``Timing.ra_interval`` seconds, and out of a VIF at once when
what it should hear changes (it was plugged, a router interface came or went, a
prefix, flag or the MTU changed); a router port that stops advertising on a network
(its interface removed) sends its last one with router lifetime 0 (``withdrawn``). Pure functions of the view;
cost: per solicitation the router ports of one network, per period the local ports of
the networks with advertising routers."""

from __future__ import annotations

import ipaddress
import struct

from plexus.agent import ipv6
from plexus.pipeline.stages.common import bound_ports
from plexus.pipeline.stages.dhcp import ROUTER_SOLICITATION, ra_ports
from plexus.pipeline.stages.router import link_local
from plexus.pipeline.view import PortView, View

ROUTER_ADVERTISEMENT = 134
MIN_INTERVAL, MAX_INTERVAL = 30, 100        # Neutron's min/max_rtr_adv_interval
ROUTER_LIFETIME = 3 * MAX_INTERVAL
VALID_LIFETIME, PREFERRED_LIFETIME = 86400, 14400
RDNSS_LIFETIME = 2 * MAX_INTERVAL
MAX_RDNSS = 3
IPV6_MIN_MTU = 1280
FLAG_MANAGED, FLAG_OTHER = 0x80, 0x40
PREFIX_ON_LINK, PREFIX_AUTONOMOUS = 0x80, 0x40
OPT_SOURCE_LL, OPT_PREFIX, OPT_MTU, OPT_RDNSS = 1, 3, 5, 25
AUTO_MODES = ("slaac", "dhcpv6-stateless")


def advertisement(view: View, router_port: PortView, dst_mac: str = "33:33:00:00:00:01",
                  dst: str = ipv6.ALL_NODES) -> bytes:
    """The router advertisement of a router port (module doc)."""
    subnets = sorted((view.subnets[sid] for sid, _ in router_port.ips
                      if sid in view.subnets and view.subnets[sid].ip_version == 6),
                     key=lambda s: s.cidr)
    modes = {s.ipv6_ra_mode for s in subnets}
    flags = (FLAG_MANAGED if "dhcpv6-stateful" in modes else 0) | (
        FLAG_OTHER if "dhcpv6-stateless" in modes else 0)
    body = struct.pack("!BBHII", 64, flags, ROUTER_LIFETIME, 0, 0)
    mac = router_port.mac
    body += struct.pack("!BB", OPT_SOURCE_LL, 1) + ipv6.mac_bytes(mac)
    net = view.networks.get(router_port.network_id)
    if net is not None and IPV6_MIN_MTU <= net.mtu <= 0xFFFFFFFF:
        body += struct.pack("!BBHI", OPT_MTU, 1, 0, net.mtu)
    for subnet in subnets:
        if subnet.ipv6_ra_mode is None:
            continue
        prefix = ipaddress.IPv6Network(subnet.cidr, strict=False)
        pflags = PREFIX_ON_LINK | (PREFIX_AUTONOMOUS if subnet.ipv6_ra_mode in AUTO_MODES
                                   else 0)
        body += struct.pack("!BBBBIII", OPT_PREFIX, 4, prefix.prefixlen, pflags,
                            VALID_LIFETIME, PREFERRED_LIFETIME, 0)
        body += prefix.network_address.packed
    dns = [d for s in subnets if s.ipv6_ra_mode == "slaac" for d in s.dns_nameservers
           if ":" in d][:MAX_RDNSS]
    if dns:
        body += struct.pack("!BBHI", OPT_RDNSS, 1 + 2 * len(dns), 0, RDNSS_LIFETIME)
        body += b"".join(ipaddress.IPv6Address(d).packed for d in dns)
    return ipv6.icmp6(mac, dst_mac, link_local(mac), dst, ROUTER_ADVERTISEMENT, 0, body)


def answer(data: bytes, port: PortView, view: View) -> list[bytes]:
    """The advertisements answering a router solicitation from ``port``'s VIF (one per
    advertising router port of its network), or none when the frame is not a valid
    solicitation (RFC 4861 6.1.1: hop limit 255, ICMPv6 code 0, right checksum)."""
    pkt = ipv6.parse(data)
    if (pkt is None or pkt.proto != ipv6.PROTO_ICMP6 or pkt.hop_limit != 255
            or len(pkt.payload) < 8 or pkt.payload[0] != ROUTER_SOLICITATION
            or pkt.payload[1] != 0 or not ipv6.valid_checksum(pkt)):
        return []
    return [advertisement(view, rp) for rp in ra_ports(view, port.network_id)]


def neighbor_answer(data: bytes, port: PortView, view: View) -> bytes | None:
    """The neighbour advertisement answering a solicitation from ``port``'s VIF for the
    link-local address of an advertising router port of its network (router, solicited
    and override flags; to all nodes for duplicate address detection), or None."""
    found = ipv6.nd_message(data, ipv6.NEIGHBOR_SOLICITATION)
    if found is None:
        return None
    pkt, target, _ = found
    for rp in ra_ports(view, port.network_id):
        if link_local(rp.mac) == target:
            dad = pkt.src == "::"
            return ipv6.neighbor_advert(rp.mac, target,
                                        "33:33:00:00:00:01" if dad else pkt.src_mac,
                                        ipv6.ALL_NODES if dad else pkt.src, solicited=not dad)
    return None


def unsolicited(view: View) -> dict[int, tuple[bytes, ...]]:
    """VIF ofport → the frames of its periodic advertisements: every advertising router
    port's of its network, for each plugged local port (the router ports themselves are
    never local VIFs; a port on a network without one is left out). Each network's
    frames are built once."""
    out: dict[int, tuple[bytes, ...]] = {}
    frames: dict[str, tuple[bytes, ...]] = {}
    for port in bound_ports(view):
        ofport = view.vif_ofports.get(port.id)
        if ofport is None:
            continue
        if port.network_id not in frames:
            frames[port.network_id] = tuple(advertisement(view, rp)
                                            for rp in ra_ports(view, port.network_id))
        if frames[port.network_id]:
            out[ofport] = frames[port.network_id]
    return out


def withdrawn(frame: bytes) -> bytes | None:
    """The advertisement ``frame`` with router lifetime 0: the router is no default
    router any more (sent when a router port stops advertising on a network, as radvd
    does when it stops; the hosts drop their default route through it at once)."""
    pkt = ipv6.parse(frame)
    if pkt is None or len(pkt.payload) < 16 or pkt.payload[0] != ROUTER_ADVERTISEMENT:
        return None
    body = pkt.payload[4:6] + b"\0\0" + pkt.payload[8:]
    return ipv6.icmp6(pkt.src_mac, pkt.dst_mac, pkt.src, pkt.dst, ROUTER_ADVERTISEMENT, 0,
                      body)
