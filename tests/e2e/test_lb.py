"""Distributed load balancing end to end: a 4-chassis lab, three backends on c1, c2, c3
and a client on c4, one network; a load balancer made with the real openstacksdk
(Octavia API); the client's chassis NATs each new connection to a member (conntrack),
1,000 connections spread within ±20%, SOURCE_IP persistence keeps one client on one
member, UDP is balanced too."""

from __future__ import annotations

import json
import sys
from collections import Counter

import pytest

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


def serve(lab, vm, port: int) -> None:
    ready = lab.lab.dir / "pids" / f"{vm.name}-lb-{port}.ready"
    lab.lab.spawn(f"{vm.name}-lb-{port}", [sys.executable, "-c", SERVER, vm.name, str(port),
                                           str(ready), str(lab.lab.dir)],
                  ns=vm.netns, group=vm.group)
    wait_for(ready.exists, 10, f"backend on {vm.name}:{port}")


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
