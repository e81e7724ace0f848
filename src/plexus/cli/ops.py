"""Operator commands (admin credentials):

    plexus status [--json]                     chassis health, leases, agent versions,
                                               store revision, each agent's lag
    plexus flows CHASSIS [--object ID] [--json] the flows installed on one chassis' br-int
                                               (all, or one object's by cookie): a lab's
                                               chassis (--lab), or on a real chassis its
                                               OVS (--ovs-rundir/--ovsdb/--bridge, or
                                               --agent-unit: the agent's own settings)
    plexus topology [-o FILE]                  SVG (and PNG) of networks, routers, ports
                                               and chassis, coloured by status

Credentials: ``--lab NAME`` (that lab's clouds.yaml, cloud ``plexus``), else
``--os-cloud`` (default $OS_CLOUD, else ``plexus``) from the usual clouds.yaml."""

from __future__ import annotations

import argparse
import json
import os
import sys

import httpx
from rich.console import Console
from rich.table import Table

from plexus.tools.client import Api

console = Console(width=None if sys.stdout.isatty() else 200)   # piped: never truncate

# the cookie names a flow of object ID may carry (``plexus.lower.openflow.cookie_of``
# hashes them; see docs/pipeline.md); compound ones are completed from the API
SIMPLE_KINDS = ("port", "network", "router", "subnet", "floatingip", "chassis", "pipeline")


def add_parsers(sub) -> None:
    """Add ``status``, ``flows`` and ``topology`` to the top-level parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--lab", default=os.environ.get("PLEXUS_LAB_NAME"),
                        help="a lab's name: use its server and OVS (default $PLEXUS_LAB_NAME)")
    common.add_argument("--root", help="where labs live (default: $PLEXUS_LAB_ROOT or var/lab)")
    common.add_argument("--os-cloud", default=os.environ.get("OS_CLOUD", "plexus"),
                        help="cloud in clouds.yaml when no lab is named (admin)")
    status = sub.add_parser("status", parents=[common],
                            help="chassis health, leases, agent versions and lag")
    status.add_argument("--json", action="store_true")
    flows = sub.add_parser("flows", parents=[common],
                           help="installed flows of one chassis (one object's by cookie)")
    flows.add_argument("chassis")
    flows.add_argument("--object", metavar="ID",
                       help="only the flows this object produced (port, network, router, "
                            "subnet, floating IP, security group or rule id)")
    flows.add_argument("--json", action="store_true")
    flows.add_argument("--ovs-rundir", default=os.environ.get("PLEXUS_OVS_RUNDIR"),
                       help="no lab: the chassis' OVS run directory (holds br-int.mgmt; "
                            "default $PLEXUS_OVS_RUNDIR, else /var/run/openvswitch)")
    flows.add_argument("--ovsdb", default=os.environ.get("PLEXUS_OVSDB"),
                       help="no lab: its OVSDB remote (default unix:RUNDIR/db.sock)")
    flows.add_argument("--bridge", default=None, help="the integration bridge (br-int)")
    flows.add_argument("--agent-unit", metavar="FILE",
                       help="no lab: take --ovs-rundir, --ovsdb and --bridge from the "
                            "plexus-agent command line in FILE (its systemd unit)")
    topo = sub.add_parser("topology", parents=[common],
                          help="SVG/PNG picture of networks, routers, ports and chassis")
    topo.add_argument("-o", "--output", default="var/topology.svg",
                      help="where to write (also .dot and .png next to it)")


def _connect(args):
    if args.lab:
        from plexus.lab import Lab
        lab = Lab.load(args.lab, args.root)
        return lab, lab.connect()
    import openstack
    return None, openstack.connect(cloud=args.os_cloud)


def run(args) -> int:
    """Execute ``status``, ``flows`` or ``topology``."""
    from openstack.exceptions import SDKException
    try:
        lab, conn = _connect(args)
        api = Api(conn)
        if args.command == "status":
            return status(api, args.json)
        if args.command == "flows":
            switch, bridge = flows_target(args, lab)
            return flows(api, switch, bridge, args.chassis, args.object, args.json)
        return topology(api, args.output)
    except (RuntimeError, ValueError, KeyError, SDKException, httpx.HTTPError) as exc:
        console.print(f"[red]{type(exc).__name__}: {exc}")
        return 1


# --- status ----------------------------------------------------------------------------

def status(api: Api, as_json: bool) -> int:
    """Print ``GET /operator/v1/status``; 1 when a chassis is dead."""
    body = api.get("/operator/v1/status")
    if as_json:
        print(json.dumps(body, indent=1))
    else:
        store = body["store"]
        console.print(f"store revision [bold]{store['revision']}[/]; leases held "
                      f"{body['leases']['held']}, expired {body['leases']['expired']}")
        table = Table(title="chassis")
        for col in ("chassis", "alive", "last seen", "lease", "gateway", "version",
                    "applied revision", "lag"):
            table.add_column(col)
        for c in body["chassis"]:
            lag = c["lag"]
            table.add_row(c["chassis"], "[green]yes" if c["alive"] else "[red]NO",
                          c["last_seen"] or "-", str(c["lease"] or "-"),
                          "yes" if c["gateway"] else "", c["version"] or "?",
                          "-" if c["applied_revision"] is None else str(c["applied_revision"]),
                          "-" if lag is None else (f"[green]{lag}" if lag == 0 else str(lag)))
        console.print(table)
    return 0 if all(c["alive"] for c in body["chassis"]) else 1


# --- flows -----------------------------------------------------------------------------

def cookie_names(api: Api, ident: str) -> set[str]:
    """Every cookie name a flow produced by object ``ident`` may carry."""
    names = {f"{kind}:{ident}" for kind in SIMPLE_KINDS}
    names |= {f"sg:{ident}:members", f"ag:{ident}:members", f"router:{ident}:snat-guard"}
    hosts = [a["host"] for a in api.get("/v2.0/agents")["agents"]]
    names |= {f"router:{ident}:snat:{h}" for h in hosts}
    for p in api.get(f"/v2.0/ports?device_id={ident}")["ports"]:
        names.add(f"router:{ident}:port:{p['id']}")
    for p in api.get(f"/v2.0/ports?id={ident}")["ports"]:
        if p.get("device_id"):
            names.add(f"router:{p['device_id']}:port:{ident}")
    for r in api.get(f"/v2.0/security-group-rules?security_group_id={ident}")[
            "security_group_rules"]:
        names.add(f"sg:{ident}:rule:{r['id']}")
    for r in api.get(f"/v2.0/security-group-rules?id={ident}")["security_group_rules"]:
        names.add(f"sg:{r['security_group_id']}:rule:{ident}")
    return names


def parse_dump(text: str) -> list[dict]:
    """``ovs-ofctl dump-flows`` lines as {cookie, table, priority, packets, flow}."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("cookie="):
            continue
        fields = dict(part.strip().split("=", 1) for part in line.split(" actions=")[0]
                      .replace(", ", ",").split(",") if "=" in part)
        out.append({"cookie": int(fields.get("cookie", "0"), 16),
                    "table": int(fields.get("table", "0")),
                    "priority": int(fields.get("priority", "32768")),
                    "packets": int(fields.get("n_packets", "0")), "flow": line})
    return out


