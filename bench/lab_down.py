"""Lab benchmark: ``plexus lab down`` of a lab with hundreds of VMs.

Builds a lab (the library's ``Lab.up``), boots ``--vms`` VMs spread over the chassis
(``plexus.lab.vm.boot`` with static addressing: port through the API, namespace, veth
into br-int, OVS port — what ``lab down`` has to remove), then times the real command
``plexus lab down`` (a fresh process) and checks it left no namespace, process or
directory of the lab. Prints one table.

    sudo .venv/bin/python bench/lab_down.py [--vms 300] [--chassis 3] [--workers 4]
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from plexus.lab import Lab, LabSpec, netlink  # noqa: E402
from plexus.lab import vm as vms  # noqa: E402
from plexus.lab.inventory import alive  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parent))   # bench/table.py
from table import machine, print_table  # noqa: E402


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=300)
    parser.add_argument("--chassis", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4, help="VMs booted in parallel")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the lab needs root")
    name = "bdown" + secrets.token_hex(2)
    with tempfile.TemporaryDirectory(prefix="plexus-bench-down-") as tmp:
        root = Path(tmp)
        lab = Lab(LabSpec(name=name, chassis=args.chassis, gateways=1), root)
        began = time.perf_counter()
        lab.up()
        up = time.perf_counter() - began
        try:
            conn = lab.connect()
            net = conn.network.create_network(name="bench")
            conn.network.create_subnet(network_id=net.id, cidr="10.80.0.0/22",
                                       ip_version=4)
            chassis = [ch.name for ch in lab.spec.chassis_list()]
            began = time.perf_counter()
            with ThreadPoolExecutor(args.workers) as pool:
                list(pool.map(lambda i: vms.boot(lab, f"b{i}", net.id, static=True,
                                                 chassis=chassis[i % len(chassis)]),
                              range(args.vms)))
            boot = time.perf_counter() - began
            namespaces = len([n for n in netlink.ns_list() if n.startswith(lab.spec.prefix)])
            entries = len(lab.inventory.entries())
            pids = [e["pid"] for e in lab.inventory.entries("process") if e.get("pid")]
        finally:
            exe = str(Path(sys.executable).with_name("plexus"))
            env = dict(os.environ, PLEXUS_LAB_ROOT=str(root), PLEXUS_LAB_NAME=name)
            began = time.perf_counter()
            proc = subprocess.run([exe, "lab", "down"], env=env, capture_output=True,
                                  text=True, timeout=1800)
            down = time.perf_counter() - began
        if proc.returncode != 0:
            raise SystemExit(f"plexus lab down failed:\n{proc.stdout}{proc.stderr}")
        left = [n for n in netlink.ns_list() if n.startswith(lab.spec.prefix)]
        left += [f"pid {p}" for p in pids if alive(p)]
        if left or lab.dir.exists():
            raise SystemExit(f"lab down left {left or lab.dir}")
    rows = [
        ("chassis", str(args.chassis)),
        ("VMs", str(args.vms)),
        ("namespaces / inventory entries", f"{namespaces} / {entries}"),
        ("lab up → ready (s)", f"{up:.1f}"),
        (f"boot {args.vms} VMs, {args.workers} at a time (s)", f"{boot:.1f}"),
        ("plexus lab down (s)", f"{down:.2f}"),
        ("left behind", "nothing"),
        ("machine", machine()),
    ]
    print_table(rows)


if __name__ == "__main__":
    main()
