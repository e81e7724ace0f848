"""One Open vSwitch instance per chassis: its own ovsdb-server and ovs-vswitchd running
inside the chassis namespace, with their own run/db/log directories, reached only
through unix sockets (``ovs-vsctl --db=unix:…``, ``ovs-ofctl … unix:…/br-int.mgmt``).
The system's OVS (``/etc/openvswitch``, ``/var/run/openvswitch``) is never used."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from plexus.lab import netlink

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
DAEMONS = ("ovsdb-server", "ovs-vswitchd")


class OvsMissing(RuntimeError):
    """Open vSwitch is not installed."""


def check_installed() -> None:
    """Raise ``OvsMissing`` with a hint unless OVS and its schema are installed."""
    missing = [b for b in ("ovsdb-tool", *DAEMONS, "ovs-vsctl", "ovs-ofctl", "ovs-appctl")
               if not shutil.which(b)]
    if missing or not SCHEMA.exists():
        raise OvsMissing(f"Open vSwitch is missing ({', '.join(missing) or SCHEMA}); "
                         "run scripts/bootstrap.sh (Debian package openvswitch-switch)")


class Ovs:
    """Paths and commands of the OVS instance living in ``base`` (run/, db/, log/)."""

    def __init__(self, base: str | os.PathLike, netns: str):
        self.base = Path(base)
        self.netns = netns
        self.rundir, self.dbdir, self.logdir = (self.base / d for d in ("run", "db", "log"))

    @property
    def db(self) -> str:
        """The OVSDB remote of this instance."""
        return f"unix:{self.rundir / 'db.sock'}"

    def mgmt(self, bridge: str = "br-int") -> str:
        """The OpenFlow management socket of ``bridge`` (what ovs-ofctl and agents use)."""
        return f"unix:{self.rundir / f'{bridge}.mgmt'}"

    def ctl(self, daemon: str) -> str:
        """The unixctl socket of ``daemon`` (for ovs-appctl -t)."""
        return str(self.rundir / f"{daemon}.ctl")

    def pidfile(self, daemon: str) -> str:
        """The pidfile ``daemon`` writes."""
        return str(self.rundir / f"{daemon}.pid")

    def env(self) -> dict:
        """Environment that points every OVS tool at this instance's directories."""
        return dict(os.environ, OVS_RUNDIR=str(self.rundir), OVS_DBDIR=str(self.dbdir),
                    OVS_LOGDIR=str(self.logdir), OVS_SYSCONFDIR=str(self.base))

    # --- life cycle ------------------------------------------------------------------
    def create_db(self) -> None:
        """Make the directories and an empty database from the installed schema."""
        for d in (self.rundir, self.dbdir, self.logdir):
            d.mkdir(parents=True, exist_ok=True)
        db = self.dbdir / "conf.db"
        if not db.exists():
            subprocess.run(["ovsdb-tool", "create", str(db), str(SCHEMA)], check=True,
                           capture_output=True)

    def daemon_argv(self, daemon: str) -> list[str]:
        """The command line of ``daemon``; it detaches once ready and writes its pidfile."""
        common = [f"--pidfile={self.pidfile(daemon)}", f"--unixctl={self.ctl(daemon)}",
                  f"--log-file={self.logdir / f'{daemon}.log'}", "--detach", "--no-chdir",
                  "-vconsole:off"]
        if daemon == "ovsdb-server":
            return ["ovsdb-server", str(self.dbdir / "conf.db"),
                    f"--remote=punix:{self.rundir / 'db.sock'}",
                    "--remote=db:Open_vSwitch,Open_vSwitch,manager_options", *common]
        return ["ovs-vswitchd", self.db, *common]

    def start(self, daemon: str) -> int:
        """Start ``daemon`` inside the namespace; returns its pid once it is ready."""
        netlink.run(self.netns, self.daemon_argv(daemon), env=self.env(), timeout=60)
        if daemon == "ovsdb-server":
            self.vsctl("--no-wait", "init")
        return int(Path(self.pidfile(daemon)).read_text().split()[0])

    # --- commands --------------------------------------------------------------------
    def vsctl(self, *args: str, timeout: int = 10) -> str:
        """Run ovs-vsctl against this instance; returns stdout."""
        return _tool(["ovs-vsctl", f"--db={self.db}", f"--timeout={timeout}", *args],
                     self.env(), timeout + 5)

    def ofctl(self, command: str, bridge: str, *args: str) -> str:
        """Run ``ovs-ofctl -O OpenFlow13 COMMAND unix:…/BRIDGE.mgmt ARGS``; returns stdout."""
        return _tool(["ovs-ofctl", "-O", "OpenFlow13", command, self.mgmt(bridge), *args],
                     self.env(), 15)

    def appctl(self, *args: str, daemon: str = "ovs-vswitchd") -> str:
        """Run ovs-appctl against one of this instance's daemons; returns stdout."""
        return _tool(["ovs-appctl", "-t", self.ctl(daemon), "--timeout=5", *args],
                     self.env(), 10)

    def healthy(self) -> dict[str, bool]:
        """Whether ovsdb-server answers ``ovs-vsctl show`` and ovs-vswitchd its unixctl."""
        result = {}
        for name, call in (("ovsdb-server", lambda: self.vsctl("show", timeout=2)),
                           ("ovs-vswitchd", lambda: self.appctl("version"))):
            try:
                call()
                result[name] = True
            except (RuntimeError, subprocess.TimeoutExpired):
                result[name] = False
        return result


def _tool(argv: list[str], env: dict, timeout: float) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout
