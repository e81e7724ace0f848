"""ICMP errors from routers (agent.icmp) on the L3 reference topology: the evaluator says
which packets the pipeline sends the agent (expired TTL, too big for the next network,
an unknown address of a router subnet), and the builder turns each into the error a
Linux router would send — source, destination, MACs, out-port, type, code, MTU and the
quoted header as the sender sent it."""

from __future__ import annotations

import asyncio
import ipaddress
import struct

import pytest
from os_ken.lib.packet import ethernet, icmp, ipv4, packet
from os_ken.ofproto import ofproto_v1_3 as ofp

from plexus.agent import icmp as errors
from plexus.agent.ovs import PacketIn
from plexus.lower.openflow import check_pkt_larger
from plexus.pipeline.flows import CheckPktLarger
from plexus.pipeline.stages.router import programmed
from plexus.pipeline.compile import compile_view
from plexus.tools.evaluator import Pipeline
from tests.golden.l3_reference import PATCH, UPSTREAM, VIF_OFPORTS, ip, mac, view
from tests.unit.test_agent import FakeSwitch, Running, settle, until
from tests.unit.test_agent_l3 import L3Server, make_agent, wire_model
from tests.unit.test_l3 import ROUTER_MAC, inbound, routed


def frame(pkt: dict, size: int = 64, df: bool = True) -> bytes:
    """The bytes of an evaluator packet (IPv4; TCP/UDP ports or an ICMP type) as it
    reached the agent, ``size`` bytes of IP."""
    proto = pkt.get("ip_proto", 6)
    if proto == 1:
        l4 = struct.pack("!BBHHH", pkt.get("icmpv4_type", 8), 0, 0, 1, 1)
    else:
        l4 = struct.pack("!HHII", pkt.get("tcp_src", pkt.get("udp_src", 1)),
                         pkt.get("tcp_dst", pkt.get("udp_dst", 2)), 7, 9)
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, size, 1, 0x4000 if df else 0,
                       pkt["nw_ttl"], proto, 0,
                       ipaddress.IPv4Address(pkt["ipv4_src"]).packed,
                       ipaddress.IPv4Address(pkt["ipv4_dst"]).packed)
    eth = (bytes.fromhex(pkt["eth_dst"].replace(":", "")) +
           bytes.fromhex(pkt["eth_src"].replace(":", "")) + b"\x08\x00")
    return eth + head + l4 + bytes(size - 20 - len(l4))


def punted(chassis: str, pkt: dict):
    """(userdata, packet) the pipeline of ``chassis`` sends the agent for ``pkt``."""
    result = Pipeline(compile_view(view(chassis))).run(pkt)
    assert len(result.controller) == 1, result.explain()
    return result.controller[0]


def fields_of(pkt: dict) -> dict:
    return {k: pkt[k] for k in ("metadata", "reg3", "reg4", "reg5", "reg6")
            if isinstance(pkt.get(k), int)}


def ones_sum(data: bytes) -> int:
    """The Internet checksum's ones' complement sum: 0xFFFF over data whose checksum holds."""
    data += bytes(len(data) % 2)
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def decode(err: errors.Error):
    """The error's Ethernet, IPv4 and ICMP headers (os-ken's decoding), after checking
    both checksums and the lengths."""
    ip_len = struct.unpack_from("!H", err.frame, 16)[0]
    assert len(err.frame) == 14 + ip_len
    assert ones_sum(err.frame[14:34]) == 0xFFFF and ones_sum(err.frame[34:]) == 0xFFFF
    p = packet.Packet(err.frame)
    return p.get_protocol(ethernet.ethernet), p.get_protocol(ipv4.ipv4), \
        p.get_protocol(icmp.icmp)


def quoted_header(msg) -> ipv4.ipv4:
    return ipv4.ipv4.parser(bytes(msg.data.data))[0]


def answer(chassis: str, pkt: dict, **frame_kw):
    userdata, at = punted(chassis, pkt)
    kind = errors.kind_of("" if userdata == "invalid_ttl" else userdata,
                          ofp.OFPR_INVALID_TTL if userdata == "invalid_ttl" else ofp.OFPR_ACTION)
    vifs = {o: p for p, o in VIF_OFPORTS[chassis].items()}
    data = frame({**pkt, **{k: at[k] for k in ("eth_src", "eth_dst", "ipv4_dst", "nw_ttl")
                          if k in at}}, **frame_kw)
    return kind, errors.answer(kind, data, fields_of(at), pkt["in_port"], view(chassis), vifs)


