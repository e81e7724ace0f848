"""Properties of stage lb_probe and the health check targets (plexus.agent.lbhealth) over
random load balancers on the load balancer reference (tests/golden/test_lb_golden.py):
on every chassis, exactly the members whose probed address is a local port's are
probed, each trap flow names that port and address, the flow count is bounded by the
members probed here (not by the load balancer's size), and the incremental compiler
agrees with the whole compile."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from plexus.agent.lbhealth import targets
from plexus.model.lbaas import to_loadbalancer
from plexus.pipeline.compile import compile_view
from plexus.pipeline.incremental import IncrementalCompiler
from tests.golden import test_lb_golden as lbref
from tests.golden.l3_reference import replace_view

FAST = settings(max_examples=60, deadline=None)
# b-vm1 and b-app are on hv2; 10.2.0.77 is no port; 10.1.0.11 (a-vm1) is on another
# network than the VIP's
ADDRESSES = ["10.2.0.11", "10.2.0.50", "10.2.0.77", "10.1.0.11"]
LOCAL = {"hv2": {"10.2.0.11": "b-vm1", "10.2.0.50": "b-app"}}


@st.composite
def trees(draw):
    tree = lbref.tree()
    ch = tree["children"]
    members = {}
    for i in range(draw(st.integers(0, 8))):
        pool = draw(st.sampled_from(["p-tcp", "p-udp"]))
        members[f"m{i}"] = {
            "id": f"m{i}", "pool_id": pool, "address": draw(st.sampled_from(ADDRESSES)),
            "protocol_port": draw(st.integers(1, 3)) * 1000,
            "weight": draw(st.integers(0, 3)), "admin_state_up": draw(st.booleans()),
            "backup": False, "monitor_address": draw(st.sampled_from([None] + ADDRESSES))}
    ch["members"] = members
    ch["healthmonitors"] = {}
    for pool, kinds in (("p-tcp", ["TCP"]), ("p-udp", ["UDP-CONNECT", "TCP"])):
        if draw(st.booleans()):
            ch["healthmonitors"][f"hm-{pool}"] = {
                "id": f"hm-{pool}", "pool_id": pool, "type": draw(st.sampled_from(kinds)),
                "admin_state_up": draw(st.booleans()), "delay": 2, "timeout": 1,
                "max_retries": 1, "max_retries_down": 1}
    return tree


def view_of(chassis: str, tree: dict):
    lb = to_loadbalancer(tree)
    return replace_view(lbref.lb_view(chassis), lbs={lb.id: lb})


def expected(chassis: str, tree: dict) -> dict[str, str]:
    """Member id → the local port it is probed at, from the tree itself."""
    ch = tree["children"]
    monitored = {hm["pool_id"] for hm in ch["healthmonitors"].values()
                 if hm["admin_state_up"]}
    out = {}
    for m in ch["members"].values():
        where = LOCAL.get(chassis, {}).get(m["monitor_address"] or m["address"])
        if m["admin_state_up"] and m["pool_id"] in monitored and where:
            out[m["id"]] = where
    return out


@FAST
@given(trees(), st.sampled_from(["hv1", "hv2", "hv3"]))
def test_exactly_the_members_hosted_here_are_probed_and_trapped(tree, chassis):
    view = view_of(chassis, tree)
    want = expected(chassis, tree)
    got = targets(view)
    by_mac = {p.mac: p.id for p in view.ports.values()}
    assert {m: by_mac[t.mac] for m, t in got.items()} == want
    traps = [f for f in compile_view(view) if f.stage == "lb_probe" and f.priority > 0]
    keys = {p.key: p for p in view.ports.values() if p.network_id == "net-b"}
    for flow in traps:
        match = dict(flow.match)
        port = keys[match["inport"]]
        assert port.chassis == chassis and match["ipv4_src"] in port.addresses()
        assert match["ipv4_dst"] == "10.2.0.100"
    # per probed member at most 2 flows (TCP: 1; UDP-CONNECT: datagram and ICMP)
    assert len(traps) <= 2 * len(want)
    assert bool(traps) == bool(want)


@FAST
@given(st.lists(trees(), min_size=2, max_size=4))
def test_incremental_compile_agrees_as_monitors_change(sequence):
    compiler = IncrementalCompiler()
    for tree in sequence:
        view = view_of("hv2", tree)
        compiler.compile(view)
        assert sorted(map(str, compiler.flows())) == sorted(map(str, compile_view(view)))
