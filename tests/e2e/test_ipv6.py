"""IPv6 on the L2 path end to end (issue 14): a 2-chassis lab, two VMs on different
chassis on a dual-stack network (IPv4 plus an IPv6 SLAAC subnet), configured by hand
with their API-assigned EUI-64 addresses (no router advertisements here): ping6 and TCP
over IPv6 across chassis, link-local ping6, neighbour discovery answered on the local
chassis, IPv6 security-group rules that allow and deny as written, and a spoofed IPv6
source dropped.

One lab serves the module; the lab's inventory tears everything down, failed or not."""

from __future__ import annotations

import sys

import pytest

from plexus.lab import netlink
from plexus.pipeline.stages.common import link_local
from tests.e2e.conftest import running_lab, wait_for

pytestmark = pytest.mark.e2e

# inside a VM: "serve PORT" answers "ok" to each connection on [::]:PORT;
# "ask ADDR PORT" exits 0 when a connection to it is answered within 3 s
HELPER = r'''
import socket, sys
if sys.argv[1] == "serve":
    srv = socket.create_server(("::", int(sys.argv[2])), family=socket.AF_INET6)
    while True:
        conn, _ = srv.accept()
        with conn:
            conn.sendall(b"ok\n")
else:
    conn = socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=3)
    sys.exit(0 if conn.recv(16) == b"ok\n" else 1)
'''


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with running_lab(tmp_path_factory.mktemp("ipv6"), chassis=2, gateways=1) as fixture:
        (fixture.lab.dir / "v6helper.py").write_text(HELPER)
        yield fixture


@pytest.fixture(scope="module")
def pair(lab):
    """Two VMs (c1, c2) on a dual-stack network whose ports hold a group allowing ICMPv6
    and TCP 5001 in over IPv6 (and nothing else in), with their IPv6 address set."""
    api = lab.api.network
    net = api.create_network(name="v6a-net")
    api.create_subnet(network_id=net.id, cidr="10.60.0.0/24", ip_version=4, name="v6a-v4")
    v6 = api.create_subnet(network_id=net.id, cidr="fd00:60::/64", ip_version=6,
                           ipv6_address_mode="slaac", name="v6a-v6")
    sg = api.create_security_group(name="v6a-sg")
    for rule in ({"protocol": "ipv6-icmp"}, {"protocol": "tcp", "port_range_min": 5001,
                                             "port_range_max": 5001}):
        api.create_security_group_rule(security_group_id=sg.id, direction="ingress",
                                       ethertype="IPv6", **rule)
    vms = {}
    for name, chassis in (("a", "c1"), ("b", "c2")):
        port = api.create_port(network_id=net.id, name=f"v6a-{name}",
                               security_groups=[sg.id])
        ip6 = next(f["ip_address"] for f in port.fixed_ips if f["subnet_id"] == v6.id)
        vm = lab.vm(name, net, chassis=chassis, port=port.id, static=True)
        netlink.sysctl(vm.netns, "net.ipv6.conf.eth0.accept_dad", "0")
        vm.exec("ip", "-6", "addr", "add", f"{ip6}/64", "dev", "eth0", "nodad")
        vms[name] = (vm, ip6, port)
    for vm, _, port in vms.values():     # the kernel's own link-local address is EUI-64
        lla = link_local(port.mac_address)
        wait_for(lambda: lla in vm.exec("ip", "-6", "addr", "show", "dev", "eth0").stdout
                 and "tentative" not in vm.exec("ip", "-6", "addr", "show", "dev",
                                                "eth0").stdout, 10, f"{lla} on {vm.name}")
    return vms


def ping6(vm, address: str, *extra: str) -> bool:
    proc = vm.exec("ping", "-6", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "1", "-w", "8",
                   *extra, address, check=False, timeout=15)
    return proc.returncode == 0


def test_slaac_address_is_eui64(pair):
    for _, ip6, port in pair.values():
        low = link_local(port.mac_address).split("fe80::")[1]
        assert ip6 == f"fd00:60::{low}"


def test_ping6_across_chassis(pair):
    (a, _, _), (_, b6, _) = pair["a"], pair["b"]
    assert ping6(a, b6)


def test_link_local_ping6_across_chassis(pair):
    (a, _, _), (_, _, bport) = pair["a"], pair["b"]
    assert ping6(a, f"{link_local(bport.mac_address)}%eth0")


def test_neighbour_answered_with_the_right_mac(pair):
    (a, _, _), (_, b6, bport) = pair["a"], pair["b"]
    assert ping6(a, b6)
    neigh = a.exec("ip", "-6", "neigh", "show", b6).stdout
    assert bport.mac_address in neigh.lower(), neigh


def test_tcp_over_ipv6_allowed_and_denied_as_written(lab, pair):
    (a, _, _), (b, b6, _) = pair["a"], pair["b"]
    helper = str(lab.lab.dir / "v6helper.py")
    for port in (5001, 5002):
        lab.lab.spawn(f"b-v6-{port}", [sys.executable, helper, "serve", str(port)],
                      ns=b.netns, group=b.group)

    def ask(port):
        return a.exec(sys.executable, helper, "ask", b6, str(port), check=False,
                      timeout=15).returncode == 0
    assert wait_for(lambda: ask(5001), 10, "TCP 5001 over IPv6 (allowed)")
    assert not ask(5002)                  # no rule allows it


def test_spoofed_ipv6_source_is_dropped(pair):
    (a, a6, _), (_, b6, _) = pair["a"], pair["b"]
    a.exec("ip", "-6", "addr", "add", "fd00:60::dead/64", "dev", "eth0", "nodad")
    try:
        assert not ping6(a, b6, "-I", "fd00:60::dead")
        assert ping6(a, b6, "-I", a6)      # its own address still works
    finally:
        a.exec("ip", "-6", "addr", "del", "fd00:60::dead/64", "dev", "eth0", check=False)
