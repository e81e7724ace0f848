"""Properties of the compiler: its output does not depend on the order of its input,
every flow keeps the registry's promises and lowers to an OpenFlow message, and the
number of flows grows linearly with the local ports and their peers (never with the
rest of the cloud, never as a cross product)."""

from __future__ import annotations

import random
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st
from os_ken.ofproto import ofproto_v1_3 as ofp

from plexus.lower.openflow import flow_mod
from plexus.pipeline.compile import by_stage, compile_view
from plexus.pipeline.registry import check_flow, stage
from plexus.pipeline.stages.common import (
    bound_ports, ipv4_addresses, ipv6_addresses, local_networks, sources, sources6,
)
from plexus.pipeline.stages.l3_neighbor import shared_vips
from plexus.pipeline.view import ChassisView, NetworkView, PortView, SubnetView, View
from tests.golden.reference import reference_view

FAST = settings(max_examples=100, deadline=None)
CHASSIS = ["hv1", "hv2", "hv3", "hv4"]
PAIRS = [("10.0.0.200", ""), ("10.0.0.64/26", "fa:16:3e:ff:00:01"), ("fd00::5", ""),
         ("10.0.0.201/32", "fa:16:3e:ff:00:02")]


@st.composite
def views(draw, here_weight: int = 4):
    """A random topology seen from hv1: a few networks (same CIDR each), ports on any
    chassis or none, some plugged here (also the wrong ones), some tunnels."""
    networks, subnets, ports, vifs = [], [], [], {}
    where = st.sampled_from(["hv1"] * here_weight + CHASSIS[1:] + [""])
    for n in range(draw(st.integers(1, 4))):
        nid = f"net-{n}"
        networks.append(NetworkView(nid, 100 + n, "vxlan", 1450))
        subnets.append(SubnetView(f"sub-{n}", nid, "10.0.0.0/24", 4, "10.0.0.1",
                                  draw(st.booleans())))
        subnets.append(SubnetView(f"sub-{n}-v6", nid, "fd00::/64", 6, None, True))
        for k in range(draw(st.integers(0, 6))):
            ips = [(f"sub-{n}", f"10.0.0.{10 + k}")]
            if draw(st.booleans()):
                ips.append((f"sub-{n}-v6", f"fd00::{10 + k:x}"))
            secure = draw(st.booleans())
            port = PortView(
                f"p{n}-{k}", k + 1, nid, f"fa:16:3e:00:{n:02x}:{k:02x}", tuple(ips),
                draw(where), device_owner=draw(st.sampled_from(["compute:nova", "",
                                                                "network:router_interface"])),
                port_security=secure, admin_up=draw(st.booleans() | st.just(True)),
                allowed_pairs=tuple(draw(st.lists(st.sampled_from(PAIRS), unique=True,
                                                  max_size=2))) if secure else ())
            ports.append(port)
            if port.chassis and draw(st.booleans() | st.just(True)):
                vifs[port.id] = len(vifs) + 1
    tunnels = {c: 100 + i for i, c in enumerate(CHASSIS[1:]) if draw(st.booleans() | st.just(True))}
    return View("hv1", "192.168.50.1", {n.id: n for n in networks},
                {s.id: s for s in subnets}, {p.id: p for p in ports},
                {c: ChassisView(c, f"192.168.50.{i + 1}") for i, c in enumerate(CHASSIS)},
                vifs, tunnels)


def shuffled(view: View, rnd: random.Random) -> View:
    """The same view with every mapping (and each port's address lists) reordered."""
    def mix(items):
        items = list(items)
        rnd.shuffle(items)
        return items

    ports = {p.id: replace(p, ips=tuple(mix(p.ips)), allowed_pairs=tuple(mix(p.allowed_pairs)))
             for p in view.ports.values()}
    return replace(view, networks=dict(mix(view.networks.items())),
                   subnets=dict(mix(view.subnets.items())), ports=dict(mix(ports.items())),
                   chassis_by_name=dict(mix(view.chassis_by_name.items())),
                   vif_ofports=dict(mix(view.vif_ofports.items())),
                   tunnel_ofports=dict(mix(view.tunnel_ofports.items())))


@FAST
@given(views(), st.randoms(use_true_random=False))
def test_output_does_not_depend_on_input_order(view, rnd):
    flows = compile_view(view)
    again = compile_view(shuffled(view, rnd))
    assert again == flows
    assert [str(f) for f in again] == [str(f) for f in flows]


@FAST
@given(views())
def test_every_flow_keeps_the_registry_promises_and_lowers(view):
    for flow in compile_view(view):
        check_flow(flow, owner=stage(flow.stage).owner)
        flow_mod(flow).serialize()
        flow_mod(flow, ofp.OFPFC_DELETE_STRICT).serialize()


def test_reference_flows_lower():
    for flow in compile_view(reference_view()):
        msg = flow_mod(flow)
        msg.serialize()
        assert len(msg.buf) > 0


