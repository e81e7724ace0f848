"""End-to-end fixtures over the lab library: real namespaces, real OVS, a real server.

    def test_something(lab):                       # a 2-chassis lab, torn down after
        net = lab.network("n1", "10.0.0.0/24")
        a = lab.vm("a", net, chassis="c1", static=True)
        b = lab.vm("b", net, chassis="c2")         # DHCP (answered by c2's agent)
        assert lab.vm("a").ping(b.ip)
        lab.vm("b").tcp_server(5001)
        assert lab.vm("a").tcp_client(b.ip, 5001)["ok"]

Every lab is torn down by its inventory when the test ends, failed or not.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from plexus.lab import Lab, LabSpec, netlink
from plexus.lab import vm as vms
from plexus.lab.inventory import alive


def require_lab_host() -> None:
    """Skip unless root; fail loudly (not skip) if the machine lacks what it needs."""
    if os.geteuid() != 0:
        pytest.skip("e2e lab tests need root (network namespaces, Open vSwitch)")
    missing = [t for t in ("ovs-vswitchd", "ovsdb-server", "ethtool", "busybox", "ping")
               if not shutil.which(t)]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run scripts/bootstrap.sh")


def unique_name(prefix: str = "e2e") -> str:
    """A lab name no other lab on the machine uses."""
    return prefix + secrets.token_hex(3)


def allow_ingress(lab, *protocols: str) -> None:
    """Open the project's default security group to ``protocols`` from anywhere."""
    api = lab.api.network
    group = next(g for g in api.security_groups(name="default")
                 if g.project_id == lab.api.current_project_id)
    for proto in protocols:
        api.create_security_group_rule(security_group_id=group.id, direction="ingress",
                                       ethertype="IPv4", protocol=proto,
                                       remote_ip_prefix="0.0.0.0/0")


def public_network(api):
    """The external network "public": flat on physnet1 (the lab's untagged provider
    segment, 203.0.113.0/24, the upstream router at .1), floating IPs and gateways from
    .100-.199; the existing one if there is one."""
    found = api.find_network("public")
    if found is not None:
        return found
    net = api.create_network(name="public", provider_network_type="flat",
                             provider_physical_network="physnet1", is_router_external=True)
    api.create_subnet(network_id=net.id, cidr="203.0.113.0/24", ip_version=4,
                      gateway_ip="203.0.113.1", is_dhcp_enabled=False, name="public-v4",
                      allocation_pools=[{"start": "203.0.113.100", "end": "203.0.113.199"}])
    return api.get_network(net.id)


class LabFixture:
    """A lab as tests see it: networks through the API, VMs and nodes by name."""

    def __init__(self, lab: Lab):
        self.lab = lab
        self.api = lab.connect()

    @property
    def spec(self) -> LabSpec:
        """The lab's spec (names, chassis)."""
        return self.lab.spec

    def network(self, name: str, cidr: str, **subnet):
        """A network with one subnet, created by the admin; returns the network."""
        net = self.api.network.create_network(name=name)
        self.api.network.create_subnet(network_id=net.id, cidr=cidr, ip_version=4,
                                       name=f"{name}-subnet", **subnet)
        return net

    def vm(self, name: str, network=None, *, require_address: bool = True, **kwargs) -> vms.VM:
        """The VM ``name``; booted on ``network`` (object, name or id) when given."""
        if network is None:
            return vms.get(self.lab, name)
        net = getattr(network, "id", network)
        vm = vms.boot(self.lab, name, net, **kwargs)
        if require_address and not vm.ip:
            raise AssertionError(f"VM {name} got no DHCP answer (is the agent running?)")
        return vm

    def node(self, name: str) -> vms.Node:
        """A chassis (c1…), ``inet`` (internet host), ``ext`` (upstream router), ul, pn."""
        return vms.node(self.lab, name)

    def pids(self) -> list[int]:
        """Every pid the inventory records."""
        return [e["pid"] for e in self.lab.inventory.entries("process") if e.get("pid")]


