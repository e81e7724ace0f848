"""SNAT benchmark: concurrent TCP connections through SNAT from one chassis. A 2-chassis
lab (c1 the gateway), a VM on c2 behind a router with a gateway on the flat external
network, an echo server on the internet host that holds every connection open. The VM
opens N connections at once (default 5,000) to that one destination; each must carry a
byte both ways. The chassis starts with one port block and leases more as they fill
(``[network] snat_max_blocks``, default 256 × ``snat_block_size`` 64). A capture on the
internet host counts packets with a tenant source address (must be 0) and NATed SYNs.
Then every connection is closed, and the time until their router-zone conntrack
entries are gone (their ports free again) is measured. Prints one table.

    sudo .venv/bin/python bench/snat.py [--connections 5000]

    sudo .venv/bin/python bench/snat.py --phases capacity     # or survival

Phases, each on a lab of its own, rows in one table: ``capacity`` (this file) and
``survival`` (``bench/snat_survival.py``: an established SNAT TCP session across the
agents of its chassis and of the active gateway killed for 60 s, and across the API
server stopped for 60 s; a 3-chassis lab, two gateways). The e2e tests
(tests/e2e/test_snat.py, test_snat_sticky.py) use the same helpers."""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))   # bench/table.py
from table import machine, print_table  # noqa: E402

TENANT = "10.72.0.0/16"
PORT = 5400


