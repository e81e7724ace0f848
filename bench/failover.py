"""Gateway failover benchmark: the loss window of a 10 ms ping from a VM without a
floating IP to the internet host (ICMP is SNATed on the router's active gateway) while
the active gateway chassis is cut off — its underlay link set down inside its namespace
— and a long-lived TCP stream from the same VM (SNATed in its own chassis' port block,
its replies forwarded statelessly by whichever gateway is active) that must survive.
Each round cuts the active gateway, measures, then restores it (the first candidate
takes over again, which is the next round's starting point). Prints one table.

The loss window is the longest run of unanswered echo requests times the interval.
BFD settings are the agent's (``plexus.agent.ovs.ovsdb.BFD``).

    sudo .venv/bin/python bench/failover.py [--rounds 10]

The e2e test (tests/e2e/test_l3_failover.py) uses the same helpers on one failover,
with the cut-off gateway's OVS killed as well."""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from plexus.lab import netlink  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parent))   # bench/table.py
from table import machine, print_table  # noqa: E402

INET = "198.19.0.10"
INTERVAL = 0.01
STREAM = """
import json, socket, sys, time
host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
sent, chunk = 0, b"x" * 1024
try:
    s = socket.create_connection((host, port), timeout=10)
    s.settimeout(30)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        s.sendall(chunk); sent += len(chunk); time.sleep(0.01)
    s.shutdown(socket.SHUT_WR)
    answer = s.recv(200).decode().split()
    print(json.dumps({"ok": int(answer[0]) == sent, "sent": sent, "answer": answer[0]}))
except OSError as exc:
    print(json.dumps({"ok": False, "sent": sent, "error": repr(exc)}))
"""


def public_network(api):
    """The external network "public" (``tests.e2e.conftest.public_network``)."""
    from tests.e2e.conftest import public_network as made
    return made(api)


def setup(lab, vm_name: str = "ha-a", chassis: str = "c3"):
    """A network behind a router with a gateway on "public", and a VM on ``chassis``."""
    api = lab.api.network
    public = public_network(api)
    net = api.create_network(name=f"{vm_name}-net")
    subnet = api.create_subnet(network_id=net.id, cidr="10.64.1.0/24", ip_version=4)
    router = api.create_router(name=f"{vm_name}-router",
                               external_gateway_info={"network_id": public.id})
    api.add_interface_to_router(router, subnet_id=subnet.id)
    vm = lab.vm(vm_name, net.id, chassis=chassis, static=True)
    return router, vm


def active_gateway(lab, router_id: str) -> str | None:
    """The chassis the server reports as the router's active gateway."""
    agents = lab.api.network.get(f"/routers/{router_id}/l3-agents").json().get("agents")
    return next((a["host"] for a in agents or () if a.get("ha_state") == "active"), None)


def bfd_up(lab, chassis: str) -> int:
    """How many BFD sessions of ``chassis`` are up."""
    out = lab.node(chassis).exec("ovs-vsctl", "--bare", "--columns=name", "find",
                                 "Interface", "bfd_status:state=up", check=False).stdout
    return len(out.split())


def wait(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        time.sleep(0.1)
    return result


def cut(lab, chassis: str, up: bool = False) -> None:
    """Set the chassis' underlay link down (or up again), inside its namespace."""
    ch = lab.spec.chassis_named(chassis)
    with netlink.ipr(ch.netns) as ip:
        ip.link("set", index=ip.link_lookup(ifname=ch.underlay_port)[0],
                state="up" if up else "down")


def loss_window_ms(ping_output: str, count: int) -> float:
    """The longest run of unanswered echo requests, in ms."""
    seqs = sorted({int(m) for m in re.findall(r"icmp_seq=(\d+) ttl", ping_output)})
    if not seqs:
        return count * INTERVAL * 1000
    gaps = [b - a - 1 for a, b in zip([0] + seqs, seqs + [count + 1])]
    return max(gaps) * INTERVAL * 1000


def failover(lab, vm, port: int, during, seconds: float = 5.0, at: float = 1.5) -> dict:
    """Run a 10 ms ping and a TCP stream from ``vm`` to inet for ``seconds``; call
    ``during()`` after ``at`` seconds. Returns {"loss_ms", "tcp", "replies"}."""
    count = int(seconds / INTERVAL)
    out: dict = {}

    def ping():
        out["ping"] = vm.exec("ping", "-n", "-i", str(INTERVAL), "-c", str(count), "-W", "1",
                              INET, check=False, timeout=seconds + 30).stdout

    def stream():
        proc = vm.exec(sys.executable, "-c", STREAM, INET, str(port), str(seconds),
                       check=False, timeout=seconds + 60)
        try:
            out["tcp"] = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            out["tcp"] = {"ok": False, "error": proc.stderr.strip()[-300:]}

    threads = [threading.Thread(target=ping), threading.Thread(target=stream)]
    for t in threads:
        t.start()
    time.sleep(at)
    during()
    for t in threads:
        t.join()
    return {"loss_ms": loss_window_ms(out["ping"], count), "tcp": out["tcp"],
            "replies": len(re.findall(r"icmp_seq=\d+ ttl", out["ping"]))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=10)
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces, Open vSwitch)")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from plexus.agent.ovs.ovsdb import BFD
    from plexus.lab import Lab, LabSpec
    from tests.e2e.conftest import LabFixture

    with tempfile.TemporaryDirectory(prefix="plexus-failover-") as tmp:
        made = Lab(LabSpec(name="fo" + secrets.token_hex(3), chassis=3, gateways=2),
                   Path(tmp))
        made.up()
        try:
            lab = LabFixture(made)
            router, vm = setup(lab)
            lab.node("inet").tcp_server(5401)
            wait(lambda: vm.ping(INET, count=1, deadline=2), 60, "the VM reaches inet")
            results = []
            for n in range(args.rounds):
                gw = wait(lambda: active_gateway(lab, router.id), 30, "an active gateway")
                wait(lambda: bfd_up(lab, "c3") >= 2, 30, "BFD up toward both gateways")
                result = failover(lab, vm, 5401, lambda: cut(lab, gw))
                cut(lab, gw, up=True)
                results.append(result)
                print(f"round {n + 1}: cut {gw}: loss {result['loss_ms']:.0f} ms, "
                      f"TCP {'kept' if result['tcp'].get('ok') else result['tcp']}",
                      flush=True)
                time.sleep(3)
        finally:
            errors = made.down()
            if errors:
                print("teardown:", errors, file=sys.stderr)
    losses = [r["loss_ms"] for r in results]
    kept = sum(1 for r in results if r["tcp"].get("ok"))
    print()
    print_table([("failovers (active gateway's underlay cut)", str(len(losses))),
                 ("ping loss window p50 / max (ms)",
                  f"{statistics.median(losses):.0f} / {max(losses):.0f}"),
                 ("TCP streams kept", f"{kept}/{len(results)}"),
                 ("BFD settings", str(BFD)),
                 ("machine", machine())])


if __name__ == "__main__":
    main()
