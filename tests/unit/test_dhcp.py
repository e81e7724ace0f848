"""The agent's DHCPv4 responder: real client frames built with os-ken in, every field
and option of the reply checked out (parsed back with os-ken, checksums recomputed by
hand)."""

from __future__ import annotations

import ipaddress
import random
import struct
from dataclasses import replace

import pytest
from os_ken.lib.packet import dhcp, ethernet, ipv4, packet, udp

from plexus.agent.dhcp import (
    LEASE_TIME, REBINDING_TIME, RENEWAL_TIME, SERVER_MAC, classless_routes, respond,
    server_ip,
)
from plexus.pipeline.view import NetworkView, PortView, SubnetView, View

MAC = "fa:16:3e:aa:bb:cc"
ROUTER_MAC = "fa:16:3e:00:00:01"
ROUTES = (("192.168.0.0/16", "10.0.0.254"), ("172.16.5.0/24", "10.0.0.253"))
NET = NetworkView("n1", key=100, network_type="vxlan", mtu=1450)
SUBNET = SubnetView("s1", "n1", "10.0.0.0/24", 4, "10.0.0.1", True,
                    dns_nameservers=("8.8.8.8", "1.1.1.1"), host_routes=ROUTES)
PORT = PortView("p1", 1, "n1", MAC, (("s1", "10.0.0.5"),), "hv1")
OTHER = PortView("p2", 2, "n1", "fa:16:3e:11:22:33", (("s1", "10.0.0.2"),), "hv2")
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)
BCAST = "255.255.255.255"


def make_view(subnet=SUBNET, ports=(PORT, OTHER), networks=(NET,)):
    return View("hv1", "192.168.50.1", networks={n.id: n for n in networks},
                subnets={subnet.id: subnet}, ports={p.id: p for p in ports},
                vif_ofports={"p1": 5})


def client_frame(kind, *, options=(), mac=MAC, chaddr=None, ciaddr="0.0.0.0",
                 src="0.0.0.0", dst=BCAST, eth_dst="ff:ff:ff:ff:ff:ff", flags=0,
                 xid=0x12345678, op=dhcp.DHCP_BOOT_REQUEST, giaddr="0.0.0.0"):
    """A client frame as a VM would send it, serialized by os-ken."""
    opts = [dhcp.option(53, bytes([kind]))] + [dhcp.option(t, v) for t, v in options]
    msg = dhcp.dhcp(op=op, chaddr=chaddr or mac, xid=xid, flags=flags, ciaddr=ciaddr,
                    giaddr=giaddr, options=dhcp.options(opts))
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst=eth_dst, src=mac, ethertype=0x0800))
    pkt.add_protocol(ipv4.ipv4(src=src, dst=dst, proto=17))
    pkt.add_protocol(udp.udp(src_port=68, dst_port=67))
    pkt.add_protocol(msg)
    pkt.serialize()
    return bytes(pkt.data)


def ip(text):
    return ipaddress.IPv4Address(text).packed


