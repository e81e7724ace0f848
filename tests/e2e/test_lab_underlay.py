"""The lab underlay and teardown (issue 12, item 8).

A chassis' tunnel IP sits on its OVS bridge br-ul, whose port ul0 is a veth the kernel
also sees. Only br-ul may answer ARP for the tunnel IP: when the kernel answered on ul0
too, a peer's OVS could resolve the tunnel IP to ul0's MAC — a MAC its userspace
datapath never delivers to br-ul — and every tunnel to that chassis went dark (BFD
down, probes lost). And ``lab down`` removes everything it made, VMs included."""

from __future__ import annotations

import itertools
import re

import pytest

from plexus.lab import netlink
from plexus.lab import vm as vms
from tests.e2e.conftest import LabFixture, leftovers, wait_for

pytestmark = pytest.mark.e2e


def link_mac(lab: LabFixture, chassis: str, ifname: str) -> str:
    out = lab.node(chassis).exec("cat", f"/sys/class/net/{ifname}/address").stdout
    return out.strip().lower()


def arp_answers(lab: LabFixture, chassis: str, ip: str) -> set[str]:
    """MACs that answer ARP for ``ip`` on the underlay, asked from ``chassis``' br-ul."""
    proc = lab.node(chassis).exec("busybox", "arping", "-b", "-c", "3", "-w", "3",
                                  "-I", "br-ul", ip, check=False)
    return {m.lower() for m in re.findall(r"\[([0-9a-fA-F:]{17})\]", proc.stdout)}


def tnl_arp(lab: LabFixture, chassis: str) -> dict[str, str]:
    """What ``chassis``' OVS resolved underlay IPs to (``ovs-appctl tnl/arp/show``)."""
    out = lab.lab.ovs(chassis).appctl("tnl/arp/show")
    found = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and re.fullmatch(r"[0-9.]+", parts[0]):
            found[parts[0]] = parts[1].lower()
    return found


def test_only_br_ul_answers_for_the_tunnel_ip_and_ovs_resolves_peers_to_it(lab_factory):
    lab = lab_factory(chassis=3)
    chassis = lab.spec.chassis_list()
    br_ul = {ch.name: link_mac(lab, ch.name, "br-ul") for ch in chassis}
    ul0 = {ch.name: link_mac(lab, ch.name, ch.underlay_port) for ch in chassis}
    for a, b in itertools.permutations(chassis, 2):
        assert arp_answers(lab, a.name, b.tunnel_ip) == {br_ul[b.name]}, (
            f"{a.name} asking for {b.name}'s tunnel IP (br-ul {br_ul[b.name]}, "
            f"ul0 {ul0[b.name]})")
    # traffic over every tunnel: VMs on each chassis ping each other
    net = lab.network("u1", "10.71.0.0/24")
    vms = [lab.vm(f"u{ch.index}", net, chassis=ch.name) for ch in chassis]
    for a, b in itertools.permutations(vms, 2):
        assert a.ping(b.ip, count=2), f"{a.name} → {b.name}"
    for a, b in itertools.permutations(chassis, 2):
        resolved = wait_for(lambda: tnl_arp(lab, a.name).get(b.tunnel_ip), 10,
                            f"{a.name}'s OVS resolved {b.tunnel_ip}")
        assert resolved == br_ul[b.name] != ul0[b.name], (a.name, b.name, resolved)


def test_lab_down_with_vms_leaves_nothing(lab_factory, root_before):
    lab = lab_factory(chassis=2)
    net = lab.network("t1", "10.72.0.0/24")
    for i in range(6):
        lab.vm(f"t{i}", net, chassis=f"c{1 + i % 2}", static=i % 2 == 0)
    # one VM alone: unplugged (OVS port, veth in the chassis), namespace and port gone
    gone = lab.vm("t1")
    tap, chassis_ns = vms.tap_name(gone.port_id), lab.spec.chassis_named("c2").netns
    assert netlink.link_exists(chassis_ns, tap)
    assert vms.delete(lab.lab, "t1") == []
    assert not netlink.link_exists(chassis_ns, tap)
    assert tap not in lab.lab.ovs("c2").vsctl("list-ports", "br-int")
    assert not netlink.ns_exists(gone.netns)
    assert lab.api.network.find_port(gone.port_id) is None
    assert [e for e in lab.lab.inventory.entries() if e.get("group") == "vm:t1"] == []
    spec, lab_dir, pids = lab.spec, lab.lab.dir, lab.pids()
    namespaces = [ns for ns in netlink.ns_list() if ns.startswith(spec.prefix)]
    assert len(namespaces) == 4 + 2 + 5        # fabric, chassis, VMs
    assert lab.lab.down() == []
    assert leftovers(spec, lab_dir, pids, root_before) == []
    assert lab.lab.down() == []   # idempotent
