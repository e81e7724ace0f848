"""Flows as plain values: a stage, a priority, a match, actions and the cookie of the
object that produced them. Compilers emit these; the lowering step turns them into
OpenFlow messages; the evaluator runs packets through them; golden files print them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from plexus.pipeline.registry import REGISTERS

FIELD_BITS = {"eth_src": 48, "eth_dst": 48, "arp_sha": 48, "arp_tha": 48, "arp_spa": 32,
              "arp_tpa": 32, "ipv4_src": 32, "ipv4_dst": 32, "metadata": 64, "reg5": 32,
              "reg6": 32, "reg7": 32, "tunnel_id": 64, "tun_ipv4_dst": 32, "in_port": 32,
              "reg3": 32, "reg4": 32, "ipv6_src": 128, "ipv6_dst": 128, "ipv6_nd_target": 128,
              "ipv6_nd_sll": 48, "ipv6_nd_tll": 48, "xxreg2": 128}

# Connection-tracking state bits (the ``ct_state`` field), as OVS names them.
CT_STATE_BITS = {"new": 0x01, "est": 0x02, "rel": 0x04, "rpl": 0x08, "inv": 0x10,
                 "trk": 0x20}


def ovs_field(name: str) -> str:
    """OVS field of a match/action field name (register names are translated)."""
    reg = REGISTERS.get(name)
    return reg.field if reg else name


@dataclass(frozen=True, order=True)
class Output:
    """Send the packet out of an OpenFlow port number, or ``"in_port"``."""

    port: int | str

    def __str__(self) -> str:
        return f"output:{self.port}"


@dataclass(frozen=True, order=True)
class SetField:
    """Set a field (or register) to a value."""

    field: str
    value: Any

    def __str__(self) -> str:
        return f"set:{self.field}={_fmt(self.value, self.field)}"


@dataclass(frozen=True, order=True)
class Move:
    """Copy a whole field into another of the same width."""

    src: str
    dst: str

    def __str__(self) -> str:
        return f"move:{self.src}->{self.dst}"


@dataclass(frozen=True, order=True)
class Controller:
    """Send the packet to the agent with a small tag saying why."""

    userdata: str

    def __str__(self) -> str:
        return f"controller:{self.userdata}"


@dataclass(frozen=True, order=True)
class Nat:
    """Address translation inside ``Ct``: ``kind`` "src" or "dst" with an address (and a
    port range) for a new connection (needs commit), or no kind: only apply the
    translation the packet's connection already has (e.g. unNAT a reply)."""

    kind: str = ""
    ip: str = ""
    port_min: int = 0
    port_max: int = 0

    def __str__(self) -> str:
        if not self.kind:
            return "nat"
        ports = f":{self.port_min}-{self.port_max}" if self.port_min else ""
        return f"nat({self.kind}={self.ip}{ports})"


@dataclass(frozen=True, order=True)
class Ct:
    """Send the packet through connection tracking in ``zone`` (a number, or the name of a
    register holding it). ``commit`` records the connection; ``mark`` (with commit) sets
    the connection's ct_mark; ``nat`` translates addresses (see ``Nat``). With ``table``
    the tracked packet continues in that stage (this must be the flow's last action, and
    the flow has no goto); without it the packet carries on with the next action."""

    zone: int | str
    commit: bool = False
    table: str | None = None
    mark: int | None = None
    nat: Nat | None = None

    def __str__(self) -> str:
        parts = (["commit"] if self.commit else []) + [f"zone={self.zone}"]
        if self.nat is not None:
            parts.append(str(self.nat))
        if self.table:
            parts.append(f"table={self.table}")
        if self.mark is not None:
            parts.append(f"exec(set:ct_mark={_fmt(self.mark)})")
        return f"ct({','.join(parts)})"


@dataclass(frozen=True, order=True)
class CtClear:
    """Forget the packet's connection-tracking state (ct_state, ct_zone, ct_mark = 0)."""

    def __str__(self) -> str:
        return "ct_clear"


@dataclass(frozen=True, order=True)
class Conjunction:
    """Dimension ``k`` of ``n`` of the conjunctive match ``id``: the flow with ``conj_id=id``
    applies when, at this flow's priority, a flow of every dimension matches. A flow with
    conjunction actions has nothing else (no other action, no goto)."""

    id: int
    k: int
    n: int

    def __str__(self) -> str:
        return f"conjunction({self.id},{self.k}/{self.n})"


@dataclass(frozen=True, order=True)
class DecTtl:
    """Decrement the IP TTL. A packet with TTL 0 or 1 is not decremented: the flow's
    remaining actions and its goto are skipped (Open vSwitch's dec_ttl), and the switch
    sends it to the agent as an invalid-TTL packet-in (the agent asks for those and
    answers with an ICMP time exceeded, ``agent.icmp``)."""

    def __str__(self) -> str:
        return "dec_ttl"


@dataclass(frozen=True, order=True)
class CheckPktLarger:
    """Open vSwitch's ``check_pkt_larger(length)->field[bit]``: set the bit to 1 when the
    whole frame (Ethernet header included) is longer than ``length`` bytes, else to 0."""

    length: int
    field: str
    bit: int

    def __str__(self) -> str:
        return f"check_pkt_larger({self.length})->{self.field}[{self.bit}]"


