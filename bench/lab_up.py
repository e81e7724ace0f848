"""Lab benchmark: time from ``plexus lab up`` to a ready lab, and ``plexus lab down``.

Ready means what ``lab up`` waits for before it returns: the API server answers and
every chassis' ovsdb-server and ovs-vswitchd answer. Each run is the real command (a
fresh process: interpreter start-up and imports included) in a temporary lab root, and
a check that the chassis reach each other over the underlay. Prints one table.

    sudo .venv/bin/python bench/lab_up.py [--chassis 3] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from plexus.lab import Lab, netlink  # noqa: E402
from plexus.lab.vm import node  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parent))   # bench/table.py
from table import machine, print_table  # noqa: E402


def plexus(*args: str, env: dict) -> float:
    """Run ``plexus lab ARGS``; returns its wall time (fails loudly)."""
    exe = str(Path(sys.executable).with_name("plexus"))
    began = time.perf_counter()
    proc = subprocess.run([exe, "lab", *args], env=env, capture_output=True, text=True,
                          timeout=300)
    elapsed = time.perf_counter() - began
    if proc.returncode != 0:
        raise SystemExit(f"plexus lab {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return elapsed


def one_run(chassis: int, root: Path) -> tuple[float, float]:
    """Up, check the underlay, down; returns (up seconds, down seconds)."""
    name = "bench" + secrets.token_hex(2)
    env = dict(os.environ, PLEXUS_LAB_ROOT=str(root), PLEXUS_LAB_NAME=name)
    try:
        up = plexus("up", "--chassis", str(chassis), env=env)
        lab = Lab.load(name, root)
        first, *others = lab.spec.chassis_list()
        for ch in others:
            if not node(lab, first.name).ping(ch.tunnel_ip, count=1):
                raise SystemExit(f"{first.name} cannot reach {ch.name} over the underlay")
    finally:
        down = plexus("down", env=env)
    leftover = [ns for ns in netlink.ns_list() if ns.startswith(f"plx-{name}-")]
    if leftover or (root / name).exists():
        raise SystemExit(f"down left {leftover or root / name}")
    return up, down


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chassis", type=int, default=3)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the lab needs root")
    ups, downs = [], []
    with tempfile.TemporaryDirectory(prefix="plexus-bench-lab-") as tmp:
        for _ in range(args.runs):
            up, down = one_run(args.chassis, Path(tmp))
            ups.append(up)
            downs.append(down)

    def stats(xs: list[float]) -> str:
        return f"{statistics.median(xs):.2f} / {min(xs):.2f} / {max(xs):.2f}"
    rows = [
        ("chassis", str(args.chassis)),
        ("runs", str(args.runs)),
        ("lab up → ready, p50 / min / max (s)", stats(ups)),
        ("lab down, p50 / min / max (s)", stats(downs)),
        ("machine", machine()),
        ("Open vSwitch", netlink.run(None, ["ovs-vswitchd", "--version"]).stdout.split("\n")[0]),
    ]
    print_table(rows)


if __name__ == "__main__":
    main()
