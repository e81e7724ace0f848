"""The agent's DHCPv4 responder: a pure function from a client frame punted by the
``dhcp`` stage (UDP 68 → 67 from a local VIF) to the reply frame to inject back out of
that VIF, built and parsed with os-ken's packet library. No state, no I/O.

Decisions a caller relies on:

- **Authoritative, one address per port.** The agent is the only DHCP server a port's
  DHCP packets can reach (the stage punts them all, from any source address — see
  ``port_security``), so a REQUEST is judged only by the address it names, per RFC 2131
  4.3.2: SELECTING (server id 54 and requested IP 50) and INIT-REBOOT (50, no 54) by
  option 50; RENEWING (unicast to the server) and REBINDING (broadcast) by ``ciaddr``.
  The port's address → ACK, anything else (a fixed IP that changed, another network)
  → NAK, so the client restarts at once instead of keeping an address port security
  now blocks. A server identifier that is not ours is not a reason to stay silent.
  The leased address is the port's first IPv4 fixed IP on a known, DHCP-enabled subnet.
- **Server identity** (option 54, ``siaddr``, IP source): the subnet's ``gateway_ip``;
  without one, the lowest host address of the subnet used by no port of the network
  (it may change when a port later takes it; the client then just sees a new id).
  Both live in ``plexus.pipeline.stages.dhcp``, which the ARP responder shares.
- **Server MAC** (Ethernet source): ``server_mac``, by default ``SERVER_MAC``, a fixed
  locally administered address outside Neutron's ``fa:16:3e`` range. Where no port holds
  the server identifier (a subnet without a router interface, on an overlay network) the
  ARP responder answers for it with ``SERVER_MAC``, so unicast renewals and RELEASEs
  reach the agent; where a router interface holds it, they go to the router's MAC and
  the ``dhcp`` stage punts them all the same.
- **Addressing** (RFC 2131 4.1): Ethernet to the port's MAC; IP to 255.255.255.255 for
  NAKs and when the broadcast flag is set or ``ciaddr`` is 0 (every client accepts a
  broadcast before it has an address), else to ``ciaddr``; UDP 67 → 68; IP and UDP
  checksums filled in by os-ken. Replies to renewals (unicast to the server id from
  ``ciaddr``) are unicast back to ``ciaddr``.
- **Other messages**: INFORM → ACK with ``yiaddr`` 0 and no lease options, only when
  ``ciaddr`` is the port's address. RELEASE and DECLINE get no reply (RFC 2131) and
  change nothing — the address is fixed by the port, there is nothing to free or to
  pick instead — but ``handle`` reports them (``Outcome``) and ``Responder`` logs them,
  once per port and address, and counts them: a DECLINE means the client found another
  host answering ARP for the port's address, an address conflict an operator must look
  at. Anything else → None.
- **Never raises**: garbage, truncated, relayed (``giaddr`` set), foreign-MAC or
  unservable requests return None, the reason logged at debug level; view data that
  cannot be encoded (e.g. a bad cidr) returns None with a warning.
- **Not handled**: option overload (52) and the client's maximum message size (57);
  replies are not trimmed, so very long host route lists make large replies.
"""

from __future__ import annotations

import ipaddress
import logging
import struct
from collections import Counter
from dataclasses import dataclass

from os_ken.lib.packet import dhcp, ethernet, ipv4, packet, udp

from plexus.model import dns
from plexus.pipeline.stages.dhcp import SERVER_MAC, server_ip
from plexus.pipeline.stages.metadata import METADATA_IP
from plexus.pipeline.view import PortView, SubnetView, View

log = logging.getLogger(__name__)

LEASE_TIME = 86400                      # seconds (option 51)
RENEWAL_TIME = LEASE_TIME // 2          # T1 (option 58)
REBINDING_TIME = LEASE_TIME * 7 // 8    # T2 (option 59)

DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)
MAGIC_COOKIE = b"\x63\x82\x53\x63"
BROADCAST_FLAG = 0x8000
CLIENT_PORT, SERVER_PORT = 68, 67
OPT_MASK, OPT_ROUTER, OPT_DNS, OPT_HOSTNAME, OPT_DOMAIN = 1, 3, 6, 12, 15
OPT_MTU, OPT_BROADCAST = 26, 28
OPT_REQUESTED_IP, OPT_LEASE, OPT_MSG_TYPE, OPT_SERVER_ID = 50, 51, 53, 54
OPT_T1, OPT_T2, OPT_CLASSLESS_ROUTES = 58, 59, 121
METADATA_ROUTE = ipaddress.IPv4Network(f"{METADATA_IP}/32")
_HEADER_LEN = struct.calcsize(dhcp.dhcp._DHCP_PACK_STR)     # 236: fixed BOOTP header
_ANY = ipaddress.IPv4Address("0.0.0.0")


NAMES = {DISCOVER: "DHCPDISCOVER", OFFER: "DHCPOFFER", REQUEST: "DHCPREQUEST",
         DECLINE: "DHCPDECLINE", ACK: "DHCPACK", NAK: "DHCPNAK", RELEASE: "DHCPRELEASE",
         INFORM: "DHCPINFORM"}


@dataclass(frozen=True)
class Outcome:
    """What a client frame was and what it gets: ``kind`` its message type (None when
    not well-formed or not the port's), ``reply`` the frame to send back (or None) and
    ``reply_kind`` its type, ``address`` the address the client named (requested IP or
    ``ciaddr``; for a DECLINE the address found in use), ``state`` the RFC 2131 client
    state of a REQUEST (selecting, init-reboot, renewing, rebinding)."""

    kind: int | None = None
    reply: bytes | None = None
    reply_kind: int | None = None
    address: str | None = None
    state: str | None = None


NOTHING = Outcome()


def respond(frame: bytes, port: PortView, view: View,
            server_mac: str | None = None) -> bytes | None:
    """The reply frame to a DHCPv4 client frame from ``port``'s VIF, or None."""
    return handle(frame, port, view, server_mac).reply


def handle(frame: bytes, port: PortView, view: View,
           server_mac: str | None = None) -> Outcome:
    """What a DHCPv4 client frame from ``port``'s VIF is, and the reply it gets."""
    return guarded("dhcp", port, lambda: _parse(bytes(frame)),
                   lambda request: _answer(request, port, view, server_mac or SERVER_MAC),
                   NOTHING)


def guarded(name: str, port: PortView, parse, answer, nothing):
    """``answer(parse())``, never raising on what a VM sends: ``nothing`` when the frame
    does not parse (None or an exception; debug log) or no reply can be built from the
    view (e.g. a bad cidr; a warning)."""
    try:
        request = parse()
    except Exception:       # never raise on what a VM sends
        request = None
    if request is None:
        log.debug("%s: port %s: not a well-formed request for it", name, port.id)
        return nothing
    try:
        return answer(request)
    except Exception:       # odd view data: log it, answer nothing
        log.warning("%s: port %s: cannot build a reply", name, port.id, exc_info=True)
        return nothing


class Responder:
    """``respond`` for the agent, which also counts every outcome by name (``counts``:
    DHCPACK, DHCPNAK, DHCPRELEASE, DHCPDECLINE…) and logs, once per port, message and
    address, each NAK (info), RELEASE (info) and DECLINE (warning: an address conflict).
    What it remembers for "once" is bounded (``REMEMBER`` keys, then it starts afresh),
    so a VM naming ever new addresses cannot grow it."""

    REMEMBER = 4096

    def __init__(self, server_mac: str | None = None):
        self.server_mac = server_mac
        self.counts: Counter[str] = Counter()
        self._said: set[tuple] = set()

    def __call__(self, frame: bytes, port: PortView, view: View) -> bytes | None:
        out = handle(frame, port, view, self.server_mac)
        if out.kind is None:
            return None
        name = NAMES.get(out.reply_kind if out.reply is not None else out.kind)
        if name:
            self.counts[name] += 1
        if out.reply_kind == NAK:
            held = lease_of(port, view)
            self._once(logging.INFO, ("nak", port.id, out.address),
                       "DHCPNAK to port %s for %s (%s): the port holds %s", port.id,
                       out.address, out.state, held[0] if held else "no DHCP address")
        elif out.kind == RELEASE:
            self._once(logging.INFO, ("release", port.id, out.address),
                       "DHCPRELEASE of %s from port %s: nothing to free, the address "
                       "stays the port's fixed IP", out.address, port.id)
        elif out.kind == DECLINE:
            self._once(logging.WARNING, ("decline", port.id, out.address),
                       "DHCPDECLINE of %s from port %s: address conflict, another host "
                       "answers ARP for the port's address", out.address, port.id)
        return out.reply

    def _once(self, level: int, key: tuple, msg: str, *args) -> None:
        if key not in self._said:
            if len(self._said) >= self.REMEMBER:
                self._said.clear()
            self._said.add(key)
            log.log(level, msg, *args)


