"""Distributed load balancing end to end: a 4-chassis lab, three backends on c1, c2, c3
and a client on c4, one network; a load balancer made with the real openstacksdk
(Octavia API); the client's chassis NATs each new connection to a member (conntrack),
1,000 connections spread within ±20%, SOURCE_IP persistence keeps one client on one
member, UDP is balanced too. With a TCP health monitor, the chassis hosting the members
probe them: a killed backend goes ERROR and stops receiving new connections, and comes
back once it listens again."""

from __future__ import annotations

import json
import signal
import sys
import time
from collections import Counter

import pytest

from plexus.lab.inventory import end_pid
from tests.e2e.conftest import allow_ingress, running_lab, wait_for

pytestmark = pytest.mark.e2e

# a backend: answers each TCP connection (and UDP datagram) with its name
SERVER = r"""
import socket, sys, threading
name, port, ready, lab = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", port)); t.listen(512)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", port))
def udp():
    while True:
        data, peer = u.recvfrom(2048); u.sendto(name.encode(), peer)
threading.Thread(target=udp, daemon=True).start()
open(ready, "w").close()
while True:
    c, _ = t.accept()
    try: c.sendall(name.encode())
    finally: c.close()
"""

# a client: ``count`` TCP connections (or UDP datagrams, each from a new socket);
# prints the backends' names counted
CLIENT = r"""
import json, socket, sys
from collections import Counter
host, port, count, proto = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
seen = Counter()
for _ in range(count):
    try:
        if proto == "tcp":
            s = socket.create_connection((host, port), timeout=3)
            seen[s.recv(64).decode() or "?"] += 1
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
            s.sendto(b"hi", (host, port)); seen[s.recvfrom(64)[0].decode()] += 1
        s.close()
    except OSError as exc:
        seen["error"] += 1
print(json.dumps(seen))
"""


def lb_lab(root):
    """A 4-chassis lab named lb…, every agent registered and alive."""
    return running_lab(root, prefix="lb", chassis=4)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with lb_lab(tmp_path_factory.mktemp("lb")) as fixture:
        yield fixture


def serve(lab, vm, port: int, label: str = "") -> int:
    """Start a backend on ``vm``:``port``; its pid once it listens."""
    name = f"{vm.name}-lb-{port}{label}"
    ready = lab.lab.dir / "pids" / f"{name}.ready"
    pid = lab.lab.spawn(name, [sys.executable, "-c", SERVER, vm.name, str(port), str(ready),
                               str(lab.lab.dir)], ns=vm.netns, group=vm.group)
    wait_for(ready.exists, 10, f"backend on {vm.name}:{port}")
    return pid