def capture(lab, expression: str, path: Path) -> subprocess.Popen:
    """tcpdump on inet's eth0 into ``path`` (started; stop with ``stopped``)."""
    node = lab.node("inet")
    proc = subprocess.Popen(["ip", "netns", "exec", node.netns, "tcpdump", "-i", "eth0",
                             "-n", "-s", "128", "-B", "65536", "-w", str(path), expression],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    return proc


def stopped(proc: subprocess.Popen, path: Path) -> tuple[list[str], int]:
    """The captured packets (one line each) and how many the kernel dropped."""
    time.sleep(1.0)
    proc.terminate()
    _, err = proc.communicate(timeout=30)
    dropped = re.search(r"(\d+) packets? dropped by kernel", err)
    lines = subprocess.run(["tcpdump", "-r", str(path), "-n", "-q"], capture_output=True,
                           text=True).stdout.splitlines()
    return [line for line in lines if line.strip()], int(dropped.group(1)) if dropped else -1


def router_zone_entries(lab, chassis: str, gateway: str) -> int:
    """Conntrack entries on ``chassis`` translated to the router's gateway address."""
    node = lab.node(chassis)
    ctl = lab.lab.dir / chassis / "run" / "ovs-vswitchd.ctl"
    out = node.exec("ovs-appctl", "-t", str(ctl), "dpctl/dump-conntrack", check=False,
                    timeout=60).stdout
    return sum(1 for line in out.splitlines() if f"dst={gateway}," in line)


def capacity(lab, connections: int = 5000) -> list[tuple[str, str]]:
    """N connections from one VM to one destination through SNAT."""
    from tests.e2e import test_snat as t
    public = t.make_public(lab)
    t.start_hold(lab, "inet", PORT)
    net, router = t.router_for(lab, public, "bench", "10.72.1.0/24")
    gateway = t.gateway_address(lab, router)
    lab.vm("bench-a", net, chassis="c2", static=True)
    t.ready(lab, "bench-a")
    blocks_before = len(t.chassis_blocks(lab, router))
    drops_before = t.guard_drops(lab)
    pcaps = lab.lab.dir / "pids"
    leaked = capture(lab, f"src net {TENANT}", pcaps / "leaked.pcap")
    syns = capture(lab, f"tcp dst port {PORT} and src host {gateway} and "
                        f"tcp[tcpflags] & tcp-syn != 0", pcaps / "syns.pcap")
    started = time.time()
    result = t.many(lab, "bench-a", connections, timeout=60, hold=2.0)
    closed = time.monotonic()
    (leaked_lines, leaked_lost), (syn_lines, syn_lost) = \
        stopped(leaked, pcaps / "leaked.pcap"), stopped(syns, pcaps / "syns.pcap")
    left, waited = None, None
    while time.monotonic() - closed < 120:
        left = router_zone_entries(lab, "c2", gateway)
        if left <= 1:                           # (the readiness probe's may linger)
            waited = time.monotonic() - closed
            break
        time.sleep(0.5)
    blocks = t.chassis_blocks(lab, router)
    sources = {m.group(1) for line in syn_lines
               for m in [re.search(rf"{re.escape(gateway)}\.(\d+) >", line)] if m}
    log = (lab.lab.dir / "c2" / "agent.log").read_text()
    growth = []
    for m in re.finditer(r"^(\S+ \S+) .*asking for (\d+) SNAT blocks \(holding (\d+)\)",
                         log, re.M):
        at = time.mktime(time.strptime(m.group(1).split(",")[0], "%Y-%m-%d %H:%M:%S"))
        at += int(m.group(1).split(",")[1]) / 1000 - started
        if at > -5:
            growth.append(f"{m.group(3)}→{m.group(2)} at {at:+.1f}s")
    asks = len(growth)
    return [
        ("connections asked (one VM → one destination)", str(connections)),
        ("connections established and echoed", str(result.get("echoed"))),
        ("seconds until all were (or the deadline)", str(result.get("seconds"))),
        ("connect errors", json.dumps(result.get("errors", {})) or "{}"),
        ("packets with a tenant source seen on inet", str(len(leaked_lines))),
        ("packets the captures lost (kernel drops)", f"{leaked_lost} / {syn_lost}"),
        ("NATed SYNs seen on inet (retries included)", str(len(syn_lines))),
        ("distinct NATed source ports seen on inet", str(len(sources))),
        ("SNAT blocks held by c2 before / after", f"{blocks_before} / {len(blocks)}"),
        ("block size (ports)", str(blocks[0]["port_max"] - blocks[0]["port_min"] + 1
                                   if blocks else "-")),
        ("agent growth decisions (lease requests)", str(asks)),
        ("blocks asked for, seconds after the start", ", ".join(growth) or "-"),
        ("SYNs dropped by the SNAT guard (no free port yet)",
         str(t.guard_drops(lab) - drops_before)),
        ("seconds from close to router-zone entries gone from the dump",
         f"{waited:.1f}" if waited is not None else f"> 120 ({left} left)"),
    ]


def survival(lab) -> list[tuple[str, str]]:
    """``bench/snat_survival.py`` on its own lab (3 chassis, c1 and c2 gateways): one
    row per outage kind and figure."""
    import snat_survival
    rows = []
    for r in snat_survival.run(lab):
        kind = r["outage"]
        rows += [(f"{kind} outage: seconds down", f"{r['down_s']}"),
                 (f"{kind} outage: session survived (every byte echoed)", str(r["survived"])),
                 (f"{kind} outage: bytes echoed before / during / after",
                  f"{r['bytes_before']} / {r['bytes_during']} / {r['bytes_after']}"),
                 (f"{kind} outage: new connection afterwards", str(r["new_connection"])),
                 (f"{kind} outage: same SNAT blocks afterwards", str(r["blocks_kept"]))]
    return rows


# phase → (function of the lab fixture returning rows, chassis, gateways)
PHASES = {"capacity": (None, 2, 1), "survival": (survival, 3, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--connections", type=int, default=5000)
    p.add_argument("--phases", default=",".join(PHASES),
                   help="comma-separated: " + ", ".join(PHASES))
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces, Open vSwitch)")
    from plexus.config import NetworkConfig
    from plexus.lab import Lab, LabSpec
    from tests.e2e.conftest import LabFixture, alive_chassis, wait_for

    chosen = [n for n in args.phases.split(",") if n]
    unknown = set(chosen) - set(PHASES)
    if unknown:
        sys.exit(f"unknown phase(s) {', '.join(sorted(unknown))}: use {', '.join(PHASES)}")
    rows: list[tuple[str, str]] = []
    for name in chosen:
        run, chassis, gateways = PHASES[name]
        with tempfile.TemporaryDirectory(prefix="plexus-snat-") as tmp:
            made = Lab(LabSpec(name="sn" + secrets.token_hex(3), chassis=chassis,
                               gateways=gateways), Path(tmp))
            made.up()
            try:
                lab = LabFixture(made)
                names = {f"c{i}" for i in range(1, chassis + 1)}
                wait_for(lambda: alive_chassis(lab) == names, 30, "agents alive")
                rows += capacity(lab, args.connections) if run is None else run(lab)
            finally:
                errors = made.down()
                if errors:
                    print("teardown:", errors, file=sys.stderr)
    net = NetworkConfig()
    rows += [("snat_block_size / snat_max_blocks",
              f"{net.snat_block_size} / {net.snat_max_blocks}"),
             ("snat_quarantine (s)", f"{net.snat_quarantine:g}"),
             ("machine", machine())]
    print()
    print_table(rows)


if __name__ == "__main__":
    main()