def lease_of(port: PortView, view: View) -> tuple[str, SubnetView] | None:
    """The address the port leases and its subnet, or None if DHCP does not serve it."""
    for subnet_id, ip in port.ips:
        subnet = view.subnets.get(subnet_id)
        if (subnet is not None and subnet.enable_dhcp and subnet.ip_version == 4
                and _v4(ip) is not None):
            return ip, subnet
    return None


def classless_routes(routes: list[tuple[str, str]]) -> bytes:
    """RFC 3442 encoding of (destination cidr, router) pairs, in the order given."""
    out = bytearray()
    for dest, router in routes:
        net = ipaddress.IPv4Network(dest, strict=False)
        width = net.prefixlen
        out.append(width)
        out += net.network_address.packed[:(width + 7) // 8]
        out += ipaddress.IPv4Address(router).packed
    return bytes(out)


def _answer(request, port: PortView, view: View, server_mac: str) -> Outcome:
    """What a parsed request is and the reply it gets."""
    eth, ip_hdr, msg, opts = request
    mac = port.mac.lower()
    if eth.src.lower() != mac or str(msg.chaddr).lower() != mac:
        log.debug("dhcp: port %s: frame from %s / chaddr %s is not the port's MAC",
                  port.id, eth.src, msg.chaddr)
        return NOTHING
    if len(opts[OPT_MSG_TYPE]) != 1:
        log.debug("dhcp: port %s: a bad message type", port.id)
        return NOTHING
    kind = opts[OPT_MSG_TYPE][0]
    ciaddr = ipaddress.IPv4Address(msg.ciaddr)
    wanted = opts.get(OPT_REQUESTED_IP)
    if wanted is not None and len(wanted) != 4:
        return NOTHING
    wanted_ip = str(ipaddress.IPv4Address(wanted)) if wanted is not None else None
    if kind == RELEASE:             # no reply (RFC 2131 4.4.6); reported
        return Outcome(kind, address=str(ciaddr))
    if kind == DECLINE:             # no reply; the address found in use is option 50
        return Outcome(kind, address=wanted_ip or str(ciaddr))
    lease = lease_of(port, view)
    if lease is None:
        log.debug("dhcp: port %s has no IPv4 address on a DHCP-enabled subnet", port.id)
        return Outcome(kind)
    address, subnet = lease
    server = server_ip(subnet, view, port.addresses())
    if server is None:
        log.debug("dhcp: port %s: no server address", port.id)
        return Outcome(kind)

    def reply(what: int, named: str | None, state: str | None = None,
              leased: str | None = address) -> Outcome:
        frame = _reply(what, msg, port, view, subnet, leased, server, server_mac)
        return Outcome(kind, frame, what, named, state)

    if kind == DISCOVER:
        return reply(OFFER, wanted_ip)
    if kind == REQUEST:             # RFC 2131 4.3.2: which state the client is in
        if wanted_ip is not None:
            state = "selecting" if OPT_SERVER_ID in opts else "init-reboot"
            named = wanted_ip
        elif ciaddr != _ANY:
            state = "rebinding" if ip_hdr.dst == "255.255.255.255" else "renewing"
            named = str(ciaddr)
        else:
            return Outcome(kind)    # names no address at all
        return reply(ACK if named == address else NAK, named, state)
    if kind == INFORM and str(ciaddr) == address:
        return reply(ACK, str(ciaddr), leased=None)
    log.debug("dhcp: port %s: message type %d not answered", port.id, kind)
    return Outcome(kind)


def _parse(frame: bytes):
    """(ethernet, ipv4, dhcp header, {option: value}) of a BOOTREQUEST to port 67, or None."""
    eth, _, rest = ethernet.ethernet.parser(frame)
    if eth.ethertype != 0x0800 or len(rest) < ipv4.ipv4._MIN_LEN:
        return None
    ip_hdr, _, rest = ipv4.ipv4.parser(rest)
    if (ip_hdr.version != 4 or ip_hdr.header_length < 5 or ip_hdr.proto != 17
            or ip_hdr.offset or ip_hdr.flags & 1
            or ip_hdr.total_length != ip_hdr.header_length * 4 + len(rest)):
        return None          # truncated (or padded oddly), fragmented, or not UDP
    if len(rest) < udp.udp._MIN_LEN:
        return None
    udp_hdr, _, payload = udp.udp.parser(rest)
    if (udp_hdr.src_port != CLIENT_PORT or udp_hdr.dst_port != SERVER_PORT
            or udp_hdr.total_length != len(rest)):
        return None
    if len(payload) < _HEADER_LEN + len(MAGIC_COOKIE):
        return None
    # sname/file are not used (no option overload) and need not be ASCII: blank them
    msg, _, _ = dhcp.dhcp.parser(payload[:44] + bytes(_HEADER_LEN - 44))
    if (msg.op != dhcp.DHCP_BOOT_REQUEST or msg.htype != 1 or msg.hlen != 6
            or msg.giaddr != "0.0.0.0"
            or payload[_HEADER_LEN:_HEADER_LEN + 4] != MAGIC_COOKIE):
        return None
    opts = _options(payload[_HEADER_LEN + 4:])
    if opts is None or OPT_MSG_TYPE not in opts:
        return None
    return eth, ip_hdr, msg, opts


def _options(buf: bytes) -> dict[int, bytes] | None:
    """Options by tag (repeated tags concatenated, RFC 3396); None if malformed.

    Walked by hand because os-ken's parser stops at the first PAD option."""
    opts: dict[int, bytes] = {}
    i = 0
    while i < len(buf):
        tag = buf[i]
        if tag == 0:
            i += 1
            continue
        if tag == 255:
            return opts
        if i + 2 > len(buf) or i + 2 + buf[i + 1] > len(buf):
            return None
        opts[tag] = opts.get(tag, b"") + buf[i + 2:i + 2 + buf[i + 1]]
        i += 2 + buf[i + 1]
    return None                 # no END option: truncated


def _reply(kind: int, msg: dhcp.dhcp, port: PortView, view: View, subnet: SubnetView,
           address: str | None, server: str, server_mac: str) -> bytes:
    """Serialize the OFFER/ACK/NAK for ``msg``; ``address`` None for an INFORM's ACK."""
    net = ipaddress.IPv4Network(subnet.cidr, strict=False)
    opts: list[tuple[int, bytes]] = [(OPT_MSG_TYPE, bytes([kind])),
                                     (OPT_SERVER_ID, _ip(server))]
    if kind != NAK:
        if address is not None:
            opts += [(OPT_LEASE, struct.pack("!I", LEASE_TIME)),
                     (OPT_T1, struct.pack("!I", RENEWAL_TIME)),
                     (OPT_T2, struct.pack("!I", REBINDING_TIME))]
        opts += _parameters(port, view, subnet, net, address, server)
    ciaddr = msg.ciaddr if kind == ACK else "0.0.0.0"
    yiaddr = address if kind in (OFFER, ACK) and address is not None else "0.0.0.0"
    reply = dhcp.dhcp(op=dhcp.DHCP_BOOT_REPLY, chaddr=port.mac.lower(), xid=msg.xid,
                      flags=msg.flags, ciaddr=ciaddr, yiaddr=yiaddr,
                      siaddr=server if kind != NAK else "0.0.0.0",
                      options=dhcp.options([dhcp.option(tag, value) for tag, value
                                            in _split(opts)]))
    broadcast = kind == NAK or msg.flags & BROADCAST_FLAG or ciaddr == "0.0.0.0"
    dst = "255.255.255.255" if broadcast else ciaddr
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst=port.mac.lower(), src=server_mac.lower(),
                                       ethertype=0x0800))
    pkt.add_protocol(ipv4.ipv4(src=server, dst=dst, proto=17, ttl=64))
    pkt.add_protocol(udp.udp(src_port=SERVER_PORT, dst_port=CLIENT_PORT))
    pkt.add_protocol(reply)
    pkt.serialize()
    return bytes(pkt.data)


