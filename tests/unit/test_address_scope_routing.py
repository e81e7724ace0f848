"""Address-scope-aware routing through the one evaluator, on the L3 reference topology
(tests/golden/l3_reference.py) with scopes: sub-a (net-a) and the external subnet in
"red", sub-b (net-b) in no scope. As Neutron: r1 routes between net-a and net-b only
through NAT (so not directly), and a red subnet leaves by the red external network
without SNAT (and is routed back in as is), while net-b is still SNATed."""

from __future__ import annotations

import pytest

from plexus.model.keys import ADDRESS_SCOPE_KEY
from plexus.pipeline import incremental
from plexus.pipeline.compile import compile_view
from tests.golden.l3_fabric import Fabric
from tests.golden.l3_reference import CHASSIS, UPSTREAM, changed, ip, mac, objects, view
from tests.unit.test_l3 import inbound, routed

INTERNET = "8.8.8.8"


def scoped(a=None, b=None, ext=None) -> dict:
    """The reference objects with the given scopes on sub-a, sub-b and the external subnet."""
    objs = objects()
    for subnet, scope in (("sub-a", a), ("sub-b", b), ("sub-ext", ext)):
        if scope:
            objs = changed(objs, "subnets", subnet, **{ADDRESS_SCOPE_KEY: scope})
    return objs


def fabric_of(objs: dict) -> Fabric:
    return Fabric({c: view(c, objs) for c in CHASSIS})


def test_no_scopes_routes_as_before():
    fabric = fabric_of(scoped())
    assert fabric.send("hv1", routed("a-vm1", ip("b-vm1"))).ends == [("hv2", "vif:b-vm1")]


@pytest.mark.parametrize("a,b", [("red", None), (None, "red"), ("red", "blue")])
def test_different_scopes_are_not_routed_directly(a, b):
    fabric = fabric_of(scoped(a=a, b=b))
    assert fabric.send("hv1", routed("a-vm1", ip("b-vm1"))).hops == []
    assert fabric.send("hv2", routed("b-vm1", ip("a-vm2"), sport=80, dport=40000)).hops == []
    # within a subnet, and to the router itself, nothing changes
    pong = fabric.send("hv1", routed("a-vm1", "10.1.0.1", "icmp", sport=7))
    assert pong.ends == [("hv1", "vif:a-vm1")]


def test_the_same_scope_is_routed_directly():
    fabric = fabric_of(scoped(a="red", b="red"))
    trip = fabric.send("hv1", routed("a-vm1", ip("b-vm1")))
    assert trip.ends == [("hv2", "vif:b-vm1")], trip.explain()
    assert trip.last["ipv4_src"] == ip("a-vm1")


def test_a_subnet_in_the_external_scope_leaves_and_returns_without_nat():
    fabric = fabric_of(scoped(a="red", ext="red"))
    trip = fabric.send("hv1", routed("a-vm2", INTERNET))
    assert trip.ends == [("hv1", "patch")], trip.explain()
    assert trip.last["ipv4_src"] == ip("a-vm2")              # no SNAT
    assert trip.last["eth_dst"] == UP
    # the reply comes to the router's gateway MAC (the upstream routes net-a there) on
    # the active gateway, and is routed in as is
    back = inbound(ip("a-vm2"), mac("r1-gw"), sport=80, dport=40000)
    reply = fabric.send("gw1", back)
    assert reply.ends == [("hv1", "vif:a-vm2")], reply.explain()
    # net-b (no scope) is still SNATed to the gateway address
    out = fabric.send("hv2", routed("b-vm1", INTERNET))
    assert out.ends == [("hv2", "patch")] and out.last["ipv4_src"] == "203.0.113.10"
    # and nothing from outside reaches net-b as is
    assert fabric.send("gw1", inbound(ip("b-vm1"), mac("r1-gw"))).hops == []


def test_other_scope_than_the_external_network_is_snatted():
    fabric = fabric_of(scoped(a="blue", ext="red"))
    trip = fabric.send("hv1", routed("a-vm2", INTERNET))
    assert trip.ends == [("hv1", "patch")] and trip.last["ipv4_src"] == "203.0.113.10"
    assert fabric.send("gw1", inbound(ip("a-vm2"), mac("r1-gw"))).hops == []


def test_incremental_follows_a_scope_change():
    """A pool changing scope rewrites its subnets: the incremental compile equals the
    full one, and only the router stages' flows change."""
    before, after = view("hv1", scoped()), view("hv1", scoped(a="red", ext="red"))
    compiler = incremental.IncrementalCompiler()
    compiler.compile(before)
    delta = compiler.compile(after)
    assert sorted(map(repr, compiler.flows())) == sorted(map(repr, compile_view(after)))
    stages = {f.stage for f in delta.added} | {f.stage for f in delta.removed}
    assert stages and stages <= {"l3_input", "l3_route", "l3_snat", "l3_neighbor", "dhcp",
                                 "arp_responder", "snat_guard"}, stages


UP = UPSTREAM["203.0.113.1"]
