"""The agent's IPv6 services on the dual-stack reference (tests/golden/ipv6_reference.py):
router advertisements (``agent.ra``) and the DHCPv6 responder (``agent.dhcp6``). Client
frames are built by hand as a VM sends them; replies are parsed back field by field,
checksums recomputed."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from plexus.agent import dhcp6, ipv6, ra
from plexus.pipeline.stages.dhcp import SERVER_MAC
from plexus.pipeline.stages.router import eui64, link_local
from tests.golden import ipv6_reference as ref6
from tests.golden.l3_reference import mac

CLIENT_DUID = struct.pack("!HH", 3, 1) + bytes.fromhex("fa163e00a101")


def rs_frame(src_mac: str, hop_limit: int = 255, code: int = 0) -> bytes:
    src = link_local(src_mac)
    body = struct.pack("!BBHI", 133, code, 0, 0) + struct.pack("!BB", 1, 1) + ipv6.mac_bytes(
        src_mac)
    csum = ipv6.checksum(src, "ff02::2", 58, body)
    body = body[:2] + struct.pack("!H", csum) + body[4:]
    return ipv6.frame(src_mac, "33:33:00:00:00:02", src, "ff02::2", 58, body,
                      hop_limit=hop_limit)


def ra_options(frame: bytes):
    pkt = ipv6.parse(frame)
    assert pkt is not None and pkt.proto == 58 and pkt.hop_limit == 255
    assert ipv6.valid_checksum(pkt)
    kind, code, _, hops, flags, lifetime, reach, retrans = struct.unpack_from(
        "!BBHBBHII", pkt.payload)
    assert (kind, code, hops, reach, retrans) == (134, 0, 64, 0, 0)
    opts, i, body = [], 16, pkt.payload
    while i < len(body):
        t, n = body[i], body[i + 1] * 8
        opts.append((t, body[i + 2:i + n]))
        i += n
    return pkt, flags, lifetime, opts


def prefixes(opts):
    out = {}
    for t, v in opts:
        if t == 3:
            plen, pflags, valid, preferred = struct.unpack_from("!BBII", v)
            out[str(ipaddress.IPv6Address(v[14:30])) + f"/{plen}"] = (pflags, valid, preferred)
    return out


def test_rs_on_a_slaac_network_gets_the_routers_advertisement():
    view = ref6.view("hv1")
    port = view.ports["a-vm1"]
    frames = ra.answer(rs_frame(port.mac), port, view)
    assert len(frames) == 1
    pkt, flags, lifetime, opts = ra_options(frames[0])
    router_mac = mac("r1-a")
    assert (pkt.src_mac, pkt.dst_mac) == (router_mac, "33:33:00:00:00:01")
    assert (pkt.src, pkt.dst) == (link_local(router_mac), "ff02::1")
    assert flags == 0 and lifetime == ra.ROUTER_LIFETIME           # no M, no O: slaac
    assert (1, ipv6.mac_bytes(router_mac)) in opts                  # source link-layer
    assert (5, struct.pack("!HI", 0, 1450)) in opts                 # the network's MTU
    assert prefixes(opts) == {"2001:db8:a::/64": (0xC0, 86400, 14400)}   # on-link, auto
    rdnss = [v for t, v in opts if t == 25]
    assert rdnss and ipaddress.IPv6Address(rdnss[0][6:22]) == ipaddress.IPv6Address(
        "2001:db8::53")


def test_slaac_address_from_the_advertised_prefix_is_what_the_api_assigned():
    """A host forms its address from the advertised /64 and its MAC (EUI-64): the same
    address the port holds (and l3_neighbor routes to)."""
    view = ref6.view("hv1")
    port = view.ports["a-vm1"]
    pkt, _, _, opts = ra_options(ra.answer(rs_frame(port.mac), port, view)[0])
    (prefix,) = prefixes(opts)
    assert eui64(prefix, port.mac) in port.addresses()


@pytest.mark.parametrize("mode,flags,pflags", [
    ("dhcpv6-stateful", ra.FLAG_MANAGED, 0x80),
    ("dhcpv6-stateless", ra.FLAG_OTHER, 0xC0),
])
def test_flags_follow_the_ra_mode(mode, flags, pflags):
    objs = ref6.objects()
    objs["subnets"]["sub-a6"].update(ipv6_ra_mode=mode, ipv6_address_mode=mode)
    view = ref6.view("hv1", objs)
    port = view.ports["a-vm1"]
    _, got, _, opts = ra_options(ra.answer(rs_frame(port.mac), port, view)[0])
    assert got == flags
    assert prefixes(opts)["2001:db8:a::/64"][0] == pflags
    assert not [v for t, v in opts if t == 25]      # RDNSS only for slaac subnets


def test_a_subnet_without_ra_mode_is_advertised_without_prefix():
    objs = ref6.objects()
    objs["subnets"]["sub-a6"].update(ipv6_ra_mode=None, ipv6_address_mode=None)
    view = ref6.view("hv1", objs)
    port = view.ports["a-vm1"]
    _, flags, lifetime, opts = ra_options(ra.answer(rs_frame(port.mac), port, view)[0])
    assert prefixes(opts) == {} and lifetime > 0


@pytest.mark.parametrize("bad", [dict(hop_limit=64), dict(code=1)])
def test_invalid_solicitations_are_not_answered(bad):
    view = ref6.view("hv1")
    port = view.ports["a-vm1"]
    assert ra.answer(rs_frame(port.mac, **bad), port, view) == []
    assert ra.answer(b"\x00" * 30, port, view) == []


def test_unsolicited_advertisements_go_to_each_local_vif_of_advertising_networks():
    view = ref6.view("hv1")
    sent = ra.unsolicited(view)
    assert sorted(sent) == sorted(view.vif_ofports.values())
    assert all(len(frames) == 1 for frames in sent.values())
    # a network whose router has no IPv6 interface gets none
    objs = ref6.objects()
    for pid in ("r2-c",):
        objs["ports"][pid]["fixed_ips"] = [f for f in objs["ports"][pid]["fixed_ips"]
                                           if ":" not in f["ip_address"]]
    view = ref6.view("hv1", objs)
    c_ports = {view.vif_ofports[p] for p in ("c-vm1", "c-vm3")}
    assert not c_ports & set(ra.unsolicited(view))


# --- DHCPv6 ---------------------------------------------------------------------------

def dhcp6_frame(port_mac: str, kind: int, opts: bytes, xid: bytes = b"\x01\x02\x03") -> bytes:
    return ipv6.udp6(port_mac, "33:33:00:01:00:02", link_local(port_mac), "ff02::1:2",
                     546, 547, bytes([kind]) + xid + opts)


def opt(code: int, value: bytes) -> bytes:
    return struct.pack("!HH", code, len(value)) + value


def ia_na(iaid: bytes = b"\0\0\0\x07", inner: bytes = b"") -> bytes:
    return opt(3, iaid + struct.pack("!II", 0, 0) + inner)


def parse_reply(frame: bytes, port_mac: str):
    pkt = ipv6.parse(frame)
    assert pkt is not None and ipv6.valid_checksum(pkt)
    assert (pkt.src_mac, pkt.dst_mac) == (SERVER_MAC, port_mac)
    assert (pkt.src, pkt.dst) == (link_local(SERVER_MAC), link_local(port_mac))
    sport, dport = struct.unpack_from("!HH", pkt.payload)
    assert (sport, dport) == (547, 546)
    body = pkt.payload[8:]
    return body[0], body[1:4], dhcp6.options(body[4:])


def addresses_of(opts):
    out = []
    for ia in opts.get(3, []):
        inner = dhcp6.options(ia[12:])
        out += [(str(ipaddress.IPv6Address(a[:16])), struct.unpack("!II", a[16:24]))
                for a in inner.get(5, [])]
    return out


def test_stateful_solicit_request_renew_give_the_ports_fixed_ip():
    view = ref6.view("hv2")
    port = view.ports["b-vm1"]
    kind, xid, opts = parse_reply(dhcp6.respond(dhcp6_frame(
        port.mac, dhcp6.SOLICIT, opt(1, CLIENT_DUID) + ia_na()), port, view), port.mac)
    assert kind == dhcp6.ADVERTISE and xid == b"\x01\x02\x03"
    assert opts[2] == [dhcp6.server_duid()] and opts[1] == [CLIENT_DUID]
    assert addresses_of(opts) == [("2001:db8:b::11", (86400, 86400))]
    assert opts[3][0][:4] == b"\0\0\0\x07"                     # the client's IAID
    assert ipaddress.IPv6Address(opts[23][0]) == ipaddress.IPv6Address("2001:db8::53")
    assert opts[24] == [b"\x0eopenstacklocal\x00"]
    server = opt(2, dhcp6.server_duid())
    for kind in (dhcp6.REQUEST, dhcp6.RENEW):
        got, _, opts = parse_reply(dhcp6.respond(dhcp6_frame(
            port.mac, kind, opt(1, CLIENT_DUID) + server + ia_na()), port, view), port.mac)
        assert got == dhcp6.REPLY and addresses_of(opts) == [("2001:db8:b::11",
                                                               (86400, 86400))]
    # rapid commit: a REPLY at once
    got, _, opts = parse_reply(dhcp6.respond(dhcp6_frame(
        port.mac, dhcp6.SOLICIT, opt(1, CLIENT_DUID) + opt(14, b"") + ia_na()), port, view),
        port.mac)
    assert got == dhcp6.REPLY and 14 in opts


def test_an_address_that_is_not_the_ports_is_given_back_with_lifetime_zero():
    view = ref6.view("hv2")
    port = view.ports["b-vm1"]
    old = opt(5, ipaddress.IPv6Address("2001:db8:b::99").packed + struct.pack("!II", 1, 1))
    _, _, opts = parse_reply(dhcp6.respond(dhcp6_frame(
        port.mac, dhcp6.REBIND, opt(1, CLIENT_DUID) + ia_na(inner=old)), port, view), port.mac)
    assert sorted(addresses_of(opts)) == [("2001:db8:b::11", (86400, 86400)),
                                          ("2001:db8:b::99", (0, 0))]


def test_confirm_release_decline_and_foreign_server():
    view = ref6.view("hv2")
    port = view.ports["b-vm1"]
    here = opt(5, ipaddress.IPv6Address("2001:db8:b::11").packed + bytes(8))
    away = opt(5, ipaddress.IPv6Address("2001:db8:99::11").packed + bytes(8))
    for inner, status in ((here, 0), (away, 4)):
        _, _, opts = parse_reply(dhcp6.respond(dhcp6_frame(
            port.mac, dhcp6.CONFIRM, opt(1, CLIENT_DUID) + ia_na(inner=inner)), port, view),
            port.mac)
        assert struct.unpack("!H", opts[13][0][:2])[0] == status
    server = opt(2, dhcp6.server_duid())
    for kind in (dhcp6.RELEASE, dhcp6.DECLINE):
        got, _, opts = parse_reply(dhcp6.respond(dhcp6_frame(
            port.mac, kind, opt(1, CLIENT_DUID) + server + ia_na()), port, view), port.mac)
        assert got == dhcp6.REPLY and opts[13][0][:2] == b"\0\0"
    other = opt(2, struct.pack("!HH", 3, 1) + bytes(6))
    assert dhcp6.respond(dhcp6_frame(port.mac, dhcp6.REQUEST,
                                     opt(1, CLIENT_DUID) + other + ia_na()), port, view) is None


def test_stateless_information_request_and_solicit():
    view = ref6.view("hv1")
    port = view.ports["c-vm1"]
    got, _, opts = parse_reply(dhcp6.respond(dhcp6_frame(
        port.mac, dhcp6.INFORMATION_REQUEST, opt(1, CLIENT_DUID) + opt(6, b"\x00\x17\x00\x18")),
        port, view), port.mac)
    assert got == dhcp6.REPLY and 3 not in opts and opts[24] == [b"\x0eopenstacklocal\x00"]
    got, _, opts = parse_reply(dhcp6.respond(dhcp6_frame(
        port.mac, dhcp6.SOLICIT, opt(1, CLIENT_DUID) + ia_na()), port, view), port.mac)
    assert got == dhcp6.ADVERTISE and struct.unpack("!H", opts[13][0][:2])[0] == 2


@pytest.mark.parametrize("frame", [
    b"", b"\x00" * 80,
    # from another MAC than the port's
    ipv6.udp6("fa:16:3e:99:99:99", "33:33:00:01:00:02", "fe80::1", "ff02::1:2", 546, 547,
              b"\x0b\x00\x00\x01"),
])
def test_garbage_and_foreign_frames_are_not_answered(frame):
    view = ref6.view("hv2")
    assert dhcp6.respond(frame, view.ports["b-vm1"], view) is None


def test_a_port_without_dhcpv6_subnets_is_not_answered():
    view = ref6.view("hv1")
    port = view.ports["a-vm1"]          # slaac only
    assert dhcp6.respond(dhcp6_frame(port.mac, dhcp6.INFORMATION_REQUEST, b""),
                         port, view) is None


def test_truncated_frames_never_raise():
    view = ref6.view("hv2")
    port = view.ports["b-vm1"]
    whole = dhcp6_frame(port.mac, dhcp6.SOLICIT, opt(1, CLIENT_DUID) + ia_na())
    for cut in range(len(whole)):
        dhcp6.respond(whole[:cut], port, view)


def test_a_solicitation_for_the_routers_link_local_address_is_answered():
    """The VMs' default router is the router port's link-local address: its neighbour
    entry stays reachable (multicast and unicast NUD solicitations get answers)."""
    view = ref6.view("hv1")
    port = view.ports["a-vm1"]
    lla = link_local(mac("r1-a"))
    ns = ipv6.neighbor_solicit(port.mac, lla, src=link_local(port.mac))
    pkt, target, lladdr = ipv6.nd_message(ra.neighbor_answer(ns, port, view), 136)
    assert (target, lladdr) == (lla, mac("r1-a"))
    assert (pkt.src, pkt.dst, pkt.dst_mac) == (lla, link_local(port.mac), port.mac)
    assert pkt.payload[4] & 0xE0 == 0xE0                   # router, solicited, override
    other = ipv6.neighbor_solicit(port.mac, "fe80::1", src=link_local(port.mac))
    assert ra.neighbor_answer(other, port, view) is None
    dad = ipv6.nd_message(ra.neighbor_answer(
        ipv6.neighbor_solicit(port.mac, lla, src="::"), port, view), 136)[0]
    assert dad.dst == "ff02::1" and dad.payload[4] & 0x40 == 0     # not solicited
