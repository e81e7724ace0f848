"""Properties of routing, floating IPs and distributed SNAT, over random variations of the
L3 reference topology (which chassis are alive, which blocks each chassis holds and how
big, which floating IPs are associated, which routes and upstream MACs exist):

- compile output does not depend on the order of the southbound objects or the view;
- every flow keeps the registry's promises and lowers to OpenFlow;
- SNAT: a chassis' connections leave from its own blocks only, never two on one address
  and port, and the active gateway — any chassis that believes it is — returns every
  port of every block to its owner, where the connection comes back to the VM;
- nothing that comes from outside is ever sent back outside."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from os_ken.ofproto import ofproto_v1_3 as ofp

from plexus.lower.openflow import flow_mod
from plexus.pipeline.compile import compile_view
from plexus.pipeline.registry import check_flow, stage
from tests.golden.l3_fabric import Fabric
from tests.golden.l3_reference import (
    CHASSIS, PATCH, TUNNEL, UPSTREAM, mac, objects, view,
)
from tests.unit.test_l3 import INTERNET, inbound, reply_to, routed

FAST = settings(max_examples=60, deadline=None)
HOSTS = ["hv1", "hv2", "gw1", "gw2"]


@st.composite
def layouts(draw):
    """Southbound objects with random SNAT blocks (aligned, of one power-of-two size, on
    random owners), floating IP associations, routes and gateway lists."""
    objs = objects()
    size = draw(st.sampled_from([16, 64, 256]))
    starts = draw(st.lists(st.integers(4, 200), min_size=1, max_size=8, unique=True))
    blocks = {}
    for start in starts:
        owner = draw(st.sampled_from(HOSTS))
        lo = start * size
        blocks[f"r1:{lo}"] = {"id": f"r1:{lo}", "router_id": "r1", "chassis": owner,
                              "ip": "203.0.113.10", "port_min": lo, "port_max": lo + size - 1}
    objs["snat_blocks"] = blocks
    if draw(st.booleans()):
        fips = dict(objs["floatingips"])
        fips["fip-a1"] = {**fips["fip-a1"], "port_id": None, "fixed_ip_address": None,
                          "router_id": None}
        objs["floatingips"] = fips
    routers = dict(objs["routers"])
    routers["r1"] = {**routers["r1"],
                     "plexus:gateway_chassis": draw(st.permutations(["gw1", "gw2", "hv2"])),
                     "routes": draw(st.lists(st.sampled_from([
                         {"destination": "192.168.50.0/24", "nexthop": "10.2.0.50"},
                         {"destination": "192.168.50.0/24", "nexthop": "10.2.0.11"},
                         {"destination": "198.18.0.0/15", "nexthop": "203.0.113.254"},
                         {"destination": "0.0.0.0/0", "nexthop": "203.0.113.254"},
                         {"destination": "10.2.0.128/25", "nexthop": "10.2.0.50"}]),
                         unique_by=lambda r: (r["destination"], r["nexthop"])))}
    objs["routers"] = routers
    return objs


def shuffled(objs: dict, rnd: random.Random) -> dict:
    """The same objects, every collection (and list of routes) in another order."""
    out = {}
    for collection, items in objs.items():
        pairs = list(items.items())
        rnd.shuffle(pairs)
        out[collection] = dict(pairs)
    r1 = dict(out["routers"]["r1"])
    routes = list(r1["routes"])
    rnd.shuffle(routes)
    out["routers"] = {**out["routers"], "r1": {**r1, "routes": routes}}
    return out


@FAST
@given(layouts(), st.sampled_from(CHASSIS), st.randoms(use_true_random=False))
def test_output_does_not_depend_on_input_order(objs, chassis, rnd):
    flows = compile_view(view(chassis, objs))
    again = compile_view(view(chassis, shuffled(objs, rnd)))
    assert [str(f) for f in again] == [str(f) for f in flows]


@FAST
@given(layouts(), st.sampled_from(CHASSIS), st.lists(st.sampled_from(CHASSIS), unique=True),
       st.dictionaries(st.sampled_from(sorted(UPSTREAM)), st.sampled_from(
           ["02:ee:00:00:00:01", "02:ee:00:00:00:02"])))
def test_every_flow_keeps_the_registry_promises_and_lowers(objs, chassis, alive, macs):
    for flow in compile_view(view(chassis, objs, alive=alive + [chassis],
                                  external_macs=macs)):
        check_flow(flow, owner=stage(flow.stage).owner)
        flow_mod(flow).serialize()
        flow_mod(flow, ofp.OFPFC_DELETE_STRICT).serialize()


def owners(objs: dict) -> dict[int, str]:
    """Every SNAT port of r1 → the chassis owning its block."""
    return {p: b["chassis"] for b in objs["snat_blocks"].values()
            for p in range(b["port_min"], b["port_max"] + 1)}


@FAST
@given(layouts(), st.sampled_from(["gw1", "gw2", "hv2"]), st.data())
def test_every_block_port_returns_to_its_owner_from_any_active_gateway(objs, gateway, data):
    """Whichever chassis believes it is r1's active gateway forwards a reply to any port
    of a block to the block's owner (and unNATs its own); other ports go nowhere."""
    alive = [gateway, "hv1", "hv3"]             # the other candidates look dead to it
    fabric = Fabric({gateway: view(gateway, objs, alive=alive)})
    owner_of = owners(objs)
    ports = data.draw(st.lists(st.sampled_from(sorted(owner_of)), max_size=10))
    ports += data.draw(st.lists(st.integers(1, 65535), max_size=5))
    for port in ports:
        result = fabric.pipelines[gateway].run(inbound("203.0.113.10", mac("r1-gw"),
                                                       dport=port))
        owner = owner_of.get(port)
        if owner is None or owner == gateway:
            assert result.dropped, (port, owner, result.explain())   # no such connection
        else:
            assert result.ports == [TUNNEL[owner]], (port, owner, result.explain())
            assert result.outputs[0][1]["tunnel_id"] == 5000