def test_ttl_1_across_a_router_is_time_exceeded_from_the_sender_side_interface():
    kind, err = answer("hv1", routed("a-vm2", "10.2.0.11", nw_ttl=1))
    assert kind == "ttl"
    assert err.port == VIF_OFPORTS["hv1"]["a-vm2"]
    eth, ip4, msg = decode(err)
    assert (eth.src, eth.dst) == (ROUTER_MAC["net-a"], mac("a-vm2"))
    assert (ip4.src, ip4.dst, ip4.proto) == ("10.1.0.1", ip("a-vm2"), 1)
    assert (msg.type, msg.code) == (icmp.ICMP_TIME_EXCEEDED, 0)
    head = quoted_header(msg)
    assert (head.src, head.dst, head.ttl) == (ip("a-vm2"), "10.2.0.11", 1)
    assert len(msg.data.data) == 20 + 8


def test_ttl_2_is_routed_not_punted():
    result = Pipeline(compile_view(view("hv1"))).run(routed("a-vm2", "10.2.0.11", nw_ttl=2))
    assert not result.controller


def test_too_big_df_is_frag_needed_with_the_next_network_mtu():
    kind, err = answer("hv1", routed("a-vm2", "10.2.0.11", pkt_len=1450 + 14 + 1),
                       size=1451)
    assert kind == "too-big"
    eth, ip4, msg = decode(err)
    assert (ip4.src, ip4.dst) == ("10.1.0.1", ip("a-vm2"))
    assert (msg.type, msg.code, msg.data.mtu) == (3, 4, view("hv1").networks["net-b"].mtu)
    assert quoted_header(msg).ttl == 64        # as sent: l3_route's decrement undone


def test_exactly_the_mtu_passes():
    result = Pipeline(compile_view(view("hv1"))).run(
        routed("a-vm2", "10.2.0.11", pkt_len=1450 + 14))
    assert not result.controller and result.outputs


def test_too_big_without_df_is_dropped_not_answered():
    _, why = answer("hv1", routed("a-vm2", "10.2.0.11", pkt_len=2000), size=1451, df=False)
    assert why == "not DF"


def test_unknown_address_in_a_router_subnet_is_host_unreachable():
    kind, err = answer("hv1", routed("a-vm2", "10.2.0.77"))
    assert kind == "unreachable"
    _, ip4, msg = decode(err)
    assert (ip4.src, msg.type, msg.code) == ("10.1.0.1", 3, 1)


def test_too_big_toward_a_floating_ip_answers_outside_from_the_gateway_quoting_the_fip():
    pkt = inbound("203.0.113.101", mac("fip-a1-port"), pkt_len=1600)
    kind, err = answer("hv1", pkt, size=1586)
    assert kind == "too-big" and err.port == PATCH
    eth, ip4, msg = decode(err)
    # from the floating IP's MAC (never the gateway port's), to the way back
    assert (eth.src, eth.dst) == (mac("fip-a1-port"), UPSTREAM["203.0.113.1"])
    assert ip4.src == "203.0.113.10" and ip4.dst == "8.8.8.8"
    assert msg.data.mtu == 1450
    head = quoted_header(msg)
    assert (head.dst, head.ttl) == ("203.0.113.101", 60)       # DNAT and TTL undone


def test_no_error_for_a_reply_unnated_from_the_gateway_address():
    """A too-big reply to SNAT from outside, unNATed to a VM without a floating IP: its
    original destination port is only in conntrack, so no error (docs/routing.md)."""
    pkt = inbound("10.1.0.12", mac("r1-gw"), sport=80, dport=40000, pkt_len=1600)
    pkt = {**pkt, "reg4": 0xFF54, "reg5": 2, "metadata": 0x65}
    data = frame({**pkt, "eth_dst": UPSTREAM["203.0.113.1"]}, size=1586)
    assert errors.answer("too-big", data, fields_of(pkt), PATCH, view("hv1"), {}) == \
        "un-NATed from the gateway address"


def test_no_error_about_an_icmp_error_a_fragment_or_from_a_tunnel():
    base = routed("a-vm2", "10.2.0.11", nw_ttl=1)
    _, why = answer("hv1", {**base, "ip_proto": 1, "icmpv4_type": 3, "icmpv4_code": 1})
    assert why == "an ICMP error"
    data = bytearray(frame(base))
    data[14 + 6:14 + 8] = struct.pack("!H", 0x2000 | 10)       # a non-first fragment
    _, at = punted("hv1", base)
    assert errors.answer("ttl", bytes(data), fields_of(at), base["in_port"], view("hv1"),
                         {}) == "fragment, broadcast or multicast"
    assert errors.answer("ttl", frame(base), {**fields_of(at), "reg5": 1}, 201,
                         view("hv1"), {}) == "from a tunnel"


def test_quote_restores_ttl_and_destination_with_a_valid_checksum():
    head = ipv4.ipv4(src="10.0.0.1", dst="10.9.9.9", ttl=7, proto=17, total_length=28)
    raw = bytes(head.serialize(bytes(8), None)) + bytes(range(8)) + b"rest"
    quoted = errors.quote(raw, 1, "203.0.113.5")
    parsed = ipv4.ipv4.parser(quoted)[0]
    assert (parsed.ttl, parsed.dst, parsed.src) == (8, "203.0.113.5", "10.0.0.1")
    assert quoted[20:] == bytes(range(8))
    words = struct.unpack("!10H", quoted[:20])
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    assert total == 0xFFFF                                       # checksum holds


