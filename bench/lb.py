"""Load balancer benchmark: throughput and connection rate through a VIP (NATed on the
client's chassis, conntrack zone LB_ZONE) side by side with the same traffic straight to
one member. A 3-chassis lab: backends on c1 and c2, the client on c3, one network.

- throughput: one TCP stream of ``--size`` bytes (the lab's TCP checker) to b1 directly,
  then through a listener whose only member is b1;
- connection rate: ``--connections`` sequential TCP connections, each answered with the
  backend's name, to b1 directly, then through a listener over b1 and b2 (the count per
  backend is printed too).

With ``--health N``, instead: N runs of the health check scenario of
tests/e2e/test_lb.py (4 chassis: three backends behind a TCP listener with a TCP health
monitor, delay 1 s, timeout 1 s, max_retries 1, max_retries_down 1; the client on c4):
the seconds from killing a backend's listener to its member showing ERROR in the API
and to the first round of 10 connections none of which reached it, and from its
restart to ONLINE (min / median / max).

With ``--reuse N``, instead: what a client source port that a direct connection to a
member used a moment ago does through the VIP. N connections straight to b1, each from
a fixed source port (and closed by the server first, so b1 holds them in TIME_WAIT),
then N through the VIP from the same ports (about half land on b1 again, now with a
sequence number and timestamp made for the VIP's address), then N through the VIP
from fresh ports; the same again with TCP sequence checking of the userspace conntrack
switched off on every chassis (``ovs-appctl dpctl/ct-disable-tcp-seq-chk``).

    sudo .venv/bin/python bench/lb.py [--size 268435456] [--connections 2000]
    sudo .venv/bin/python bench/lb.py --health 5
    sudo .venv/bin/python bench/lb.py --reuse 40

Prints one table (and the machine); the rows go in docs/benchmarks.md with the load."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))   # bench/table.py
from table import machine, print_table  # noqa: E402


def backends(lab, tag: str) -> tuple:
    """One network open to TCP: backends b1 on c1 and b2 on c2 (each answering on 8080
    with its name) and a client on c3; (network, b1, b2, client)."""
    from tests.e2e.conftest import allow_ingress
    from tests.e2e.test_lb import serve
    allow_ingress(lab, "tcp")
    api = lab.api.network
    net = api.get_network(lab.network(f"bench-{tag}", "10.67.1.0/24").id)
    b1 = lab.vm(f"{tag}-b1", net, chassis="c1", static=True)
    b2 = lab.vm(f"{tag}-b2", net, chassis="c2", static=True)
    client = lab.vm(f"{tag}-cl", net, chassis="c3", static=True)
    for vm in (b1, b2):
        serve(lab, vm, 8080)
    return net, b1, b2, client


def listener(lbapi, lb, port: int, members: list[tuple[str, int]]) -> None:
    """A TCP listener on ``port`` of the load balancer, round robin over ``members``
    (address, port)."""
    made = lbapi.create_listener(protocol="TCP", protocol_port=port, load_balancer_id=lb.id)
    pool = lbapi.create_pool(protocol="TCP", lb_algorithm="ROUND_ROBIN", listener_id=made.id)
    for address, member_port in members:
        lbapi.create_member(pool, address=address, protocol_port=member_port)


def run(size: int, connections: int) -> list[tuple[str, str]]:
    from tests.e2e.test_lb import clients, lb_lab
    with lb_lab(Path(tempfile.mkdtemp(prefix="plexus-bench-lb-"))) as lab:
        net, b1, b2, client = backends(lab, "lb")
        b1.tcp_server(5001)
        lbapi = lab.api.load_balancer
        lb = lbapi.create_load_balancer(name="bench", vip_subnet_id=net.subnet_ids[0])
        listener(lbapi, lb, 5001, [(b1.ip, 5001)])
        listener(lbapi, lb, 80, [(b1.ip, 8080), (b2.ip, 8080)])
        vip = lbapi.get_load_balancer(lb.id).vip_address
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "error" in clients(client, vip, 80, 3):
            time.sleep(0.5)
        rows = []
        for label, host in (("direct to b1", b1.ip), ("through the VIP", vip)):
            client.tcp_client(host, 5001, size=1 << 20)           # warm up
            got = client.tcp_client(host, 5001, size=size, timeout=120)
            rows.append((f"throughput {label} (one TCP stream, {size >> 20} MiB), Mbit/s",
                         f"{got.get('mbit_s')}" if got.get("ok") else f"failed: {got}"))
        for label, host, port in (("direct to b1", b1.ip, 8080), ("through the VIP", vip, 80)):
            began = time.monotonic()
            seen = clients(client, host, port, connections)
            took = time.monotonic() - began
            rows.append((f"connections/s {label} ({connections} sequential)",
                         f"{connections / took:.0f}  ({dict(seen)})"))
        lbapi.delete_load_balancer(lb, cascade=True)
        return rows


def health(runs: int) -> list[tuple[str, str]]:
    from statistics import median
    from tests.e2e.conftest import allow_ingress
    from tests.e2e.test_lb import health_check_scenario, lb_lab
    with lb_lab(Path(tempfile.mkdtemp(prefix="plexus-bench-lbh-"))) as lab:
        allow_ingress(lab, "tcp", "udp")
        results = [health_check_scenario(lab, subnet=f"10.68.{n}.0/24", tag=f"lbh{n}")
                   for n in range(runs)]
    return [(f"{what}, s (delay 1, timeout 1, max_retries_down 1; {runs} runs)",
             f"min {min(got):.2f} / median {median(got):.2f} / max {max(got):.2f}")
            for what in results[0] for got in [[r[what] for r in results]]]


# a client: ``count`` connections, the i-th from source port ``first + 2 i`` (0: any);
# prints the source ports that got the server's answer and those that did not
FIXED_PORT_CLIENT = r"""
import json, socket, sys
host, port, count, first = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ok, bad = [], []
for i in range(count):
    s = socket.socket(); s.settimeout(3)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", first + 2 * i if first else 0))
    try:
        s.connect((host, port)); s.recv(64); ok.append(s.getsockname()[1])
    except OSError:
        bad.append(s.getsockname()[1])
    s.close()
