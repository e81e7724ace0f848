"""A real DHCP client (busybox udhcpc) against the responder: two private namespaces
joined by a veth, the responder on an AF_PACKET socket in one, udhcpc in the other.
Checks a full DISCOVER/OFFER/REQUEST/ACK exchange and a unicast renewal (whose ACK the
client reads through its kernel UDP socket, so the UDP checksum must be right).
Skipped unless root with busybox udhcpc; nothing is created in the root namespace."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

MAC = "fa:16:3e:aa:bb:cc"


def _have_udhcpc() -> bool:
    busybox = shutil.which("busybox")
    return bool(busybox) and "udhcpc" in subprocess.run(
        [busybox, "--list"], capture_output=True, text=True).stdout.split()


pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not _have_udhcpc() or not shutil.which("ip"),
    reason="needs root, ip and busybox udhcpc")

RESPONDER = r'''
import socket, sys, time
from os_ken.lib.packet import dhcp, packet
from plexus.agent.dhcp import respond
from plexus.pipeline.view import NetworkView, PortView, SubnetView, View
net = NetworkView("n1", 100, "vxlan", 1400)
sub = SubnetView("s1", "n1", "10.0.0.0/24", 4, "10.0.0.1", True, ("10.0.0.53",),
                 (("192.168.0.0/16", "10.0.0.254"),))
port = PortView("p1", 1, "n1", sys.argv[1], (("s1", "10.0.0.5"),), "hv1")
view = View("hv1", "192.0.2.1", {"n1": net}, {"s1": sub}, {"p1": port}, vif_ofports={"p1": 1})
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
s.bind(("vif", 0))
print("ready", flush=True)
while True:
    frame = s.recv(4096)
    out = respond(frame, port, view)
    if out is not None:
        d = packet.Packet(frame).get_protocol(dhcp.dhcp)
        r = packet.Packet(out).get_protocol(dhcp.dhcp)
        kind = lambda m: [o.value[0] for o in m.options.option_list if o.tag == 53][0]
        print(f"in {kind(d)} ciaddr={d.ciaddr} dst={frame[30:34].hex()} out {kind(r)}",
              flush=True)
        # busybox sends its unicast renewal from a short-lived socket connected to the
        # server; a reply faster than its close() lands there and is lost (the client
        # then rebinds by broadcast). Real packet-in latency hides this; here, wait.
        time.sleep(0.05)
        s.send(out)
'''

SCRIPT = """#!/bin/sh
env | sort > "{out}.$1"
case "$1" in
  bound|renew) ip addr replace "$ip/$subnet" dev "$interface" ;;
esac
"""


@pytest.fixture
def lab(tmp_path):
    """Two namespaces (vm, srv) joined by eth0 <-> vif; removed afterwards."""
    vm, srv = f"plx-dhcpt-vm-{os.getpid()}", f"plx-dhcpt-srv-{os.getpid()}"
    made: list[str] = []
    try:
        for ns in (vm, srv):
            subprocess.run(["ip", "netns", "add", ns], check=True)
            made.append(ns)
        ex = lambda ns, *a: subprocess.run(["ip", "netns", "exec", ns, *a], check=True)
        ex(vm, "ip", "link", "add", "eth0", "address", MAC, "type", "veth",
           "peer", "name", "vif", "netns", srv)
        for ns, dev in ((vm, "eth0"), (srv, "vif"), (vm, "lo"), (srv, "lo")):
            ex(ns, "ip", "link", "set", dev, "up")
        ex(srv, "ip", "addr", "add", "10.0.0.1/24", "dev", "vif")   # ARP for the server id
        yield vm, srv
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "delete", ns], check=False)


def _wait(pred, timeout=15.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return False


def test_udhcpc_gets_a_lease_and_renews_it(lab, tmp_path):
    vm, srv = lab
    responder = subprocess.Popen(["ip", "netns", "exec", srv, sys.executable, "-c",
                                  RESPONDER, MAC], stdout=subprocess.PIPE, text=True)
    client = None
    try:
        assert responder.stdout.readline().strip() == "ready"
        out = tmp_path / "event"
        script = tmp_path / "script.sh"
        script.write_text(SCRIPT.format(out=out))
        script.chmod(0o755)
        client = subprocess.Popen(["ip", "netns", "exec", vm, "busybox", "udhcpc", "-f",
                                   "-i", "eth0", "-s", str(script), "-t", "5", "-T", "1",
                                   "-O", "staticroutes", "-O", "mtu"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        bound = Path(f"{out}.bound")
        assert _wait(bound.exists), "no lease"
        time.sleep(0.2)
        lease = dict(line.split("=", 1) for line in bound.read_text().splitlines()
                     if "=" in line)
        assert lease["ip"] == "10.0.0.5" and lease["subnet"] == "255.255.255.0"
        assert lease["router"].split() == ["10.0.0.1"]
        assert lease["dns"].split() == ["10.0.0.53"]
        assert lease["serverid"] == "10.0.0.1" and lease["lease"] == "86400"
        assert lease["mtu"] == "1400" and lease["broadcast"] == "10.0.0.255"
        assert lease["staticroutes"].split() == ["192.168.0.0/16", "10.0.0.254",
                                                  "0.0.0.0/0", "10.0.0.1"]
        assert lease["hostname"] == "host-10-0-0-5"

        client.send_signal(signal.SIGUSR1)            # renew: unicast to the server id
        assert _wait(Path(f"{out}.renew").exists), "no renewal"
    finally:
        for proc in (client, responder):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=5)
    log = responder.stdout.read().splitlines()
    assert log[:2] == ["in 1 ciaddr=0.0.0.0 dst=ffffffff out 2",
                       "in 3 ciaddr=0.0.0.0 dst=ffffffff out 5"]
    assert log[2] == "in 3 ciaddr=10.0.0.5 dst=0a000001 out 5"     # renewal, unicast
    assert "in 3 ciaddr=10.0.0.5 dst=ffffffff out 5" not in log       # no rebinding