def flows_target(args, lab) -> tuple:
    """(the chassis' OVS, its integration bridge): the lab's chassis, or the run
    directory and OVSDB remote given (or read from the agent's unit)."""
    from plexus.tools.live import RunDir, agent_options
    if lab is not None:
        return lab.ovs(lab.spec.chassis_named(args.chassis)), args.bridge or "br-int"
    found = {}
    if args.agent_unit:
        try:
            with open(args.agent_unit) as f:
                found = agent_options(f.read())
        except OSError as exc:
            raise RuntimeError(f"--agent-unit: {exc}") from None
        if not found.get("rundir"):
            raise RuntimeError(f"no plexus-agent --ovs-rundir in {args.agent_unit}")
        if found.get("chassis") not in (None, args.chassis):
            raise RuntimeError(f"{args.agent_unit} is the agent of chassis "
                               f"{found['chassis']}, not {args.chassis}")
    rundir = args.ovs_rundir or found.get("rundir") or "/var/run/openvswitch"
    return (RunDir(rundir, args.ovsdb or found.get("ovsdb")),
            args.bridge or found.get("bridge") or "br-int")


def flows(api: Api, switch, bridge: str, chassis: str, ident: str | None,
          as_json: bool) -> int:
    """Print the chassis' installed flows (``ident``'s only); 1 when it has none."""
    from plexus.lower.openflow import cookie_of
    dumped = parse_dump(switch.ofctl("dump-flows", bridge))
    if ident:
        by_cookie = {cookie_of(n): n for n in cookie_names(api, ident)}
        dumped = [dict(f, object=by_cookie[f["cookie"]]) for f in dumped
                  if f["cookie"] in by_cookie]
    if as_json:
        print(json.dumps(dumped, indent=1))
    else:
        for f in dumped:
            who = f" [cyan]{f['object']}[/]" if "object" in f else ""
            console.print(f"{f['flow']}{who}", highlight=False, soft_wrap=True)
        console.print(f"[bold]{len(dumped)} flows[/] on {chassis}"
                      + (f" for {ident}" if ident else ""))
    return 0 if dumped else 1


# --- topology --------------------------------------------------------------------------

def topology(api: Api, output: str) -> int:
    """Write the picture; print where."""
    from plexus.tools import topology as topo
    written = topo.render(topo.from_api(api.get), output)
    for path in written:
        console.print(f"wrote {path}")
    return 0
