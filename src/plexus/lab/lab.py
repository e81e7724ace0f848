"""A lab: the API server, N chassis (namespace + own OVS), the underlay, the provider
network with its upstream router and a host behind it — built from a ``LabSpec``,
recorded in an inventory, and torn down by that inventory only. With ``store="etcd"``
the state lives in a 3-member etcd cluster on loopback (``plexus.lab.etcd``, data in
``<lab>/etcd``) served by two API servers, and agents are given both.

    underlay ns      br-ul (Linux bridge) ── c1, c2, …   veths to each chassis' ul0
    provider ns      br-pn (Linux bridge) ── c1, c2, …   veths to each chassis' ex0
                                          └─ up0 ─ eth0 203.0.113.1  (external ns, router)
                                          └─ upvlan ─ eth2 ─ br-vlan (OVS, external ns) ─
                                               vlan100 (access, tag 100) 198.51.100.1
                                               (only with ``vlan_upstream``)
    external ns      eth1 198.19.0.1 ─ eth0 198.19.0.10  (internet ns, a host)
                     IPv6 (no NAT): eth0 2001:db8:cb00::1/64 on the provider segment,
                     eth1 2001:db8:c613::1 ─ eth0 2001:db8:c613::10 (internet host)
    chassis cN ns    ovsdb-server + ovs-vswitchd (netdev): br-int, br-ul (ul0, tunnel IP
                     198.18.0.(10+N) on the bridge itself), br-ex (ex0, physnet1)

Each chassis runs a ``plexus-agent`` (``agent_argv``; log in ``<lab>/<chassis>/agent.log``)
in the root namespace: it reaches its OVS through the unix sockets and the server on
loopback. The chassis' facts are also in the Open_vSwitch table's external_ids
(plexus-chassis-name, plexus-tunnel-ip, plexus-bridge-mappings, plexus-gateway) and in
``<lab>/<chassis>/chassis.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import httpx
import yaml

from plexus.config import Config
from plexus.lab import netlink
from plexus.lab import vm as vms
from plexus.lab.inventory import (Inventory, InventoryError, alive, end_pid, resolve_pid,
                                  start_time, stop_processes)
from plexus.lab.ovs import Ovs, check_installed
from plexus.lab.topology import (INTERNET, INTERNET6, INTERNET_HOST, INTERNET_HOST6,
                                 INTERNET_ROUTER, INTERNET_ROUTER6, PROVIDER, PROVIDER6,
                                 UPSTREAM_ROUTER6,
                                 PROVIDER_VLAN, PROVIDER_VLAN_NET, PROVIDER_VLAN_ROUTER,
                                 UNMAPPED_PHYSNET,
                                 UNDERLAY, UPSTREAM_ROUTER, Chassis, LabSpec, TopologyError,
                                 overlaps)
from plexus.server.runner import free_port, write_clouds_yaml

DEFAULT_ROOT = "var/lab"
Progress = Callable[[str], None]


class LabError(RuntimeError):
    """The lab cannot do what was asked (and says why)."""


def lab_root(root: str | os.PathLike | None = None) -> Path:
    """Where labs live: ``root``, $PLEXUS_LAB_ROOT, or ./var/lab."""
    return Path(root or os.environ.get("PLEXUS_LAB_ROOT") or DEFAULT_ROOT).resolve()


class Lab:
    """One lab, up or about to be; the handle every command and fixture uses."""

    def __init__(self, spec: LabSpec, root: str | os.PathLike | None = None):
        self.spec = spec
        self.dir = lab_root(root) / spec.name
        self.inventory = Inventory(self.dir)

    @classmethod
    def load(cls, name: str, root: str | os.PathLike | None = None) -> "Lab":
        """The lab called ``name`` that is up (its inventory exists)."""
        inv = Inventory(lab_root(root) / name)
        try:
            spec = LabSpec.from_dict(inv.read()["spec"])
        except InventoryError as exc:
            raise LabError(str(exc)) from None
        return cls(spec, root)

    # --- facts -----------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The API server's URL (loopback)."""
        return self.inventory.read()["server_url"]

    @property
    def urls(self) -> list[str]:
        """Every API server's URL (two on an etcd store); the first is ``url``."""
        doc = self.inventory.read()
        return doc.get("server_urls") or [doc["server_url"]]

    @property
    def clouds(self) -> Path:
        """The clouds.yaml that points openstacksdk and the CLI at this lab's server."""
        return self.dir / "clouds.yaml"

    def ovs(self, chassis: Chassis | str) -> Ovs:
        """The OVS instance of a chassis."""
        ch = chassis if isinstance(chassis, Chassis) else self.spec.chassis_named(chassis)
        return Ovs(self.dir / ch.name, ch.netns)

    def connect(self, cloud: str = "plexus"):
        """An openstacksdk connection to this lab's server (admin by default)."""
        from openstack import config as os_config
        from openstack import connection
        region = os_config.OpenStackConfig(config_files=[str(self.clouds)],
                                           load_envvars=False).get_one(cloud=cloud)
        return connection.Connection(config=region)

    def namespaces(self) -> list[str]:
        """Every namespace the inventory records."""
        return [e["name"] for e in self.inventory.entries("netns")]

    # --- up --------------------------------------------------------------------------
    def up(self, progress: Progress = lambda msg: None) -> "Lab":
        """Build the whole lab; on any failure tear down what was made and re-raise."""
        spec = self.spec.validate()
        check_installed()
        self._preflight()
        self.inventory = Inventory.create(self.dir, {"lab": spec.name, "spec": spec.to_dict(),
                                                     "dir": str(self.dir), "created": time.time()})
        try:
            progress("starting the API server")
            server = self._start_server()
            progress("underlay, provider network, upstream router and internet host")
            self._build_fabric()
            for ch in spec.chassis_list():
                progress(f"chassis {ch.name}: namespace, OVS, bridges")
                self._build_chassis(ch)
            self._write_dhcp_script()
            progress("waiting for the API server")
            self._wait_server(server)
            for ch in spec.chassis_list():
                if not all(self.ovs(ch).healthy().values()):
                    raise LabError(f"OVS of chassis {ch.name} does not answer")
            if spec.metadata:
                progress("metadata backend")
                self._start_metadata()
            if spec.agents:
                progress("starting an agent per chassis")
                self._start_agents()
        except BaseException:
            progress("failed: tearing down what was made")
            for error in self.down():
                progress(f"teardown: {error}")
            raise
        return self

    def _preflight(self) -> None:
        clash = overlaps(self.spec.ranges(), netlink.root_networks())
        if clash:
            raise LabError("refusing: lab ranges overlap the root namespace: " + ", ".join(
                f"{lab} overlaps {root}" for lab, root in clash))
        taken = [ns for ns in netlink.ns_list() if ns.startswith(self.spec.prefix)]
        if taken:
            raise LabError(f"namespaces {', '.join(taken)} exist: another lab named "
                           f"{self.spec.name!r} is up (plexus lab down --name {self.spec.name})")
        if self.inventory.exists():
            raise LabError(f"lab {self.spec.name!r} is up at {self.dir} (plexus lab down)")
        for tool in ("ethtool", "busybox"):
            if not shutil.which(tool):
                raise LabError(f"{tool} is missing; run scripts/bootstrap.sh")

    def _netns(self, name: str, group: str = "lab") -> str:
        self.inventory.record("netns", group=group, name=name)
        netlink.ns_create(name)
        return name

    def _veth(self, ns_a: str, a: str, ns_b: str, b: str, group: str = "lab") -> None:
        self.inventory.record("link", group=group, ns=ns_a, name=a, peer_ns=ns_b, peer=b)
        netlink.veth(ns_a, a, ns_b, b)
        netlink.tx_off(ns_a, a)
        netlink.tx_off(ns_b, b)

    def spawn(self, label: str, argv: list[str], *, ns: str | None = None, group: str = "lab",
              log: Path | None = None, env: dict | None = None) -> int:
        """Start a long-lived process (in ``ns``), recorded before it starts; returns its pid."""
        pidfile = self.dir / "pids" / f"{label.replace('/', '_')}.pid"
        pidfile.parent.mkdir(exist_ok=True)
        # found again through the pidfile only if its command line names this lab's dir
        marker = str(self.dir)
        if not any(marker in arg for arg in argv):
            raise LabError(f"{label}: a lab process must name {marker} on its command line")
        ident = self.inventory.record("process", group=group, label=label, pidfile=str(pidfile),
                                      marker=marker, ns=ns, argv=argv,
                                      log=str(log) if log else None)
        # the shell writes its pid and execs the command: the pid is known even if we crash
        wrapper = ["sh", "-c", 'echo $$ > "$0"; exec "$@"', str(pidfile), *argv]
        out = open(log, "ab") if log else subprocess.DEVNULL
        try:
            proc = subprocess.Popen(netlink.in_ns(ns, wrapper), stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, env=env, cwd=self.dir)
        finally:
            if log:
                out.close()
        # `ip netns exec` execs too, so proc.pid is the command's pid from the start
        self.inventory.update(ident, pid=proc.pid, start=start_time(proc.pid))
        return proc.pid

    def _start_server(self) -> int:
        config = Config()
        config.server.port = free_port()
        # physnet2: a flat physical network that no chassis maps (what happens to ports
        # of a network no chassis can bridge: docs/provider-networks.md)
        config.network.flat_networks = [*config.network.flat_networks, UNMAPPED_PHYSNET]
        config.store.url = f"sqlite:///{self.dir / 'plexus.db'}"
        if self.spec.dns_domain is not None:
            config.network.dns_domain = self.spec.dns_domain
        servers = ["server"]
        if self.spec.store == "etcd":     # a 3-member cluster, and a second stateless server
            from plexus.lab.etcd import start_lab_cluster
            config.store.url = start_lab_cluster(self)
            servers.append("server2")
        if self.spec.nova_url:
            admin = next(u for u in config.identity.users if u.name == "admin")
            config.nova.auth_url = f"{config.server.url()}/identity/v3"
            config.nova.username, config.nova.password = admin.name, admin.password
            config.nova.project_name = admin.project
            config.nova.endpoint_override = self.spec.nova_url
        write_clouds_yaml(self.clouds, config.server.url(), config)
        self.inventory.set(server_url=config.server.url())
        urls, pids = [], []
        for i, name in enumerate(servers):
            if i:
                config.server.port = free_port()
            (self.dir / f"{name}.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json")))
            argv = [sys.executable, "-m", "plexus.server.main", "--config",
                    str(self.dir / f"{name}.yaml"), "--log-level", "warning"]
            pids.append(self.spawn(name, argv, log=self.dir / f"{name}.log"))
            urls.append(config.server.url())
        self.inventory.set(server_urls=urls)
        return pids[0]

    def metadata_netns(self, ch: Chassis) -> str:
        """The metadata namespace of a chassis."""
        return f"{ch.netns}-md"

    def _metadata_namespace(self, ch: Chassis, group: str) -> None:
        """What plexus-agent --metadata-netns expects on a compute node: a namespace
        holding 169.254.169.254 (never ARPing: 169.254/16 via a static neighbour), whose
        veth end is br-int's port METADATA_OFPORT (docs/operations.md)."""
        from plexus.pipeline.stages.metadata import (
            METADATA_IP, METADATA_MAC, METADATA_NEXTHOP, METADATA_OFPORT)
        md = self._netns(self.metadata_netns(ch), group)
        netlink.sysctl(md, "net.ipv6.conf.all.disable_ipv6", "1")
        netlink.sysctl(md, "net.ipv6.conf.default.disable_ipv6", "1")
        self._veth(md, "md0", ch.netns, "mdport", group)
        netlink.set_link(md, "md0", address=METADATA_MAC)
        netlink.set_link(md, "lo")
        netlink.set_link(ch.netns, "mdport")
        netlink.add_address(md, "md0", f"{METADATA_IP}/32")
        netlink.run(md, ["ip", "neigh", "replace", METADATA_NEXTHOP, "lladdr",
                         "fa:16:3f:00:00:03", "dev", "md0", "nud", "permanent"])
        netlink.run(md, ["ip", "route", "replace", "169.254.0.0/16", "via", METADATA_NEXTHOP,
                         "dev", "md0", "onlink"])
        self.ovs(ch).vsctl("--may-exist", "add-port", "br-int", "mdport", "--", "set",
                           "Interface", "mdport", f"ofport_request={METADATA_OFPORT}")

    @property
    def metadata_secret(self) -> Path:
        """The shared secret of the agents' proxies and the metadata backend."""
        return self.dir / "metadata.secret"

    @property
    def metadata_record(self) -> Path:
        """The metadata backend's record of requests (one JSON line each)."""
        return self.dir / "metadata-requests.jsonl"

    def _start_metadata(self, timeout: float = 30) -> None:
        """The metadata backend on loopback, with a fresh random shared secret."""
        import secrets as random_secrets
        fd = os.open(self.metadata_secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(random_secrets.token_hex(32))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        self.spawn("metadata", [sys.executable, "-m", "plexus.lab.metadata", "--port", str(port),
                                "--secret-file", str(self.metadata_secret),
                                "--clouds", str(self.clouds),
                                "--record", str(self.metadata_record)],
                   log=self.dir / "metadata.log")
        self.inventory.set(metadata_url=url)
        deadline = time.monotonic() + timeout
        while not answers(url):
            if time.monotonic() > deadline:
                raise LabError(f"the metadata backend did not answer; see "
                               f"{self.dir / 'metadata.log'}")
            time.sleep(0.1)

    def _start_agents(self, timeout: float = 30) -> None:
        """Start each chassis' plexus-agent; return once every chassis is alive in the API."""
        pids = {ch.name: self.spawn(f"{ch.name}/agent", agent_argv(self, ch),
                                    log=self.dir / ch.name / "agent.log")
                for ch in self.spec.chassis_list()}
        conn = self.connect()
        deadline = time.monotonic() + timeout
        while True:
            dead = [name for name, pid in pids.items() if not alive(pid)]
            if dead:
                raise LabError(f"the agent of {dead[0]} exited; see "
                               f"{self.dir / dead[0] / 'agent.log'}")
            registered = {a.host for a in conn.network.agents() if a.is_alive}
            if set(pids) <= registered:
                return
            if time.monotonic() > deadline:
                raise LabError(f"agents of {sorted(set(pids) - registered)} did not register")
            time.sleep(0.1)

    def _wait_server(self, pid: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not alive(pid):
                raise LabError(f"the API server exited; see {self.dir / 'server.log'}")
            if all(server_answers(url) for url in self.urls):
                return
            time.sleep(0.05)
        raise LabError(f"the API server did not answer in {timeout:.0f}s")

    def _build_fabric(self) -> None:
        s = self.spec
        ul, pn, ext, inet = (self._netns(n) for n in
                             (s.underlay_ns, s.provider_ns, s.external_ns, s.internet_ns))
        netlink.bridge(ul, "br-ul")
        netlink.bridge(pn, "br-pn")
        self._veth(pn, "up0", ext, "eth0")
        netlink.set_link(pn, "up0", master="br-pn")
        netlink.add_address(ext, "eth0", f"{UPSTREAM_ROUTER}/{PROVIDER.prefixlen}")
        netlink.set_link(ext, "eth0")
        self._veth(ext, "eth1", inet, "eth0")
        netlink.add_address(ext, "eth1", f"{INTERNET_ROUTER}/{INTERNET.prefixlen}")
        netlink.set_link(ext, "eth1")
        netlink.sysctl(ext, "net.ipv4.ip_forward", "1")   # inside the external ns only
        netlink.add_address(inet, "eth0", f"{INTERNET_HOST}/{INTERNET.prefixlen}")
        netlink.set_link(inet, "eth0")
        netlink.add_route(inet, "default", str(INTERNET_ROUTER))
        self._build_ipv6_upstream(ext, inet)
        if s.vlan_upstream:
            self._build_vlan_upstream(pn, ext)

    def _build_ipv6_upstream(self, ext: str, inet: str) -> None:
        """IPv6 on the upstream router (forwarding, inside the external namespace only) and
        the internet host; no duplicate address detection on these lab links, so the
        addresses are usable at once. Routes to tenant prefixes (via a router's gateway
        IPv6 address) are added by whoever makes them (``add_route`` in ``ext``)."""
        for ns, ifname in ((ext, "eth0"), (ext, "eth1"), (inet, "eth0")):
            netlink.sysctl(ns, f"net.ipv6.conf.{ifname}.accept_dad", "0")
        netlink.add_address(ext, "eth0", f"{UPSTREAM_ROUTER6}/{PROVIDER6.prefixlen}")
        netlink.add_address(ext, "eth1", f"{INTERNET_ROUTER6}/{INTERNET6.prefixlen}")
        netlink.sysctl(ext, "net.ipv6.conf.all.forwarding", "1")   # external ns only
        netlink.add_address(inet, "eth0", f"{INTERNET_HOST6}/{INTERNET6.prefixlen}")
        netlink.add_route(inet, "default", str(INTERNET_ROUTER6))

    def _build_vlan_upstream(self, pn: str, ext: str) -> None:
        """The upstream router on VLAN 100 of the provider segment: a trunk veth from
        br-pn into an OVS switch in the external namespace, whose access port (tag 100)
        carries the router's address (no 802.1Q kernel module is needed)."""
        self._veth(pn, "upvlan", ext, "eth2")
        netlink.set_link(pn, "upvlan", master="br-pn")
        netlink.set_link(ext, "eth2")
        ovs = Ovs(self.dir / "ext", ext)
        ovs.create_db()
        for daemon in ("ovsdb-server", "ovs-vswitchd"):
            ident = self.inventory.record("process", label=f"ext/{daemon}",
                                          pidfile=ovs.pidfile(daemon), ns=ext)
            pid = ovs.start(daemon)
            self.inventory.update(ident, pid=pid, start=start_time(pid))
        port = f"vlan{PROVIDER_VLAN}"
        ovs.vsctl("--", "add-br", "br-vlan", "--", "set", "Bridge", "br-vlan",
                  "datapath_type=netdev", "--", "add-port", "br-vlan", "eth2",
                  "--", "add-port", "br-vlan", port, f"tag={PROVIDER_VLAN}",
                  "--", "set", "Interface", port, "type=internal")
        netlink.tx_off(ext, port)
        netlink.add_address(ext, port, f"{PROVIDER_VLAN_ROUTER}/{PROVIDER_VLAN_NET.prefixlen}")
        netlink.set_link(ext, port)

    def _build_chassis(self, ch: Chassis) -> None:
        s, group = self.spec, f"chassis:{ch.name}"
        self._netns(ch.netns, group)
        # The tunnel IP lives on br-ul, but the kernel also sees ul0 (the userspace
        # datapath reads it through a socket) and by default answers ARP for any local
        # address on any interface: peers' OVS then resolve the tunnel IP to ul0's MAC,
        # which never reaches br-ul, and that chassis' tunnels go dark. Answer ARP only
        # on the interface holding the address (inside the chassis namespace only).
        netlink.sysctl(ch.netns, "net.ipv4.conf.all.arp_ignore", "1")
        self._veth(ch.netns, ch.underlay_port, s.underlay_ns, ch.name, group)
        netlink.set_link(s.underlay_ns, ch.name, master="br-ul")
        netlink.set_link(ch.netns, ch.underlay_port)
        self._veth(ch.netns, ch.external_port, s.provider_ns, ch.name, group)
        netlink.set_link(s.provider_ns, ch.name, master="br-pn")
        netlink.set_link(ch.netns, ch.external_port)
        ovs = self.ovs(ch)
        ovs.create_db()
        for daemon in ("ovsdb-server", "ovs-vswitchd"):
            ident = self.inventory.record("process", group=group, label=f"{ch.name}/{daemon}",
                                          pidfile=ovs.pidfile(daemon), ns=ch.netns)
            pid = ovs.start(daemon)
            self.inventory.update(ident, pid=pid, start=start_time(pid))
        ids = {"system-id": ch.name, "hostname": ch.name, "plexus-lab": s.name,
               "plexus-chassis-name": ch.name, "plexus-tunnel-ip": ch.tunnel_ip,
               "plexus-bridge-mappings": ch.bridge_mappings,
               "plexus-gateway": str(ch.gateway).lower()}
        ovs.vsctl(
            "--", "add-br", "br-int", "--", "set", "Bridge", "br-int", "datapath_type=netdev",
            "fail_mode=secure", "other_config:disable-in-band=true",
            "--", "add-br", "br-ul", "--", "set", "Bridge", "br-ul", "datapath_type=netdev",
            "--", "add-port", "br-ul", ch.underlay_port,
            "--", "add-br", "br-ex", "--", "set", "Bridge", "br-ex", "datapath_type=netdev",
            "--", "add-port", "br-ex", ch.external_port,
            "--", "set", "Open_vSwitch", ".",
            *(f"external_ids:{k}={v}" for k, v in ids.items()))
        if s.metadata:
            self._metadata_namespace(ch, group)
        # userspace tunnelling: the tunnel endpoint IP sits on the bridge holding ul0
        netlink.add_address(ch.netns, "br-ul", f"{ch.tunnel_ip}/{UNDERLAY.prefixlen}")
        netlink.set_link(ch.netns, "br-ul")
        facts = {"name": ch.name, "netns": ch.netns, "tunnel_ip": ch.tunnel_ip,
                 "gateway": ch.gateway, "bridge_mappings": ch.bridge_mappings,
                 "ovsdb": ovs.db, "br_int": ovs.mgmt("br-int"), "br_ex": ovs.mgmt("br-ex"),
                 "server_url": self.url, "clouds": str(self.clouds)}
        (self.dir / ch.name / "chassis.json").write_text(json.dumps(facts, indent=1))

    def _write_dhcp_script(self) -> None:
        path = self.dir / "udhcpc.sh"
        path.write_text(vms.DHCP_SCRIPT)
        path.chmod(0o755)

    # --- down and status -------------------------------------------------------------
    def down(self, log: Progress = lambda msg: None) -> list[str]:
        """Remove everything the inventory records (idempotent); returns the errors."""
        return self.inventory.teardown(vms.teardown_handlers(self, full=True), log=log,
                                       batches={**vms.teardown_batches(self, full=True),
                                                "process": _stop_in_waves})

    def status(self) -> dict:
        """Chassis, VMs and processes with their health."""
        doc = self.inventory.read()
        procs = []
        for e in self.inventory.entries("process"):
            procs.append({"label": e["label"], "pid": e.get("pid"),
                          "alive": resolve_pid(e) is not None, "ns": e.get("ns")})
        chassis = []
        for ch in self.spec.chassis_list():
            health = self.ovs(ch).healthy() if netlink.ns_exists(ch.netns) else {}
            chassis.append({"name": ch.name, "netns": ch.netns, "tunnel_ip": ch.tunnel_ip,
                            "gateway": ch.gateway, "ovs": health})
        return {"name": self.spec.name, "dir": str(self.dir), "url": doc.get("server_url"),
                "server_answers": server_answers(doc.get("server_url")),
                "chassis": chassis, "vms": vms.list_vms(self), "processes": procs,
                "namespaces": {ns: netlink.ns_exists(ns) for ns in self.namespaces()}}


def _stop_in_waves(entries: list[dict]) -> dict[int, str]:
    """Every process at once, except the control plane (API servers, etcd), which goes
    after the rest: agents unregister while a server still answers."""
    from plexus.lab.etcd import CONTROL_PLANE
    last = [e for e in entries
            if e.get("label") in CONTROL_PLANE or str(e.get("label")).startswith("etcd/")]
    return {**stop_processes([e for e in entries if e not in last]),
            **stop_processes(last)}


def agent_argv(lab: Lab, ch: Chassis) -> list[str]:
    """The command line of the plexus-agent of chassis ``ch`` (admin of the built-in
    identity, the lab's server, the chassis' OVS sockets and facts)."""
    ovs = lab.ovs(ch)
    return [sys.executable, "-m", "plexus.agent.main", "--server", ",".join(lab.urls),
            "--chassis", ch.name, "--tunnel-ip", ch.tunnel_ip, "--ovsdb", ovs.db,
            "--ovs-rundir", str(ovs.rundir), "--bridge-mappings", ch.bridge_mappings,
            *(["--gateway"] if ch.gateway else []),
            *(["--snat-idle", str(lab.spec.snat_idle)] if lab.spec.snat_idle is not None
              else []),
            *(["--metadata-netns", lab.metadata_netns(ch),
               "--nova-metadata-url", lab.inventory.read()["metadata_url"],
               "--metadata-secret-file", str(lab.metadata_secret)] if lab.spec.metadata
              else []),
            # agents share the root namespace's loopback: each its own metrics port
            "--metrics", f"127.0.0.1:{free_port()}"]


def agent_metrics_url(lab: Lab, chassis: str) -> str:
    """Where the chassis' agent serves ``/metrics`` (from its recorded command line)."""
    argv = _recorded(lab, f"{chassis}/agent")["argv"]
    return f"http://{argv[argv.index('--metrics') + 1]}/metrics"


def _recorded(lab: Lab, label: str) -> dict:
    """The inventory entry of the lab process ``label`` (LabError if there is none)."""
    for entry in lab.inventory.entries("process"):
        if entry.get("label") == label:
            return entry
    raise LabError(f"lab {lab.spec.name!r} records no process {label!r}")


def stop_agent(lab: Lab, chassis: str, sig: int = signal.SIGTERM) -> int | None:
    """Stop the chassis' plexus-agent (by its recorded pid) with ``sig`` (SIGTERM: it
    unregisters; SIGKILL: it just vanishes, its liveness lease runs out); returns the pid
    it had, None if it was not running. Its flows stay installed in the chassis' OVS."""
    lab.spec.chassis_named(chassis)
    entry = _recorded(lab, f"{chassis}/agent")
    pid = resolve_pid(entry)
    if pid is not None:
        end_pid(pid, sig, 10.0)
    return pid


def start_agent(lab: Lab, chassis: str, timeout: float = 30.0) -> int:
    """Start the chassis' plexus-agent again (same command line, same log, appended) if it
    is not running; returns its pid once the chassis is alive in the API."""
    entry = _recorded(lab, f"{chassis}/agent")
    pid = resolve_pid(entry)
    if pid is None:
        lab.inventory.forget(entry["id"])
        pid = lab.spawn(entry["label"], entry["argv"], ns=entry.get("ns"),
                        group=entry["group"], log=Path(entry["log"]) if entry.get("log")
                        else None)
    conn, deadline = lab.connect(), time.monotonic() + timeout
    while not any(a.host == chassis and a.is_alive for a in conn.network.agents()):
        if not alive(pid):
            raise LabError(f"the agent of {chassis} exited; see {entry.get('log')}")
        if time.monotonic() > deadline:
            raise LabError(f"the agent of {chassis} did not register in {timeout:.0f}s")
        time.sleep(0.1)
    return pid


def restart_agent(lab: Lab, chassis: str, sig: int = signal.SIGTERM,
                  down: float = 0.0) -> int:
    """``plexus lab restart-agent``: stop the chassis' agent with ``sig``, leave it down
    ``down`` seconds, start it again; returns the new pid once it is alive."""
    stop_agent(lab, chassis, sig)
    time.sleep(down)
    return start_agent(lab, chassis)


def restart_switch(lab: Lab, chassis: str, sig: int = signal.SIGTERM,
                   down: float = 0.0) -> int:
    """``plexus lab restart-switch``: stop the chassis' ovs-vswitchd with ``sig``, leave
    it down ``down`` seconds, start it again on the same database; returns the new pid.
    Its datapath (flows, conntrack) starts empty: the agent reconnects and installs the
    flows again."""
    ch = lab.spec.chassis_named(chassis)
    entry = _recorded(lab, f"{chassis}/ovs-vswitchd")
    pid = resolve_pid(entry)
    if pid is not None:
        end_pid(pid, sig, 10.0)
    time.sleep(down)
    ovs = lab.ovs(ch)
    Path(ovs.pidfile("ovs-vswitchd")).unlink(missing_ok=True)
    new = ovs.start("ovs-vswitchd")
    lab.inventory.update(entry["id"], pid=new, start=start_time(new))
    return new


def answers(url: str) -> bool:
    """Whether anything answers HTTP at ``url``."""
    try:
        httpx.get(url + "/", timeout=2.0)
        return True
    except httpx.HTTPError:
        return False


def server_answers(url: str | None) -> bool:
    """Whether the Plexus API answers at ``url``."""
    if not url:
        return False
    try:
        return httpx.get(url + "/", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


__all__ = ["Lab", "LabError", "LabSpec", "TopologyError", "agent_argv", "agent_metrics_url", "lab_root",
           "server_answers"]
