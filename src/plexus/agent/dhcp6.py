"""The agent's DHCPv6 responder (RFC 8415): a pure function from a client message punted
by the ``dhcp`` stage (UDP 546 → 547 from a local VIF) to the reply frame to inject back
out of that VIF. No state, no I/O; never raises on what a VM sends.

Per the port's subnets' ``ipv6_address_mode`` (as Neutron's dnsmasq serves them):

- **dhcpv6-stateful**: the port's fixed IP on such a subnet is its one address (IA_NA):
  SOLICIT → ADVERTISE (REPLY with Rapid Commit when the client asks for it), REQUEST,
  RENEW and REBIND → REPLY with that address (T1 ``RENEWAL_TIME``, T2
  ``REBINDING_TIME``, lifetimes ``LEASE_TIME``); an address the client's IA names that
  is not the port's is given back with lifetimes 0. CONFIRM → Success when every
  address named is on the port's subnets, else NotOnLink. RELEASE and DECLINE → REPLY
  Success (the address is the port's, nothing to free).
- **dhcpv6-stateless** (and stateful): INFORMATION-REQUEST → REPLY with the options
  only. A SOLICIT from a port with no stateful address → ADVERTISE with status
  NoAddrsAvail.
- Options in every reply: Server ID (a DUID-LL of ``SERVER_MAC``), the client's Client
  ID, DNS recursive name servers (23: the IPv6 ``dns_nameservers`` of the port's DHCPv6
  subnets) and the domain search list (24: the cloud's ``dns_domain``, the server's
  ``network.dns_domain`` as the view carries it, ``openstacklocal`` by default; none
  when it is empty).
- A message naming another server (Server ID not ours) is not answered, nor one from a
  MAC that is not the port's, nor a relayed one.

Replies: from the link-local address of ``SERVER_MAC`` (UDP 547 → 546) to the
client's source address and MAC."""

from __future__ import annotations

import ipaddress
import logging
import struct
from collections import Counter
from dataclasses import dataclass

from plexus.agent import ipv6
from plexus.agent.dhcp import guarded
from plexus.pipeline.stages.dhcp import DHCP6_CLIENT, DHCP6_SERVER, SERVER_MAC
from plexus.pipeline.stages.router import link_local
from plexus.pipeline.view import PortView, SubnetView, View

log = logging.getLogger(__name__)

SOLICIT, ADVERTISE, REQUEST, CONFIRM, RENEW, REBIND, REPLY, RELEASE, DECLINE = range(1, 10)
INFORMATION_REQUEST = 11
NAMES = {SOLICIT: "SOLICIT", ADVERTISE: "ADVERTISE", REQUEST: "REQUEST", CONFIRM: "CONFIRM",
         RENEW: "RENEW", REBIND: "REBIND", REPLY: "REPLY", RELEASE: "RELEASE",
         DECLINE: "DECLINE", INFORMATION_REQUEST: "INFORMATION-REQUEST"}
OPT_CLIENTID, OPT_SERVERID, OPT_IA_NA, OPT_IAADDR = 1, 2, 3, 5
OPT_STATUS, OPT_RAPID_COMMIT, OPT_DNS, OPT_DOMAINS = 13, 14, 23, 24
STATUS_SUCCESS, STATUS_NO_ADDRS, STATUS_NOT_ON_LINK = 0, 2, 4
LEASE_TIME = 86400
RENEWAL_TIME = LEASE_TIME // 2
REBINDING_TIME = LEASE_TIME * 4 // 5


def server_duid(mac: str = SERVER_MAC) -> bytes:
    """DUID-LL (type 3) of the server MAC, Ethernet hardware type."""
    return struct.pack("!HH", 3, 1) + ipv6.mac_bytes(mac)


@dataclass(frozen=True)
class Outcome:
    """What a client message was (``kind``, None when not one for us) and its reply."""

    kind: int | None = None
    reply: bytes | None = None
    reply_kind: int | None = None


NOTHING = Outcome()


def respond(frame: bytes, port: PortView, view: View,
            domain: str | None = None) -> bytes | None:
    """The reply frame to a DHCPv6 client frame from ``port``'s VIF, or None."""
    return handle(frame, port, view, domain).reply


