"""IPv6 frames the agent builds and reads (router advertisements, DHCPv6 replies,
neighbour solicitations of external next hops): Ethernet + IPv6 header + ICMPv6 or UDP,
with the checksum over the pseudo-header (RFC 8200 8.1). Pure, no I/O; never raises on
what a VM sends (``parse`` returns None)."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

ETH_IP6 = 0x86DD
ETH_VLAN = 0x8100
NEIGHBOR_SOLICITATION, NEIGHBOR_ADVERTISEMENT = 135, 136
NA_ROUTER, NA_SOLICITED, NA_OVERRIDE = 0x80, 0x40, 0x20
OPT_SOURCE_LL, OPT_TARGET_LL = 1, 2
PROTO_UDP, PROTO_ICMP6 = 17, 58
ALL_NODES = "ff02::1"
_ETH = struct.Struct("!6s6sH")
_IP6 = struct.Struct("!IHBB16s16s")


def mac_bytes(mac: str) -> bytes:
    return bytes(int(b, 16) for b in mac.split(":"))


def mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def multicast_mac(ip: str) -> str:
    """The Ethernet address of an IPv6 multicast group (33:33 + its last 32 bits)."""
    return "33:33:" + mac_text(ipaddress.IPv6Address(ip).packed[-4:])


def solicited_node(ip: str) -> str:
    """The solicited-node multicast address of an address (ff02::1:ffXX:XXXX)."""
    low = int(ipaddress.IPv6Address(ip)) & 0xFFFFFF
    return str(ipaddress.IPv6Address(int(ipaddress.IPv6Address("ff02::1:ff00:0")) | low))


def checksum(src: str, dst: str, proto: int, payload: bytes) -> int:
    """The Internet checksum of an upper-layer payload over the IPv6 pseudo-header."""
    from plexus.agent.icmp import internet_checksum
    return internet_checksum(ipaddress.IPv6Address(src).packed
                             + ipaddress.IPv6Address(dst).packed
                             + struct.pack("!I3xB", len(payload), proto) + payload)


def frame(src_mac: str, dst_mac: str, src: str, dst: str, proto: int, payload: bytes,
          hop_limit: int = 255) -> bytes:
    """An Ethernet frame carrying ``payload`` (its checksum field already filled in)."""
    return (_ETH.pack(mac_bytes(dst_mac), mac_bytes(src_mac), ETH_IP6)
            + _IP6.pack(6 << 28, len(payload), proto, hop_limit,
                        ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed)
            + payload)


def icmp6(src_mac: str, dst_mac: str, src: str, dst: str, kind: int, code: int,
          body: bytes, hop_limit: int = 255) -> bytes:
    """An ICMPv6 message (hop limit 255 by default, as neighbour discovery requires)."""
    message = struct.pack("!BBH", kind, code, 0) + body
    csum = checksum(src, dst, PROTO_ICMP6, message)
    message = message[:2] + struct.pack("!H", csum) + message[4:]
    return frame(src_mac, dst_mac, src, dst, PROTO_ICMP6, message, hop_limit)


def udp6(src_mac: str, dst_mac: str, src: str, dst: str, sport: int, dport: int,
         body: bytes) -> bytes:
    """A UDP datagram over IPv6 (the checksum is mandatory there)."""
    datagram = struct.pack("!HHHH", sport, dport, 8 + len(body), 0) + body
    csum = checksum(src, dst, PROTO_UDP, datagram) or 0xFFFF
    datagram = datagram[:6] + struct.pack("!H", csum) + datagram[8:]
    return frame(src_mac, dst_mac, src, dst, PROTO_UDP, datagram, hop_limit=64)


@dataclass(frozen=True)
class Packet:
    """What the agent reads of an IPv6 frame: addresses, hop limit, the next header and
    its payload (after the IPv6 header; extension headers are not walked)."""

    src_mac: str
    dst_mac: str
    src: str
    dst: str
    hop_limit: int
    proto: int
    payload: bytes


def parse(data: bytes) -> Packet | None:
    """An untagged IPv6 frame, or None (short, not IPv6, truncated)."""
    try:
        if len(data) < _ETH.size + _IP6.size:
            return None
        dst_mac, src_mac, ethertype = _ETH.unpack_from(data)
        start = _ETH.size
        if ethertype == ETH_VLAN:              # one 802.1Q tag (an external VLAN network)
            (ethertype,) = struct.unpack_from("!H", data, start + 2)
            start += 4
        if ethertype != ETH_IP6:
            return None
        first, length, proto, hops, src, dst = _IP6.unpack_from(data, start)
        if first >> 28 != 6:
            return None
        payload = data[start + _IP6.size:]
        if len(payload) < length:
            return None
        return Packet(mac_text(src_mac), mac_text(dst_mac),
                      str(ipaddress.IPv6Address(src)), str(ipaddress.IPv6Address(dst)),
                      hops, proto, payload[:length])
    except (struct.error, ValueError):
        return None


def valid_checksum(pkt: Packet) -> bool:
    """Whether an ICMPv6 or UDP payload's checksum is right."""
    return checksum(pkt.src, pkt.dst, pkt.proto, pkt.payload) == 0


