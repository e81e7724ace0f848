"""l2_lookup: destination MAC → logical out-port, for every port of each local network
(local or remote: every MAC is known in advance), and of each network a local router
routes to (``router.routed_networks``: unicast only, a routed packet is never a flood);
broadcast and multicast flood. Unknown unicast is dropped, except on a flat or VLAN
network bridged here to its physical network (``router.patch_of``), where it goes to
the physical network (out-port ``OUTPORT_EXTERNAL``): the upstream routers and hosts
there are not in the model."""

from __future__ import annotations

import functools

from plexus.pipeline.flows import Flow, SetField
from plexus.pipeline.registry import OUTPORT_EXTERNAL, OUTPORT_FLOOD
from plexus.pipeline.stages import lb
from plexus.pipeline.stages.common import GROUP_MACS, default_flow, local_networks
from plexus.pipeline.stages.router import patch_of, routed_networks
from plexus.pipeline.view import View

STAGE = "l2_lookup"
NEXT = "ingress_ct"
PRIO_PORT = 50
PRIO_FLOOD = 40
PRIO_PHYSICAL = 1       # unknown unicast on a bridged network


def compile_l2_lookup(view: View) -> list[Flow]:
    """Destination MAC → out-port on local and routed networks; group MACs flood on a
    local network."""
    return compile_l2_lookup_chassis(view) + compile_l2_lookup_network(view)


def compile_l2_lookup_network(view: View) -> list[Flow]:
    """The flows of the local networks: flood, and each port's MAC (per network)."""
    flows = []
    for net in local_networks(view):
        flows.append(Flow.make(STAGE, PRIO_FLOOD, {"net": net.key, "eth_dst": GROUP_MACS},
                               [SetField("outport", OUTPORT_FLOOD)], goto=NEXT,
                               cookie=f"network:{net.id}"))
        if patch_of(view, net) is not None:
            flows.append(Flow.make(STAGE, PRIO_PHYSICAL, {"net": net.key},
                                   [SetField("outport", OUTPORT_EXTERNAL)], goto=NEXT,
                                   cookie=f"network:{net.id}",
                                   note="unknown: on the physical network"))
        flows += mac_flows(view, net)
    return flows


def compile_l2_lookup_chassis(view: View) -> list[Flow]:
    """The default drop and the MACs of the networks local routers route to."""
    flows = [default_flow(STAGE)]
    for net in routed_networks(view):
        flows += mac_flows(view, net)
    return flows


def mac_flows(view: View, net) -> list[Flow]:
    """Each port's MAC on a network (a stale duplicate: the first port, by id, wins); a
    reachable load balancer's VIP port, and the ports bound here on its client
    networks, go on to lb."""
    flows, known = [], set()
    balanced = lb.vip_ports(view) if view.lbs else set()
    clients = lb.client_networks(view) if view.lbs else set()
    for port in view.ports_on(net.id):
        if port.mac in known:
            continue
        known.add(port.mac)
        via = port.id in balanced or (net.id in clients and port.chassis == view.chassis)
        flows.append(mac_flow(net.key, port.mac, port.key, port.id, lb.STAGE if via else NEXT))
    return flows


@functools.lru_cache(maxsize=1 << 16)
def mac_flow(net_key: int, mac: str, port_key: int, port_id: str, goto: str = NEXT) -> Flow:
    """A port's MAC on a network → its out-port (one flow object per distinct value)."""
    return Flow.make(STAGE, PRIO_PORT, {"net": net_key, "eth_dst": mac},
                     [SetField("outport", port_key)], goto=goto, cookie=f"port:{port_id}")