@FAST
@given(layouts(), st.lists(st.tuples(st.sampled_from(["a-vm2", "b-vm1"]),
                                     st.integers(1024, 65535), st.sampled_from(["tcp", "udp"])),
                           min_size=1, max_size=12, unique=True))     # < one block: never full
def test_snat_connections_use_own_blocks_and_come_back(objs, connections):
    gateway = objs["routers"]["r1"]["plexus:gateway_chassis"][0]      # all alive
    fabric = Fabric({c: view(c, objs) for c in {"hv1", "hv2", gateway}})
    owner_of = owners(objs)
    used = set()
    for src, sport, proto in connections:
        chassis = {"a-vm2": "hv1", "b-vm1": "hv2"}[src]
        trip = fabric.send(chassis, routed(src, INTERNET, proto, sport=sport))
        if chassis not in owner_of.values():
            assert trip.hops == []                     # no block here yet: nothing leaves
            continue
        assert trip.ends == [(chassis, "patch")]
        out = trip.last
        port = out[f"{proto}_src"]
        assert owner_of[port] == chassis
        assert (proto, port) not in {(p, q) for p, _, q in used}
        used.add((proto, chassis, port))
        back = fabric.send(gateway, reply_to(out))
        assert back.ends == [(chassis, f"vif:{src}")], back.explain()
        assert (back.last["ipv4_dst"], back.last[f"{proto}_dst"]) == \
            (routed(src, INTERNET)["ipv4_src"], sport)


@FAST
@given(layouts(), st.sampled_from(CHASSIS), st.integers(1, 65535),
       st.sampled_from(["203.0.113.10", "203.0.113.101", "8.8.4.4", "10.1.0.11",
                        "198.51.100.10", "203.0.113.1"]),
       st.sampled_from(["tcp", "udp", "icmp"]))
def test_nothing_from_outside_goes_back_outside(objs, chassis, port, dst, proto):
    fabric = Fabric({chassis: view(chassis, objs)})
    for eth_dst in (mac("r1-gw"), mac("fip-a1-port"), mac("r2-gw")):
        result = fabric.pipelines[chassis].run(inbound(dst, eth_dst, proto, dport=port))
        assert PATCH not in [p for p, pkt in result.outputs
                             if pkt.get("arp_op") != 2 and pkt.get("icmpv4_type") != 0], \
            result.explain()