@dataclass(frozen=True, order=True)
class PushVlan:
    """Push an 802.1Q header (VLAN id 0; set ``vlan_vid`` after it)."""

    def __str__(self) -> str:
        return "push_vlan"


@dataclass(frozen=True, order=True)
class PopVlan:
    """Remove the outer 802.1Q header."""

    def __str__(self) -> str:
        return "pop_vlan"


@dataclass(frozen=True, order=True)
class Meter:
    """Pass the packet through OpenFlow meter ``id``: a token bucket of ``kbps`` kbit/s
    and ``burst`` kbit that drops what exceeds it (OpenFlow 1.3's meter instruction, run
    before the flow's actions, wherever the action stands). The meter is an object of
    the switch: the lowering installs it (``meter_mod``) before the first flow naming it
    and removes it after the last, so every flow naming one id carries one spec."""

    id: int
    kbps: int
    burst: int

    def __str__(self) -> str:
        return f"meter:{self.id}({self.kbps}kbps,burst={self.burst}kb)"


Action = (Output | SetField | Move | Controller | Ct | CtClear | Conjunction | DecTtl | PushVlan
          | PopVlan | CheckPktLarger | Meter)

VLAN_PRESENT = 0x1000           # OFPVID_PRESENT: the vlan_vid bit saying a tag is there


@dataclass(frozen=True, order=True)
class Flow:
    """One flow of the pipeline, in names (never table numbers)."""

    stage: str
    priority: int
    match: tuple[tuple[str, Any], ...] = ()
    actions: tuple[Action, ...] = ()
    goto: str | None = None
    cookie: str = field(default="", compare=True)
    note: str = field(default="", compare=False)

    @staticmethod
    def make(stage: str, priority: int, match: dict[str, Any] | None = None,
             actions: Iterable[Action] = (), goto: str | None = None, cookie: str = "",
             note: str = "") -> "Flow":
        """A flow with its match normalised (sorted by field)."""
        return Flow(stage, priority, tuple(sorted((match or {}).items())), tuple(actions),
                    goto, cookie, note)

    def match_fields(self) -> list[str]:
        """OVS fields this flow matches on."""
        return [ovs_field(k) for k, _ in self.match]

    def goto_targets(self) -> list[str]:
        """Stages this flow continues to (its goto, and where conntrack re-injects it)."""
        return ([self.goto] if self.goto else []) + [
            a.table for a in self.actions if isinstance(a, Ct) and a.table]

    def meters(self) -> list[Meter]:
        """The meters the flow passes its packets through."""
        return [a for a in self.actions if isinstance(a, Meter)]

    def conjunctions(self) -> list[Conjunction]:
        """The flow's conjunction actions (empty for an ordinary flow)."""
        return [a for a in self.actions if isinstance(a, Conjunction)]

    def key(self) -> tuple:
        """What identifies the flow in a table (OpenFlow's table, priority and match)."""
        return (self.stage, self.priority, self.match)

    def __str__(self) -> str:
        match = ",".join(f"{k}={_fmt(v, k)}" for k, v in self.match) or "*"
        acts = [str(a) for a in self.actions] + ([f"goto:{self.goto}"] if self.goto else [])
        return (f"{self.stage} prio={self.priority} {match} -> {','.join(acts) or 'drop'}"
                f"  [{self.cookie}]")


# Printed in decimal, as ovs-ofctl does; other integers (keys, registers, eth_type) in hex.
DECIMAL_FIELDS = {"in_port", "ip_proto", "arp_op", "udp_src", "udp_dst", "tcp_src",
                  "tcp_dst", "icmpv4_type", "icmpv4_code", "sctp_src", "sctp_dst", "conj_id",
                  "ct_zone", "ip_dscp", "icmpv6_type", "icmpv6_code", "nd_options_type"}


def ct_state(flags: str) -> tuple[int, int]:
    """A ct_state match from OVS's notation, e.g. ``"+trk+est-rpl"`` → (value, mask)."""
    value = mask = 0
    for sign, name in re.findall(r"([+-])([a-z]+)", flags):
        bit = CT_STATE_BITS[name]
        mask |= bit
        value |= bit if sign == "+" else 0
    return value, mask


def ct_state_text(value: int, mask: int) -> str:
    """OVS's notation of a ct_state match (the inverse of ``ct_state``)."""
    return "".join(("+" if value & bit else "-") + name
                   for name, bit in CT_STATE_BITS.items() if mask & bit)


def _fmt(value: Any, field: str = "") -> str:
    if field == "ct_state" and isinstance(value, tuple):
        return ct_state_text(*value)
    if isinstance(value, tuple):
        if field in DECIMAL_FIELDS:     # masked ports print in hex, as ovs-ofctl does
            return f"{hex(value[0])}/{hex(value[1])}"
        return f"{_fmt(value[0], field)}/{_fmt(value[1], field)}"
    if isinstance(value, int) and value > 9 and field not in DECIMAL_FIELDS:
        return hex(value)
    return str(value)


def dump(flows: Iterable[Flow]) -> str:
    """Sorted text of flows, one per line (the golden-file format)."""
    return "\n".join(sorted(str(f) for f in flows)) + "\n"
