"""``plexus lab``: several hypervisors, VMs and an external network on this machine.

    plexus lab up [--chassis N] [--gateways K] [--store sqlite|etcd] [--vlan-upstream]
                  [--metadata] [--dns-domain DOMAIN] [--name NAME]
    plexus lab status | down
    plexus lab vm boot NAME --network NET [--chassis C] [--project P] [--static] [--port P]
    plexus lab vm list | delete NAME
    plexus lab exec TARGET -- CMD...     (TARGET: a VM, a chassis, ul, pn, ext or inet)
    plexus lab restart-agent CHASSIS [--kill] [--down SECONDS]
    plexus lab restart-switch CHASSIS [--kill] [--down SECONDS]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

from rich.console import Console
from rich.table import Table

console = Console()


def add_parser(sub) -> None:
    """Add the ``lab`` subcommand tree to the top-level parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--name", default=os.environ.get("PLEXUS_LAB_NAME", "lab"),
                        help="lab name (default: $PLEXUS_LAB_NAME or 'lab')")
    common.add_argument("--root", help="where labs live (default: $PLEXUS_LAB_ROOT or var/lab)")
    lab = sub.add_parser("lab", help="a multi-hypervisor lab in network namespaces")
    cmds = lab.add_subparsers(dest="lab_command", required=True)
    up = cmds.add_parser("up", parents=[common], help="build a lab")
    up.add_argument("--chassis", type=int, default=3)
    up.add_argument("--gateways", type=int, default=1)
    up.add_argument("--store", default="sqlite", choices=["sqlite", "etcd"])
    up.add_argument("--vlan-upstream", action="store_true",
                    help="the upstream router also on VLAN 100 of physnet1 (198.51.100.1)")
    up.add_argument("--metadata", action="store_true",
                    help="serve 169.254.169.254 on every chassis (metadata namespace, the "
                         "agents' proxies, the lab's metadata backend)")
    up.add_argument("--dns-domain", default=None,
                    help="the server's network.dns_domain, e.g. example.org. (default "
                         "openstacklocal.: ports keep no dns_name)")
    cmds.add_parser("down", parents=[common], help="remove everything the lab recorded")
    status = cmds.add_parser("status", parents=[common], help="chassis, VMs, processes, health")
    status.add_argument("--json", action="store_true")
    ex = cmds.add_parser("exec", parents=[common], help="run a command inside a lab node")
    ex.add_argument("target")
    ex.add_argument("argv", nargs=argparse.REMAINDER)
    for what, text in (("agent", "stop and start one chassis' plexus-agent"),
                       ("switch", "stop and start one chassis' ovs-vswitchd")):
        restart = cmds.add_parser(f"restart-{what}", parents=[common], help=text)
        restart.add_argument("chassis")
        restart.add_argument("--kill", action="store_true",
                             help="SIGKILL instead of SIGTERM (a crash: no clean stop)")
        restart.add_argument("--down", type=float, default=0.0, metavar="SECONDS",
                             help="how long to leave it stopped (default 0)")
    vm = cmds.add_parser("vm", help="boot, list and delete VMs")
    vms = vm.add_subparsers(dest="vm_command", required=True)
    boot = vms.add_parser("boot", parents=[common], help="what Nova does: port, plug, DHCP")
    boot.add_argument("vm")
    boot.add_argument("--network")
    boot.add_argument("--port", help="take this existing port instead of creating one")
    boot.add_argument("--chassis", help="default: the chassis with the fewest VMs")
    boot.add_argument("--project", help="port owner (default: the network's project)")
    boot.add_argument("--static", action="store_true",
                      help="assign the port's address instead of running DHCP")
    boot.add_argument("--dhcp-timeout", type=float, default=10.0)
    listing = vms.add_parser("list", parents=[common])
    listing.add_argument("--json", action="store_true")
    delete = vms.add_parser("delete", parents=[common])
    delete.add_argument("vm")


def run(args) -> int:
    """Execute a parsed ``plexus lab`` command."""
    from openstack.exceptions import SDKException

    from plexus.lab import Lab, LabSpec
    if os.geteuid() != 0:
        console.print("[red]the lab needs root (network namespaces, Open vSwitch)")
        return 2
    if args.lab_command == "exec":
        _split_exec(args)
    try:
        if args.lab_command == "up":
            return _up(Lab(LabSpec(name=args.name, chassis=args.chassis,
                                   gateways=args.gateways, store=args.store,
                                   vlan_upstream=args.vlan_upstream,
                                   metadata=args.metadata, dns_domain=args.dns_domain),
                               args.root))
        if args.lab_command == "down":
            return _down(args)
        lab = Lab.load(args.name, args.root)
        if args.lab_command == "status":
            return _status(lab, args.json)
        if args.lab_command == "exec":
            return _exec(lab, args.target, args.argv)
        if args.lab_command.startswith("restart-"):
            return _restart(lab, args)
        return _vm(lab, args)
    except (RuntimeError, ValueError, KeyError, SDKException) as exc:
        # LabError, TopologyError, OvsMissing, NetlinkFailure, API errors: say it, no trace
        console.print(f"[red]{type(exc).__name__}: {exc}")
        return 1
    except KeyboardInterrupt:
        console.print("[yellow]interrupted")
        return 130


