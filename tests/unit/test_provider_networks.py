"""Provider networks bridged to their physical network (docs/provider-networks.md),
walked through the one evaluator on the reference topology of
tests/golden/provider_reference.py: what leaves a chassis' patch port reaches every
other chassis' patch port (the physical switch floods), what leaves a tunnel the chassis
at its other end."""

from __future__ import annotations

import pytest

from plexus.agent.relevant import port_statuses, unbridged_ports
from plexus.pipeline.compile import compile_view
from plexus.pipeline.flows import VLAN_PRESENT
from plexus.pipeline.stages.output import chassis_mac
from plexus.tools.evaluator import Pipeline
from tests.golden.provider_reference import (
    CHASSIS, MAPPED, PATCH, TUNNEL, VIF_OFPORTS, ip, mac, objects, view,
)

BY_TUNNEL = {ofport: chassis for chassis, ofport in TUNNEL.items()}
LOCAL = {"in_port", "metadata", "reg3", "reg4", "reg5", "reg6", "reg7", "ct_state",
         "ct_zone", "ct_mark", "conj_id"}
VLAN100 = VLAN_PRESENT | 100
UPSTREAM_MAC = "02:ee:00:00:00:01"


@pytest.fixture(scope="module")
def pipelines():
    return {c: Pipeline(compile_view(view(c))) for c in CHASSIS}


def send(pipelines, chassis: str, packet: dict, hops: int = 6) -> list[tuple[str, str, dict]]:
    """Every place the packet ends up: (chassis, "vif:<port>" / "patch", packet), and the
    patch and tunnel hops on the way ("patch" entries are what went onto the wire)."""
    out, todo = [], [(chassis, packet)]
    while todo:
        assert hops > 0, out
        hops -= 1
        here, pkt = todo.pop(0)
        for port, sent in pipelines[here].run(pkt).outputs:
            if port == PATCH:
                out.append((here, "patch", sent))
                arriving = {k: v for k, v in sent.items() if k not in LOCAL}
                todo += [(c, {**arriving, "in_port": PATCH}) for c in sorted(MAPPED)
                         if c != here]
            elif port in BY_TUNNEL:
                out.append((here, f"tunnel:{BY_TUNNEL[port]}", sent))
                arriving = {k: v for k, v in sent.items() if k not in LOCAL}
                todo.append((BY_TUNNEL[port], {**arriving, "in_port": TUNNEL[here]}))
            else:
                vifs = {o: p for p, o in VIF_OFPORTS[here].items()}
                out.append((here, f"vif:{vifs.get(port, port)}", sent))
    return out


def ip_from(src: str, dst_ip: str, eth_dst: str) -> dict:
    """An ICMP echo from a local VM."""
    chassis = next(c for c, vifs in VIF_OFPORTS.items() if src in vifs)
    return {"in_port": VIF_OFPORTS[chassis][src], "eth_src": mac(src), "eth_dst": eth_dst,
            "eth_type": 0x0800, "ipv4_src": ip(src), "ipv4_dst": dst_ip, "ip_proto": 1,
            "icmpv4_type": 8, "icmpv4_code": 0}


def where(trip) -> list[tuple[str, str]]:
    return [(c, w) for c, w, _ in trip]


def test_vms_on_a_vlan_network_talk_over_the_physical_network_tagged(pipelines):
    trip = send(pipelines, "hv1", ip_from("v-vm1", ip("v-vm2"), mac("v-vm2")))
    assert where(trip) == [("hv1", "patch"), ("hv2", "vif:v-vm2")], trip
    assert trip[0][2]["vlan_vid"] == VLAN100
    assert trip[1][2].get("vlan_vid", 0) == 0                   # popped before the VM
    assert trip[1][2]["eth_src"] == mac("v-vm1")


def test_a_vm_cannot_put_its_own_vlan_tag_on_the_physical_network(pipelines):
    # p-vm1 is on the flat network: a frame it tags 100 itself would land on VLAN 100
    tagged = {**ip_from("p-vm1", "198.51.100.1", UPSTREAM_MAC), "vlan_vid": VLAN100}
    assert send(pipelines, "hv2", tagged) == []
    tagged = {**ip_from("v-vm1", ip("v-vm2"), mac("v-vm2")), "vlan_vid": VLAN_PRESENT | 200}
    assert send(pipelines, "hv1", tagged) == []


def test_a_flood_reaches_local_ports_and_the_physical_network_only(pipelines):
    arp = {"in_port": 1, "eth_src": mac("v-vm1"), "eth_dst": "ff:ff:ff:ff:ff:ff",
           "eth_type": 0x0806, "arp_op": 1, "arp_sha": mac("v-vm1"), "arp_spa": ip("v-vm1"),
           "arp_tha": "00:00:00:00:00:00", "arp_tpa": "198.51.100.1"}
    trip = send(pipelines, "hv1", arp)
    # no tunnel; on hv2 the VM gets it, nothing goes back out; gw1 has no port on it
    assert where(trip) == [("hv1", "patch"), ("hv2", "vif:v-vm2")], trip
    assert trip[0][2]["vlan_vid"] == VLAN100


def test_unknown_unicast_goes_to_the_physical_network_and_never_back(pipelines):
    trip = send(pipelines, "hv1", ip_from("v-vm1", "198.51.100.1", UPSTREAM_MAC))
    assert where(trip) == [("hv1", "patch")], trip       # hv2 does not send it back
    assert trip[0][2]["vlan_vid"] == VLAN100


