"""A small connection tracker for the evaluator, with the behaviour of OVS's (and Linux's)
that the ACL and L3 stages rely on: connections per zone, found in both directions; a
packet's state is new (until a reply is seen), established, reply, related (an ICMP
error about a connection) or invalid; ``commit`` records a connection and may set its
ct_mark; NAT: a connection committed with ``nat(src=...)`` or ``nat(dst=...)`` keeps
its translation (the original port if it is free and in range, else the lowest free
one), which a ``ct`` with ``nat`` applies to later packets of either direction (the
reverse for replies); a ``ct`` without ``nat`` translates nothing.

Evaluator-only packet fields: ``tcp_flags`` (default: a SYN), ``icmp_id`` (default 0)
and, for an ICMP error, ``inner``: the fields of the packet it is about."""

from __future__ import annotations

from dataclasses import dataclass

from plexus.pipeline.flows import CT_STATE_BITS

NEW, EST, REL, RPL, INV, TRK = (CT_STATE_BITS[n] for n in ("new", "est", "rel", "rpl", "inv",
                                                          "trk"))
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
PORTS = {6: ("tcp_src", "tcp_dst"), 17: ("udp_src", "udp_dst"), 132: ("sctp_src", "sctp_dst")}
ICMP_REQUESTS = {8: 0, 13: 14, 15: 16, 17: 18}          # request type → its reply's type
ICMP_REPLIES = {reply: request for request, reply in ICMP_REQUESTS.items()}
ICMP_ERRORS = {3, 4, 5, 11, 12}
ICMP6_REQUESTS = {128: 129}                              # echo request → echo reply
ICMP6_REPLIES = {129: 128}
ICMP6_ERRORS = {1, 2, 3, 4}


def _icmp(pkt: dict) -> tuple[int | None, dict, dict, set]:
    """(ICMP type, requests, replies, errors) of an ICMP or ICMPv6 packet (type None for
    other protocols); an ICMPv6 packet is keyed under protocol 1 like ICMP."""
    proto = pkt.get("ip_proto")
    if proto == 58:
        return pkt.get("icmpv6_type"), ICMP6_REQUESTS, ICMP6_REPLIES, ICMP6_ERRORS
    if proto == 1:
        return pkt.get("icmpv4_type"), ICMP_REQUESTS, ICMP_REPLIES, ICMP_ERRORS
    return None, {}, {}, set()


@dataclass
class Connection:
    """One tracked connection. ``reply`` is the key replies carry: the reverse of the
    original key as translated (equal to ``reverse(original)`` without NAT)."""

    zone: int
    original: tuple
    reply: tuple
    mark: int = 0
    seen_reply: bool = False

    @property
    def translated(self) -> bool:
        """Whether the connection has an address translation."""
        return self.reply != reverse(self.original)


def key_of(pkt: dict) -> tuple | None:
    """The packet's connection key in its own direction (None: not IP). IPv6 keys are
    those of IPv4 with IPv6 addresses (ICMPv6 under protocol 1, as ICMP)."""
    src, dst, proto = pkt.get("ipv4_src"), pkt.get("ipv4_dst"), pkt.get("ip_proto")
    if src is None and pkt.get("eth_type") == 0x86DD:
        src, dst = pkt.get("ipv6_src"), pkt.get("ipv6_dst")
    if src is None or dst is None or proto is None:
        return None
    if proto in PORTS:
        sport, dport = PORTS[proto]
        return (src, dst, proto, pkt.get(sport), pkt.get(dport))
    kind, requests, replies, _ = _icmp(pkt)
    if proto in (1, 58):
        if kind in requests:
            return (src, dst, 1, pkt.get("icmp_id", 0), kind, "request")
        if kind in replies:
            return (src, dst, 1, pkt.get("icmp_id", 0), replies[kind], "reply")
        return (src, dst, 1, "other", kind)
    return (src, dst, proto)


def reverse(key: tuple) -> tuple:
    """The key of the other direction of a connection."""
    src, dst, proto, *rest = key
    if proto in PORTS:
        return (dst, src, proto, rest[1], rest[0])
    if proto == 1 and rest and rest[-1] in ("request", "reply"):
        return (dst, src, 1, rest[0], rest[1], "reply" if rest[-1] == "request" else "request")
    return (dst, src, proto, *rest)


def with_key(pkt: dict, key: tuple) -> None:
    """Rewrite the packet's addresses and ports (or ICMP id) to those of ``key``."""
    src, dst, proto, *rest = key
    if ":" in src:
        pkt["ipv6_src"], pkt["ipv6_dst"] = src, dst
    else:
        pkt["ipv4_src"], pkt["ipv4_dst"] = src, dst
    if proto in PORTS:
        sport, dport = PORTS[proto]
        pkt[sport], pkt[dport] = rest[0], rest[1]
    elif proto == 1 and rest and rest[-1] in ("request", "reply"):
        pkt["icmp_id"] = rest[0]