def _parameters(port: PortView, view: View, subnet: SubnetView,
                net: ipaddress.IPv4Network, address: str | None,
                server: str) -> list[tuple[int, bytes]]:
    """Configuration options: mask, broadcast, router, DNS, MTU, routes, host name and
    domain name, then the port's ``extra_dhcp_opts`` (IPv4), each replacing the option of
    its number. The host name (12) is the leased address' hostname of the port's
    ``dns_assignment`` (its ``dns_name``, or ``host-<address>``) without the cloud's
    domain, the domain name (15) the cloud's ``dns_domain`` (``view.dns_domain``), as
    Neutron's dnsmasq (``--domain``) sends them. Where
    the chassis serves metadata, option 121 routes 169.254.169.254/32 via the server
    address (the gateway, or on a subnet without one the address the ARP responder
    answers for): the metadata stage takes the VM's TCP to it whatever the next hop."""
    opts = [(OPT_MASK, net.netmask.packed), (OPT_BROADCAST, net.broadcast_address.packed)]
    gateway = subnet.gateway_ip if subnet.gateway_ip and _v4(subnet.gateway_ip) else None
    if gateway:
        opts.append((OPT_ROUTER, _ip(gateway)))
    servers = [_ip(s) for s in subnet.dns_nameservers if _v4(s) is not None]
    if servers:
        opts.append((OPT_DNS, b"".join(servers)))
    network = view.networks.get(port.network_id)
    if network is not None and 68 <= network.mtu <= 0xFFFF:
        opts.append((OPT_MTU, struct.pack("!H", network.mtu)))
    routes = [(d, h) for d, h in subnet.host_routes
              if _v4_net(d) is not None and _v4(h) is not None]
    if view.metadata_ofport and not any(_v4_net(d) == METADATA_ROUTE for d, _ in routes):
        routes.append((str(METADATA_ROUTE), server))
    if routes:
        if gateway and not any(_v4_net(d).prefixlen == 0 for d, _ in routes):
            routes.append(("0.0.0.0/0", gateway))   # clients ignore option 3 beside 121
        opts.append((OPT_CLASSLESS_ROUTES, classless_routes(routes)))
    host, domain = dns.dhcp_names(port.dns_name, address or "", view.dns_domain)
    if address is not None:
        opts.append((OPT_HOSTNAME, host.encode()))
    if domain:
        opts.append((OPT_DOMAIN, domain.encode()))
    if port.dhcp_options:           # the port's extra_dhcp_opts replace or add options
        extra = dict(port.dhcp_options)
        opts = [(tag, extra.pop(tag) if tag in extra else value) for tag, value in opts]
        opts += sorted(extra.items())
    return opts


def _split(opts: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """Options longer than 255 bytes as consecutive instances of the tag (RFC 3396)."""
    return [(tag, value[i:i + 255]) for tag, value in opts
            for i in range(0, max(len(value), 1), 255)]


def _ip(text: str) -> bytes:
    return ipaddress.IPv4Address(text).packed


def _v4(text: str) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        return None


def _v4_net(text: str) -> ipaddress.IPv4Network | None:
    try:
        return ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        return None
