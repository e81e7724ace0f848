"""Load balancer health checks (plexus.agent.lbhealth): the probe state machine with an
injected clock (no sleeping), the probe frames as a decoder reads them, and the replies
the prober recognises."""

from __future__ import annotations

import random
import struct

from os_ken.lib.packet import ethernet, ipv4, packet, tcp, udp

from plexus.agent.lbhealth import (
    ACK, ERROR, ONLINE, RST, SYN, Prober, Target, parse_reply, tcp_frame, udp_frame,
)
from plexus.agent.icmp import quote
from plexus.pipeline.stages.lb_probe import PROBE_PORT_COUNT, PROBE_PORT_MIN

VIP, VIP_MAC = "10.0.0.100", "fa:16:3e:00:00:64"
MEMBER, MEMBER_MAC = "10.0.0.11", "fa:16:3e:00:00:0b"


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def target(kind="TCP", rise=2, fall=2, delay=1.0, timeout=1.0, reported="", member="m1",
           port=8080) -> Target:
    return Target(member, "lb1", kind, VIP, VIP_MAC, MEMBER, port, MEMBER_MAC, 7, delay,
                  timeout, rise, fall, reported)


def prober(*targets_) -> tuple[Prober, Clock]:
    clock = Clock()
    p = Prober(clock=clock, rng=random.Random(1))
    p.update({t.member_id: t for t in targets_})
    return p, clock


def probe_now(p: Prober, clock: Clock) -> tuple[int, bytes]:
    """Advance to the next due time and return the one probe sent."""
    clock.now = max(clock.now, p.next_due())
    sent = p.tick()
    assert len(sent) == 1, sent
    return sent[0]


def answer(probe: bytes, flags: int) -> bytes:
    """The member's TCP answer to a probe SYN (SYN-ACK or RST-ACK)."""
    pkt = packet.Packet(probe)
    ip, seg = pkt.get_protocol(ipv4.ipv4), pkt.get_protocol(tcp.tcp)
    return tcp_frame(MEMBER_MAC, VIP_MAC, ip.dst, ip.src, seg.dst_port, seg.src_port,
                     12345, seg.seq + 1, flags)


def test_syn_probe_frame_decodes_with_valid_checksums():
    frame = tcp_frame(VIP_MAC, MEMBER_MAC, VIP, MEMBER, PROBE_PORT_MIN, 8080, 7, 0, SYN)
    pkt = packet.Packet(frame)
    eth, ip, seg = (pkt.get_protocol(c) for c in (ethernet.ethernet, ipv4.ipv4, tcp.tcp))
    assert (eth.src, eth.dst, ip.src, ip.dst) == (VIP_MAC, MEMBER_MAC, VIP, MEMBER)
    assert (seg.src_port, seg.dst_port, seg.seq, seg.bits) == (PROBE_PORT_MIN, 8080, 7, SYN)
    # os-ken verifies nothing on parse: recompute both checksums over the bytes
    rebuilt = packet.Packet()
    for proto in (eth, ipv4.ipv4(src=ip.src, dst=ip.dst, proto=6, ttl=ip.ttl,
                                 flags=ip.flags),
                  tcp.tcp(src_port=seg.src_port, dst_port=seg.dst_port, seq=seg.seq,
                          ack=0, offset=5, bits=SYN, window_size=seg.window_size)):
        rebuilt.add_protocol(proto)
    rebuilt.serialize()
    assert bytes(rebuilt.data)[14:len(frame)] == frame[14:]     # (os-ken pads to 60)


def test_udp_probe_frame_decodes():
    frame = udp_frame(VIP_MAC, MEMBER_MAC, VIP, MEMBER, PROBE_PORT_MIN + 3, 53, b"")
    pkt = packet.Packet(frame)
    ip, dgram = pkt.get_protocol(ipv4.ipv4), pkt.get_protocol(udp.udp)
    assert (ip.src, ip.dst, ip.proto) == (VIP, MEMBER, 17)
    assert (dgram.src_port, dgram.dst_port, dgram.total_length) == (PROBE_PORT_MIN + 3, 53, 8)
    assert dgram.csum != 0


def test_tcp_member_comes_online_after_rise_successes_and_the_syn_ack_is_reset():
    p, clock = prober(target(rise=2))
    ofport, syn = probe_now(p, clock)
    assert ofport == 7
    out = p.reply(answer(syn, SYN | ACK))
    assert p.verdict("m1") == ""                     # one success of two
    (rst_port, rst), = out
    seg = packet.Packet(rst).get_protocol(tcp.tcp)
    assert rst_port == 7 and seg.bits == RST and \
        seg.seq == packet.Packet(syn).get_protocol(tcp.tcp).seq + 1    # their ack
    clock.now += 0.2
    assert p.tick() == []                            # next probe not due yet
    _, syn = probe_now(p, clock)
    p.reply(answer(syn, SYN | ACK))
    assert p.verdict("m1") == ONLINE
    assert p.to_report() == {"m1": ONLINE}


