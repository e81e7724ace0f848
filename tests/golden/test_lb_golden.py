"""Golden flows of load balancing (stage lb, and l2_lookup's way into it) on the L3
reference topology (tests/golden/l3_reference.py) with one load balancer: VIP
10.2.0.100 on net-b (port lb-vip, unbound as Octavia's VIP ports are), listener TCP 80
(ROUND_ROBIN, b-vm1 and b-app on 8080) and UDP 53 (SOURCE_IP persistence, b-vm1 weight
2, b-app weight 1). hv2 holds the members (net-b's clients), hv1 reaches net-b through
r1 (net-a's clients), hv3 (net-c, r2) does not reach it. Compared exactly; rewritten
only with PLEXUS_REGEN_GOLDEN=1 (then review the diff)."""

from __future__ import annotations

import pytest

from plexus.model.lbaas import to_loadbalancer
from plexus.model.objects import to_port
from plexus.pipeline.compile import by_stage, compile_view
from plexus.pipeline.flows import dump
from tests.golden.l3_reference import objects, replace_view, view
from tests.golden.test_l3_golden import GOLDEN, matches

VIP_PORT = {"id": "lb-vip", "plexus:key": 60, "network_id": "net-b",
            "mac_address": "fa:16:3e:00:b1:64", "binding:host_id": "",
            "fixed_ips": [{"subnet_id": "sub-b", "ip_address": "10.2.0.100"}],
            "device_owner": "Octavia", "device_id": "lb-lb1", "port_security_enabled": True,
            "admin_state_up": True, "allowed_address_pairs": []}


def tree(**health) -> dict:
    """The stored tree of load balancer lb1 (as api.services.lbaas writes it)."""
    def member(ident, pool, address, port, weight=1):
        return {"id": ident, "pool_id": pool, "address": address, "protocol_port": port,
                "weight": weight, "admin_state_up": True, "backup": False}
    return {"id": "lb1", "admin_state_up": True, "vip_address": "10.2.0.100",
            "vip_network_id": "net-b", "vip_port_id": "lb-vip", "children": {
                "listeners": {
                    "li-tcp": {"id": "li-tcp", "protocol": "TCP", "protocol_port": 80,
                               "default_pool_id": "p-tcp", "admin_state_up": True},
                    "li-udp": {"id": "li-udp", "protocol": "UDP", "protocol_port": 53,
                               "default_pool_id": "p-udp", "admin_state_up": True}},
                "pools": {
                    "p-tcp": {"id": "p-tcp", "protocol": "TCP", "lb_algorithm": "ROUND_ROBIN",
                              "admin_state_up": True, "session_persistence": None},
                    "p-udp": {"id": "p-udp", "protocol": "UDP", "lb_algorithm": "ROUND_ROBIN",
                              "admin_state_up": True,
                              "session_persistence": {"type": "SOURCE_IP"}}},
                "members": {
                    "m-tcp-1": member("m-tcp-1", "p-tcp", "10.2.0.11", 8080),
                    "m-tcp-2": member("m-tcp-2", "p-tcp", "10.2.0.50", 8080),
                    "m-udp-1": member("m-udp-1", "p-udp", "10.2.0.11", 53, 2),
                    "m-udp-2": member("m-udp-2", "p-udp", "10.2.0.50", 53)},
                "healthmonitors": {
                    "hm-tcp": {"id": "hm-tcp", "pool_id": "p-tcp", "type": "TCP",
                               "admin_state_up": True}}}}


def lb_view(chassis: str, health: dict | None = None):
    objs = objects()
    objs["ports"] = {**objs["ports"], "lb-vip": VIP_PORT}
    v = view(chassis, objs)
    lb = to_loadbalancer(tree(), health or {})
    ports = dict(v.ports)
    if "net-b" in v.networks:
        ports["lb-vip"] = to_port(VIP_PORT)
    return replace_view(v, ports=ports, lbs={lb.id: lb})


def text(chassis: str, health: dict | None = None) -> str:
    stages = by_stage(compile_view(lb_view(chassis, health)))
    return "".join(f"# {name}\n" + dump(stages[name]) for name in ("l2_lookup", "lb", "lb_nat", "lb_probe"))


@pytest.mark.parametrize("chassis", ["hv1", "hv2", "hv3"])
def test_lb_stages_match_golden(chassis):
    matches(text(chassis), GOLDEN.parent / "lb" / f"{chassis}.flows")


def test_member_down_leaves_the_selection():
    """b-app reported down by its monitor: every TCP slot goes to b-vm1; the UDP pool
    (no monitor) keeps both."""
    flows = compile_view(lb_view("hv2", {"m-tcp-2": "ERROR", "m-udp-2": "ERROR"}))
    nat = [str(f) for f in flows if f.stage == "lb_nat" and "commit" in str(f)]
    assert not [f for f in nat if "10.2.0.50:8080" in f]
    assert [f for f in nat if "10.2.0.11:8080" in f]
    assert [f for f in nat if "10.2.0.50:53" in f]


