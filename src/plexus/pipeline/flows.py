"""Flows as plain values: a stage, a priority, a match, actions and the cookie of the
object that produced them. Compilers emit these; the lowering step turns them into
OpenFlow messages; the evaluator runs packets through them; golden files print them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from plexus.pipeline.registry import REGISTERS

FIELD_BITS = {"eth_src": 48, "eth_dst": 48, "arp_sha": 48, "arp_tha": 48, "arp_spa": 32,
              "arp_tpa": 32, "ipv4_src": 32, "ipv4_dst": 32, "metadata": 64, "reg5": 32,
              "reg6": 32, "reg7": 32, "tunnel_id": 64, "tun_ipv4_dst": 32, "in_port": 32}


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


Action = Output | SetField | Move | Controller


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
        """Stages this flow continues to."""
        return [self.goto] if self.goto else []

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
                  "tcp_dst", "icmpv4_type", "icmpv4_code"}


def _fmt(value: Any, field: str = "") -> str:
    if isinstance(value, tuple):
        return f"{_fmt(value[0], field)}/{_fmt(value[1], field)}"
    if isinstance(value, int) and value > 9 and field not in DECIMAL_FIELDS:
        return hex(value)
    return str(value)


def dump(flows: Iterable[Flow]) -> str:
    """Sorted text of flows, one per line (the golden-file format)."""
    return "\n".join(sorted(str(f) for f in flows)) + "\n"
