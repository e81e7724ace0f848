"""ICMP errors from routers: what one costs the agent, what the per-chassis rate limit
lets through a flood, and how many flows the feature adds. Pure (no lab, no OVS): the
chassis hv1 of the L3 reference topology (tests/golden/l3_reference.py), its packets
punted by the one evaluator and answered by ``plexus.agent.icmp``. Prints one table.

    .venv/bin/python bench/icmp.py [--errors 20000] [--flood-rate 10000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
from plexus.agent import icmp  # noqa: E402
from plexus.pipeline.compile import compile_view  # noqa: E402
from plexus.pipeline.stages.router import interfaces, programmed  # noqa: E402
from tests.golden.l3_reference import VIF_OFPORTS, view  # noqa: E402
from tests.unit.test_icmp_errors import fields_of, frame, punted  # noqa: E402
from tests.unit.test_l3 import routed  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parent))   # bench/table.py
from table import machine, print_table  # noqa: E402

CASES = {
    "ttl": (routed("a-vm2", "10.2.0.11", nw_ttl=1), {}),
    "too-big": (routed("a-vm2", "10.2.0.11", pkt_len=1465), {"size": 1451}),
    "unreachable": (routed("a-vm2", "10.2.0.77"), {}),
}


def per_error_us(kind: str, n: int, rate: float, burst: float) -> float:
    """Median over 5 runs of the agent's time per packet-in (µs)."""
    pkt, kw = CASES[kind]
    _, at = punted("hv1", pkt)
    chassis_view = view("hv1")
    vifs = {o: p for p, o in VIF_OFPORTS["hv1"].items()}
    data, fields = frame({**pkt, **{k: at[k] for k in ("eth_src", "eth_dst", "nw_ttl")}},
                         **kw), fields_of(at)
    runs = []
    for _ in range(5):
        gen = icmp.IcmpErrors(rate, burst, rate, burst)
        started = time.perf_counter()
        for _ in range(n):
            gen.handle(kind, data, fields, pkt["in_port"], chassis_view, vifs)
        runs.append((time.perf_counter() - started) / n * 1e6)
    return statistics.median(runs)


def flood(rate_in: float, seconds: float, senders: int) -> tuple[int, int]:
    """(sent, refused) by the default buckets for TTL-1 packet-ins arriving at
    ``rate_in`` a second for ``seconds`` (virtual clock), from ``senders`` addresses of
    a-vm2's subnet in turn."""
    pkt, _ = CASES["ttl"]
    _, at = punted("hv1", pkt)
    chassis_view = view("hv1")
    vifs = {o: p for p, o in VIF_OFPORTS["hv1"].items()}
    base, fields = frame(pkt), fields_of(at)
    frames = [base[:29] + bytes([20 + i]) + base[30:] for i in range(senders)]
    gen = icmp.IcmpErrors()
    for i in range(int(rate_in * seconds)):
        gen.handle("ttl", frames[i % senders], fields, pkt["in_port"], chassis_view, vifs,
                   now=i / rate_in)
    return gen.counts.sent["ttl"], gen.counts.limited


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--errors", type=int, default=20000)
    p.add_argument("--flood-rate", type=float, default=10000.0)
    p.add_argument("--seconds", type=float, default=10.0)
    args = p.parse_args()
    rows = []
    for kind in CASES:
        rows.append((f"agent time per {kind} error (µs)",
                     f"{per_error_us(kind, args.errors, 1e12, 1e12):.1f}"))
    rows.append(("agent time per refused packet-in (µs)",
                 f"{per_error_us('ttl', args.errors, 0.0, 0.0):.2f}"))
    for senders, bound in ((1, "10 + 10/s × t, one sender"),
                           (200, "100 + 100/s × t, the chassis")):
        sent, refused = flood(args.flood_rate, args.seconds, senders)
        rows.append((f"flood {args.flood_rate:g}/s, {args.seconds:g} s, {senders} sender(s): "
                     "sent / refused", f"{sent} / {refused} (bound {bound})"))
    hv1 = view("hv1")
    subnets = {i.subnet.id for r, _ in programmed(hv1) for i in interfaces(hv1, r)}
    punts = [f for f in compile_view(hv1) if f.stage == "l3_neighbor"
             and f.actions and type(f.actions[-1]).__name__ == "Controller"]
    rows.append(("punt flows on hv1 / router subnets there",
                 f"{len(punts)} / {len(subnets)} (one per subnet + one per chassis)"))
    rows.append(("machine", machine()))
    print_table(rows)


if __name__ == "__main__":
    main()
