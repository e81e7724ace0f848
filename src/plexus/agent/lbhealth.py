"""Load balancer health checks from the chassis that host the members, as
ovn-controller's service monitors do them.

The agent of the chassis hosting a member's port (its probed address, ``monitor_address``
or its own, is a fixed IP of a port bound and plugged here on the VIP's network)
probes it when its pool has an enabled health monitor (``model.lbaas.LbMonitor``):
every ``delay`` seconds one probe, written straight out of the member's VIF
(packet-out), from the load balancer's VIP (address, and the VIP port's MAC: the
member answers the VIP, which the ARP responder resolves on that network) and a
source port of ``lb_probe.PROBE_PORTS``. The member's reply goes to the agent by
stage lb_probe (``pipeline.stages.lb_probe``), before port security and conntrack.

- TCP: a SYN; a SYN-ACK acknowledging it is a success (answered with an RST, so the
  member drops the half-open connection instead of retransmitting), an RST a failure,
  nothing within ``timeout`` a failure;
- UDP-CONNECT (Octavia's semantics): an empty datagram; an ICMP destination
  unreachable quoting it is a failure, an answer or silence within ``timeout`` a
  success.

``max_retries`` successes in a row make the member ONLINE, ``max_retries_down``
failures in a row ERROR (no verdict before either). A verdict that differs from the
one the member's load balancer holds (``LbProbe.health``, the last report of any
chassis) is reported through the southbound API (``to_report``; the agent sends the
reports from a task of its own, so no loop waits on HTTP); the server keeps it on the
member, and every chassis NATing to it takes the member out of (or back into) its
selection from the same watch event.

Cost: ``targets`` walks the local ports and the monitored members of the load
balancers on their networks (at each reconcile); ``tick`` walks the members probed
here (once a probe falls due: at most once per member per ``timeout``/``delay``); a
reply is one dictionary lookup. All proportional to the members this chassis hosts,
none to the cloud. The clock and the randomness are injected: the state machine is
tested without sleeping."""

from __future__ import annotations

import ipaddress
import random
import struct
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

from plexus.agent.icmp import internet_checksum
from plexus.pipeline.stages.lb_probe import (
    ICMP, ICMP_DEST_UNREACH, PROBE_PORT_COUNT, PROBE_PORT_MIN, TCP, UDP, probed,
)
from plexus.pipeline.view import View

ONLINE, ERROR = "ONLINE", "ERROR"
ETH_IP = 0x0800
TTL = 64
SYN, RST, ACK = 0x02, 0x04, 0x10
WINDOW = 1024


@dataclass(frozen=True)
class Target:
    """One member probed from here: what to send where, and the monitor's rules."""

    member_id: str
    lb_id: str
    type: str               # TCP / UDP-CONNECT
    vip: str
    vip_mac: str
    address: str            # probed address and port
    port: int
    mac: str                # the member port's MAC
    ofport: int             # its VIF
    delay: float
    timeout: float
    rise: int               # max_retries
    fall: int               # max_retries_down
    reported: str = field(default="", compare=False)    # the verdict the model holds

    def probe_key(self) -> tuple:
        """What a change of makes the member's count start over."""
        return (self.type, self.vip, self.vip_mac, self.address, self.port, self.mac,
                self.ofport, self.delay, self.timeout, self.rise, self.fall)


def targets(view: View) -> dict[str, Target]:
    """The members this chassis probes (``lb_probe.probed``: the same the trap flows
    are compiled for), by member id. A load balancer whose VIP port is not in the view
    (no MAC to probe from) probes nothing."""
    out: dict[str, Target] = {}
    for lb, monitor, probe, port in probed(view):
        vip_port = view.ports.get(lb.vip_port_id)
        ofport = view.vif_ofports.get(port.id)
        if vip_port is None or ofport is None or probe.member_id in out:
            continue
        out[probe.member_id] = Target(
            probe.member_id, lb.id, monitor.type, lb.vip, vip_port.mac, probe.address,
            probe.port, port.mac, ofport, float(monitor.delay), float(monitor.timeout),
            monitor.max_retries, monitor.max_retries_down, probe.health)
    return out


@dataclass
class _State:
    target: Target
    verdict: str = ""           # "" (none yet), ONLINE or ERROR
    ups: int = 0                # successes in a row
    downs: int = 0              # failures in a row
    next_at: float = 0.0        # when the next probe is due
    pending: tuple | None = None    # the outstanding probe's key
    seq: int = 0                # ... its TCP sequence number
    deadline: float = 0.0       # ... when it times out


