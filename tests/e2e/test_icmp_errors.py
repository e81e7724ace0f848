"""ICMP errors from routers (issue 12, item 5), end to end on a 2-chassis lab (c1 the
gateway): a TTL-1 packet across a router gets "time exceeded" from the router's
interface address (from outside: from its gateway address); a DF packet larger than the
next network's MTU gets "fragmentation needed" with that MTU — VM to VM where the path
shrinks and from the internet host toward a floating IP — and in both cases the
sender's path MTU cache then carries a TCP transfer whose receiver advertises a larger
MSS than the path carries; hop-by-hop probes through SNAT show the router, then the
upstream; a ping to an address of a router subnet that no port holds gets "host
unreachable"; a flood of TTL-1 packets from one VM is answered at most at the documented
per-sender rate, and another VM still gets its errors meanwhile. On main every one of
these was silently dropped."""

from __future__ import annotations

import json
import sys
import threading
import time

import pytest

from tests.e2e.conftest import LabFixture, running_lab, wait_for

pytestmark = pytest.mark.e2e

# the agent's defaults for one sender (--icmp-source-rate/-burst; the chassis' are 100)
SOURCE_RATE, SOURCE_BURST = 10, 10


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with running_lab(tmp_path_factory.mktemp("icmp"), chassis=2, gateways=1) as fixture:
        yield fixture


@pytest.fixture(scope="module")
def routed(lab: LabFixture):
    """left (10.71.1.0/24) and right (10.71.2.0/24), MTU 1450, and narrow
    (10.71.3.0/24, MTU 1300) behind one router; a on left (c1), b on right and n on
    narrow (c2). The router is the gateway (.1) of each."""
    api = lab.api.network
    left = lab.network("icmp-left", "10.71.1.0/24")
    right = lab.network("icmp-right", "10.71.2.0/24")
    narrow = api.create_network(name="icmp-narrow", mtu=1300)
    api.create_subnet(network_id=narrow.id, cidr="10.71.3.0/24", ip_version=4,
                      name="icmp-narrow-subnet")
    router = api.create_router(name="icmp-router")
    for net in (left, right, narrow):
        api.add_interface_to_router(router, subnet_id=api.get_network(net.id).subnet_ids[0])
    a = lab.vm("icmp-a", left.id, chassis="c1", static=True)
    b = lab.vm("icmp-b", right.id, chassis="c2", static=True)
    n = lab.vm("icmp-n", narrow.id, chassis="c2", static=True)
    assert wait_for(lambda: lab.vm("icmp-a").ping(b.ip, count=1, deadline=2), 30,
                    "a pings b through the router")
    assert wait_for(lambda: lab.vm("icmp-a").ping(n.ip, count=1, deadline=2), 30,
                    "a pings n through the router")
    return {"router": router, "a": a, "b": b, "n": n}


def ping(node, *args: str) -> str:
    """ping's output (one probe, numeric)."""
    proc = node.exec("ping", "-n", "-c", "1", "-W", "2", *args, check=False, timeout=15)
    return proc.stdout + proc.stderr


def test_ttl_1_across_the_router_gets_time_exceeded_from_its_interface(lab, routed):
    a, b = lab.vm("icmp-a"), routed["b"]
    out = ping(a, "-t", "1", b.ip)
    assert "From 10.71.1.1 icmp_seq=1 Time to live exceeded" in out, out
    # TTL 2 crosses the one router hop: an ordinary reply
    assert "bytes from " + b.ip in ping(a, "-t", "2", b.ip)


def test_unused_address_in_a_router_subnet_is_host_unreachable(lab, routed):
    out = ping(lab.vm("icmp-a"), "10.71.2.77")
    assert "From 10.71.1.1 icmp_seq=1 Destination Host Unreachable" in out, out


def test_df_packet_larger_than_the_next_network_gets_frag_needed(lab, routed):
    a, n = lab.vm("icmp-a"), routed["n"]
    assert "bytes from " + n.ip in ping(a, "-M", "do", "-s", "1272", n.ip)   # 1300: fits
    out = ping(a, "-M", "do", "-s", "1273", n.ip)                            # 1301
    assert "From 10.71.1.1 icmp_seq=1 Frag needed and DF set (mtu = 1300)" in out, out
    # the sender's kernel keeps the path MTU: the next probe is refused locally
    route = a.exec("ip", "route", "get", n.ip).stdout
    assert "mtu 1300" in route, route


def test_tcp_with_segments_above_the_path_mtu_completes(lab, routed):
    """n advertises an MSS for 1450 (its own link says so) while its network carries
    1300: only fragmentation needed lets a's TCP shrink its segments."""
    n = lab.vm("icmp-n")
    n.exec("ip", "link", "set", "eth0", "mtu", "1450")
    a = lab.vm("icmp-a")
    a.exec("ip", "route", "flush", "cache")
    n.tcp_server(5701)
    result = a.tcp_client(routed["n"].ip, 5701, size=1 << 20, timeout=20)
    assert result["ok"], result