def wait_for(check, timeout: float, what: str, interval: float = 0.1):
    """Poll ``check`` until it returns something true; fail with ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        time.sleep(interval)


_CAPTURES = itertools.count(1)


def capture(lab: "LabFixture", node: str, label: str | None, bpf: str, seconds: float,
            ifname: str = "eth0", promiscuous: bool = False) -> "Capture":
    """Start tcpdump in a lab namespace (recorded in the inventory, bounded in time); it
    is listening when this returns."""
    label = label or f"capture-{next(_CAPTURES)}"
    pcap = lab.lab.dir / "pids" / f"{label}.pcap"
    # immediate mode: each packet reaches the file as it arrives, not when the kernel's
    # ring block times out (1 s), so a capture stopped right after its action has it
    argv = ["timeout", str(seconds), "tcpdump", "-i", ifname, "-n", "-U", "--immediate-mode",
            "-w", str(pcap)]
    pid = lab.lab.spawn(label, argv + ([] if promiscuous else ["-p"]) + [bpf],
                        ns=lab.node(node).netns)
    return Capture(pid, pcap)


def capture_during(lab: "LabFixture", node: str, bpf: str, action, *, ifname: str = "eth0",
                   flags: tuple[str, ...] = ("-q",), promiscuous: bool = True) -> str:
    """tcpdump's lines on ``ifname`` of ``node`` while ``action()`` runs: the capture
    starts before the action and stops after it (plus a moment for the last replies),
    however long the action took, so a slow start cannot make the window miss it."""
    cap = capture(lab, node, None, bpf, 120, ifname=ifname, promiscuous=promiscuous)
    try:
        action()
        time.sleep(0.3)
    finally:
        cap.stop()
    return "\n".join(cap.lines(*flags)) + "\n"


class Capture:
    """A running tcpdump and, once it ended, the packets it saw."""

    def __init__(self, pid: int, pcap):
        self.pid, self.pcap = pid, pcap
        # tcpdump opens its file once the interface is capturing
        wait_for(pcap.exists, 5, f"tcpdump writing {pcap.name}")
        time.sleep(0.3)
        assert alive(pid), f"tcpdump for {pcap.name} ended before the action started"

    def stop(self) -> None:
        """End the capture now (``timeout`` passes the signal on to tcpdump, which
        flushes its file)."""
        if alive(self.pid):
            os.kill(self.pid, signal.SIGTERM)

    def lines(self, *flags: str) -> list[str]:
        """The captured packets, one line each (waits for the capture to end); ``flags``
        for the reading tcpdump (``-e``, ``-q``)."""
        wait_for(lambda: not alive(self.pid), 30, "the capture to end")
        out = subprocess.run(["tcpdump", "-n", *flags, "-r", str(self.pcap)],
                             capture_output=True, text=True, check=True).stdout
        return [ln for ln in out.splitlines() if ln.strip()]


def alive_chassis(lab: LabFixture) -> set[str]:
    """Chassis whose agents are registered and alive in the API."""
    return {a.host for a in lab.api.network.agents() if a.is_alive}


@contextlib.contextmanager
def running_lab(root: Path, prefix: str = "e2e", **spec) -> Iterator[LabFixture]:
    """A lab (``LabSpec`` fields as keywords; its name starts with ``prefix``) whose
    agents are all registered and alive; torn down by its inventory afterwards, whatever
    happened."""
    require_lab_host()
    made = Lab(LabSpec(name=unique_name(prefix), **spec), root)
    made.up()
    try:
        fixture = LabFixture(made)
        names = {ch.name for ch in made.spec.chassis_list()}
        wait_for(lambda: alive_chassis(fixture) == names, 30,
                 "every chassis' agent registered and alive")
        yield fixture
    finally:
        errors = made.down()
        assert not errors, errors


def leftovers(spec: LabSpec, lab_dir: Path, pids: list[int], before: dict) -> list[str]:
    """What a torn-down lab left behind: namespaces, processes, files, root changes."""
    found = [f"namespace {ns}" for ns in netlink.ns_list() if ns.startswith(spec.prefix)]
    found += [f"process {pid}" for pid in pids if alive(pid)]
    if lab_dir.exists():
        found.append(f"directory {lab_dir}")
    after = netlink.root_snapshot()
    found += [f"root {key} changed: {before[key]} → {after[key]}"
              for key in before if before[key] != after[key]]
    return found


@pytest.fixture
def lab_factory(tmp_path_factory):
    """Make labs (``lab_factory(chassis=3)``); all are torn down afterwards."""
    require_lab_host()
    made: list[tuple[Lab, Path]] = []

    def make(chassis: int = 2, gateways: int = 1, name: str | None = None,
             agents: bool = True) -> LabFixture:
        root = tmp_path_factory.mktemp("labs")
        lab = Lab(LabSpec(name=name or unique_name(), chassis=chassis, gateways=gateways,
                          agents=agents), root)
        made.append((lab, root))
        lab.up()   # tears itself down if it fails
        return LabFixture(lab)

    yield make
    errors = []
    for lab, root in reversed(made):
        errors += lab.down()
        with_contents = root.exists() and any(root.iterdir())
        if root.exists() and not with_contents:
            root.rmdir()
    assert not errors, errors


@pytest.fixture
def lab(lab_factory) -> LabFixture:
    """A two-chassis lab (c1 is a gateway)."""
    return lab_factory(chassis=2)


@pytest.fixture
def root_before():
    """The root namespace's links, addresses and routes before the test."""
    require_lab_host()
    return netlink.root_snapshot()