def ones_complement(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def parse_reply(frame: bytes):
    """(eth, ip, udp, dhcp, {tag: value}) of a reply, after checking both checksums."""
    eth_b, ip_b = frame[:14], frame[14:]
    ihl = (ip_b[0] & 0xF) * 4
    total = struct.unpack("!H", ip_b[2:4])[0]
    assert ones_complement(ip_b[:ihl]) == 0, "IPv4 header checksum"
    seg = ip_b[ihl:total]
    pseudo = ip_b[12:20] + struct.pack("!BBH", 0, 17, len(seg))
    assert struct.unpack("!H", seg[6:8])[0] != 0, "UDP checksum must be filled in"
    assert ones_complement(pseudo + seg) == 0, "UDP checksum"
    pkt = packet.Packet(frame)
    e, i, u, d = (pkt.get_protocol(c) for c in (ethernet.ethernet, ipv4.ipv4, udp.udp,
                                                   dhcp.dhcp))
    assert e and i and u and d
    opts: dict[int, bytes] = {}
    for o in d.options.option_list:
        assert isinstance(o, dhcp.option)
        opts[o.tag] = opts.get(o.tag, b"") + o.value
    return e, i, u, d, opts


def answer(frame, view=None, port=PORT, **kw):
    out = respond(frame, port, view or make_view(), **kw)
    assert out is not None
    return parse_reply(out)


EXPECTED_121 = (b"\x10\xc0\xa8" + ip("10.0.0.254") + b"\x18\xac\x10\x05" + ip("10.0.0.253")
                + b"\x00" + ip("10.0.0.1"))


def assert_configuration(opts):
    assert opts[1] == ip("255.255.255.0")
    assert opts[3] == ip("10.0.0.1")
    assert opts[6] == ip("8.8.8.8") + ip("1.1.1.1")
    assert opts[26] == struct.pack("!H", 1450)
    assert opts[28] == ip("10.0.0.255")
    assert opts[121] == EXPECTED_121
    assert opts[12] == b"host-10-0-0-5"
    assert opts[15] == b"openstacklocal"        # the cloud's dns_domain (default)
    assert opts[54] == ip("10.0.0.1")
    assert opts[51] == struct.pack("!I", LEASE_TIME) == struct.pack("!I", 86400)
    assert opts[58] == struct.pack("!I", RENEWAL_TIME) == struct.pack("!I", 43200)
    assert opts[59] == struct.pack("!I", REBINDING_TIME) == struct.pack("!I", 75600)


def test_discover_gets_an_offer_with_every_option():
    e, i, u, d, opts = answer(client_frame(DISCOVER, options=[(55, bytes([1, 3, 6, 121]))]))
    assert (e.dst, e.src, e.ethertype) == (MAC, SERVER_MAC, 0x0800)
    assert (i.src, i.dst, i.proto, i.ttl) == ("10.0.0.1", BCAST, 17, 64)
    assert (u.src_port, u.dst_port) == (67, 68)
    assert (d.op, d.htype, d.hlen, d.xid, d.flags) == (2, 1, 6, 0x12345678, 0)
    assert (d.chaddr, d.yiaddr, d.siaddr, d.ciaddr, d.giaddr) == (
        MAC, "10.0.0.5", "10.0.0.1", "0.0.0.0", "0.0.0.0")
    assert d.options.magic_cookie == "99.130.83.99"
    assert opts[53] == bytes([OFFER])
    assert_configuration(opts)
    assert set(opts) == {1, 3, 6, 12, 15, 26, 28, 51, 53, 54, 58, 59, 121}


def test_request_selecting_gets_an_ack():
    frame = client_frame(REQUEST, options=[(50, ip("10.0.0.5")), (54, ip("10.0.0.1"))])
    e, i, u, d, opts = answer(frame)
    assert opts[53] == bytes([ACK])
    assert (e.dst, i.src, i.dst, u.dst_port) == (MAC, "10.0.0.1", BCAST, 68)
    assert (d.yiaddr, d.siaddr, d.ciaddr, d.xid) == ("10.0.0.5", "10.0.0.1", "0.0.0.0",
                                                     0x12345678)
    assert_configuration(opts)


def test_request_init_reboot_without_server_id_gets_an_ack():
    _, i, _, d, opts = answer(client_frame(REQUEST, options=[(50, ip("10.0.0.5"))]))
    assert (opts[53], d.yiaddr, i.dst) == (bytes([ACK]), "10.0.0.5", BCAST)


def test_renewal_unicast_to_the_server_gets_a_unicast_ack():
    frame = client_frame(REQUEST, ciaddr="10.0.0.5", src="10.0.0.5", dst="10.0.0.1",
                         eth_dst=ROUTER_MAC)
    e, i, u, d, opts = answer(frame)
    assert opts[53] == bytes([ACK])
    assert (e.dst, i.src, i.dst, u.src_port, u.dst_port) == (MAC, "10.0.0.1", "10.0.0.5",
                                                             67, 68)
    assert (d.ciaddr, d.yiaddr) == ("10.0.0.5", "10.0.0.5")
    assert_configuration(opts)


def test_rebinding_broadcast_with_ciaddr_gets_a_unicast_ack():
    _, i, _, d, opts = answer(client_frame(REQUEST, ciaddr="10.0.0.5", src="10.0.0.5"))
    assert (opts[53], i.dst, d.ciaddr) == (bytes([ACK]), "10.0.0.5", "10.0.0.5")


def test_broadcast_flag_forces_a_broadcast_reply_and_is_echoed():
    _, i, _, d, _ = answer(client_frame(REQUEST, ciaddr="10.0.0.5", flags=0x8000))
    assert (i.dst, d.flags) == (BCAST, 0x8000)


def test_a_foreign_server_id_does_not_silence_the_authoritative_server():
    frame = client_frame(REQUEST, options=[(50, ip("10.0.0.5")), (54, ip("10.9.9.9"))])
    _, _, _, _, opts = answer(frame)
    assert (opts[53], opts[54]) == (bytes([ACK]), ip("10.0.0.1"))


@pytest.mark.parametrize("frame", [
    client_frame(REQUEST, options=[(50, ip("10.0.0.99")), (54, ip("10.0.0.1"))]),
    client_frame(REQUEST, options=[(50, ip("10.0.0.99"))]),
    client_frame(REQUEST, ciaddr="10.0.0.99", src="10.0.0.99", dst="10.0.0.1"),
], ids=["selecting", "init-reboot", "renewing"])
def test_a_request_for_another_address_gets_a_nak(frame):
    e, i, u, d, opts = answer(frame)
    assert opts == {53: bytes([NAK]), 54: ip("10.0.0.1")}
    assert (e.dst, e.src, i.src, i.dst, u.dst_port) == (MAC, SERVER_MAC, "10.0.0.1",
                                                         BCAST, 68)
    assert (d.yiaddr, d.siaddr, d.ciaddr, d.xid) == ("0.0.0.0",) * 3 + (0x12345678,)


def test_inform_gets_an_ack_without_address_or_lease():
    e, i, _, d, opts = answer(client_frame(INFORM, ciaddr="10.0.0.5", src="10.0.0.5"))
    assert opts[53] == bytes([ACK])
    assert (d.yiaddr, d.ciaddr, i.dst, e.dst) == ("0.0.0.0", "10.0.0.5", "10.0.0.5", MAC)
    assert not {12, 51, 58, 59} & set(opts)
    assert (opts[1], opts[3], opts[121]) == (ip("255.255.255.0"), ip("10.0.0.1"),
                                             EXPECTED_121)


@pytest.mark.parametrize("frame", [
    client_frame(INFORM, ciaddr="10.0.0.77", src="10.0.0.77"),
    client_frame(RELEASE, ciaddr="10.0.0.5", src="10.0.0.5", dst="10.0.0.1"),
    client_frame(DECLINE, options=[(50, ip("10.0.0.5")), (54, ip("10.0.0.1"))]),
    client_frame(OFFER), client_frame(ACK), client_frame(NAK), client_frame(42),
    client_frame(REQUEST),                                  # asks for no address at all
    client_frame(REQUEST, options=[(50, b"\x0a\x00")]),     # short requested-IP option
], ids=["inform-foreign", "release", "decline", "offer", "ack", "nak", "unknown",
        "request-nothing", "request-short"])
def test_messages_not_answered(frame):
    assert respond(frame, PORT, make_view()) is None


def test_server_mac_can_be_chosen():
    e, *_ = answer(client_frame(DISCOVER), server_mac="02:00:00:00:00:AA")
    assert e.src == "02:00:00:00:00:aa"
    assert int(SERVER_MAC.split(":")[0], 16) & 0b11 == 0b10    # local, unicast


# --- who is served --------------------------------------------------------------------

@pytest.mark.parametrize("frame", [
    client_frame(DISCOVER, mac="fa:16:3e:11:22:33"),                     # other VM
    client_frame(DISCOVER, chaddr="fa:16:3e:11:22:33"),                  # chaddr differs
    client_frame(DISCOVER, mac="fa:16:3e:11:22:33", chaddr=MAC),         # spoofed source
], ids=["other-mac", "other-chaddr", "other-source"])
def test_a_foreign_mac_is_not_answered(frame):
    assert respond(frame, PORT, make_view()) is None


def test_mac_comparison_ignores_case():
    port = replace(PORT, mac=MAC.upper())
    e, *_ = answer(client_frame(DISCOVER), port=port, view=make_view(ports=(port,)))
    assert e.dst == MAC


@pytest.mark.parametrize("view, port", [
    (make_view(subnet=replace(SUBNET, enable_dhcp=False)), PORT),
    (make_view(subnet=replace(SUBNET, id="other")), PORT),             # subnet unknown
    (make_view(), replace(PORT, ips=())),                              # no address
    (make_view(subnet=replace(SUBNET, cidr="fd00::/64", ip_version=6, gateway_ip=None)),
     replace(PORT, ips=(("s1", "fd00::5"),))),
], ids=["dhcp-disabled", "unknown-subnet", "no-address", "ipv6-only"])
def test_ports_dhcp_does_not_serve_get_nothing(view, port):
    assert respond(client_frame(DISCOVER), port, view) is None


def test_the_first_dhcp_enabled_ipv4_address_is_leased():
    v6 = SubnetView("s6", "n1", "fd00::/64", 6, None, True)
    off = SubnetView("s0", "n1", "10.1.0.0/24", 4, None, False)
    port = replace(PORT, ips=(("s6", "fd00::5"), ("s0", "10.1.0.5"), ("s1", "10.0.0.5")))
    view = replace(make_view(ports=(port,)), subnets={s.id: s for s in (v6, off, SUBNET)})
    _, _, _, d, _ = answer(client_frame(DISCOVER), view=view, port=port)
    assert d.yiaddr == "10.0.0.5"


# --- options --------------------------------------------------------------------------

def test_without_gateway_no_router_and_server_is_first_unused_address():
    subnet = replace(SUBNET, gateway_ip=None, host_routes=(), dns_nameservers=())
    e, i, _, d, opts = answer(client_frame(DISCOVER), view=make_view(subnet=subnet))
    assert 3 not in opts and 6 not in opts and 121 not in opts
    assert opts[54] == ip("10.0.0.1") and (i.src, d.siaddr) == ("10.0.0.1", "10.0.0.1")
    taken = replace(OTHER, ips=(("s1", "10.0.0.1"),))
    port = replace(PORT, ips=(("s1", "10.0.0.2"),))
    view = make_view(subnet=subnet, ports=(port, taken))
    assert server_ip(subnet, view) == "10.0.0.3"
    _, i, _, d, opts = answer(client_frame(DISCOVER), view=view, port=port)
    assert (opts[54], i.src, d.yiaddr) == (ip("10.0.0.3"), "10.0.0.3", "10.0.0.2")
    # the port itself counts as used even when the view does not list it
    assert server_ip(subnet, make_view(subnet=subnet, ports=(taken,)), ["10.0.0.2"]) \
        == "10.0.0.3"


def test_routes_without_gateway_carry_no_default_route():
    subnet = replace(SUBNET, gateway_ip=None)
    _, _, _, _, opts = answer(client_frame(DISCOVER), view=make_view(subnet=subnet))
    assert opts[121] == EXPECTED_121[:-5]
    assert 3 not in opts


def test_an_explicit_default_route_is_not_doubled():
    routes = (("169.254.169.254/32", "10.0.0.2"), ("0.0.0.0/0", "10.0.0.9"),
              ("10.1.2.128/25", "10.0.0.3"), ("fd00::/64", "fd00::1"))
    subnet = replace(SUBNET, host_routes=routes)
    _, _, _, _, opts = answer(client_frame(DISCOVER), view=make_view(subnet=subnet))
    assert opts[121] == (b"\x20\xa9\xfe\xa9\xfe" + ip("10.0.0.2")
                         + b"\x00" + ip("10.0.0.9")
                         + b"\x19\x0a\x01\x02\x80" + ip("10.0.0.3"))
    assert opts[3] == ip("10.0.0.1")


def test_classless_route_encoding_rfc3442():
    assert classless_routes([("0.0.0.0/0", "10.0.0.1")]) == b"\x00\x0a\x00\x00\x01"
    assert classless_routes([("10.0.0.0/8", "10.0.0.1"), ("10.17.0.0/16", "10.0.0.1"),
                             ("10.27.129.0/24", "10.0.0.1"), ("10.229.0.128/25", "10.0.0.1"),
                             ("10.198.122.47/32", "10.0.0.1")]) == bytes.fromhex(
        "080a0a000001" "100a110a000001" "180a1b810a000001" "190ae500800a000001"
        "200ac67a2f0a000001")
    assert classless_routes([("10.1.2.3/8", "0.0.0.0")]) == b"\x08\x0a\x00\x00\x00\x00"


def test_options_longer_than_255_bytes_are_split():
    routes = tuple((f"10.{i}.0.0/16", "10.0.0.254") for i in range(1, 61))   # 7 B each
    subnet = replace(SUBNET, host_routes=routes)
    out = respond(client_frame(DISCOVER), PORT, make_view(subnet=subnet))
    *_, d, opts = parse_reply(out)
    assert [o.tag for o in d.options.option_list].count(121) == 2
    assert opts[121] == classless_routes(list(routes) + [("0.0.0.0/0", "10.0.0.1")])


def test_no_mtu_option_for_an_unknown_network():
    _, _, _, _, opts = answer(client_frame(DISCOVER), view=make_view(networks=()))
    assert 26 not in opts and opts[53] == bytes([OFFER])


def test_pad_options_in_the_request_are_skipped():
    frame = bytearray(client_frame(REQUEST, options=[(50, ip("10.0.0.5"))]))
    # rebuild the options as PAD, 53, PAD PAD, 50, END and fix lengths and checksums
    opts = b"\x00\x35\x01\x03\x00\x00\x32\x04" + ip("10.0.0.5") + b"\xff"
    base = 14 + 20 + 8 + 236 + 4
    payload = bytes(frame[42:base]) + opts
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst="ff:ff:ff:ff:ff:ff", src=MAC))
    pkt.add_protocol(ipv4.ipv4(src="0.0.0.0", dst=BCAST, proto=17))
    pkt.add_protocol(udp.udp(src_port=68, dst_port=67))
    pkt.add_protocol(payload)
    pkt.serialize()
    _, _, _, d, o = answer(bytes(pkt.data))
    assert (o[53], d.yiaddr) == (bytes([ACK]), "10.0.0.5")


