"""Tagged frames from inside a VM namespace, for kernels without 802.1Q support (this
lab machine has no ``8021q`` module, so no ``eth0.100``): sends one 802.1Q-tagged ICMP
echo request or DHCPDISCOVER out of an interface by a packet socket and prints what
came back and in which VLAN (the kernel moves a received tag into the packet's
auxiliary data; both places are read).

    python vlan_probe.py IFACE VLAN SRC_MAC SRC_IP ping DST_MAC DST_IP
    python vlan_probe.py IFACE VLAN SRC_MAC 0.0.0.0 dhcp

Prints ``vlan=N reply=IP`` (ping: the replier; dhcp: the offered address), exit 0; or
``none`` and exit 1 after 3 s."""

from __future__ import annotations

import socket
import struct
import sys
import time

SOL_PACKET, PACKET_AUXDATA, TP_STATUS_VLAN_VALID = 263, 8, 0x10


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0,
                       socket.inet_aton(src), socket.inet_aton(dst))
    return head[:10] + struct.pack("!H", checksum(head)) + head[12:] + payload


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def tagged(dst: bytes, src: bytes, vlan: int, ethertype: int, payload: bytes) -> bytes:
    return dst + src + struct.pack("!HHH", 0x8100, vlan, ethertype) + payload


def echo_request(src_ip: str, dst_ip: str) -> bytes:
    body = struct.pack("!BBHHH", 8, 0, 0, 0x5151, 1) + b"plexus-trunk" * 4
    body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
    return ipv4(src_ip, dst_ip, 1, body)


def discover(src: bytes) -> bytes:
    bootp = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, 0x7a11, 0, 0x8000,
                        b"\0" * 4, b"\0" * 4, b"\0" * 4, b"\0" * 4, src + b"\0" * 10,
                        b"\0" * 64, b"\0" * 128)
    options = b"\x63\x82\x53\x63" + b"\x35\x01\x01" + b"\xff"
    udp_body = bootp + options
    udp = struct.pack("!HHHH", 68, 67, 8 + len(udp_body), 0) + udp_body
    return ipv4("0.0.0.0", "255.255.255.255", 17, udp)


def received(sock: socket.socket):
    """(vlan or None, frame without a tag) of the next frame."""
    data, ancdata, _, _ = sock.recvmsg(65535, socket.CMSG_SPACE(32))
    vlan = None
    for level, kind, value in ancdata:
        if level == SOL_PACKET and kind == PACKET_AUXDATA and len(value) >= 20:
            status, _, _, _, _, tci, _ = struct.unpack("IIIHHHH", value[:20])
            if status & TP_STATUS_VLAN_VALID:
                vlan = tci & 0xFFF
    if data[12:14] == b"\x81\x00":
        vlan = struct.unpack("!H", data[14:16])[0] & 0xFFF
        data = data[:12] + data[16:]
    return vlan, data


def main(argv: list[str]) -> int:
    iface, vlan, src_mac, src_ip, mode = argv[:5]
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    sock.bind((iface, 0))
    sock.settimeout(0.2)
    if mode == "ping":
        dst_mac, dst_ip = argv[5:7]
        frame = tagged(mac(dst_mac), mac(src_mac), int(vlan), 0x0800, echo_request(src_ip, dst_ip))
    else:
        frame = tagged(b"\xff" * 6, mac(src_mac), int(vlan), 0x0800, discover(mac(src_mac)))
    deadline = time.monotonic() + 3
    sent = 0.0
    while time.monotonic() < deadline:
        if time.monotonic() - sent > 1:
            sock.send(frame)
            sent = time.monotonic()
        try:
            got_vlan, data = received(sock)
        except socket.timeout:
            continue
        if data[12:14] != b"\x08\x00" or data[0:6] != mac(src_mac):
            continue
        ip = data[14:]
        proto, src = ip[9], socket.inet_ntoa(ip[12:16])
        l4 = ip[(ip[0] & 0xF) * 4:]
        if mode == "ping" and proto == 1 and l4[0] == 0 and src == argv[6]:
            print(f"vlan={got_vlan} reply={src}")
            return 0
        if mode == "dhcp" and proto == 17 and l4[0:4] == b"\x00\x43\x00\x44":
            print(f"vlan={got_vlan} reply={socket.inet_ntoa(l4[8 + 16:8 + 20])}")
            return 0
    print("none")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
