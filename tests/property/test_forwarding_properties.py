"""Properties of floating IP port forwarding, over random forwardings of one floating IP
of the L3 reference topology (random external ports, protocols, targets on hv1 and
hv2, and random gateway orders):

- exactly one chassis answers ARP for the floating IP: the chassis of its forwardings'
  ports when that is one, else the router's active gateway;
- a forwarded (protocol, external port), sent to the owner, reaches the VM at its
  internal address and port, wherever the VM is; the VM's reply leaves its own chassis
  from the floating IP and external port, never with the floating IP's MAC unless it is
  the owner;
- any other port of the floating IP goes nowhere;
- the incremental compile equals the full one when forwardings come and go."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from plexus.model.keys import PORT_FORWARDINGS
from plexus.pipeline.compile import compile_view
from plexus.pipeline.incremental import IncrementalCompiler
from tests.golden.l3_fabric import Fabric
from tests.golden.l3_reference import VIF_OFPORTS, ip, view
from tests.golden.test_l3_golden import forwarded_objects
from tests.unit.test_l3 import INTERNET, arp_from_outside, inbound

FAST = settings(max_examples=40, deadline=None)
HOST = {"a-vm2": "hv1", "b-vm1": "hv2"}
FIP, FIP_MAC = "203.0.113.150", "fa:16:3e:00:e0:96"


@st.composite
def forwardings(draw):
    """The reference objects with fip-pf forwarding 1-4 random (protocol, port)s."""
    objs = forwarded_objects()
    ext = draw(st.lists(st.integers(1, 65535), min_size=1, max_size=4, unique=True))
    pfs = []
    for n, port in enumerate(ext):
        target = draw(st.sampled_from(sorted(HOST)))
        internal = draw(st.integers(1, 65535))
        proto = draw(st.sampled_from(["tcp", "udp"]))
        pfs.append({"id": f"pf-{n}", "protocol": proto, "external": [port, port],
                    "internal_port_id": target, "internal_ip_address": ip(target),
                    "internal": [internal, internal], "description": ""})
    # one internal socket per forwarding (as the API keeps them)
    seen, kept = set(), []
    for pf in pfs:
        key = (pf["protocol"], pf["internal_port_id"], pf["internal"][0])
        if key not in seen:
            seen.add(key)
            kept.append(pf)
    fips = dict(objs["floatingips"])
    fips["fip-pf"] = {**fips["fip-pf"], PORT_FORWARDINGS: kept}
    routers = dict(objs["routers"])
    routers["r1"] = {**routers["r1"],
                     "plexus:gateway_chassis": draw(st.permutations(["gw1", "gw2"]))}
    return {**objs, "floatingips": fips, "routers": routers}


def _owner(objs) -> str:
    hosts = {HOST[p["internal_port_id"]] for p in objs["floatingips"]["fip-pf"][PORT_FORWARDINGS]}
    return hosts.pop() if len(hosts) == 1 else objs["routers"]["r1"]["plexus:gateway_chassis"][0]


@FAST
@given(forwardings())
def test_one_owner_answers_arp(objs):
    owner = _owner(objs)
    for chassis in ("hv1", "hv2", "gw1", "gw2"):
        result = Fabric({chassis: view(chassis, objs)}).pipelines[chassis].run(
            arp_from_outside(FIP))
        answered = [p for _, p in result.outputs if p.get("arp_op") == 2]
        assert bool(answered) == (chassis == owner), (chassis, owner, result.explain())
        if answered:
            assert answered[0]["arp_sha"] == FIP_MAC


@FAST
@given(forwardings(), st.integers(1, 65535))
def test_forwarded_ports_reach_the_vm_and_reply_from_the_floating_ip(objs, other):
    owner = _owner(objs)
    fabric = Fabric({c: view(c, objs) for c in {"hv1", "hv2", owner}})
    pfs = objs["floatingips"]["fip-pf"][PORT_FORWARDINGS]
    for n, pf in enumerate(pfs):
        proto, port = pf["protocol"], pf["external"][0]
        target, chassis = pf["internal_port_id"], HOST[pf["internal_port_id"]]
        trip = fabric.send(owner, inbound(FIP, FIP_MAC, proto, sport=30000 + n, dport=port))
        assert trip.ends == [(chassis, f"vif:{target}")], trip.explain()
        got = trip.last
        assert (got["ipv4_dst"], got[f"{proto}_dst"]) == (ip(target), pf["internal"][0])
        reply = {**{k: got[k] for k in ("eth_type", "ip_proto", "nw_ttl")},
                 "in_port": fabric_vif(target), "eth_src": got["eth_dst"],
                 "eth_dst": got["eth_src"], "ipv4_src": got["ipv4_dst"],
                 "ipv4_dst": got["ipv4_src"], f"{proto}_src": got[f"{proto}_dst"],
                 f"{proto}_dst": got[f"{proto}_src"]}
        back = fabric.send(chassis, reply)
        assert back.ends == [(chassis, "patch")], back.explain()
        out = back.last
        assert (out["ipv4_src"], out[f"{proto}_src"]) == (FIP, port)
        assert (out["ipv4_dst"], out[f"{proto}_dst"]) == (INTERNET, 30000 + n)
        assert (out["eth_src"] == FIP_MAC) == (chassis == owner)
    taken = {(p["protocol"], p["external"][0]) for p in pfs}
    for proto in ("tcp", "udp"):
        if (proto, other) in taken:
            continue
        trip = fabric.send(owner, inbound(FIP, FIP_MAC, proto, dport=other))
        assert all(h.where != "patch" and not h.where.startswith("vif:")
                   for h in trip.hops), trip.explain()


def fabric_vif(port: str) -> int:
    """The ofport of a reference VM."""
    return VIF_OFPORTS[HOST[port]][port]


@FAST
@given(forwardings(), forwardings(), st.sampled_from(["hv1", "hv2", "gw1"]))
def test_incremental_equals_full_when_forwardings_change(before, after, chassis):
    inc = IncrementalCompiler()
    inc.compile(view(chassis, before))
    inc.compile(view(chassis, after))
    assert sorted(map(str, inc.flows())) == sorted(map(str, compile_view(view(chassis, after))))