def _up(lab) -> int:
    # SIGTERM unwinds like Ctrl-C, so a half-built lab is torn down (by this process
    # only: a forked helper that inherits the handler just leaves)
    main_pid = os.getpid()

    def on_term(*_):
        if os.getpid() != main_pid:
            os._exit(143)
        sys.exit(143)
    signal.signal(signal.SIGTERM, on_term)
    start = time.monotonic()
    with console.status("building the lab") as status:
        def progress(msg: str) -> None:
            console.print(f"[dim]{time.monotonic() - start:6.2f}s[/] {msg}")
            status.update(msg)
        lab.up(progress)
    console.print(f"[bold green]lab {lab.spec.name!r} ready[/] in "
                  f"{time.monotonic() - start:.1f}s at {lab.dir}")
    _print_status(lab.status())
    console.print(f"\n[bold]Use it:[/] export OS_CLIENT_CONFIG_FILE={lab.clouds}; "
                  "openstack --os-cloud plexus network list\n"
                  f"        plexus lab vm boot vm1 --network NET --name {lab.spec.name}")
    return 0


def _down(args) -> int:
    from plexus.lab import lab_root
    from plexus.lab.inventory import Inventory
    from plexus.lab.lab import Lab
    if not Inventory(lab_root(args.root) / args.name).exists():
        console.print(f"no lab {args.name!r} (nothing to do)")
        return 0
    lab = Lab.load(args.name, args.root)
    start = time.monotonic()
    errors = lab.down(log=lambda m: console.print(f"[dim]{m}"))
    for err in errors:
        console.print(f"[red]{err}")
    console.print(f"lab {args.name!r} " + ("[red]partly removed; run down again"
                                           if errors else "[green]removed") +
                  f" in {time.monotonic() - start:.1f}s")
    return 1 if errors else 0


def _status(lab, as_json: bool) -> int:
    status = lab.status()
    if as_json:
        print(json.dumps(status, indent=1))
    else:
        _print_status(status)
    healthy = status["server_answers"] and all(
        c["ovs"] and all(c["ovs"].values()) for c in status["chassis"])
    return 0 if healthy else 1


def _ok(flag: bool) -> str:
    return "[green]ok" if flag else "[red]down"


def _print_status(status: dict) -> None:
    console.print(f"API server {status['url']}: {_ok(status['server_answers'])}")
    table = Table("chassis", "namespace", "tunnel IP", "gateway", "ovsdb-server", "ovs-vswitchd",
                  title="chassis")
    for c in status["chassis"]:
        table.add_row(c["name"], c["netns"], c["tunnel_ip"], "yes" if c["gateway"] else "",
                      _ok(c["ovs"].get("ovsdb-server", False)),
                      _ok(c["ovs"].get("ovs-vswitchd", False)))
    console.print(table)
    if status["vms"]:
        _print_vms(status["vms"])
    procs = Table("process", "pid", "namespace", "state", title="processes")
    for p in status["processes"]:
        procs.add_row(p["label"], str(p["pid"] or "-"), p["ns"] or "(root: loopback only)",
                      "[green]running" if p["alive"] else "exited")
    console.print(procs)
    console.print("namespaces: " + ", ".join(
        ns if ok else f"[red]{ns} (missing)" for ns, ok in status["namespaces"].items()))


def _print_vms(vms: list[dict]) -> None:
    table = Table("VM", "chassis", "IP", "MAC", "port", "mode", title="VMs")
    for v in vms:
        table.add_row(v["name"], v["chassis"], v["ip"] or "[yellow]none", v["mac"] or "",
                      v["port_id"] or "", v["mode"] or "")
    console.print(table)


def _split_exec(args) -> None:
    """``exec TARGET [--name N] [--root R] -- CMD``: options before ``--`` are ours."""
    if "--" in args.argv:
        cut = args.argv.index("--")
        ours, args.argv = args.argv[:cut], args.argv[cut + 1:]
        extra = argparse.ArgumentParser(add_help=False)
        extra.add_argument("--name", default=args.name)
        extra.add_argument("--root", default=args.root)
        parsed = extra.parse_args(ours)
        args.name, args.root = parsed.name, parsed.root


def _exec(lab, target: str, argv: list[str]) -> int:
    from plexus.lab import netlink
    from plexus.lab.vm import node
    if not argv:
        console.print("[red]give a command: plexus lab exec TARGET -- CMD...")
        return 2
    n = node(lab, target)
    return subprocess.run(netlink.in_ns(n.netns, argv), env=n.env).returncode


def _restart(lab, args) -> int:
    from plexus.lab.lab import restart_agent, restart_switch
    what = args.lab_command.removeprefix("restart-")
    sig = signal.SIGKILL if args.kill else signal.SIGTERM
    start = time.monotonic()
    with console.status(f"restarting {args.chassis}'s {what}"):
        pid = (restart_agent if what == "agent" else restart_switch)(
            lab, args.chassis, sig, args.down)
    console.print(f"{args.chassis}: {'plexus-agent' if what == 'agent' else 'ovs-vswitchd'} "
                  f"running again as pid {pid} ({time.monotonic() - start:.1f}s)")
    return 0


def _vm(lab, args) -> int:
    from plexus.lab import vm as vms
    if args.vm_command == "list":
        listing = vms.list_vms(lab)
        if args.json:
            print(json.dumps(listing, indent=1))
        else:
            _print_vms(listing)
        return 0
    if args.vm_command == "delete":
        errors = vms.delete(lab, args.vm)
        for err in errors:
            console.print(f"[red]{err}")
        return 1 if errors else 0
    with console.status(f"booting {args.vm}"):
        vm = vms.boot(lab, args.vm, args.network, chassis=args.chassis, project=args.project,
                      static=args.static, port=args.port, dhcp_timeout=args.dhcp_timeout)
    _print_vms([v for v in vms.list_vms(lab) if v["name"] == vm.name])
    if not vm.ip:
        console.print(f"[yellow]no DHCP answer: the chassis' agent serves DHCP; see "
                      f"{lab.dir / vm.chassis / 'agent.log'} (or boot with --static)")
        return 1
    return 0