def test_rst_and_silence_are_failures_until_fall():
    p, clock = prober(target(rise=1, fall=2))
    _, syn = probe_now(p, clock)
    p.reply(answer(syn, SYN | ACK))
    assert p.verdict("m1") == ONLINE
    _, syn = probe_now(p, clock)
    assert p.reply(answer(syn, RST | ACK)) == []     # refused: failure 1 of 2
    assert p.verdict("m1") == ONLINE
    probe_now(p, clock)                              # unanswered ...
    clock.now += 1.0
    sent = p.tick()                                  # ... times out: failure 2; next probe
    assert p.verdict("m1") == ERROR and p.counts.timeouts == 1 and len(sent) == 1
    assert p.to_report() == {"m1": ERROR}


def test_a_success_resets_the_failure_count():
    p, clock = prober(target(rise=1, fall=2))
    for flags in (RST | ACK, SYN | ACK, RST | ACK):
        _, syn = probe_now(p, clock)
        p.reply(answer(syn, flags))
    assert p.verdict("m1") == ONLINE                 # never two failures in a row


def test_a_reply_to_another_probe_or_sequence_is_stray():
    p, clock = prober(target(rise=1))
    _, syn = probe_now(p, clock)
    bad = bytearray(answer(syn, SYN | ACK))
    struct.pack_into("!I", bad, 14 + 20 + 8, 999)    # wrong ack number
    assert p.reply(bytes(bad)) == [] and p.verdict("m1") == ""
    assert p.reply(b"\x00" * 20) == []
    assert p.counts.stray == 2
    p.reply(answer(syn, SYN | ACK))
    assert p.verdict("m1") == ONLINE
    assert p.reply(answer(syn, SYN | ACK)) == []     # answered already: stray
    assert p.counts.stray == 3


def test_probe_source_ports_rotate_in_the_range():
    p, clock = prober(target(rise=1))
    seen = set()
    for _ in range(2 * PROBE_PORT_COUNT):
        _, syn = probe_now(p, clock)
        seen.add(packet.Packet(syn).get_protocol(tcp.tcp).src_port)
        p.reply(answer(syn, SYN | ACK))
    assert seen == set(range(PROBE_PORT_MIN, PROBE_PORT_MIN + PROBE_PORT_COUNT))


def test_udp_connect_port_unreachable_is_down_silence_and_answers_up():
    p, clock = prober(target("UDP-CONNECT", rise=1, fall=1, port=53))
    _, probe = probe_now(p, clock)
    clock.now += 1.0
    p.tick()                                         # silence: success
    assert p.verdict("m1") == ONLINE
    _, probe = probe_now(p, clock)
    ip = probe[14:]
    body = struct.pack("!BBHI", 3, 3, 0, 0) + quote(ip)
    unreachable = bytes.fromhex(VIP_MAC.replace(":", "") + MEMBER_MAC.replace(":", "")) + \
        b"\x08\x00" + struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 0, 0, 64, 1, 0,
                    bytes([10, 0, 0, 11]), bytes([10, 0, 0, 100])) + body
    assert parse_reply(unreachable)[1] == "icmp"
    p.reply(unreachable)
    assert p.verdict("m1") == ERROR
    _, probe = probe_now(p, clock)
    dgram = packet.Packet(probe).get_protocol(udp.udp)
    p.reply(udp_frame(MEMBER_MAC, VIP_MAC, MEMBER, VIP, 53, dgram.src_port, b"hi"))
    assert p.verdict("m1") == ONLINE                 # an answer: up


def test_reports_only_what_the_model_does_not_hold_and_not_twice():
    p, clock = prober(target(rise=1))
    _, syn = probe_now(p, clock)
    p.reply(answer(syn, SYN | ACK))
    assert p.to_report() == {"m1": ONLINE}
    p.inflight["m1"] = ONLINE                        # on its way
    assert p.to_report() == {}
    assert p.update({"m1": target(rise=1, reported=ONLINE)})    # the model caught up
    assert p.to_report() == {} and p.verdict("m1") == ONLINE    # the count is kept


def test_changing_the_probe_starts_over_and_gone_members_are_forgotten():
    p, clock = prober(target(rise=1))
    _, syn = probe_now(p, clock)
    p.reply(answer(syn, SYN | ACK))
    assert p.update({"m1": target(rise=1, port=9090)})
    assert p.verdict("m1") == "" and not p.pending
    probe_now(p, clock)
    assert p.pending
    assert p.update({}) and not p.states and not p.pending and p.next_due() is None
    assert not p.update({})


def test_many_members_each_probed_once_per_delay():
    """Cost: each tick touches the members probed here; each is probed once per delay."""
    p, clock = prober(*(target(member=f"m{i}", port=1000 + i, delay=2.0, timeout=1.0)
                        for i in range(50)))
    sent = 0
    start = clock.now
    while clock.now < start + 10.0:
        clock.now = p.next_due()
        sent += len(p.tick())
    assert 50 * 5 <= sent <= 50 * 6


def test_pending_probes_dropped_while_the_channel_is_down_do_not_fail():
    p, clock = prober(target(rise=1, fall=1))
    probe_now(p, clock)
    p.drop_pending()
    clock.now += 5.0
    assert len(p.tick()) == 1                        # a new probe, no timeout counted
    assert p.counts.timeouts == 0 and p.verdict("m1") == ""
