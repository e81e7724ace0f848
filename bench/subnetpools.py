"""Subnet pool allocation: what one subnet create from a pool costs as the pool fills and
as the rest of the cloud grows. Prints one table.

Starts a real plexus-server process on a fresh SQLite store and creates, through HTTP,
one network per subnet, then: --per-pool subnets from pool A (10.0.0.0/8, /24 each),
timing the first and the last 50; --filler plain subnets elsewhere in the cloud; then 50
from an empty pool B. The allocation reads only its own pool's index, so B's creates
should cost what A's first ones did, whatever the filler.

    .venv/bin/python bench/subnetpools.py [--per-pool 400] [--filler 1000]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from plexus.server.runner import free_port  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parent))   # bench/table.py, bench/api.py
from api import start_server, token  # noqa: E402
from table import machine, print_table  # noqa: E402

SAMPLE = 50


def subnets(c: httpx.Client, count: int, body: dict) -> list[float]:
    """Create ``count`` networks each with one subnet from ``body``; the subnet latencies."""
    out = []
    for _ in range(count):
        net = c.post("/v2.0/networks", json={"network": {"name": "b"}}).json()["network"]
        t0 = time.perf_counter()
        r = c.post("/v2.0/subnets", json={"subnet": {"network_id": net["id"], "ip_version": 4,
                                                     **body}})
        out.append(time.perf_counter() - t0)
        if r.status_code != 201:
            raise SystemExit(f"subnet create failed: {r.status_code} {r.text}")
    return out


def p50(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-pool", type=int, default=400)
    parser.add_argument("--filler", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        proc = start_server(f"sqlite:///{tmp}/plexus.db", port, Path(tmp) / "server.log")
        try:
            url = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=url, headers={"X-Auth-Token": token(url)},
                              timeout=60) as c:
                project = c.get("/v2.0/quotas/project").json()["project"]["project_id"]
                c.put(f"/v2.0/quotas/{project}", json={"quota": {"network": -1, "subnet": -1}})
                a = c.post("/v2.0/subnetpools", json={"subnetpool": {
                    "prefixes": ["10.0.0.0/8"], "default_prefixlen": 24}}).json()["subnetpool"]
                b = c.post("/v2.0/subnetpools", json={"subnetpool": {
                    "prefixes": ["172.16.0.0/12"], "default_prefixlen": 24}}).json()["subnetpool"]
                from_a = subnets(c, args.per_pool, {"subnetpool_id": a["id"]})
                for i in range(args.filler):
                    net = c.post("/v2.0/networks", json={"network": {"name": "f"}}).json()
                    c.post("/v2.0/subnets", json={"subnet": {
                        "network_id": net["network"]["id"], "ip_version": 4,
                        "cidr": f"100.{64 + i // 256}.{i % 256}.0/24"}})
                from_b = subnets(c, SAMPLE, {"subnetpool_id": b["id"]})
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    print_table([
        (f"subnet from pool A, its first {SAMPLE} (pool holds 0-{SAMPLE}): p50",
         p50(from_a[:SAMPLE])),
        (f"subnet from pool A, its last {SAMPLE} (pool holds {args.per_pool - SAMPLE}-"
         f"{args.per_pool}): p50", p50(from_a[-SAMPLE:])),
        (f"subnet from empty pool B after {args.filler} more subnets in the cloud: p50",
         p50(from_b)),
        ("machine", machine()),
    ])


if __name__ == "__main__":
    main()