def clients(vm, vip: str, port: int, count: int, proto: str = "tcp") -> Counter:
    proc = vm.exec(sys.executable, "-c", CLIENT, vip, str(port), str(count), proto,
                   timeout=count * 4 + 30)
    return Counter(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_connections_spread_over_members_on_three_chassis(lab):
    api = lab.api.network
    allow_ingress(lab, "tcp", "udp")
    net = api.get_network(lab.network("lb-net", "10.66.1.0/24").id)
    backends = [lab.vm(f"lb-b{i}", net, chassis=f"c{i}", static=True) for i in (1, 2, 3)]
    client = lab.vm("lb-cl", net, chassis="c4", static=True)
    for vm in backends:
        serve(lab, vm, 8080)
        serve(lab, vm, 5353)
    lbapi = lab.api.load_balancer
    lb = lbapi.create_load_balancer(name="lb1", vip_subnet_id=net.subnet_ids[0])
    tcp = lbapi.create_listener(name="tcp80", protocol="TCP", protocol_port=80,
                                load_balancer_id=lb.id)
    pool = lbapi.create_pool(name="p80", protocol="TCP", lb_algorithm="ROUND_ROBIN",
                             listener_id=tcp.id)
    for vm in backends:
        lbapi.create_member(pool, address=vm.ip, protocol_port=8080,
                            subnet_id=net.subnet_ids[0])
    vip = lbapi.get_load_balancer(lb.id).vip_address
    wait_for(lambda: sum(clients(client, vip, 80, 3).values()) == 3 and
             "error" not in clients(client, vip, 80, 3), 30, "the VIP answers")
    seen = clients(client, vip, 80, 1000)
    assert seen["error"] == 0, seen
    assert set(seen) == {vm.name for vm in backends}, seen
    for vm in backends:             # each within ±20% of an even share
        assert abs(seen[vm.name] - 1000 / 3) <= 0.2 * 1000 / 3, seen

    # UDP, with SOURCE_IP persistence: one client, one member
    udp = lbapi.create_listener(name="udp53", protocol="UDP", protocol_port=53,
                                load_balancer_id=lb.id)
    upool = lbapi.create_pool(name="p53", protocol="UDP", lb_algorithm="ROUND_ROBIN",
                              listener_id=udp.id, session_persistence={"type": "SOURCE_IP"})
    for vm in backends:
        lbapi.create_member(upool, address=vm.ip, protocol_port=5353,
                            subnet_id=net.subnet_ids[0])
    wait_for(lambda: "error" not in clients(client, vip, 53, 2, "udp"), 30,
             "the UDP listener answers")
    sticky = clients(client, vip, 53, 50, "udp")
    assert sticky["error"] == 0 and len(sticky) == 1, sticky

    # a member removed (as when its health check fails): no new connection reaches it
    members = list(lbapi.members(pool))
    gone = next(m for m in members if m.address == backends[0].ip)
    lbapi.delete_member(gone, pool)
    wait_for(lambda: backends[0].name not in clients(client, vip, 80, 30), 30,
             "the removed member leaves the selection")
    seen = clients(client, vip, 80, 200)
    assert seen["error"] == 0 and set(seen) == {vm.name for vm in backends[1:]}, seen
    for vm in backends[1:]:         # two members: still within ±20% of an even share
        assert abs(seen[vm.name] - 100) <= 20, seen
    lbapi.delete_load_balancer(lb, cascade=True)


def member_status(lbapi, pool, member_id: str) -> str:
    return lbapi.get_member(member_id, pool).operating_status


def monitored_pool(lbapi, lb, net, backends, protocol: str, port: int, monitor: str):
    """A listener on ``port`` whose pool holds the backends' port 8080, with a health
    monitor of type ``monitor`` (delay 1, timeout 1, max_retries 1, max_retries_down
    1): (pool, member id by backend name)."""
    li = lbapi.create_listener(name=f"{protocol.lower()}{port}", protocol=protocol,
                               protocol_port=port, load_balancer_id=lb.id)
    pool = lbapi.create_pool(name=f"p{port}", protocol=protocol, lb_algorithm="ROUND_ROBIN",
                             listener_id=li.id)
    members = {vm.name: lbapi.create_member(pool, address=vm.ip, protocol_port=8080,
                                            subnet_id=net.subnet_ids[0]).id
               for vm in backends}
    lbapi.create_health_monitor(pool_id=pool.id, type=monitor, delay=1, timeout=1,
                                max_retries=1, max_retries_down=1)
    return pool, members


def health_check_scenario(lab, subnet: str = "10.66.2.0/24", connections: int = 100,
                          tag: str = "lbh") -> dict[str, float]:
    """Three backends on c1, c2, c3 behind a TCP listener with a TCP health monitor
    (delay 1, timeout 1, max_retries 1, max_retries_down 1), the client on c4: all go
    ONLINE; b1's listener process is killed → its member goes ERROR and ``connections``
    new connections through the VIP all reach b2 and b3; b1 listens again → ONLINE, and
    it receives connections again. Alongside, a UDP listener over the same backends
    with a UDP-CONNECT monitor: the killed backend's port answers the probes with ICMP
    port unreachable → ERROR, no datagram reaches it; back → ONLINE. Returns the
    seconds measured (TCP) from the kill (to
    ERROR, to the first round of connections that no longer reached b1) and from the
    restart (to ONLINE). ``tag`` names its network, VMs and load balancer (one per run
    in a lab)."""
    api, lbapi = lab.api.network, lab.api.load_balancer
    net = api.get_network(lab.network(f"{tag}-net", subnet).id)
    backends = [lab.vm(f"{tag}-b{i}", net, chassis=f"c{i}", static=True) for i in (1, 2, 3)]
    client = lab.vm(f"{tag}-cl", net, chassis="c4", static=True)
    pids = {vm.name: serve(lab, vm, 8080) for vm in backends}
    lb = lbapi.create_load_balancer(name=tag, vip_subnet_id=net.subnet_ids[0])
    pool, members = monitored_pool(lbapi, lb, net, backends, "TCP", 81, "TCP")
    upool, umembers = monitored_pool(lbapi, lb, net, backends, "UDP", 54, "UDP-CONNECT")
    vip = lbapi.get_load_balancer(lb.id).vip_address
    # ONLINE from the start (no verdict yet shows as ONLINE): wait for each member's
    # chassis to have probed it and reported it ONLINE
    reported = {vm.name: (lab.lab.dir / f"c{i}" / "agent.log", members[vm.name])
                for i, vm in zip((1, 2, 3), backends)}
    wait_for(lambda: all(f"load balancer member {m}: ONLINE" in log.read_text()
                         for log, m in reported.values()), 60,
             "each member's chassis reported it ONLINE")
    assert all(member_status(lbapi, pool, m) == "ONLINE" for m in members.values())
    wait_for(lambda: set(clients(client, vip, 81, 30)) == {vm.name for vm in backends},
             60, "the VIP spreads over the three members")
    victim, rest = backends[0], backends[1:]
    times: dict[str, float] = {}
    killed = time.monotonic()
    end_pid(pids[victim.name], signal.SIGKILL)

    def out_of_selection() -> bool:
        seen = clients(client, vip, 81, 10)
        return set(seen) <= {vm.name for vm in rest}
    wait_for(lambda: member_status(lbapi, pool, members[victim.name]) == "ERROR", 60,
             "the killed backend's member ERROR")
    times["kill → member ERROR (API)"] = time.monotonic() - killed
    wait_for(out_of_selection, 60, "no new connection reaches the killed backend")
    times["kill → no new connection reaches it"] = time.monotonic() - killed
    seen = clients(client, vip, 81, connections)
    assert seen["error"] == 0 and set(seen) == {vm.name for vm in rest}, seen
    assert lbapi.get_pool(pool.id).operating_status == "DEGRADED"
    assert all(member_status(lbapi, pool, members[vm.name]) == "ONLINE" for vm in rest)
    wait_for(lambda: member_status(lbapi, upool, umembers[victim.name]) == "ERROR", 60,
             "the killed backend's UDP member ERROR (ICMP port unreachable)")
    wait_for(lambda: set(clients(client, vip, 54, 10, "udp")) <= {vm.name for vm in rest},
             60, "no datagram reaches the killed backend")
    seen = clients(client, vip, 54, 30, "udp")
    assert seen["error"] == 0 and set(seen) == {vm.name for vm in rest}, seen
    assert all(member_status(lbapi, upool, umembers[vm.name]) == "ONLINE" for vm in rest)

    restarted = time.monotonic()
    serve(lab, victim, 8080, label="-again")
    wait_for(lambda: member_status(lbapi, pool, members[victim.name]) == "ONLINE", 60,
             "the restarted backend's member ONLINE again")
    times["restart → member ONLINE (API)"] = time.monotonic() - restarted
    wait_for(lambda: victim.name in clients(client, vip, 81, 30), 60,
             "the restarted backend receives connections again")
    seen = clients(client, vip, 81, 30)
    assert seen["error"] == 0 and victim.name in seen, seen
    wait_for(lambda: member_status(lbapi, upool, umembers[victim.name]) == "ONLINE", 60,
             "the restarted backend's UDP member ONLINE again")
    wait_for(lambda: victim.name in clients(client, vip, 54, 30, "udp"), 60,
             "the restarted backend receives datagrams again")
    lbapi.delete_load_balancer(lb, cascade=True)
    return times


def test_health_monitor_takes_a_killed_backend_out_and_back(lab):
    """Health checks from the members' chassis (agent.lbhealth): no timing asserted (the
    detection times are printed; docs/benchmarks.md has them)."""
    for proto in ("tcp", "udp"):
        try:
            allow_ingress(lab, proto)
        except Exception as exc:        # already opened by another test of the module
            if "exists" not in str(exc).lower() and \
                    "conflict" not in type(exc).__name__.lower():
                raise
    times = health_check_scenario(lab)
    print("health check times:", {k: round(v, 2) for k, v in times.items()})