# --- garbage --------------------------------------------------------------------------

def test_garbage_is_not_answered():
    rng = random.Random(7)
    frames = [b"", b"\x00", b"\xff" * 14, b"\xff" * 600, None, "text",
              bytes(rng.getrandbits(8) for _ in range(342))]
    for frame in frames:
        assert respond(frame, PORT, make_view()) is None


def test_every_truncation_is_not_answered():
    frame = client_frame(REQUEST, options=[(50, ip("10.0.0.5")), (54, ip("10.0.0.1"))])
    assert respond(frame, PORT, make_view()) is not None
    for n in range(len(frame)):
        assert respond(frame[:n], PORT, make_view()) is None, n


def _patched(frame: bytes, offset: int, data: bytes) -> bytes:
    return frame[:offset] + data + frame[offset + len(data):]


@pytest.mark.parametrize("mutate", [
    lambda f: _patched(f, 12, b"\x86\xdd"),                    # not IPv4
    lambda f: _patched(f, 14 + 9, b"\x06"),                    # not UDP
    lambda f: _patched(f, 14 + 6, b"\x20\x00"),                # a first fragment (MF)
    lambda f: _patched(f, 14 + 20 + 2, b"\x00\x44"),           # UDP to port 68
    lambda f: _patched(f, 14 + 20 + 4, b"\x00\x09"),           # UDP length wrong
    lambda f: _patched(f, 42, b"\x02"),                        # a BOOTREPLY
    lambda f: _patched(f, 42 + 2, b"\x08"),                    # hlen 8
    lambda f: _patched(f, 42 + 236, b"\x63\x82\x53\x00"),      # bad magic cookie
    lambda f: f[:-1] + b"\x00",                                # END missing (no frame fix)
], ids=["ipv6", "tcp", "fragment", "to-68", "udp-len", "bootreply", "hlen", "cookie",
        "no-end"])