@pytest.fixture(scope="module")
def floating(lab: LabFixture, routed):
    """The router's gateway on the external network (flat, physnet1) and a floating IP
    for a; ping and TCP allowed in."""
    api = lab.api.network
    public = api.create_network(name="public", provider_network_type="flat",
                                provider_physical_network="physnet1",
                                is_router_external=True)
    api.create_subnet(network_id=public.id, cidr="203.0.113.0/24", ip_version=4,
                      gateway_ip="203.0.113.1", is_dhcp_enabled=False, name="public-v4",
                      allocation_pools=[{"start": "203.0.113.100", "end": "203.0.113.199"}])
    api.update_router(routed["router"], external_gateway_info={"network_id": public.id})
    group = next(g for g in api.security_groups(name="default")
                 if g.project_id == lab.api.current_project_id)
    for proto in ("icmp", "tcp"):
        api.create_security_group_rule(security_group_id=group.id, direction="ingress",
                                       ethertype="IPv4", protocol=proto,
                                       remote_ip_prefix="0.0.0.0/0")
    fip = api.create_ip(floating_network_id=public.id, port_id=routed["a"].port_id)
    address = fip.floating_ip_address
    assert wait_for(lambda: lab.node("inet").ping(address, count=1, deadline=2), 30,
                    "inet pings the floating IP")
    return address


def test_df_packet_toward_a_floating_ip_gets_frag_needed_from_outside(lab, floating):
    inet = lab.node("inet")
    assert "bytes from " + floating in ping(inet, "-M", "do", "-s", "1422", floating)
    out = ping(inet, "-M", "do", "-s", "1423", floating)
    assert "Frag needed and DF set (mtu = 1450)" in out, out
    assert "From 203.0.113." in out, out          # the router's gateway address
    route = inet.exec("ip", "route", "get", floating).stdout
    assert "mtu 1450" in route, route


def test_tcp_from_outside_with_segments_above_the_floating_ip_path_completes(lab, floating):
    """a advertises an MSS for 1500 (its link says so) while its network carries 1450:
    inet's kernel must take the MTU from the router's error, which quotes the floating
    IP (not a's fixed IP) so that it finds the connection."""
    a = lab.vm("icmp-a")
    a.exec("ip", "link", "set", "eth0", "mtu", "1500")
    try:
        a.tcp_server(5702)
        inet = lab.node("inet")
        inet.exec("ip", "route", "flush", "cache")
        result = inet.tcp_client(floating, 5702, size=1 << 20, timeout=20)
        assert result["ok"], result
    finally:
        a.exec("ip", "link", "set", "eth0", "mtu", "1450")


def test_ttl_expiring_at_the_router_from_outside_is_time_exceeded_from_its_gateway(
        lab, routed, floating):
    gateway = next(ip["ip_address"] for ip in lab.api.network.get_router(
        routed["router"].id).external_gateway_info["external_fixed_ips"])
    # inet → ext (TTL 2 → 1) → the router: expired there
    out = ping(lab.node("inet"), "-t", "2", floating)
    assert f"From {gateway} icmp_seq=1 Time to live exceeded" in out, out
    assert "bytes from " + floating in ping(lab.node("inet"), "-t", "3", floating)


def test_traceroute_through_snat_shows_the_router_then_the_upstream(lab, routed, floating):
    """Hop by hop, as traceroute -I probes: TTL 1 expires at the router (its interface
    on b's subnet), TTL 2 at the upstream router, whose error comes back through the
    active gateway's SNAT (b is on c2, the gateway c1)."""
    b = lab.vm("icmp-b")
    inet = "198.19.0.10"
    out = ping(b, "-t", "1", inet)
    assert "From 10.71.2.1 icmp_seq=1 Time to live exceeded" in out, out
    out = ping(b, "-t", "2", inet)
    assert "From 203.0.113.1 icmp_seq=1 Time to live exceeded" in out, out
    assert "bytes from " + inet in ping(b, "-t", "3", inet)


FLOOD = r"""
import json, socket, sys, time
dst, count, spread = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
rx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
rx.settimeout(0.2)
tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
tx.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)
start = time.monotonic()
batches = max(1, int(spread / 0.02))
for i in range(count):
    tx.sendto(b"x" * 32, (dst, 33434 + i % 100))
    if spread and i % max(1, count // batches) == 0:
        time.sleep(0.02)
sent = time.monotonic()
got, last = 0, sent
while time.monotonic() - last < 2:
    try:
        data = rx.recv(2048)
    except socket.timeout:
        continue
    ihl = (data[0] & 15) * 4
    if data[ihl] == 11:
        got, last = got + 1, time.monotonic()
print(json.dumps({"sent": count, "errors": got, "seconds": last - start,
                  "send_seconds": sent - start}))
"""


def flood(vm, dst: str, count: int, spread: float = 0.0) -> dict:
    """Send ``count`` TTL-1 UDP datagrams from ``vm`` to ``dst`` over ``spread`` seconds;
    how many time exceeded errors came back, and over how long."""
    proc = vm.exec(sys.executable, "-c", FLOOD, dst, str(count), str(spread), timeout=120)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_flood_of_ttl_1_packets_is_answered_at_most_at_the_documented_rate(lab, routed):
    """a floods TTL-1 datagrams for 2 s; meanwhile a2, on a's network and chassis, sends
    three: a gets at most its own sender's share, a2 all of its errors."""
    network = lab.api.network.get_port(routed["a"].port_id).network_id
    lab.vm("icmp-a2", network, chassis="c1", static=True)
    a, a2, dst = lab.vm("icmp-a"), lab.vm("icmp-a2"), routed["b"].ip
    results: dict = {}
    thread = threading.Thread(target=lambda: results.update(flood(a, dst, 3000, 2.0)))
    thread.start()
    time.sleep(0.8)                     # well inside the flood
    other = flood(a2, dst, 3)
    thread.join()
    print("flood:", results, "other:", other)
    bound = SOURCE_BURST + SOURCE_RATE * results["seconds"] + 1
    assert 0 < results["errors"] <= bound, results
    assert results["errors"] < results["sent"], results
    assert other["errors"] == 3, other
    log = (lab.lab.dir / "c1" / "agent.log").read_text()
    assert "ICMP errors rate-limited" in log