def test_rate_limit_is_a_token_bucket_per_chassis():
    gen = errors.IcmpErrors(rate=10, burst=5, per_source=1000, source_burst=1000)
    pkt = routed("a-vm2", "10.2.0.11", nw_ttl=1)
    _, at = punted("hv1", pkt)
    vifs = {o: p for p, o in VIF_OFPORTS["hv1"].items()}
    sent = [gen.handle("ttl", frame(pkt), fields_of(at), pkt["in_port"], view("hv1"), vifs,
                       now=100.0) for _ in range(20)]
    assert sum(e is not None for e in sent) == 5 and gen.counts.limited == 15
    later = [gen.handle("ttl", frame(pkt), fields_of(at), pkt["in_port"], view("hv1"), vifs,
                        now=101.0) for _ in range(20)]
    assert sum(e is not None for e in later) == 5           # 10 a second, capped at 5
    assert gen.counts.sent["ttl"] == 10


def test_one_flooding_sender_does_not_use_up_the_chassis_errors():
    gen = errors.IcmpErrors(rate=100, burst=100, per_source=2, source_burst=3)
    vifs = {o: p for p, o in VIF_OFPORTS["hv1"].items()}
    flooder = routed("a-vm2", "10.2.0.11", nw_ttl=1)
    other = routed("a-vm1", "10.2.0.11", nw_ttl=1)
    _, at = punted("hv1", flooder)
    _, at_other = punted("hv1", other)
    flood = [gen.handle("ttl", frame(flooder), fields_of(at), flooder["in_port"],
                        view("hv1"), vifs, now=5.0) for _ in range(50)]
    assert sum(e is not None for e in flood) == 3                 # its own burst
    assert gen.handle("ttl", frame(other), fields_of(at_other), other["in_port"],
                      view("hv1"), vifs, now=5.0) is not None     # the others still get one
    again = [gen.handle("ttl", frame(flooder), fields_of(at), flooder["in_port"],
                        view("hv1"), vifs, now=6.0) for _ in range(50)]
    assert sum(e is not None for e in again) == 2                 # 2 a second
    assert len(gen.sources) == 2


def test_the_senders_remembered_are_bounded():
    gen = errors.IcmpErrors()
    gen.SOURCES = 8
    for i in range(20):
        gen._source(bytes(26) + bytes([10, 0, 0, i]))
    assert len(gen.sources) == 8 and bytes([10, 0, 0, 19]) in gen.sources


def test_check_pkt_larger_lowers_to_ovs_nx_action_bytes():
    action = check_pkt_larger(CheckPktLarger(1464, "flags", 2))
    buf = bytearray()
    action.serialize(buf, 0)
    # OFPAT_EXPERIMENTER, len 24, NX vendor, subtype 49, pkt_len, offset, NXM_NX_REG5
    assert bytes(buf) == struct.pack("!HHIHHHI6x", 0xFFFF, 24, 0x2320, 49, 1464, 2,
                                     0x00010A04)


@pytest.mark.parametrize("dst", ["10.2.0.11", "10.2.0.50", "10.2.0.77"])
def test_only_addresses_no_port_holds_go_to_the_agent(dst):
    result = Pipeline(compile_view(view("hv1"))).run(routed("a-vm2", dst))
    assert bool(result.controller) == (dst == "10.2.0.77"), result.explain()
    assert bool(result.outputs) == (dst != "10.2.0.77")


def test_the_agent_answers_an_invalid_ttl_packet_in_out_of_its_in_port():
    """The dispatch: an OFPR_INVALID_TTL packet-in (dec_ttl's, no userdata) with the
    pipeline's registers becomes a time exceeded sent out of the in-port, counted."""
    async def go():
        server, switch = L3Server(wire_model()), FakeSwitch()
        switch.plug("tap2", "a-vm2", 2)
        async with Running(make_agent(server, switch)) as agent:
            await until(lambda: agent.view is not None and "a-vm2" in agent.view.vif_ofports)
            await settle(agent)
            zone = dict((r.id, z) for r, z in programmed(agent.view))["r1"]
            pkt = routed("a-vm2", "10.2.0.11", nw_ttl=1)
            before = len(switch.sent)
            switch.on_packet_in(PacketIn("", 2, 0, 47, frame(pkt), ofp.OFPR_INVALID_TTL,
                                         {"in_port": 2, "metadata": 0x65, "reg4": zone,
                                          "reg6": 12}))
            assert len(switch.sent) == before + 1
            port, data = switch.sent[-1]
            _, ip4, msg = decode(errors.Error("ttl", port, data))
            assert port == 2 and (ip4.src, msg.type) == ("10.1.0.1", 11)
            assert agent.counters.icmp_errors == 1
    asyncio.run(go())
