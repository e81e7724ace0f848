"""SNAT never leaks (issue 12): over random variations of the L3 reference topology —
which chassis hold which blocks of r1 and how small (so they run out), whether r1 SNATs
at all, whether a1's floating IP is associated — and random connections from the VMs
to the internet, through the one evaluator (its connection tracker leaves a packet
untranslated when the NAT range has no free port, as OVS's does): no packet with a
tenant source address leaves on a provider network, unless its router does not SNAT
(the operator's choice). Whatever does leave from a SNAT router has the gateway
address or the VM's own floating IP as source."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.golden.l3_fabric import Fabric
from tests.golden.l3_reference import CHASSIS, PORTS, objects, view
from tests.unit.test_l3 import routed

FAST = settings(max_examples=40, deadline=None)
HOSTS = ["hv1", "hv2", "gw1", "gw2"]
TENANT = [ipaddress.ip_network(c) for c in ("10.1.0.0/24", "10.2.0.0/24")]
VMS = {"a-vm1": "r1", "a-vm2": "r1", "b-vm1": "r1", "b-app": "r1", "c-vm1": "r2",
       "c-vm3": "r2"}
GATEWAY = {"r1": "203.0.113.10", "r2": "198.51.100.10"}
FLOATING = {"a-vm1": "203.0.113.101", "c-vm1": "198.51.100.101"}


@st.composite
def layouts(draw):
    """Reference objects with tiny random blocks of r1 (1, 2 or 4 ports, so connections
    exhaust them), r1's SNAT on or off, a1's floating IP associated or not."""
    objs = objects()
    size = draw(st.sampled_from([1, 2, 4]))
    starts = draw(st.lists(st.integers(1024 // size, 1100 // size), max_size=4, unique=True))
    objs["snat_blocks"] = {
        f"r1:{s * size}": {"id": f"r1:{s * size}", "router_id": "r1",
                           "chassis": draw(st.sampled_from(HOSTS + ["hv1", "hv2"])),
                           "ip": "203.0.113.10",
                           "port_min": s * size, "port_max": s * size + size - 1}
        for s in starts}
    routers = dict(objs["routers"])
    routers["r1"] = {**routers["r1"],
                     "enable_snat": draw(st.sampled_from([True, True, True, False]))}
    objs["routers"] = routers
    if draw(st.booleans()):
        fips = dict(objs["floatingips"])
        fips["fip-a1"] = {**fips["fip-a1"], "port_id": None, "fixed_ip_address": None,
                          "router_id": None}
        objs["floatingips"] = fips
    return objs


connections = st.lists(st.tuples(
    st.sampled_from(sorted(VMS)), st.integers(30000, 30007), st.sampled_from(["tcp", "udp",
                                                                               "icmp"]),
    st.sampled_from(["8.8.8.8", "8.8.4.4"]), st.sampled_from([80, 443])),
    min_size=3, max_size=24)


def tenant(address: str) -> bool:
    return any(ipaddress.ip_address(address) in net for net in TENANT)


@FAST
@given(layouts(), connections)
def test_no_tenant_source_leaves_on_a_provider_network_from_a_snat_router(objs, conns):
    fabric = Fabric({c: view(c, objs) for c in CHASSIS})
    snat = {rid: r["enable_snat"] for rid, r in objs["routers"].items()}
    fip_bound = {vm for vm in FLOATING
                 if any(f["port_id"] == vm for f in objs["floatingips"].values())}
    for vm, sport, proto, dst, dport in conns:
        chassis = PORTS[vm][4]
        trip = fabric.send(chassis, routed(vm, dst, proto, sport=sport, dport=dport))
        router = VMS[vm]
        for hop in trip.hops:
            if hop.where != "patch":
                continue
            source = hop.packet["ipv4_src"]
            if not snat[router]:
                continue                                   # routed as is: allowed
            assert not tenant(source), (vm, proto, sport, trip.explain())
            allowed = {GATEWAY[router]} | ({FLOATING[vm]} if vm in fip_bound else set())
            assert source in allowed, (vm, source, trip.explain())