def translate(key: tuple, kind: str, ip: str, port: int | None) -> tuple:
    """``key`` with its source (``kind`` "src") or destination replaced: the address, and
    the port (or ICMP id) when given."""
    src, dst, proto, *rest = key
    if kind == "src":
        src = ip
    else:
        dst = ip
    if port is not None and proto in PORTS:
        rest[0 if kind == "src" else 1] = port
    elif port is not None and proto == 1 and rest and rest[-1] in ("request", "reply"):
        rest[0] = port
    return (src, dst, proto, *rest)


def valid_new(pkt: dict) -> bool:
    """Whether the packet may start a connection (TCP: a SYN, or a mid-stream ACK picked
    up loosely; ICMP: a request; other protocols: any packet)."""
    proto = pkt.get("ip_proto")
    if proto == 6:
        flags = pkt.get("tcp_flags", SYN)
        if flags & SYN:
            return not flags & (ACK | FIN | RST)
        return bool(flags & ACK) and not flags & RST
    kind, requests, _, _ = _icmp(pkt)
    if proto in (1, 58):
        return kind in requests
    return True


class Conntrack:
    """Connections by (zone, key), each entered under both of its directions."""

    def __init__(self) -> None:
        self.table: dict[tuple, tuple[Connection, bool]] = {}

    def find(self, zone: int, pkt: dict) -> tuple[Connection | None, bool]:
        """The packet's connection in a zone and whether the packet is a reply."""
        key = key_of(pkt)
        return self.table.get((zone, key), (None, False)) if key else (None, False)

    def lookup(self, zone: int, pkt: dict) -> tuple[int, int, int]:
        """What ``ct(zone=...)`` tells the packet: (ct_state, ct_zone, ct_mark)."""
        kind, _, _, errors = _icmp(pkt)
        if kind in errors:
            inner = pkt.get("inner")
            about = self.find(zone, inner)[0] if isinstance(inner, dict) else None
            return (TRK | REL, zone, about.mark) if about else (TRK | INV, zone, 0)
        conn, is_reply = self.find(zone, pkt)
        if conn is None:
            return (TRK | NEW if key_of(pkt) and valid_new(pkt) else TRK | INV), zone, 0
        if is_reply:
            conn.seen_reply = True
            return TRK | EST | RPL, zone, conn.mark
        return TRK | (EST if conn.seen_reply else NEW), zone, conn.mark

    def commit(self, zone: int, pkt: dict, mark: int | None = None, nat=None) -> None:
        """``ct(commit)``: record the packet's connection (if it may start one), with the
        translation ``nat`` asks for (a ``flows.Nat`` with a kind) when it is new, and set
        its ct_mark when ``mark`` is given."""
        conn, _ = self.find(zone, pkt)
        if conn is None:
            key = key_of(pkt)
            if key is None or not valid_new(pkt):
                return
            reply = self._reply_key(zone, key, nat)
            if reply is None:
                return                      # no free port in the range: not committed
            conn = Connection(zone, key, reply)
            self.table[(zone, key)] = (conn, False)
            self.table[(zone, conn.reply)] = (conn, True)
        if mark is not None:
            conn.mark = mark

    def _reply_key(self, zone: int, key: tuple, nat) -> tuple | None:
        """The reply key of a new connection: reversed, after the translation."""
        if nat is None or not getattr(nat, "kind", ""):
            return reverse(key)
        proto = key[2]
        ported = proto in PORTS or (proto == 1 and key[-1] in ("request", "reply"))
        index = 3 if nat.kind == "src" or proto == 1 else 4
        current = key[index] if ported else None
        if nat.port_min and ported:
            candidates = ([current] if nat.port_min <= current <= nat.port_max else []) + \
                list(range(nat.port_min, nat.port_max + 1))
        elif ported:
            candidates = [current] + list(range(1024, 65536))
        else:
            candidates = [None]
        for port in candidates:
            reply = reverse(translate(key, nat.kind, nat.ip, port))
            if (zone, reply) not in self.table:
                return reply
        return None

    def nat(self, zone: int, pkt: dict) -> None:
        """What a ``ct`` with ``nat`` does to the packet: its connection's translation
        (reversed for a reply); nothing when it has none or is not tracked."""
        conn, is_reply = self.find(zone, pkt)
        if conn is None or not conn.translated:
            return
        with_key(pkt, reverse(conn.original) if is_reply else reverse(conn.reply))

    def connections(self) -> list[Connection]:
        """Every tracked connection, once."""
        return list({id(c): c for c, _ in self.table.values()}.values())
