"""IPv6 services and routing: what one chassis spends, as the routed dual-stack network
grows. In process, no OVS: the dual-stack reference (tests/golden/ipv6_reference.py)
with N more ports on net-a (2001:db8:a::/64, slaac, behind router r1; half bound to
hv1, the measured chassis, half to hv2), each with its EUI-64 address.

Per N, on hv1: the full compile (flows), one relevant event through the incremental
compiler (a dual-stack port bound to hv2 on net-a: the stages recompiled and the flows
added), the agent's answer to one router solicitation and to one DHCPv6
INFORMATION-REQUEST (net-c, dhcpv6-stateless), and one round of unsolicited router
advertisements (one frame per local VIF). Prints one table.

    .venv/bin/python bench/ipv6.py [--sizes 100,1000,5000] [--repeat 50] [--v4-only]
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from plexus.agent import dhcp6, ipv6, ra  # noqa: E402
from plexus.pipeline.compile import compile_view  # noqa: E402
from plexus.pipeline.incremental import IncrementalCompiler  # noqa: E402
from plexus.pipeline.stages.router import eui64, link_local  # noqa: E402
from tests.golden import ipv6_reference as ref6  # noqa: E402
from tests.golden import l3_reference as ref  # noqa: E402


def port(n: int, host: str) -> dict:
    mac = f"fa:16:3e:7{n >> 16 & 0xF:x}:{n >> 8 & 0xFF:02x}:{n & 0xFF:02x}"
    return {"id": f"x-{n:06d}", "plexus:key": 1000 + n, "network_id": "net-a",
            "mac_address": mac, "binding:host_id": host, "device_owner": "compute:nova",
            "device_id": f"vm-{n}", "port_security_enabled": True, "admin_state_up": True,
            "allowed_address_pairs": [],
            "fixed_ips": [{"subnet_id": "sub-a", "ip_address": f"10.1.{16 + n // 250}."
                                                               f"{n % 250 + 2}"},
                          {"subnet_id": "sub-a6",
                           "ip_address": eui64("2001:db8:a::/64", mac)}]}


def world(size: int, v4_only: bool = False) -> dict:
    objs = ref6.objects()
    objs["subnets"]["sub-a"]["cidr"] = "10.1.0.0/16"
    for n in range(size):
        p = port(n, "hv1" if n % 2 else "hv2")
        objs["ports"][p["id"]] = p
    if v4_only:                     # the same cloud without its IPv6 (for comparison)
        for p in objs["ports"].values():
            p["fixed_ips"] = [f for f in p["fixed_ips"] if ":" not in f["ip_address"]]
    return objs


def hv1_view(objs: dict, plugged: int):
    vifs = dict(ref.VIF_OFPORTS["hv1"])
    mine = sorted(p for p, o in objs["ports"].items()
                  if o["binding:host_id"] == "hv1" and p.startswith("x-"))
    vifs.update({pid: 100 + i for i, pid in enumerate(mine[:plugged])})
    saved = ref.VIF_OFPORTS["hv1"]
    ref.VIF_OFPORTS["hv1"] = vifs
    try:
        return ref6.view("hv1", objs)
    finally:
        ref.VIF_OFPORTS["hv1"] = saved


def timed(fn, repeat: int) -> float:
    """Median milliseconds of ``fn()`` over ``repeat`` runs."""
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return statistics.median(out)


def rs(mac: str) -> bytes:
    src = link_local(mac)
    body = struct.pack("!BBHI", 133, 0, 0, 0)
    csum = ipv6.checksum(src, "ff02::2", 58, body)
    body = body[:2] + struct.pack("!H", csum) + body[4:]
    return ipv6.frame(mac, "33:33:00:00:00:02", src, "ff02::2", 58, body)


def measure(size: int, repeat: int, v4_only: bool = False) -> dict:
    objs = world(size, v4_only)
    view = hv1_view(objs, size)
    t0 = time.perf_counter()
    flows = compile_view(view)
    full_ms = (time.perf_counter() - t0) * 1000
    compiler = IncrementalCompiler()
    compiler.compile(view)
    after = copy.deepcopy(objs)
    extra = port(size + 1, "hv2")
    if v4_only:
        extra["fixed_ips"] = extra["fixed_ips"][:1]
    after["ports"][extra["id"]] = extra
    view2 = hv1_view(after, size)
    t0 = time.perf_counter()
    delta = compiler.compile(view2)
    event_ms = (time.perf_counter() - t0) * 1000
    a = view.ports["a-vm1"]
    solicit = rs(a.mac)
    c = view.ports["c-vm1"]
    info = ipv6.udp6(c.mac, "33:33:00:01:00:02", link_local(c.mac), "ff02::1:2", 546, 547,
                     bytes([dhcp6.INFORMATION_REQUEST, 1, 2, 3]))
    frames = [f for fs in ra.unsolicited(view).values() for f in fs]
    return {"size": size, "flows": len(flows), "full_ms": full_ms, "event_ms": event_ms,
            "recompiled": len(delta.recompiled), "added": len(delta.added),
            "rs_ms": timed(lambda: ra.answer(solicit, a, view), repeat),
            "dhcp6_ms": timed(lambda: dhcp6.respond(info, c, view), repeat),
            "ra_round_ms": timed(lambda: ra.unsolicited(view), max(3, repeat // 10)),
            "ra_frames": len(frames)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100,1000,5000")
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--v4-only", action="store_true",
                    help="the same cloud without IPv6 addresses (what IPv6 adds)")
    args = ap.parse_args()
    runs = [measure(int(s), args.repeat, args.v4_only) for s in args.sizes.split(",")]
    rows = [("ports on the routed network net-a", lambda r: f"{r['size']}"),
            ("full compile of hv1: ms (flows)", lambda r: f"{r['full_ms']:.0f} ({r['flows']})"),
            ("one more port bound to hv2 on net-a: ms (units recompiled, flows added)",
             lambda r: f"{r['event_ms']:.1f} ({r['recompiled']}, {r['added']})"),
            ("router solicitation answered: ms", lambda r: f"{r['rs_ms']:.3f}"),
            ("DHCPv6 information-request answered: ms", lambda r: f"{r['dhcp6_ms']:.3f}"),
            ("unsolicited RA round: ms (frames)",
             lambda r: f"{r['ra_round_ms']:.1f} ({r['ra_frames']})")]
    width = max(len(name) for name, _ in rows)
    print(f"{'metric':<{width}} | " + " | ".join(f"N={r['size']}" for r in runs))
    print("-" * width + "-|-" + "-|-".join("-" * 12 for _ in runs))
    for name, cell in rows:
        print(f"{name:<{width}} | " + " | ".join(f"{cell(r):>12}" for r in runs))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
