"""Trunks end to end (issue 16, ``trunk``): a VM on c1 whose port is a trunk's parent
reaches, with frames tagged for VLAN 100 from inside its namespace (the subport's MAC;
``vlan_probe.py`` tags them itself, since this machine's kernel has no 802.1Q module
for an ``eth0.100``), a VM on the subport's network on c2 — the agent classifies the tagged frames as the
subport's, sends the replies back tagged, answers the subport's DHCP in its VLAN and
reports the subport ACTIVE; removed from the trunk, the subport carries nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import running_lab, wait_for

pytestmark = pytest.mark.e2e

PROBE = Path(__file__).with_name("vlan_probe.py")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with running_lab(tmp_path_factory.mktemp("trunk"), chassis=2) as fixture:
        yield fixture


def probe(vm, *args: str) -> str:
    """``vlan_probe`` inside the VM: what came back to a tagged frame, and in which VLAN."""
    return vm.exec(sys.executable, str(PROBE), "eth0", *args, check=False,
                   timeout=20).stdout.strip()


def test_a_subport_carries_its_network_in_its_vlan(lab):
    api = lab.api.network
    parent_net = lab.network("trk-a", "10.84.0.0/24")
    sub_net = lab.network("trk-b", "10.85.0.0/24")
    vm = lab.vm("trk1", parent_net, chassis="c1")
    peer = lab.vm("trk2", sub_net, chassis="c2")
    sub = api.create_port(network_id=sub_net.id, name="trk-sub")
    trunk = api.create_trunk(port_id=vm.port_id, sub_ports=[
        {"port_id": sub.id, "segmentation_type": "vlan", "segmentation_id": 100}])
    try:
        assert api.get_port(sub.id).binding_host_id == "c1"       # follows its parent
        wait_for(lambda: api.get_port(sub.id).status == "ACTIVE", 30,
                 "the subport ACTIVE once its parent's chassis programmed it")
        sub_ip, mac = sub.fixed_ips[0]["ip_address"], sub.mac_address
        peer_mac = api.get_port(peer.port_id).mac_address
        # the agent answers the subport's DHCP inside its VLAN
        assert probe(vm, "100", mac, "0.0.0.0", "dhcp") == f"vlan=100 reply={sub_ip}"
        # the subport reaches its network across chassis; the reply comes back tagged
        ping = ("100", mac, sub_ip, "ping", peer_mac, peer.ip)
        assert probe(vm, *ping) == f"vlan=100 reply={peer.ip}"
        # an unknown VLAN gets nothing
        assert probe(vm, "101", mac, sub_ip, "ping", peer_mac, peer.ip) == "none"
        # the parent's own network still works untagged on eth0
        parent_peer = lab.vm("trk3", parent_net, chassis="c2")
        assert vm.ping(parent_peer.ip), "the parent keeps its untagged traffic"
        # the subport leaves the trunk: its VLAN carries nothing any more
        api.delete_trunk_subports(trunk, [{"port_id": sub.id}])
        wait_for(lambda: probe(vm, *ping) == "none", 30, "a removed subport carries nothing")
        assert vm.ping(parent_peer.ip), "the parent is unaffected"
    finally:
        api.delete_trunk(trunk, ignore_missing=True)
        api.delete_port(sub.id, ignore_missing=True)
