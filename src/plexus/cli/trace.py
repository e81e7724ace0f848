"""``plexus trace`` and ``plexus verify``: the model fetched from the server (admin:
``GET /southbound/v1/snapshot``), authenticated as every other client is, by a cloud of
clouds.yaml (``--os-cloud``, default ``$OS_CLOUD`` or ``plexus``; ``--lab NAME`` takes
the lab's clouds.yaml).

    plexus trace SRC (--icmp | --tcp | --udp) --to DST [--dport N] [--sport N]
                 [--flags syn+ack] [--icmp-type T --icmp-code C] [--ttl N]
                 [--json] [--lab NAME] [--os-cloud CLOUD]
                 [--live [--ovs CHASSIS=RUNDIR[,OVSDB]]... [--bridge br-int]]
    plexus verify [--json] [--max N] [--lab NAME] [--os-cloud CLOUD]

trace fetches only the snapshots of the chassis the packet visits; verify fetches the
whole model. ``--live`` also sends the packet through ``ofproto/trace`` on the real br-int
of each chassis on the path (``plexus.tools.live``): a lab's chassis with ``--lab``, a real
chassis by its OVS run directory (``--ovs CHASSIS=RUNDIR``; ``--ovs RUNDIR`` alone: the
chassis the source port is bound to). Exit status: 0; 1 when verify finds something or
``--live`` finds the installed flows differ from the model (or could not trace a
chassis); 2 when a port is unknown or the server cannot be reached."""

from __future__ import annotations

import json
import os
import sys
from urllib.parse import quote

from rich.console import Console


def add_parsers(sub) -> None:
    """Add ``trace`` and ``verify`` to the top-level parser."""
    import argparse
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--os-cloud", default=os.environ.get("OS_CLOUD", "plexus"),
                        help="cloud of clouds.yaml to use (admin; default $OS_CLOUD or plexus)")
    common.add_argument("--lab", help="a lab's name: its clouds.yaml (and OVS for --live)")
    common.add_argument("--root", help="where labs live (default: $PLEXUS_LAB_ROOT or var/lab)")
    common.add_argument("--json", action="store_true", help="JSON instead of tables")
    tr = sub.add_parser("trace", parents=[common],
                        help="one packet's path through the compiled pipelines")
    tr.add_argument("source", help="the sending port (name or id)")
    proto = tr.add_mutually_exclusive_group()
    for name in ("icmp", "tcp", "udp"):
        proto.add_argument(f"--{name}", dest="protocol", action="store_const", const=name)
    tr.add_argument("--to", required=True, dest="dst",
                    help="destination: a port (name or id) or an IPv4 address")
    tr.add_argument("--dport", type=int, help="TCP/UDP destination port (default 80)")
    tr.add_argument("--sport", type=int, default=40000, help="TCP/UDP source port")
    tr.add_argument("--flags", default="syn", help="TCP flags, e.g. syn, ack, syn+ack")
    tr.add_argument("--icmp-type", type=int, default=8)
    tr.add_argument("--icmp-code", type=int, default=0)
    tr.add_argument("--ttl", type=int, default=64)
    tr.add_argument("--live", action="store_true",
                    help="also run it through ofproto/trace on each chassis' br-int and "
                         "show where the installed flows differ from the model")
    tr.add_argument("--ovs", action="append", default=[], metavar="CHASSIS=RUNDIR[,OVSDB]",
                    help="(--live) a chassis' OVS run directory (db.sock, br-int.mgmt, "
                         "ovs-vswitchd's control socket); RUNDIR alone: the source's chassis")
    tr.add_argument("--bridge", default="br-int", help="(--live) the integration bridge")
    ver = sub.add_parser("verify", parents=[common],
                         help="check isolation, anti-spoofing, security groups and SNAT "
                              "over every port")
    ver.add_argument("--max", type=int, default=20, help="findings shown at most")


class Server:
    """The server the cloud names, through openstacksdk's session (its auth)."""

    def __init__(self, args):
        import openstack
        from openstack import config as os_config
        files = []
        if args.lab:
            from plexus.lab import Lab
            self.lab = Lab.load(args.lab, getattr(args, "root", None))
            files = [str(self.lab.clouds)]
        else:
            self.lab = None
        region = os_config.OpenStackConfig(config_files=files or None).get_one(
            cloud=args.os_cloud)
        self.conn = openstack.connection.Connection(config=region)
        self.base = region.auth["auth_url"].rstrip("/").split("/identity")[0]

    def snapshot(self, chassis: str | None = None) -> dict:
        """The model's objects (``chassis``: that chassis' only)."""
        url = f"{self.base}/southbound/v1/snapshot"
        if chassis:
            url += f"?chassis={quote(chassis, safe='')}"
        r = self.conn.session.get(url, raise_exc=False)
        if r.status_code != 200:
            raise RuntimeError(f"snapshot: HTTP {r.status_code}: {r.text[:200]}")
        return r.json().get("objects") or {}

    def port_chassis(self, ref: str) -> str | None:
        """The chassis a port (name or id) is bound to, from the Neutron API."""
        port = self.conn.network.find_port(ref, ignore_missing=True)
        if port is None:
            raise LookupError(f"no port {ref!r}")
        return port.binding_host_id or None