@dataclass
class Counts:
    """What the prober did (the agent's counters and logs)."""

    probes: int = 0
    successes: int = 0
    failures: int = 0
    timeouts: int = 0
    stray: int = 0              # replies that matched no outstanding probe


class Prober:
    """The health check state machine of one chassis (module doc)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None):
        self.clock = clock
        self.rng = rng or random.Random()
        self.states: dict[str, _State] = {}
        self.pending: dict[tuple, str] = {}     # probe key → member id
        self.inflight: dict[str, str] = {}      # member → verdict being reported
        self.counts = Counts()
        self._sport = 0

    # --- what to probe -------------------------------------------------------------
    def update(self, wanted: Mapping[str, Target]) -> bool:
        """Probe ``wanted`` from now on: new members get their first probe within a
        random part of their delay (so a restart does not probe everything at once), a
        member whose probe changed starts over, one no longer wanted is forgotten.
        Whether anything changed (the probe loop's wake-up)."""
        changed = False
        now = self.clock()
        for member in [m for m in self.states if m not in wanted]:
            self._clear(self.states.pop(member))
            self.inflight.pop(member, None)
            changed = True
        for member, target in wanted.items():
            state = self.states.get(member)
            if state is None or state.target.probe_key() != target.probe_key():
                if state is not None:
                    self._clear(state)
                self.states[member] = _State(
                    target, next_at=now + self.rng.random() * min(target.delay, 1.0))
                changed = True
            elif state.target.reported != target.reported:
                state.target = target
                changed = True
        return changed

    def _clear(self, state: _State) -> None:
        if state.pending is not None:
            self.pending.pop(state.pending, None)
            state.pending = None

    def drop_pending(self) -> None:
        """Forget the outstanding probes without a result (their answers cannot come:
        the OpenFlow channel is down); probing goes on where it was once it is back."""
        for state in self.states.values():
            self._clear(state)

    def next_due(self) -> float | None:
        """When ``tick`` next has something to do (None: nothing probed)."""
        times = [s.deadline if s.pending is not None else s.next_at
                 for s in self.states.values()]
        return min(times) if times else None

    # --- probing -------------------------------------------------------------------
    def tick(self) -> list[tuple[int, bytes]]:
        """Expire the probes past their timeout and start the ones due: the frames to
        send, as (ofport, frame)."""
        now = self.clock()
        out = []
        for state in self.states.values():
            t = state.target
            if state.pending is not None and now >= state.deadline:
                self._clear(state)
                self.counts.timeouts += 1
                # silence: a failure for TCP, a success for UDP-CONNECT
                self._result(state, t.type != "TCP")
            if state.pending is None and now >= state.next_at:
                out.append((t.ofport, self._probe(state, now)))
                state.next_at = max(state.next_at + t.delay, now)
        return out

    def _probe(self, state: _State, now: float) -> bytes:
        t = state.target
        sport = PROBE_PORT_MIN + self._sport % PROBE_PORT_COUNT
        self._sport += 1
        proto = TCP if t.type == "TCP" else UDP
        key = (proto, t.address, t.port, sport)
        old = self.pending.pop(key, None)           # 16 probes of one port at once:
        if old is not None and old in self.states:  # the oldest is given up
            self.states[old].pending = None
        state.pending, state.deadline = key, now + t.timeout
        self.pending[key] = t.member_id
        self.counts.probes += 1
        if proto == TCP:
            state.seq = self.rng.getrandbits(32)
            return tcp_frame(t.vip_mac, t.mac, t.vip, t.address, sport, t.port, state.seq,
                             0, SYN)
        return udp_frame(t.vip_mac, t.mac, t.vip, t.address, sport, t.port, b"")

    def reply(self, frame: bytes) -> list[tuple[int, bytes]]:
        """A frame stage lb_probe sent here: the probe it answers succeeds or fails;
        returns the frames to send (the RST closing a TCP probe's SYN-ACK)."""
        parsed = parse_reply(frame)
        if parsed is None:
            self.counts.stray += 1
            return []
        key, kind, seq, ack = parsed
        member = self.pending.get(key)
        state = self.states.get(member) if member else None
        if state is None or (key[0] == TCP and kind != "icmp" and ack != (state.seq + 1)
                             & 0xFFFFFFFF):
            self.counts.stray += 1
            return []
        self._clear(state)
        t = state.target
        if kind == "syn-ack":
            self._result(state, True)
            return [(t.ofport, tcp_frame(t.vip_mac, t.mac, t.vip, t.address, key[3], t.port,
                                         ack, 0, RST))]
        self._result(state, kind == "udp")     # a UDP answer: up; RST, ICMP error: down
        return []

    def _result(self, state: _State, ok: bool) -> None:
        t = state.target
        if ok:
            self.counts.successes += 1
            state.ups, state.downs = state.ups + 1, 0
            if state.ups >= t.rise:
                state.verdict = ONLINE
        else:
            self.counts.failures += 1
            state.ups, state.downs = 0, state.downs + 1
            if state.downs >= t.fall:
                state.verdict = ERROR

    # --- reporting -----------------------------------------------------------------
    def verdict(self, member: str) -> str:
        state = self.states.get(member)
        return state.verdict if state else ""

    def to_report(self) -> dict[str, str]:
        """Verdicts the model does not hold yet and no report is on its way for."""
        return {m: s.verdict for m, s in self.states.items()
                if s.verdict and s.verdict != s.target.reported
                and self.inflight.get(m) != s.verdict}


# --- frames -----------------------------------------------------------------------------
def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def _ip(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, TTL, proto,
                       0, ipaddress.IPv4Address(src).packed,
                       ipaddress.IPv4Address(dst).packed)
    return head[:10] + struct.pack("!H", internet_checksum(head)) + head[12:] + payload


def _l4_checksum(src: str, dst: str, proto: int, segment: bytes) -> int:
    pseudo = ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed + \
        struct.pack("!BBH", 0, proto, len(segment))
    return internet_checksum(pseudo + segment)


def tcp_frame(src_mac: str, dst_mac: str, src: str, dst: str, sport: int, dport: int,
              seq: int, ack: int, flags: int) -> bytes:
    """An Ethernet/IPv4/TCP frame without payload or options (a SYN, or an RST)."""
    segment = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags,
                          WINDOW if flags & SYN else 0, 0, 0)
    csum = _l4_checksum(src, dst, TCP, segment)
    segment = segment[:16] + struct.pack("!H", csum) + segment[18:]
    return _mac(dst_mac) + _mac(src_mac) + struct.pack("!H", ETH_IP) + \
        _ip(src, dst, TCP, segment)