def handle(frame: bytes, port: PortView, view: View,
           domain: str | None = None) -> Outcome:
    """What a DHCPv6 client frame from ``port``'s VIF is, and the reply it gets; the
    domain search list is ``domain``, by default the cloud's (``view.dns_domain``)."""
    domain = view.dns_domain if domain is None else domain
    return guarded("dhcp6", port, lambda: _parse(bytes(frame), port),
                   lambda parsed: _answer(*parsed, port, view, domain), NOTHING)


class Responder:
    """``respond`` for the agent, counting replies by message name (``counts``)."""

    def __init__(self, domain: str | None = None):
        self.domain = domain
        self.counts: Counter[str] = Counter()

    def __call__(self, frame: bytes, port: PortView, view: View) -> bytes | None:
        out = handle(frame, port, view, self.domain)
        if out.kind is not None:
            self.counts[NAMES.get(out.kind, str(out.kind))] += 1
        return out.reply


def stateful(port: PortView, view: View) -> list[tuple[str, SubnetView]]:
    """The port's addresses on DHCP-enabled dhcpv6-stateful subnets, by address."""
    out = []
    for sid, ip in port.ips:
        subnet = view.subnets.get(sid)
        if (subnet is not None and subnet.ip_version == 6 and subnet.enable_dhcp
                and subnet.ipv6_address_mode == "dhcpv6-stateful"):
            out.append((ip, subnet))
    return sorted(out, key=lambda a: ipaddress.IPv6Address(a[0]))


def served(port: PortView, view: View) -> list[SubnetView]:
    """The port's subnets DHCPv6 serves (stateful or stateless), by cidr."""
    found = {}
    for sid, _ in port.ips:
        subnet = view.subnets.get(sid)
        if (subnet is not None and subnet.ip_version == 6 and subnet.enable_dhcp
                and subnet.ipv6_address_mode in ("dhcpv6-stateful", "dhcpv6-stateless")):
            found[sid] = subnet
    return sorted(found.values(), key=lambda s: s.cidr)


def _parse(frame: bytes, port: PortView):
    """(packet, message type, transaction id, {option: [values]}) or None."""
    pkt = ipv6.parse(frame)
    if pkt is None or pkt.proto != ipv6.PROTO_UDP or len(pkt.payload) < 12:
        return None
    if pkt.src_mac != port.mac.lower() or not ipv6.valid_checksum(pkt):
        return None
    sport, dport, length, _ = struct.unpack_from("!HHHH", pkt.payload)
    if sport != DHCP6_CLIENT or dport != DHCP6_SERVER or length != len(pkt.payload):
        return None
    body = pkt.payload[8:]
    kind, xid = body[0], body[1:4]
    if kind not in NAMES or kind in (ADVERTISE, REPLY):
        return None
    opts = options(body[4:])
    if opts is None:
        return None
    return pkt, kind, xid, opts


def options(buf: bytes) -> dict[int, list[bytes]] | None:
    """Options by code (each occurrence kept), or None if malformed."""
    out: dict[int, list[bytes]] = {}
    i = 0
    while i < len(buf):
        if i + 4 > len(buf):
            return None
        code, length = struct.unpack_from("!HH", buf, i)
        if i + 4 + length > len(buf):
            return None
        out.setdefault(code, []).append(buf[i + 4:i + 4 + length])
        i += 4 + length
    return out


def _opt(code: int, value: bytes) -> bytes:
    return struct.pack("!HH", code, len(value)) + value


def _status(code: int, text: str = "") -> bytes:
    return _opt(OPT_STATUS, struct.pack("!H", code) + text.encode())


def domain_list(names: list[str]) -> bytes:
    """RFC 1035 wire encoding of domain names (each ends with the root label)."""
    out = b""
    for name in names:
        for label in name.strip(".").split("."):
            if label:
                out += bytes([len(label)]) + label.encode()
        out += b"\0"
    return out


