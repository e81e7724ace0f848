"""Properties of the IPv6 services' punts and of IPv6 routing, over random variations of
the dual-stack reference (tests/golden/ipv6_reference.py): the subnets' RA and address
modes, which ports hold IPv6 addresses, the router's IPv6 extra routes, which chassis
are alive and whether the upstream IPv6 next hop is resolved.

- every flow keeps the registry's promises and lowers to OpenFlow;
- the incremental compile equals the full one after each change;
- every VM's IPv6 packet to another VM behind the same router reaches that VM's MAC,
  hop limit one less, addresses unchanged (no NAT), routed on the sender's chassis;
- nothing IPv6 that comes from outside is ever sent back outside."""

from __future__ import annotations

import copy

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from plexus.lower.openflow import flow_mod
from plexus.pipeline.compile import compile_view
from plexus.pipeline.incremental import IncrementalCompiler
from plexus.pipeline.registry import check_flow, stage
from tests.golden.ipv6_reference import UPSTREAM6, ip6, objects
from tests.golden.l3_fabric import Fabric
from tests.golden.l3_reference import CHASSIS, PATCH, TUNNEL, UPSTREAM, mac
from tests.golden import l3_reference as ref
from tests.unit.test_ipv6_routing import from_vm

FAST = settings(max_examples=40, deadline=None)
MODES = [None, "slaac", "dhcpv6-stateful", "dhcpv6-stateless"]
VMS = {"a-vm1": ("hv1", "net-a", "r1-a"), "a-vm2": ("hv1", "net-a", "r1-a"),
       "b-vm1": ("hv2", "net-b", "r1-b"), "b-app": ("hv2", "net-b", "r1-b")}


@st.composite
def layouts(draw):
    objs = objects()
    for sid in ("sub-a6", "sub-b6", "sub-c6"):
        mode = draw(st.sampled_from(MODES))
        objs["subnets"][sid].update(ipv6_ra_mode=mode, ipv6_address_mode=mode,
                                    enable_dhcp=mode is not None)
    for pid in draw(st.lists(st.sampled_from(sorted(objs["ports"])), unique=True,
                             max_size=3)):
        port = objs["ports"][pid]
        port["fixed_ips"] = [f for f in port["fixed_ips"] if ":" not in f["ip_address"]]
    routes = [r for r in objs["routers"]["r1"]["routes"] if ":" not in r["nexthop"]]
    routes += draw(st.lists(st.sampled_from([
        {"destination": "2001:db8:50::/48", "nexthop": "2001:db8:b::50"},
        {"destination": "2001:db8:50::/48", "nexthop": "2001:db8:b::11"},
        {"destination": "2001:db8:60::/48", "nexthop": "2001:db8:ee::1"},
        {"destination": "::/0", "nexthop": "2001:db8:ee::1"}]),
        unique_by=lambda r: (r["destination"], r["nexthop"])))
    objs["routers"]["r1"]["routes"] = routes
    return objs


def chassis_view(objs, chassis, alive, resolved):
    return ref.view(chassis, objs, alive=alive,
                    external_macs={**UPSTREAM, **(UPSTREAM6 if resolved else {})})


@FAST
@given(layouts(), st.sampled_from(CHASSIS), st.lists(st.sampled_from(CHASSIS), unique=True),
       st.booleans())
def test_every_flow_keeps_the_registry_promises_and_lowers(objs, chassis, alive, resolved):
    for flow in compile_view(chassis_view(objs, chassis, alive, resolved)):
        check_flow(flow, stage(flow.stage).owner)
        flow_mod(flow).serialize()


@FAST
@given(st.lists(layouts(), min_size=2, max_size=4), st.sampled_from(["hv1", "hv2", "gw1"]))
def test_incremental_equals_full(sequence, chassis):
    compiler = IncrementalCompiler()
    for objs in sequence:
        v = chassis_view(objs, chassis, CHASSIS, True)
        compiler.compile(v)
        assert sorted(map(str, compiler.flows())) == sorted(map(str, compile_view(v)))


@FAST
@given(layouts(), st.sampled_from(["a-vm1", "a-vm2"]), st.sampled_from(["b-vm1", "b-app"]),
       st.booleans())
def test_routed_ipv6_reaches_the_destination_unchanged(objs, a, b, a_to_b):
    """Between net-a (hv1) and net-b (hv2), either way: when the destination and both
    router ports hold IPv6 addresses, the sender's chassis routes the packet to the
    destination's chassis, for the destination's MAC."""
    src, dst = (a, b) if a_to_b else (b, a)

    def has6(pid):
        return any(":" in f["ip_address"] for f in objs["ports"][pid]["fixed_ips"])
    assume(all(has6(p) for p in (dst, VMS[src][2], VMS[dst][2])))
    host, net, router_port = VMS[src]
    fabric = Fabric({c: chassis_view(objs, c, CHASSIS, True) for c in ("hv1", "hv2")})
    result = fabric.pipelines[host].run(from_vm(src, net, ip6(dst), mac(router_port)),
                                        stage="l3_input")
    assert result.ports == [TUNNEL[VMS[dst][0]]], result.explain()
    sent = result.outputs[0][1]
    assert sent["eth_dst"] == mac(dst) and sent["nw_ttl"] == 63
    assert (sent["ipv6_src"], sent["ipv6_dst"]) == (ip6(src), ip6(dst))


@FAST
@given(layouts(), st.sampled_from(CHASSIS), st.sampled_from(sorted(VMS) + ["r1-gw"]),
       st.sampled_from([6, 17, 58]))
def test_nothing_ipv6_from_outside_goes_back_outside(objs, chassis, dst, proto):
    fabric = Fabric({c: chassis_view(objs, c, CHASSIS, True) for c in CHASSIS})
    pkt = {"in_port": PATCH, "eth_src": UPSTREAM6["2001:db8:ee::1"], "eth_dst": mac("r1-gw"),
           "eth_type": 0x86DD, "ipv6_src": "2001:db8:ff::10",
           "ipv6_dst": ip6(dst) if dst != "r1-gw" else "2001:db8:ee::10",
           "ip_proto": proto, "nw_ttl": 60}
    trip = fabric.send(chassis, copy.deepcopy(pkt))
    assert all(h.where != "patch" or h.packet.get("icmpv6_type") == 129 for h in trip.hops), \
        trip.explain()