def run(args) -> int:
    """Execute ``trace`` or ``verify``."""
    console = Console()
    try:
        server = Server(args)
        if args.command == "trace":
            return run_trace(args, server, console)
        return run_verify(args, server, console)
    except (LookupError, RuntimeError) as exc:
        console.print(f"[red]{exc}")
        return 2
    except Exception as exc:  # noqa: BLE001 - openstacksdk/keystoneauth errors
        if type(exc).__module__.split(".")[0] in ("openstack", "keystoneauth1"):
            console.print(f"[red]{type(exc).__name__}: {exc}")
            return 2
        raise


def run_trace(args, server: Server, console) -> int:
    """``plexus trace``."""
    import ipaddress

    from plexus.tools.fabric import Fabric, Model
    from plexus.tools.trace import Probe, render, trace
    model, fetched = Model(), set()

    def fetch(chassis: str) -> None:
        if chassis not in fetched:
            fetched.add(chassis)
            model.add(server.snapshot(chassis))
    for ref in (args.source, args.dst):
        try:
            ipaddress.IPv4Address(ref)
            continue
        except ValueError:
            pass
        host = server.port_chassis(ref)
        if host:
            fetch(host)
    if not fetched:
        raise LookupError(f"port {args.source!r} is not bound to a chassis")
    probe = Probe(protocol=args.protocol or "icmp", dst=args.dst, sport=args.sport,
                  dport=args.dport, flags=args.flags, icmp_type=args.icmp_type,
                  icmp_code=args.icmp_code, ttl=args.ttl)
    if args.live:
        return run_live(args, server, console, model, fetch, probe)
    report = trace(Fabric(model, fetch=fetch), args.source, probe)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        render(report, console)
    return 0


def switches(args, server: Server):
    """chassis → its OVS (``plexus.tools.live.Switch``) for ``--live``, None when not
    reachable: a lab's chassis, or the run directories given by ``--ovs``."""
    from plexus.tools.live import parse_targets
    bare = [s for s in args.ovs if "=" not in s]
    targets = parse_targets([s for s in args.ovs if "=" in s])
    if bare:
        host = server.port_chassis(args.source)
        if host is None or len(bare) > 1:
            raise LookupError("--ovs RUNDIR without a chassis needs a bound source port "
                              "(and is given once)")
        targets.update(parse_targets([f"{host}={bare[0]}"]))
    if not targets and server.lab is None:
        raise LookupError("--live reads each chassis' OVS: name a lab (--lab) or give "
                          "--ovs CHASSIS=RUNDIR")

    def switch(chassis: str):
        if chassis in targets:
            return targets[chassis]
        if server.lab is not None:
            try:
                return server.lab.ovs(server.lab.spec.chassis_named(chassis))
            except Exception:   # noqa: BLE001 - TopologyError: not a chassis of the lab
                return None
        return None
    return switch


def run_live(args, server: Server, console, model, fetch, probe) -> int:
    """``plexus trace --live``."""
    from plexus.tools import live
    from plexus.tools.fabric import Fabric
    switch = switches(args, server)

    def real_ofports(chassis: str):
        ovs = switch(chassis)
        if ovs is None:
            return None
        try:
            return live.read_ofports(ovs, args.bridge)
        except RuntimeError:
            return None         # reported when the chassis is traced
    fabric = Fabric(model, fetch=fetch, read_ofports=real_ofports)
    result = live.live_trace(fabric, switch, args.source, probe, args.bridge)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2, default=str))
    else:
        live.render(result, console)
    return 0 if result.agree else 1


def run_verify(args, server: Server, console) -> int:
    """``plexus verify``."""
    from plexus.tools.fabric import Fabric, Model
    from plexus.tools.verify import render, verify
    model = Model(server.snapshot())
    result = verify(Fabric(model))
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        render(result, console, args.max)
    return 1 if result.findings else 0


if __name__ == "__main__":
    sys.exit(2)
