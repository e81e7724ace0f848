"""Provider networks against overlay networks on the lab's data plane: two VMs on
different chassis of a VXLAN network and two of a VLAN network (physnet1, segment 100,
bridged to the provider segment), each pair measured the same way — TCP throughput
(``plexus.lab.tcp``, the median of ``--runs`` transfers of ``--mbytes``), ping round
trip (median of 20 echoes) and the largest ICMP payload that passes with DF set (the
path MTU minus 28). Prints one table.

    sudo .venv/bin/python bench/provider.py [--mbytes 32] [--runs 3] [--name provbench]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))   # bench/table.py
from table import machine, print_table  # noqa: E402

from plexus.lab import Lab, LabSpec  # noqa: E402
from plexus.lab import vm as vms  # noqa: E402


def wait_ping(vm, ip: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not vm.ping(ip, count=1, deadline=2):
        if time.monotonic() > deadline:
            raise SystemExit(f"{vm.name} cannot reach {ip}")


def rtt_ms(vm, ip: str) -> float:
    out = vm.exec("ping", "-n", "-c", "20", "-i", "0.05", ip, check=False).stdout
    times = [float(t) for t in re.findall(r"time=([\d.]+) ms", out)]
    return statistics.median(times) if times else float("nan")


def largest_df(vm, ip: str, low: int = 1300, high: int = 1600) -> int:
    """The largest ICMP payload that passes with DF (binary search)."""
    def passes(size: int) -> bool:
        return vm.exec("ping", "-n", "-c", "1", "-W", "1", "-M", "do", "-s", str(size), ip,
                       check=False).returncode == 0
    if not passes(low):
        return 0
    while low < high - 1:
        mid = (low + high) // 2
        low, high = (mid, high) if passes(mid) else (low, mid)
    return low


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mbytes", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--name", default="provbench")
    parser.add_argument("--root", default=None)
    args = parser.parse_args()
    lab = Lab(LabSpec(name=args.name, chassis=2, gateways=1, vlan_upstream=True), args.root)
    lab.up()
    rows = []
    try:
        api = lab.connect().network
        overlay = api.create_network(name="bench-vxlan")
        api.create_subnet(network_id=overlay.id, cidr="10.66.1.0/24", ip_version=4)
        vlan = api.create_network(name="bench-vlan", provider_network_type="vlan",
                                  provider_physical_network="physnet1",
                                  provider_segmentation_id=100)
        api.create_subnet(network_id=vlan.id, cidr="198.51.100.0/24", ip_version=4,
                          gateway_ip="198.51.100.1",
                          allocation_pools=[{"start": "198.51.100.100",
                                             "end": "198.51.100.199"}])
        for label, net in (("VXLAN", overlay), ("VLAN 100 (bridged)", vlan)):
            mtu = api.get_network(net.id).mtu
            a = vms.boot(lab, f"{net.name}-a", net.id, chassis="c1", static=True)
            b = vms.boot(lab, f"{net.name}-b", net.id, chassis="c2", static=True)
            wait_ping(a, b.ip)
            port = 5500 + len(rows)
            b.tcp_server(port)
            speeds = []
            for _ in range(args.runs):
                result = a.tcp_client(b.ip, port, size=args.mbytes << 20, timeout=120)
                if not result.get("ok"):
                    raise SystemExit(f"{label}: TCP failed: {result}")
                speeds.append(result["mbit_s"])
            rows += [(f"{label}: network MTU (API)", str(mtu)),
                     (f"{label}: TCP c1→c2, median of {args.runs} × {args.mbytes} MB",
                      f"{statistics.median(speeds):.0f} Mbit/s"),
                     (f"{label}: ping RTT c1→c2, median of 20", f"{rtt_ms(a, b.ip):.3f} ms"),
                     (f"{label}: largest DF ICMP payload c1→c2", f"{largest_df(a, b.ip)} B")]
    finally:
        errors = lab.down()
    rows.append(("machine", machine()))
    print_table(rows)
    if errors:
        raise SystemExit(f"teardown: {errors}")


if __name__ == "__main__":
    main()