def test_the_upstream_reaches_a_vm_by_its_tagged_frames_only(pipelines):
    reply = {"in_port": PATCH, "eth_src": UPSTREAM_MAC, "eth_dst": mac("v-vm2"),
             "eth_type": 0x0800, "ipv4_src": "198.51.100.1", "ipv4_dst": ip("v-vm2"),
             "ip_proto": 1, "icmpv4_type": 0, "icmpv4_code": 0, "vlan_vid": VLAN100}
    assert where(send(pipelines, "hv2", reply)) == [("hv2", "vif:v-vm2")]
    untagged = {**reply, "vlan_vid": 0}
    assert send(pipelines, "hv2", untagged) == []        # not VLAN 100: not this network
    other = {**reply, "vlan_vid": VLAN_PRESENT | 200}
    assert send(pipelines, "hv2", other) == []


def test_routed_onto_a_vlan_network_with_the_chassis_own_mac(pipelines):
    # a-vm1 (hv1, VXLAN net-a) → v-vm2 (hv2, VLAN): routed on hv1, out of its patch
    trip = send(pipelines, "hv1", {**ip_from("a-vm1", ip("v-vm2"), mac("r1-a")),
                                   "nw_ttl": 64})
    assert where(trip) == [("hv1", "patch"), ("hv2", "vif:v-vm2")], trip
    wire = trip[0][2]
    assert wire["vlan_vid"] == VLAN100
    assert wire["eth_src"] == chassis_mac("hv1") != mac("r1-v")   # no router MAC flapping
    assert wire["nw_ttl"] == 63
    # the reply is routed on hv2 (r1 is programmed there: v-vm2 is local) and tunnelled
    back = send(pipelines, "hv2", {**ip_from("v-vm2", ip("a-vm1"), mac("r1-v")),
                                   "icmpv4_type": 0})
    assert where(back) == [("hv2", "tunnel:hv1"), ("hv1", "vif:a-vm1")], back
    # from gw1 (no port on the VLAN network) routed traffic goes by tunnel, and is taken
    trip = send(pipelines, "gw1", ip_from("a-vm2", ip("v-vm1"), mac("r1-a")))
    assert where(trip) == [("gw1", "tunnel:hv1"), ("hv1", "vif:v-vm1")], trip


def test_vm_on_the_flat_external_network_reaches_the_upstream_and_back(pipelines):
    trip = send(pipelines, "hv2", ip_from("p-vm1", "203.0.113.1", UPSTREAM_MAC))
    assert where(trip) == [("hv2", "patch")], trip
    assert trip[0][2].get("vlan_vid", 0) == 0
    reply = {"in_port": PATCH, "eth_src": UPSTREAM_MAC, "eth_dst": mac("p-vm1"),
             "eth_type": 0x0800, "ipv4_src": "203.0.113.1", "ipv4_dst": ip("p-vm1"),
             "ip_proto": 1, "icmpv4_type": 0, "icmpv4_code": 0}
    assert where(send(pipelines, "hv2", reply)) == [("hv2", "vif:p-vm1")]


def test_the_active_gateway_keeps_its_router_and_serves_its_vm_on_the_same_network(
        pipelines):
    # gw1: r2's active gateway on "public" and p-vm2's chassis
    reply = {"in_port": PATCH, "eth_src": UPSTREAM_MAC, "eth_dst": mac("p-vm2"),
             "eth_type": 0x0800, "ipv4_src": "203.0.113.1", "ipv4_dst": ip("p-vm2"),
             "ip_proto": 1, "icmpv4_type": 0, "icmpv4_code": 0}
    assert where(send(pipelines, "gw1", reply)) == [("gw1", "vif:p-vm2")]
    arp = {"in_port": PATCH, "eth_src": UPSTREAM_MAC, "eth_dst": "ff:ff:ff:ff:ff:ff",
           "eth_type": 0x0806, "arp_op": 1, "arp_sha": UPSTREAM_MAC,
           "arp_spa": "203.0.113.1", "arp_tha": "00:00:00:00:00:00",
           "arp_tpa": "203.0.113.10"}
    result = pipelines["gw1"].run(arp)
    assert result.ports == [PATCH]                       # answered by r2's gateway
    assert result.outputs[0][1]["arp_sha"] == mac("r2-gw")
    # ARP for the VM from the upstream: flooded to the VM (which answers itself)
    assert where(send(pipelines, "gw1", {**arp, "arp_tpa": ip("p-vm2")})) == [
        ("gw1", "vif:p-vm2")]
    # and the VM reaches the gateway address of the router on its own chassis? Only
    # through the physical network (see docs): out of the patch, like any other MAC
    trip = send(pipelines, "gw1", ip_from("p-vm2", "203.0.113.1", UPSTREAM_MAC))
    assert where(trip) == [("gw1", "patch")], trip


def test_a_chassis_without_the_mapping_reports_its_ports_not_programmable():
    objs = objects()
    assert unbridged_ports(objs, "hv3", {}) == {"v-vm3": ("vlan-net", "physnet1")}
    assert unbridged_ports(objs, "hv1", {"physnet1": "br-ex"}) == {}
    assert port_statuses(objs, "hv3", [], {}) == {"v-vm3": "ERROR"}
    assert port_statuses(objs, "hv3", []) == {"v-vm3": "DOWN"}       # no mappings known