def tagged(frame_: bytes, vlan: int | None) -> bytes:
    """The frame with an 802.1Q tag of ``vlan`` after its MAC addresses (None: as is)."""
    if vlan is None:
        return frame_
    return frame_[:12] + struct.pack("!HH", ETH_VLAN, vlan & 0xFFF) + frame_[12:]


def neighbor_solicit(src_mac: str, target: str, vlan: int | None = None,
                     src: str | None = None) -> bytes:
    """A neighbour solicitation for ``target`` from the link-local address of ``src_mac``
    (with its source link-layer address option), to the target's solicited-node group:
    the owner answers unicast to ``src_mac`` (the agent's resolution of an external next
    hop, as ``l3.arp_probe`` for IPv4). ``src``: another source address."""
    group = solicited_node(target)
    body = struct.pack("!I", 0) + ipaddress.IPv6Address(target).packed
    body += struct.pack("!BB", OPT_SOURCE_LL, 1) + mac_bytes(src_mac)
    return tagged(icmp6(src_mac, multicast_mac(group), src or link_local_of(src_mac), group,
                        NEIGHBOR_SOLICITATION, 0, body), vlan)


def neighbor_advert(mac: str, target: str, dst_mac: str, dst: str, solicited: bool,
                    router: bool = True, vlan: int | None = None) -> bytes:
    """A neighbour advertisement of ``target`` at ``mac`` (override, with the target
    link-layer address option)."""
    flags = NA_OVERRIDE | (NA_SOLICITED if solicited else 0) | (NA_ROUTER if router else 0)
    body = struct.pack("!B3x", flags) + ipaddress.IPv6Address(target).packed
    body += struct.pack("!BB", OPT_TARGET_LL, 1) + mac_bytes(mac)
    return tagged(icmp6(mac, dst_mac, target, dst, NEIGHBOR_ADVERTISEMENT, 0, body), vlan)


def nd_message(data: bytes, kind: int) -> tuple[Packet, str, str | None] | None:
    """(packet, target, link-layer address option) of a valid neighbour solicitation
    (``kind`` 135) or advertisement (136), else None (RFC 4861 7.1: hop limit 255,
    code 0, right checksum, target not multicast)."""
    pkt = parse(data)
    if (pkt is None or pkt.proto != PROTO_ICMP6 or pkt.hop_limit != 255
            or len(pkt.payload) < 24 or pkt.payload[0] != kind or pkt.payload[1] != 0
            or not valid_checksum(pkt)):
        return None
    target = ipaddress.IPv6Address(pkt.payload[8:24])
    if target.is_multicast:
        return None
    lladdr, i, body = None, 24, pkt.payload
    want = OPT_SOURCE_LL if kind == NEIGHBOR_SOLICITATION else OPT_TARGET_LL
    while i + 2 <= len(body) and body[i + 1]:
        size = body[i + 1] * 8
        if body[i] == want and size >= 8 and i + 8 <= len(body):
            lladdr = mac_text(body[i + 2:i + 8])
        i += size
    return pkt, str(target), lladdr


def link_local_of(mac: str) -> str:
    """The EUI-64 link-local address of a MAC."""
    octets = mac_bytes(mac)
    iid = bytes([octets[0] ^ 0x02]) + octets[1:3] + b"\xff\xfe" + octets[3:]
    return str(ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + iid))
