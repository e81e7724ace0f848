"""classify: which logical network and port a packet comes from. A local VIF's in_port
gives its network and port key; a tunnel's in_port plus VNI gives a network shared
with that chassis (or, for a network behind a router, one that chassis routes into).
The patch port toward an external bridge gives an external network (untagged frames
for a flat network; the VLAN's frames, untagged here, for a VLAN network), and so does
the external network's key from a tunnel of a chassis that shares a router with this
one; both go on to l3_input. A local flat or VLAN network bridged here to its physical
network (``router.patch_of``: a patch toward it) is classified from that patch the same
way (its VLAN popped), also on to l3_input, which hands what is not for a router to
l2_lookup: frames from the other chassis and the physical hosts of that network reach
the local ports there (through their ingress security groups, with in-port 0 as from a
tunnel). Anything else (a VIF bound to another chassis, an
unknown VNI, tunnel or VLAN, a port that is administratively down) is dropped.

A trunk's subport rides its parent's VIF in its VLAN: that in_port and tag give the
subport (tag popped); the parent then takes only untagged frames."""

from __future__ import annotations

import functools

from plexus.pipeline.flows import VLAN_PRESENT, Flow, PopVlan, SetField
from plexus.pipeline.registry import FLAG_FROM_EXTERNAL, FLAG_FROM_TUNNEL
from plexus.pipeline.stages.common import default_flow, local_networks
from plexus.pipeline.stages.router import (
    external_networks, gateway, is_candidate, patch_of, programmed,
    router_networks, router_peers, tunnel_sources, vlan_match,
)
from plexus.pipeline.view import View

STAGE = "classify"
PRIO = 100


def compile_classify(view: View) -> list[Flow]:
    """in_port of each local VIF, (tunnel, VNI) of each shared network, and the ways in
    from external networks → registers."""
    return compile_classify_chassis(view) + compile_classify_network(view)


def compile_classify_network(view: View) -> list[Flow]:
    """Each local VIF → its network and port (per network); on a network bridged to its
    physical network, untagged frames only (as an access port)."""
    flows = []
    for port in view.local_ports():
        net = view.networks.get(port.network_id)
        if net is None:
            continue
        match = {"in_port": view.vif_ofports[port.id]}
        pop = []
        if port.parent:                 # a trunk's subport: its VLAN on the parent's VIF
            match["vlan_vid"] = VLAN_PRESENT | port.vlan
            pop = [PopVlan()]
        elif port.trunk or patch_of(view, net) is not None:
            match["vlan_vid"] = 0       # a trunk's parent: its untagged frames (a tag no
                                        # subport has is dropped); bridged: a VM's own
                                        # 802.1Q tag would reach another VLAN of the
                                        # physical network
        cookie = f"port:{port.id}"
        if not port.admin_up:
            flows.append(Flow.make(STAGE, PRIO, match, cookie=cookie, note="admin down"))
            continue
        flows.append(Flow.make(STAGE, PRIO, match,
                               pop + [SetField("net", net.key), SetField("inport", port.key)],
                               goto="egress_qos", cookie=cookie))
    return flows


def compile_classify_chassis(view: View) -> list[Flow]:
    """The default drop, tunnels (by VNI) and external networks."""
    flows = [default_flow(STAGE)]
    taken = set()
    bridged = []
    for net in local_networks(view):
        patch = patch_of(view, net)
        if patch is not None:
            bridged.append((net, patch))
        for chassis, ofport in (tunnel_sources(view, net) if patch is None
                                else routing_sources(view, net)).items():
            taken.add((ofport, net.key))
            flows.append(tunnel_flow(ofport, net.key, chassis, net.id))
    if view.metadata_ofport:
        flows.append(Flow.make(STAGE, PRIO, {"in_port": view.metadata_ofport},
                               goto="metadata", cookie="pipeline:metadata",
                               note="the metadata namespace's replies"))
    return flows + external_flows(view, taken, bridged)


def routing_sources(view: View, net) -> dict[str, int]:
    """Chassis whose tunnel may bring packets of a network bridged here: only those that
    route into it through a programmed router (they may host no port on it); the
    chassis sharing it send over the physical network. So the external network's key
    from a router peer stays free for ``external_flows``."""
    out: dict[str, int] = {}
    for router, _ in programmed(view):
        if net.id in router_networks(view, router):
            out.update(router_peers(view, router))
    return dict(sorted(out.items()))


@functools.lru_cache(maxsize=1 << 16)
def tunnel_flow(ofport: int, key: int, chassis: str, network_id: str) -> Flow:
    """A network's packets from a chassis' tunnel (one flow object per distinct value)."""
    return Flow.make(
        STAGE, PRIO, {"in_port": ofport, "tunnel_id": key},
        [SetField("net", key), SetField("flags", FLAG_FROM_TUNNEL), SetField("inport", 0)],
        goto="l2_lookup", cookie=f"chassis:{chassis}",
        note=f"network {network_id} from {chassis}; source checked by the sender")


def external_sources(view: View, router) -> dict[str, int]:
    """Chassis that send a router's external network through a tunnel to this one: to a
    gateway chassis, every router peer (SNAT requests); to the others, the gateway
    chassis (any may forward a port block's return traffic)."""
    peers = router_peers(view, router)
    if is_candidate(view, router):
        return peers
    gateways = set(router.gateway_chassis) | {view.active_gateway.get(router.id)}
    return {c: o for c, o in peers.items() if c in gateways}


def external_flows(view: View, taken: set, bridged: list = ()) -> list[Flow]:
    """The patch port of each external network and bridged local network (one network
    per patch and VLAN: the first by id), and the external key from router peers."""
    flows = []
    outside = [SetField("flags", FLAG_FROM_EXTERNAL), SetField("inport", 0)]
    ways: dict[tuple[int, int], object] = {}
    for net, patch in sorted([*external_networks(view), *bridged], key=lambda n: n[0].id):
        ways.setdefault((patch, vlan_match(net)), net)
    external = {net.id for net, _ in external_networks(view)}
    for (patch, tag), net in sorted(ways.items(), key=lambda w: w[1].id):
        what = "external network" if net.id in external else "bridged network"
        flows.append(Flow.make(STAGE, PRIO, {"in_port": patch, "vlan_vid": tag},
                               ([PopVlan()] if tag else []) + [SetField("net", net.key)]
                               + outside, goto="l3_input", cookie=f"network:{net.id}",
                               note=f"{what} {net.id} from its bridge"))
    sources: dict[tuple[int, int], tuple[str, str]] = {}
    for router, _ in programmed(view):
        gw = gateway(view, router)
        if gw is None:
            continue
        for chassis, ofport in external_sources(view, router).items():
            if (ofport, gw.network.key) not in taken:
                sources[(ofport, gw.network.key)] = (chassis, gw.network.id)
    for (ofport, key), (chassis, nid) in sorted(sources.items()):
        flows.append(Flow.make(
            STAGE, PRIO, {"in_port": ofport, "tunnel_id": key},
            [SetField("net", key),
             SetField("flags", FLAG_FROM_EXTERNAL | FLAG_FROM_TUNNEL), SetField("inport", 0)],
            goto="l3_input", cookie=f"chassis:{chassis}",
            note=f"external network {nid} from {chassis}"))
    return flows