def _answer(pkt: ipv6.Packet, kind: int, xid: bytes, opts: dict, port: PortView,
            view: View, domain: str) -> Outcome:
    client = opts.get(OPT_CLIENTID, [None])[0]
    server = opts.get(OPT_SERVERID, [None])[0]
    ours = server_duid()
    if server is not None and server != ours:
        return Outcome(kind)        # for another server
    if kind != INFORMATION_REQUEST and client is None:
        return Outcome(kind)        # RFC 8415 16: these must carry a Client ID
    if kind in (REQUEST, RENEW, RELEASE, DECLINE) and server is None:
        return Outcome(kind)
    if kind in (SOLICIT, CONFIRM, REBIND) and server is not None:
        return Outcome(kind)        # must not carry a Server ID
    subnets = served(port, view)
    if not subnets:
        return Outcome(kind)
    addresses = stateful(port, view)
    head = _opt(OPT_SERVERID, ours) + (_opt(OPT_CLIENTID, client) if client else b"")
    info = _information(subnets, domain)
    reply_kind = REPLY
    body = head
    if kind == SOLICIT:
        if addresses:
            rapid = OPT_RAPID_COMMIT in opts
            reply_kind = REPLY if rapid else ADVERTISE
            body += b"".join(_ia(ia, addresses) for ia in _ias(opts))
            body += (_opt(OPT_RAPID_COMMIT, b"") if rapid else b"") + info
        else:
            reply_kind = ADVERTISE
            body += _status(STATUS_NO_ADDRS, "no addresses for this port") + info
    elif kind in (REQUEST, RENEW, REBIND):
        if not addresses:
            body += b"".join(_ia_status(ia, STATUS_NO_ADDRS) for ia in _ias(opts)) + info
        else:
            body += b"".join(_ia(ia, addresses) for ia in _ias(opts)) + info
    elif kind == CONFIRM:
        named = [a for ia in opts.get(OPT_IA_NA, []) for a in _ia_addresses(ia)]
        cidrs = [ipaddress.IPv6Network(s.cidr) for s in subnets]
        on_link = all(any(ipaddress.IPv6Address(a) in c for c in cidrs) for a in named)
        if not named:
            return Outcome(kind)
        body += _status(STATUS_SUCCESS if on_link else STATUS_NOT_ON_LINK)
    elif kind in (RELEASE, DECLINE):
        if kind == DECLINE:
            log.warning("DHCPv6 DECLINE from port %s: an address conflict", port.id)
        body += _status(STATUS_SUCCESS)
    elif kind == INFORMATION_REQUEST:
        body += info
    else:
        return Outcome(kind)
    message = bytes([reply_kind]) + xid + body
    frame = ipv6.udp6(SERVER_MAC, pkt.src_mac, link_local(SERVER_MAC), pkt.src,
                      DHCP6_SERVER, DHCP6_CLIENT, message)
    return Outcome(kind, frame, reply_kind)


def _information(subnets: list[SubnetView], domain: str) -> bytes:
    dns: list[str] = []
    for subnet in subnets:
        dns += [d for d in subnet.dns_nameservers if ":" in d and d not in dns]
    out = b""
    if dns:
        out += _opt(OPT_DNS, b"".join(ipaddress.IPv6Address(d).packed for d in dns))
    if domain:
        out += _opt(OPT_DOMAINS, domain_list([domain]))
    return out


def _ias(opts: dict) -> list[bytes]:
    """The IA_NA options of a message (IAID, T1, T2, options)."""
    return [ia for ia in opts.get(OPT_IA_NA, []) if len(ia) >= 12]


def _ia_addresses(ia: bytes) -> list[str]:
    inner = options(ia[12:]) or {}
    return [str(ipaddress.IPv6Address(a[:16])) for a in inner.get(OPT_IAADDR, [])
            if len(a) >= 24]


def _ia(ia: bytes, addresses: list[tuple[str, SubnetView]]) -> bytes:
    """The IA_NA answering the client's ``ia``: the port's addresses, with lifetimes;
    any other address the client named, with lifetimes 0."""
    iaid = ia[:4]
    mine = [a for a, _ in addresses]
    inner = b"".join(_opt(OPT_IAADDR, ipaddress.IPv6Address(a).packed
                          + struct.pack("!II", LEASE_TIME, LEASE_TIME)) for a in mine)
    inner += b"".join(_opt(OPT_IAADDR, ipaddress.IPv6Address(a).packed + struct.pack("!II", 0, 0))
                      for a in _ia_addresses(ia) if a not in mine)
    return _opt(OPT_IA_NA, iaid + struct.pack("!II", RENEWAL_TIME, REBINDING_TIME) + inner)


def _ia_status(ia: bytes, code: int) -> bytes:
    return _opt(OPT_IA_NA, ia[:4] + struct.pack("!II", 0, 0) + _status(code))
