"""OVN as the control plane of the port-up benchmark (``bench/portup.py --backend ovn``):
the same lab (3 chassis, each its own OVS with the userspace datapath, br-int, the
tunnel IP on br-ul over the underlay namespace), without Plexus agents, and OVN in their
place, all started by the benchmark inside the lab's directory and recorded in the lab's
inventory, so ``lab down`` stops them by pid (also on failure):

- ``ovn/nb`` and ``ovn/sb``: an ovsdb-server each for OVN_Northbound and OVN_Southbound,
  databases and unix sockets in ``<lab>/ovn`` (no TCP, nothing in the root namespace);
- ``ovn/northd``: ovn-northd between the two;
- ``cN/ovn-controller``: one per chassis, in the chassis namespace, on the chassis'
  OVSDB socket, its br-int and its tunnel IP (``ovn-encap-ip``; Geneve by default).

What Neutron's OVN driver writes stands in for the API: a network is a Logical_Switch;
a port is a Logical_Switch_Port with ``addresses`` and ``port_security`` = "MAC IP" and
``options:requested-chassis`` (its binding:host_id), in two port groups carrying the
ACLs of Neutron's default security group (egress allowed, ingress from the group, the
``neutron_pg_drop`` drops) — one NB transaction, sent over a kept-open JSON-RPC
connection (the driver's IDL, not an ``ovn-nbctl`` start-up). "ACTIVE" is the port's
``up`` column in the NB, polled like the API's status. The packages' own services are
never used (scripts/bootstrap.sh installs ovn-central and ovn-host and disables them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from portup import CHASSIS, Ovsdb, UpWatch, plug_ops, prepare

from plexus.lab import Lab
from plexus.lab.inventory import alive

SCHEMAS = {"nb": Path("/usr/share/ovn/ovn-nb.ovsschema"),
           "sb": Path("/usr/share/ovn/ovn-sb.ovsschema")}
DATABASES = {"nb": "OVN_Northbound", "sb": "OVN_Southbound"}
BINARIES = ("ovsdb-server", "ovsdb-tool", "ovn-northd", "ovn-controller")
PG, PG_DROP = "pg_default", "neutron_pg_drop"
# Neutron's default security group, as its OVN driver writes it
ACLS = (
    ("from-lport", 1002, f"inport == @{PG} && ip4", "allow-related"),
    ("from-lport", 1002, f"inport == @{PG} && ip6", "allow-related"),
    ("to-lport", 1002, f"outport == @{PG} && ip4 && ip4.src == ${PG}_ip4", "allow-related"),
    ("to-lport", 1002, f"outport == @{PG} && ip6 && ip6.src == ${PG}_ip6", "allow-related"),
)
DROP_ACLS = (
    ("from-lport", 1001, f"inport == @{PG_DROP} && ip", "drop"),
    ("to-lport", 1001, f"outport == @{PG_DROP} && ip", "drop"),
)


def check_installed() -> None:
    missing = [b for b in BINARIES if not shutil.which(b)]
    missing += [str(p) for p in SCHEMAS.values() if not p.exists()]
    if missing:
        raise SystemExit(f"OVN is missing ({', '.join(missing)}); run scripts/bootstrap.sh "
                         "(Debian packages ovn-central, ovn-host)")


def wait_for(what: str, check, timeout: float = 60, pids: dict[str, int] | None = None,
             logs: Path | None = None) -> None:
    """Poll ``check`` until true; give up (SystemExit) after ``timeout`` or as soon as
    one of ``pids`` (label → pid) has exited."""
    deadline = time.monotonic() + timeout
    while not check():
        dead = [label for label, pid in (pids or {}).items() if not alive(pid)]
        if dead:
            raise SystemExit(f"OVN: {', '.join(dead)} exited; see {logs}")
        if time.monotonic() > deadline:
            raise SystemExit(f"OVN: {what} after {timeout:.0f} s")
        time.sleep(0.05)


class NbUpWatch(UpWatch):
    """Polls the NB for the Logical_Switch_Ports whose ``up`` is true."""

    def __init__(self, sock: Path, poll: float):
        super().__init__(poll)
        self.db = Ovsdb(sock, DATABASES["nb"])

    def active(self) -> list[str]:
        rows = self.db.transact([{"op": "select", "table": "Logical_Switch_Port",
                                  "where": [["up", "==", True]], "columns": ["name"]}])
        return [row["name"] for row in rows[0]["rows"]]

    def close(self) -> None:
        self.db.close()


class OvnBackend:
    """OVN on the lab (see the module's docstring)."""

    name = "OVN"
    control = "ovn-controller"
    central = "ovn-northd + NB/SB ovsdb-server"
    central_prefix = "ovn/"
    active = "LSP up in NB"
    agents = False                      # the lab starts no plexus-agent

    def __init__(self, lab: Lab, args):
        self.lab, self.args = lab, args
        self.dir = lab.dir / "ovn"
        self.nb: Ovsdb | None = None
        self.switches: dict[str, str] = {}          # network id (LS uuid) → LS name
        self.pids: dict[str, int] = {}

    def sock(self, db: str) -> Path:
        return self.dir / f"{db}.sock"

    @staticmethod
    def dirs(base: Path) -> dict:
        """OVN's run/log/db directories in ``base`` (never /var/run/ovn)."""
        return {"OVN_RUNDIR": str(base), "OVN_LOGDIR": str(base), "OVN_DBDIR": str(base)}

    def start(self) -> None:
        lab = self.lab
        self.dir.mkdir(parents=True, exist_ok=True)
        common = ["-vconsole:off", "--no-chdir"]
        for db in ("nb", "sb"):
            path = self.dir / f"{db}.db"
            subprocess.run(["ovsdb-tool", "create", str(path), str(SCHEMAS[db])], check=True,
                           capture_output=True)
            self.pids[f"ovn/{db}"] = lab.spawn(f"ovn/{db}", ["ovsdb-server", str(path),
                                    f"--remote=punix:{self.sock(db)}",
                                    f"--unixctl={self.dir / f'{db}.ctl'}",
                                    f"--log-file={self.dir / f'{db}.log'}", *common],
                      env={**os.environ, **self.dirs(self.dir)})
        for db in ("nb", "sb"):
            wait_for(f"the {db.upper()} database did not start", self.sock(db).exists,
                     pids=self.pids, logs=self.dir)
        self.pids["ovn/northd"] = lab.spawn("ovn/northd", ["ovn-northd", f"--ovnnb-db=unix:{self.sock('nb')}",
                                 f"--ovnsb-db=unix:{self.sock('sb')}",
                                 f"--unixctl={self.dir / 'northd.ctl'}",
                                 f"--log-file={self.dir / 'northd.log'}", *common],
                  env={**os.environ, **self.dirs(self.dir)})
        for ch in lab.spec.chassis_list():
            ovs = lab.ovs(ch)
            ovs.vsctl("set", "Open_vSwitch", ".",
                      f"external_ids:ovn-remote=unix:{self.sock('sb')}",
                      f"external_ids:ovn-encap-type={self.args.ovn_encap}",
                      f"external_ids:ovn-encap-ip={ch.tunnel_ip}",
                      "external_ids:ovn-bridge=br-int")
            base = self.dir / ch.name
            base.mkdir(exist_ok=True)
            self.pids[f"{ch.name}/ovn-controller"] = lab.spawn(
                      f"{ch.name}/ovn-controller",
                      ["ovn-controller", ovs.db,      # its unixctl socket: in OVN_RUNDIR
                       f"--log-file={base / 'ovn-controller.log'}", *common],
                      ns=ch.netns, env={**ovs.env(), **self.dirs(base)},
                      log=base / "ovn-controller.out")
        self.nb = Ovsdb(self.sock("nb"), DATABASES["nb"])
        sb = Ovsdb(self.sock("sb"), DATABASES["sb"])
        try:
            def chassis_up() -> bool:
                rows = sb.transact([{"op": "select", "table": "Chassis", "where": [],
                                     "columns": ["name"]}])[0]["rows"]
                return {r["name"] for r in rows} >= set(CHASSIS)
            wait_for("not every ovn-controller registered its chassis", chassis_up,
                     pids=self.pids, logs=self.dir)
        finally:
            sb.close()

        def tunnels() -> bool:          # every chassis has a tunnel to both others
            return all(sum(p.startswith("ovn-") for p in
                           lab.ovs(ch).vsctl("list-ports", "br-int").split()) >= 2
                       for ch in CHASSIS)
        wait_for("the chassis' tunnel ports did not appear", tunnels, pids=self.pids,
                 logs=self.dir)
        self._security_groups()

    def _security_groups(self) -> None:
        ops = []
        for group, acls in ((PG, ACLS), (PG_DROP, DROP_ACLS)):
            names = []
            for i, (direction, priority, match, action) in enumerate(acls):
                names.append(f"{group}_acl{i}")
                ops.append({"op": "insert", "table": "ACL", "uuid-name": names[-1],
                            "row": {"direction": direction, "priority": priority,
                                    "match": match, "action": action}})
            ops.append({"op": "insert", "table": "Port_Group", "row": {
                "name": group, "acls": ["set", [["named-uuid", n] for n in names]]}})
        self.nb.transact(ops)

    def network(self, k: int, cidr: str, peer_chassis: str) -> dict:
        """Logical switch ``pu<k>`` and a peer VM (``.2``) on ``peer_chassis``, up."""
        name = f"pu{k}"
        ls = self.nb.transact([{"op": "insert", "table": "Logical_Switch",
                                "row": {"name": name}}])[0]["uuid"][1]
        self.switches[ls] = name
        peer = {"name": f"peer{k}", "chassis": peer_chassis,
                "netns": self.lab.spec.vm_ns(f"peer{k}"), "tap": f"tp{k}",
                "mac": f"fa:16:3e:80:{(k >> 8) & 0xff:02x}:{k & 0xff:02x}",
                "ip": cidr.rsplit(".", 1)[0] + ".2", "prefix": 24, "network_id": ls}
        prepare(self.lab, [peer], self.args.probe_ms)
        peer["port_id"] = self.create_port(peer)
        db = Ovsdb(self.lab.ovs(peer_chassis).rundir / "db.sock")
        try:
            db.transact(plug_ops([peer]))
        finally:
            db.close()
        watch = NbUpWatch(self.sock("nb"), 0.02)
        try:
            wait_for(f"peer{k} did not come up", lambda: peer["name"] in watch.active())
        finally:
            watch.close()
        return {"id": ls, "peer_ip": peer["ip"], "peer_netns": peer["netns"]}

    def create_port(self, vm: dict) -> str:
        """One NB transaction: the port, in its switch and both port groups."""
        address = f"{vm['mac']} {vm['ip']}"
        into = ["set", [["named-uuid", "lsp"]]]
        result = self.nb.transact([
            {"op": "insert", "table": "Logical_Switch_Port", "uuid-name": "lsp",
             "row": {"name": vm["name"], "addresses": address, "port_security": address,
                     "options": ["map", [["requested-chassis", vm["chassis"]]]]}},
            {"op": "mutate", "table": "Logical_Switch",
             "where": [["_uuid", "==", ["uuid", vm["network_id"]]]],
             "mutations": [["ports", "insert", into]]},
            *({"op": "mutate", "table": "Port_Group", "where": [["name", "==", group]],
               "mutations": [["ports", "insert", into]]} for group in (PG, PG_DROP))])
        vm["lsp_uuid"] = result[0]["uuid"][1]
        return vm["name"]                               # OVN's iface-id is the LSP name

    def delete_ports(self, vms_: list[dict]) -> None:
        """One NB transaction for the lot (the rows go with their last reference)."""
        if not vms_:
            return
        ops, by_switch = [], {}
        for vm in vms_:
            by_switch.setdefault(vm["network_id"], []).append(["uuid", vm["lsp_uuid"]])
        for ls, ports in by_switch.items():
            ops.append({"op": "mutate", "table": "Logical_Switch",
                        "where": [["_uuid", "==", ["uuid", ls]]],
                        "mutations": [["ports", "delete", ["set", ports]]]})
        every = ["set", [["uuid", vm["lsp_uuid"]] for vm in vms_]]
        for group in (PG, PG_DROP):
            ops.append({"op": "mutate", "table": "Port_Group",
                        "where": [["name", "==", group]],
                        "mutations": [["ports", "delete", every]]})
        self.nb.transact(ops, timeout=120)

    def watch(self) -> NbUpWatch:
        return NbUpWatch(self.sock("nb"), self.args.poll_ms / 1000)

    def timeline(self, began: dict[str, float], until: float) -> dict[str, str]:
        return {}

    def logs(self) -> dict[str, Path]:
        out = {f"{ch}-ovn-controller.log": self.dir / ch / "ovn-controller.log"
               for ch in CHASSIS}
        out["northd.log"] = self.dir / "northd.log"
        return out

    def close(self) -> None:
        if self.nb:
            self.nb.close()
