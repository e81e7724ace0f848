"""Security-group benchmark: OpenFlow flows per port for a group of 50 rules whose remote
groups have 100 members each, and the time to compile them. Pure (no lab, no OVS): the
chassis' view is built from wire-format objects with ``security_view``, as the agent
does, then compiled by ``compile_view``. Prints one table.

The group of every measured port (``sg-app``), with the defaults:

- 20 ingress TCP single ports from remote group sg-web,
- 10 ingress TCP ranges of 100 ports from sg-web (each 4–6 masked matches),
- 10 ingress UDP single ports from remote group sg-db,
- 5 ingress ICMP types from 10.0.0.0/8,
- 4 egress rules to the remote groups (TCP 443 and 8443 to sg-web, UDP 53 and 123 to
  sg-db) and 1 egress to anywhere;

sg-web and sg-db have ``--members`` members each (ports elsewhere in the cloud).
"Without conjunctions" counts the flows a cross product would need: every remote-group
rule's matches times the group's members.

    .venv/bin/python bench/sg.py [--ports 20] [--rules 50] [--members 100] [--runs 5]
"""

from __future__ import annotations

import argparse
import ipaddress
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from plexus.pipeline.compile import by_stage, compile_view  # noqa: E402
from plexus.pipeline.security import security_view  # noqa: E402
from plexus.pipeline.stages.acl import port_masks  # noqa: E402
from plexus.pipeline.view import (  # noqa: E402
    ChassisView, NetworkView, PortView, SubnetView, View,
)
sys.path.insert(0, str(Path(__file__).resolve().parent))   # bench/table.py
from table import machine, print_table  # noqa: E402

ACL = ("egress_ct", "egress_acl", "ingress_ct", "ingress_acl")


def rule(i: int, direction: str, protocol=None, low=None, high=None, prefix=None,
         remote=None) -> dict:
    """A rule of sg-app in Neutron's wire format."""
    return {"id": f"r{i:03d}", "direction": direction, "ethertype": "IPv4",
            "protocol": protocol, "port_range_min": low, "port_range_max": high,
            "remote_ip_prefix": prefix, "remote_group_id": remote,
            "remote_address_group_id": None, "security_group_id": "sg-app"}


def app_rules(count: int) -> list[dict]:
    """``count`` rules in the proportions of the docstring (50 by default)."""
    kinds = ([("tcp1", i) for i in range(20)] + [("tcpr", i) for i in range(10)]
             + [("udp", i) for i in range(10)] + [("icmp", i) for i in range(5)]
             + [("out", i) for i in range(5)])
    kinds = (kinds * (count // len(kinds) + 1))[:count]
    out = []
    for n, (kind, i) in enumerate(kinds):
        k = i + 10 * (n // 50)                      # distinct ports beyond 50 rules
        if kind == "tcp1":
            out.append(rule(n, "ingress", "tcp", 2000 + k, 2000 + k, remote="sg-web"))
        elif kind == "tcpr":
            low = 10000 + 137 * k
            out.append(rule(n, "ingress", "tcp", low, low + 99, remote="sg-web"))
        elif kind == "udp":
            out.append(rule(n, "ingress", "udp", 5000 + k, 5000 + k, remote="sg-db"))
        elif kind == "icmp":
            out.append(rule(n, "ingress", "icmp", [0, 3, 8, 11, 13][i], None,
                            prefix="10.0.0.0/8"))
        else:
            out.append([rule(n, "egress", "tcp", 443, 443, remote="sg-web"),
                        rule(n, "egress", "tcp", 8443, 8443, remote="sg-web"),
                        rule(n, "egress", "udp", 53, 53, remote="sg-db"),
                        rule(n, "egress", "udp", 123, 123, remote="sg-db"),
                        rule(n, "egress")][i])
    return out


def world(ports: int, rules: int, members: int) -> tuple[dict, View]:
    """Wire objects of the cloud and this chassis' view without security."""
    net = NetworkView("net-1", 100, "vxlan", 1450)
    subnet = SubnetView("sub-1", net.id, "10.0.0.0/16", 4, "10.0.0.1", True)
    wire_ports, port_views = {}, {}
    for i in range(ports):
        pid = f"vm-{i:03d}"
        addr = str(ipaddress.ip_address("10.0.1.0") + i)
        mac = f"fa:16:3e:00:{i // 256:02x}:{i % 256:02x}"
        wire_ports[pid] = {"id": pid, "fixed_ips": [{"ip_address": addr}],
                           "allowed_address_pairs": [], "security_groups": ["sg-app"]}
        port_views[pid] = PortView(pid, i + 1, net.id, mac, ((subnet.id, addr),), "hv1")
    for group, base in (("sg-web", "10.1.0.0"), ("sg-db", "10.2.0.0")):
        for i in range(members):
            pid = f"{group}-{i:03d}"
            wire_ports[pid] = {"id": pid, "security_groups": [group],
                               "fixed_ips": [{"ip_address": str(ipaddress.ip_address(base) + i)}]}
    groups = {"sg-app": {"id": "sg-app", "stateful": True,
                         "security_group_rules": app_rules(rules)},
              "sg-web": {"id": "sg-web", "security_group_rules": []},
              "sg-db": {"id": "sg-db", "security_group_rules": []}}
    objects = {"ports": wire_ports, "security-groups": groups}
    view = View("hv1", "192.168.50.1", {net.id: net}, {subnet.id: subnet}, port_views,
                {"hv1": ChassisView("hv1", "192.168.50.1")},
                {pid: i + 1 for i, pid in enumerate(port_views)}, {})
    return objects, view


def acl_flows(flows) -> list:
    """The flows of the four ACL stages."""
    stages = by_stage(flows)
    return [f for name in ACL for f in stages[name]]


def timed(fn, runs: int) -> tuple[object, float]:
    """fn's result and its median wall time over ``runs`` (ms)."""
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1000)
    return result, statistics.median(times)


def main() -> None:
    """Measure, then print one table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ports", type=int, default=20)
    ap.add_argument("--rules", type=int, default=50)
    ap.add_argument("--members", type=int, default=100)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    rows = []
    counts = {}
    for n in (1, 2, args.ports):
        objects, bare = world(n, args.rules, args.members)
        sec, t_sec = timed(lambda: security_view(objects, list(bare.vif_ofports)), args.runs)
        view = replace(bare, security=sec)
        flows, t_compile = timed(lambda: compile_view(view), args.runs)
        acl = acl_flows(flows)
        shared = [f for f in acl if f.cookie.startswith("sg:") and ":members" in f.cookie]
        conj_id = [f for f in acl if "conj_id" in dict(f.match)]
        counts[n] = (len(acl), len(shared), len(flows), t_sec, t_compile, len(conj_id))
    one, two, many = counts[1], counts[2], counts[args.ports]
    rules = app_rules(args.rules)
    remote = [r for r in rules if r["remote_group_id"]]
    pieces = sum(len(port_masks(r["port_range_min"], r["port_range_max"]))
                 if r["protocol"] in ("tcp", "udp") and r["port_range_min"] else 1
                 for r in remote)
    cross = pieces * args.members
    per_port = two[0] - one[0]
    # a membership change: one more member in sg-web
    objects, bare = world(args.ports, args.rules, args.members)
    before = compile_view(replace(bare, security=security_view(objects, list(bare.vif_ofports))))
    objects["ports"]["sg-web-new"] = {"id": "sg-web-new", "security_groups": ["sg-web"],
                                      "fixed_ips": [{"ip_address": "10.1.9.9"}]}
    after = compile_view(replace(bare, security=security_view(objects, list(bare.vif_ofports))))
    old, new = {f.key(): f for f in before}, {f.key(): f for f in after}
    changed = [k for k in old.keys() | new.keys() if old.get(k) != new.get(k)]

    rows += [
        ("rules in the port's group (remote-group rules)", f"{len(rules)} ({len(remote)})"),
        ("members per remote group", f"{args.members} (sg-web, sg-db)"),
        ("ACL flows, 1 port (of which shared member flows)", f"{one[0]} ({one[1]})"),
        ("ACL flows per additional port", f"{per_port}"),
        (f"ACL flows, {args.ports} ports (shared member flows)", f"{many[0]} ({many[1]})"),
        (f"ACL flows per port at {args.ports} ports", f"{many[0] / args.ports:.1f}"),
        ("same rules without conjunctions, 1 port",
         f"{cross + one[0] - one[1] - pieces - one[5]}"),
        ("all flows of the chassis, 1 / N ports", f"{one[2]} / {many[2]}"),
        ("security_view, 1 / N ports, median (ms)", f"{one[3]:.1f} / {many[3]:.1f}"),
        ("compile_view, 1 / N ports, median (ms)", f"{one[4]:.1f} / {many[4]:.1f}"),
        ("flows changed by one new sg-web member", f"{len(changed)}"),
        ("machine", machine()),
    ]
    print_table(rows)


if __name__ == "__main__":
    main()