def test_relevance_sends_the_tree_to_chassis_reaching_the_vip():
    """The server's per-chassis selection (and the agent's own filter): the load
    balancer reaches hv2 (ports on net-b) and hv1 (r1 connects net-a to net-b), not hv3;
    the agent's view then holds it."""
    from plexus.agent.view import with_lbs
    from plexus.model import keys, relevance
    from plexus.model.catalog import Catalog
    objs = objects()
    objs["ports"] = {**objs["ports"], "lb-vip": VIP_PORT}
    objs[keys.LOADBALANCERS] = {"lb1": tree()}
    catalog, problems = Catalog.from_wire(objs)
    assert not problems
    got = {c: set(relevance.select(catalog, relevance.subscriptions(catalog, c))
                  [keys.LOADBALANCERS]) for c in ("hv1", "hv2", "hv3")}
    assert got == {"hv1": {"lb1"}, "hv2": {"lb1"}, "hv3": set()}
    assert set(with_lbs(view("hv1", objs), catalog).lbs) == {"lb1"}
    assert not with_lbs(view("hv3", objs), catalog).lbs


def test_evaluator_balances_and_unnats_on_the_clients_chassis():
    """The trace evaluator over hv1's flows: a-vm1 (net-a) to VIP:80 is routed by r1 to
    net-b and DNATed on hv1 to a member (tunnel toward hv2, the member's MAC); source
    ports spread over both members; the member's reply, back through the tunnel, reaches
    a-vm1 from VIP:80."""
    from collections import Counter
    from plexus.tools.evaluator import Pipeline
    from tests.golden.l3_reference import TUNNEL, mac
    pipe = Pipeline(compile_view(lb_view("hv1")))
    members = {"10.2.0.11": mac("b-vm1"), "10.2.0.50": mac("b-app")}
    seen: Counter = Counter()
    for sport in range(40000, 40128, 2):      # even, as Linux picks them
        res = pipe.run({"in_port": 1, "eth_src": mac("a-vm1"), "eth_dst": mac("r1-a"),
                        "eth_type": 0x0800, "ipv4_src": "10.1.0.11",
                        "ipv4_dst": "10.2.0.100", "ip_proto": 6, "tcp_src": sport,
                        "tcp_dst": 80, "nw_ttl": 64})
        (port, out), = res.outputs
        assert port == TUNNEL["hv2"] and out["tcp_dst"] == 8080, res.explain()
        assert members[out["ipv4_dst"]] == out["eth_dst"]
        seen[out["ipv4_dst"]] += 1
    assert seen == {"10.2.0.11": 32, "10.2.0.50": 32}
    back = pipe.run({"in_port": TUNNEL["hv2"], "tunnel_id": 101, "eth_src": mac("r1-a"),
                     "eth_dst": mac("a-vm1"), "eth_type": 0x0800, "ipv4_src": out["ipv4_dst"],
                     "ipv4_dst": "10.1.0.11", "ip_proto": 6, "tcp_src": 8080,
                     "tcp_dst": 40126})
    (port, got), = back.outputs
    assert port == 1 and (got["ipv4_src"], got["tcp_src"]) == ("10.2.0.100", 80), \
        back.explain()


def test_evaluator_traps_probe_replies_on_the_members_chassis():
    """Stage lb_probe on hv2 (hosting both TCP members): b-vm1's SYN-ACK from 8080 to the
    VIP and a probe port goes to the agent before port security; its traffic to the VIP's
    listener, and a reply to a port outside the probe range, do not; hv1 (no member)
    traps nothing."""
    from plexus.pipeline.stages.lb_probe import PROBE_PORT_MIN, USERDATA
    from plexus.tools.evaluator import Pipeline
    from tests.golden.l3_reference import mac
    pipe = Pipeline(compile_view(lb_view("hv2")))

    def from_b_vm1(sport, dport, proto=6):
        ports = ("tcp_src", "tcp_dst") if proto == 6 else ("udp_src", "udp_dst")
        return pipe.run({"in_port": 1, "eth_src": mac("b-vm1"), "eth_dst": VIP_PORT[
            "mac_address"], "eth_type": 0x0800, "ipv4_src": "10.2.0.11",
            "ipv4_dst": "10.2.0.100", "ip_proto": proto, ports[0]: sport, ports[1]: dport,
            "nw_ttl": 64})
    for probe_port in (PROBE_PORT_MIN, PROBE_PORT_MIN + 15):
        res = from_b_vm1(8080, probe_port)
        assert [u for u, _ in res.controller] == [USERDATA] and not res.outputs, \
            res.explain()
    assert not from_b_vm1(8080, PROBE_PORT_MIN - 1).controller
    assert not from_b_vm1(40000, 80).controller
    assert not from_b_vm1(53, PROBE_PORT_MIN, proto=17).controller   # UDP pool: no monitor
    assert [f for f in compile_view(lb_view("hv1")) if f.stage == "lb_probe"
            and f.priority > 0] == []


def test_probe_targets_are_the_members_hosted_here():
    """agent.lbhealth.targets: hv2 probes its two TCP members from the VIP (its port's
    MAC) to their VIFs; hv1 and hv3 probe nothing; a disabled monitor probes nothing."""
    from plexus.agent.lbhealth import targets
    from tests.golden.l3_reference import mac
    got = targets(lb_view("hv2"))
    assert sorted(got) == ["m-tcp-1", "m-tcp-2"]
    t = got["m-tcp-1"]
    assert (t.type, t.vip, t.vip_mac, t.address, t.port, t.mac, t.ofport) == (
        "TCP", "10.2.0.100", VIP_PORT["mac_address"], "10.2.0.11", 8080, mac("b-vm1"), 1)
    assert not targets(lb_view("hv1")) and not targets(lb_view("hv3"))
    disabled = tree()
    disabled["children"]["healthmonitors"]["hm-tcp"]["admin_state_up"] = False
    assert to_loadbalancer(disabled).monitors == ()