def udp_frame(src_mac: str, dst_mac: str, src: str, dst: str, sport: int, dport: int,
              payload: bytes) -> bytes:
    """An Ethernet/IPv4/UDP frame."""
    segment = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    csum = _l4_checksum(src, dst, UDP, segment) or 0xFFFF
    segment = segment[:6] + struct.pack("!H", csum) + segment[8:]
    return _mac(dst_mac) + _mac(src_mac) + struct.pack("!H", ETH_IP) + \
        _ip(src, dst, UDP, segment)


def parse_reply(frame: bytes) -> tuple[tuple, str, int, int] | None:
    """(probe key, kind, seq, ack) of a reply to a probe, or None: the key is (protocol,
    probed address, probed port, probe source port); kind ``syn-ack``, ``rst`` (an RST,
    or a TCP segment that is no SYN-ACK), ``udp`` (an answer) or ``icmp`` (a destination
    unreachable quoting the UDP probe)."""
    try:
        if struct.unpack_from("!H", frame, 12)[0] != ETH_IP:
            return None
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        proto = ip[9]
        src = str(ipaddress.IPv4Address(ip[12:16]))
        l4 = ip[ihl:]
        if proto == TCP:
            sport, dport, seq, ack, _, flags = struct.unpack_from("!HHIIBB", l4)
            kind = "syn-ack" if flags & (SYN | ACK | RST) == SYN | ACK else "rst"
            return (TCP, src, sport, dport), kind, seq, ack
        if proto == UDP:
            sport, dport = struct.unpack_from("!HH", l4)
            return (UDP, src, sport, dport), "udp", 0, 0
        if proto == ICMP and l4[0] == ICMP_DEST_UNREACH:
            quoted = l4[8:]
            qihl = (quoted[0] & 0x0F) * 4
            if quoted[9] != UDP:
                return None
            qdst = str(ipaddress.IPv4Address(quoted[16:20]))
            qsport, qdport = struct.unpack_from("!HH", quoted, qihl)
            return (UDP, qdst, qdport, qsport), "icmp", 0, 0
    except (IndexError, struct.error, ValueError):
        return None
    return None