def bounds(view: View) -> dict[str, int]:
    """Per stage, a linear bound in the ports bound here (and their addresses; plugged
    or not: their flows are in from the binding) and their peers (the ports of networks
    with a port bound here, and their addresses)."""
    plugged = len(view.local_ports())
    local = bound_ports(view)
    nets = local_networks(view)
    peers = [p for n in nets for p in view.ports_on(n.id)]
    local_src = sum(len(sources(p)) for p in local)
    shared = {n.id: shared_vips(view.ports_on(n.id)) for n in nets}
    vip_copies = sum(1 for p in local for _, a in sources(p) if a in shared[p.network_id])
    peer_ips = sum(len(ipv4_addresses(p)) for p in peers)
    # the DHCP server address of a subnet no port holds it for: one per local subnet
    local_subnets = sum(1 for s in view.subnets.values() if s.network_id in {n.id for n in nets})
    metadata = 1 if view.metadata_ofport else 0
    # IPv6: per local port 3 ND drops, per MAC it may send from DAD and 2 MLD reports,
    # per (MAC, IPv6 source) the source, 2 solicitations and 2 advertisements
    ipv6_src = [sources6(p) for p in local]
    ipv6 = sum(3 + 3 * len({m for m, _ in s}) + 5 * len(s) for s in ipv6_src)
    return {"classify": 1 + plugged + len(peers) + metadata,
            "port_security": 1 + 2 * len(local) + 2 * local_src + vip_copies + ipv6,
            # an answer per IPv6 address and link-local address, the DAD pass, the default
            "nd_responder": 2 + sum(1 + len(ipv6_addresses(p)) for p in peers),
            "nd_reply": 2,                 # its default and its one flow
            "arp_responder": 1 + 2 * peer_ips + local_subnets,
            "dhcp": 1 + len(local),
            # two per local port (request, reply) and the drop, where metadata is served
            "metadata": 1 + metadata * (1 + 2 * len(local)),
            "l2_lookup": 1 + len(nets) + len(peers),
            "output": 1 + 2 * len(nets) + len(peers),
            # these views carry no security groups: the ACL stages hold their default
            # flow only (their own bounds are in tests/property/test_acl_properties.py)
            "egress_ct": 1, "egress_acl": 1, "ingress_ct": 1, "ingress_acl": 1,
            # nor routers: the L3 stages hold their default flow only (their own bounds
            # are in tests/property/test_l3_properties.py)
            "l3_input": 1, "l3_route": 1, "l3_neighbor": 1, "l3_snat": 1, "snat_guard": 1,
            # nor load balancers: their default flow only (their flows per listener,
            # member and client network are in tests/golden/test_lb_golden.py)
            "lb": 1, "lb_nat": 1, "lb_probe": 1,
            # the default, and per port with a policy its DSCP flows (IPv4, IPv6) and
            # its metered flow
            "egress_qos": 1 + 3 * len(local)}


@FAST
@given(views())
def test_flows_are_bounded_linearly_in_local_ports_and_peers(view):
    limit = bounds(view)
    for name, flows in by_stage(compile_view(view)).items():
        assert len(flows) <= limit[name], (name, len(flows), limit[name])


@FAST
@given(views(), st.integers(1, 8), st.integers(0, 3))
def test_the_rest_of_the_cloud_adds_nothing(view, n_ports, n_networks):
    """Networks without a local port (however many ports they have elsewhere) add no flow."""
    extra_nets = {f"far-{i}": NetworkView(f"far-{i}", 1000 + i, "vxlan", 1450)
                  for i in range(n_networks)}
    extra_ports = {f"far-{i}-{k}": PortView(f"far-{i}-{k}", k + 1, f"far-{i}",
                                            f"fa:16:3e:f0:{i:02x}:{k:02x}",
                                            (("x", f"10.0.0.{k + 10}"),), CHASSIS[1 + k % 3])
                   for i in range(n_networks) for k in range(n_ports)}
    bigger = replace(view, networks={**view.networks, **extra_nets},
                     ports={**view.ports, **extra_ports})
    assert compile_view(bigger) == compile_view(view)


def grid(k: int) -> View:
    """k local ports, 4 per network, each network also on 2 of 3 remote chassis."""
    networks, ports = {}, {}
    for i in range(k):
        n = i // 4
        nid = f"net-{n}"
        networks[nid] = NetworkView(nid, 100 + n, "vxlan", 1450)
        for j, chassis in enumerate(("hv1", CHASSIS[1 + n % 3], CHASSIS[1 + (n + 1) % 3])):
            pid = f"p{i}-{j}"
            ports[pid] = PortView(pid, 3 * (i % 4) + j + 1, nid,
                                  f"fa:16:3e:{n:02x}:{i % 4:02x}:{j:02x}",
                                  (("s", f"10.0.{n}.{3 * (i % 4) + j + 10}"),), chassis)
    vifs = {f"p{i}-0": i + 1 for i in range(k)}
    return View("hv1", "192.168.50.1", networks, {}, ports,
                {c: ChassisView(c, "192.168.50.9") for c in CHASSIS}, vifs,
                {c: 100 + i for i, c in enumerate(CHASSIS[1:])})


def test_flow_count_grows_linearly_with_local_ports():
    counts = [len(compile_view(grid(k))) for k in range(4, 129, 4)]
    steps = {b - a for a, b in zip(counts, counts[1:])}
    assert len(steps) == 1, counts          # the same cost for every 4 more local ports
    # each step adds a network with 4 local ports and 8 remote peers on 2 chassis: at
    # most 10 flows a local port, 3 a peer, 1 a tunnel (classify), 3 for the floods; and
    # for IPv6 (the link-local address of each port) 11 port security flows a local port
    # and a neighbour discovery answer per port
    assert steps.pop() <= (10 + 11) * 4 + (3 + 1) * 8 + 2 + 3 + 4
