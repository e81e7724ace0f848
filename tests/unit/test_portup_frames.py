"""bench/portup.py's ``--capture`` reads the first exchange off the VMs' and peers' eth0:
the frames it classifies are named from the side that sees them, by the address they
concern (the far end of the exchange)."""

from __future__ import annotations

import socket
import struct

from bench import portup

VM, PEER = "10.100.0.21", "10.100.0.2"
VM_MAC, PEER_MAC = bytes.fromhex("fa163e000001"), bytes.fromhex("fa163e800000")


def arp(op: int, sender: str, target: str) -> bytes:
    eth = (b"\xff" * 6 if op == 1 else PEER_MAC) + VM_MAC + struct.pack("!H", 0x0806)
    body = struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + VM_MAC + socket.inet_aton(sender) \
        + b"\0" * 6 + socket.inet_aton(target)
    return eth + body


def echo(kind: int, src: str, dst: str, seq: int) -> bytes:
    icmp = struct.pack("!BBHHH", kind, 0, 0, 7, seq) + b"plexus-portup"
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 0, 0, 64, 1, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    return PEER_MAC + VM_MAC + struct.pack("!H", 0x0800) + ip + icmp


def test_arp_requests_name_their_target_and_replies_their_sender():
    assert portup.frame_events(arp(1, VM, PEER), outgoing=True) == [
        ("arp_request_out", PEER)]
    assert portup.frame_events(arp(2, PEER, VM), outgoing=False) == [("arp_reply_in", PEER)]


def test_echoes_name_the_far_end_with_and_without_their_sequence():
    assert portup.frame_events(echo(8, VM, PEER, 3), outgoing=True) == [
        ("echo_request_out", PEER), ("echo_request_out_seq3", PEER)]
    assert portup.frame_events(echo(0, PEER, VM, 3), outgoing=False) == [
        ("echo_reply_in", PEER), ("echo_reply_in_seq3", PEER)]


def test_other_frames_tell_nothing():
    assert portup.frame_events(b"\0" * 20, outgoing=True) == []
    udp = bytearray(echo(8, VM, PEER, 1))
    udp[23] = 17
    assert portup.frame_events(bytes(udp), outgoing=False) == []
