"""``plexus demo``: the lab with a demo topology, and a table of what reaches what,
measured with real packets; the lab stays up for you to explore.
``plexus demo --api-only``: just the server on the embedded store and a scripted tour
through the real ``openstack`` CLI (no root needed)."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from rich.console import Console

from plexus.config import Config
from plexus.server.runner import write_clouds_yaml

# (cloud, command) pairs; {name} placeholders are filled from earlier JSON output.
TOUR = [
    ("plexus", "network create --external --provider-network-type flat "
               "--provider-physical-network physnet1 public"),
    ("plexus", "subnet create --network public --subnet-range 203.0.113.0/24 --no-dhcp "
               "--gateway 203.0.113.1 --allocation-pool start=203.0.113.100,end=203.0.113.199 "
               "public-subnet"),
    ("plexus-demo", "network create private"),
    ("plexus-demo", "subnet create --network private --subnet-range 10.0.0.0/24 "
                    "--dns-nameserver 10.0.0.53 private-subnet"),
    ("plexus-demo", "router create router1"),
    ("plexus-demo", "router set --external-gateway public router1"),
    ("plexus-demo", "router add subnet router1 private-subnet"),
    ("plexus-demo", "security group rule create --protocol tcp --dst-port 22 default"),
    ("plexus-demo", "port create --network private vm1-port"),
    ("plexus-demo", "floating ip create --port vm1-port public"),
    ("plexus-demo", "network list"),
    ("plexus-demo", "port list"),
    ("plexus-demo", "floating ip list"),
    ("plexus-demo", "router show router1"),
]


def run(args) -> int:
    """The lab demo, or with --api-only the API tour."""
    return run_api_tour(args) if args.api_only else run_lab(args)


def run_lab(args) -> int:
    """Bring up the lab, build the demo topology, print the reachability table."""
    from rich.table import Table

    from plexus.lab import Lab, LabSpec, lab_root
    from plexus.lab import demo
    from plexus.lab.inventory import Inventory
    console = Console()
    if os.geteuid() != 0:
        console.print("[red]the lab needs root; `plexus demo --api-only` runs without it")
        return 2
    name = args.lab_name
    if Inventory(lab_root() / name).exists():
        console.print(f"[dim]removing the previous {name!r} lab")
        Lab.load(name).down()
    start = time.monotonic()

    def progress(msg: str) -> None:
        console.print(f"[dim]{time.monotonic() - start:6.2f}s[/] {msg}")
    lab = Lab(LabSpec(name=name, chassis=3, gateways=2))
    try:
        lab.up(progress)
        demo.build(lab, progress)
        progress("measuring what reaches what (ping, every pair)")
        cells = demo.matrix(lab)
    except BaseException:
        console.print("[red]demo failed: tearing the lab down")
        lab.down()
        raise
    table = Table(title="What reaches what (real ICMP between VM namespaces)")
    for col in ("from", "to", "address", "reached", "expected", ""):
        table.add_column(col)
    for c in cells:
        table.add_row(c.src, c.dst, c.dst_ip, "yes" if c.reached else "no",
                      "yes" if c.expected else "no",
                      "[green]ok" if c.ok else "[red]MISMATCH")
    console.print(table)
    bad = [c for c in cells if not c.ok]
    try:
        pictures = demo.picture(lab)
        console.print("topology picture: " + ", ".join(str(p) for p in pictures))
    except RuntimeError as exc:         # no graphviz: say so, the demo stands
        console.print(f"[yellow]topology picture: {exc}")
    console.print(f"[bold]{len(cells) - len(bad)}/{len(cells)} as designed[/] in "
                  f"{time.monotonic() - start:.1f}s. The lab stays up:\n"
                  f"  plexus lab status --name {name}\n"
                  f"  plexus status --lab {name}; plexus flows c1 --lab {name} --object ID\n"
                  f"  plexus lab exec web1 --name {name} -- ping -c 3 <address>\n"
                  f"  export OS_CLIENT_CONFIG_FILE={lab.clouds}; "
                  f"openstack --os-cloud plexus port list\n"
                  f"  plexus lab down --name {name}        # removes everything it made")
    return 1 if bad else 0


def run_api_tour(args) -> int:
    """Start the server, run the tour, then serve until interrupted."""
    console = Console()
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "plexus.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    config = Config()
    config.server.port = args.port
    url = config.server.url()
    clouds = write_clouds_yaml(workdir / "clouds.yaml", url, config)
    log = open(workdir / "server.log", "w")
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("plexus-server")), "--port", str(args.port),
         "--store", f"sqlite:///{db}", "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        if not _wait_ready(url, server):
            console.print(f"[red]server did not start; see {workdir / 'server.log'}")
            return 1
        console.print(f"[bold green]Plexus server[/] at {url} (pid {server.pid}), store {db}")
        env = dict(os.environ, OS_CLIENT_CONFIG_FILE=str(clouds))
        openstack = str(Path(sys.executable).with_name("openstack"))
        for cloud, command in TOUR:
            console.print(f"\n[bold cyan]$ openstack --os-cloud {cloud} {command}")
            proc = subprocess.run([openstack, "--os-cloud", cloud, *shlex.split(command)],
                                  env=env, capture_output=True, text=True, timeout=120)
            sys.stdout.write(proc.stdout)
            if proc.returncode != 0:
                console.print(f"[red]tour step failed:[/] {proc.stderr.strip()}")
                return 1
        console.print(f"\n[bold]Explore:[/] export OS_CLIENT_CONFIG_FILE={clouds}; "
                      f"openstack --os-cloud plexus network list")
        if args.no_wait:
            return 0
        console.print("[bold]The server keeps running; Ctrl-C stops it.")
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
        server.wait()
        return server.returncode or 0
    except KeyboardInterrupt:
        return 0
    finally:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
        log.close()


def _wait_ready(url: str, server: subprocess.Popen, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            return False
        try:
            if httpx.get(url + "/", timeout=1.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False