print(json.dumps({"ok": ok, "bad": bad}))
"""


def reuse(count: int) -> list[tuple[str, str]]:
    import json
    from tests.e2e.test_lb import lb_lab

    def run(vm, host: str, port: int, first: int) -> dict:
        proc = vm.exec(sys.executable, "-c", FIXED_PORT_CLIENT, host, str(port), str(count),
                       str(first), timeout=count * 4 + 30)
        return json.loads(proc.stdout.strip().splitlines()[-1])

    with lb_lab(Path(tempfile.mkdtemp(prefix="plexus-bench-lbr-"))) as lab:
        net, b1, b2, client = backends(lab, "lbr")
        lbapi = lab.api.load_balancer
        lb = lbapi.create_load_balancer(name="bench", vip_subnet_id=net.subnet_ids[0])
        listener(lbapi, lb, 80, [(b1.ip, 8080), (b2.ip, 8080)])
        vip = lbapi.get_load_balancer(lb.id).vip_address
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and run(client, vip, 80, 0)["bad"]:
            time.sleep(0.5)
        rows = []
        for checking, first in (("on", 40000), ("off", 44000)):
            if checking == "off":
                for name in ("c1", "c2", "c3"):
                    lab.lab.ovs(name).appctl("dpctl/ct-disable-tcp-seq-chk")
            direct = run(client, b1.ip, 8080, first)
            again = run(client, vip, 80, first)
            fresh = run(client, vip, 80, first + 2000)
            for label, got in (("direct to b1", direct),
                               ("through the VIP, the same source ports", again),
                               ("through the VIP, fresh source ports", fresh)):
                rows.append((f"TCP sequence checking {checking}: {label}",
                             f"{len(got['ok'])} answered, {len(got['bad'])} failed (3 s)"))
        lbapi.delete_load_balancer(lb, cascade=True)
        return rows


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=256 << 20)
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--health", type=int, default=0, metavar="RUNS",
                        help="measure health check detection instead (RUNS runs)")
    parser.add_argument("--reuse", type=int, default=0, metavar="N",
                        help="source ports reused through the VIP instead (N connections)")
    args = parser.parse_args()
    rows = health(args.health) if args.health else reuse(args.reuse) if args.reuse \
        else run(args.size, args.connections)
    rows.append(("machine", machine()))
    rows.append(("load average at the end", " ".join(f"{x:.2f}" for x in os.getloadavg())))
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