def test_malformed_headers_are_not_answered(mutate):
    assert respond(mutate(client_frame(DISCOVER)), PORT, make_view()) is None


def test_relayed_request_and_overrunning_option_are_not_answered():
    assert respond(client_frame(DISCOVER, giaddr="10.0.0.1"), PORT, make_view()) is None
    frame = client_frame(DISCOVER, options=[(12, b"vm")])
    bad = frame[:-5] + b"\x0c\x09vm\xff"                      # option 12 claims 9 bytes
    assert respond(bad, PORT, make_view()) is None


def test_random_mutations_never_raise():
    rng = random.Random(1)
    good = client_frame(REQUEST, options=[(50, ip("10.0.0.5")), (12, b"vm1")])
    for _ in range(3000):
        frame = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            frame[rng.randrange(len(frame))] = rng.getrandbits(8)
        out = respond(bytes(frame), PORT, make_view())
        if out is not None:
            parse_reply(out)


def test_bad_view_data_is_logged_not_raised(caplog):
    view = make_view(subnet=replace(SUBNET, cidr="not-a-cidr"))
    assert respond(client_frame(DISCOVER), PORT, view) is None
    assert any(r.levelname == "WARNING" and "p1" in r.getMessage() for r in caplog.records)


def test_a_bytearray_frame_is_accepted():
    _, _, _, d, _ = answer(bytearray(client_frame(DISCOVER)))
    assert d.yiaddr == "10.0.0.5"
