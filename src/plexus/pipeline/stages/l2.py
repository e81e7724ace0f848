"""l2_lookup: destination MAC → logical out-port, for every port of each local network
(local or remote: every MAC is known in advance), and of each network a local router
routes to (``router.routed_networks``: unicast only, a routed packet is never a flood);
broadcast and multicast flood. Unknown unicast is dropped."""

from __future__ import annotations

from plexus.pipeline.flows import Flow, SetField
from plexus.pipeline.registry import OUTPORT_FLOOD
from plexus.pipeline.stages.common import GROUP_MACS, default_flow, local_networks
from plexus.pipeline.stages.router import routed_networks
from plexus.pipeline.view import View

STAGE = "l2_lookup"
NEXT = "ingress_ct"
PRIO_PORT = 50
PRIO_FLOOD = 40


def compile_l2_lookup(view: View) -> list[Flow]:
    """A flow per port MAC of each local or routed-to network, plus one flood flow per
    local network."""
    flows = [default_flow(STAGE)]
    for net in local_networks(view):
        flows.append(Flow.make(STAGE, PRIO_FLOOD, {"net": net.key, "eth_dst": GROUP_MACS},
                               [SetField("outport", OUTPORT_FLOOD)], goto=NEXT,
                               cookie=f"network:{net.id}"))
    for net in local_networks(view) + routed_networks(view):
        known: set[str] = set()
        for port in view.ports_on(net.id):
            if port.mac in known:       # a stale duplicate: the first port (by id) wins
                continue
            known.add(port.mac)
            flows.append(Flow.make(STAGE, PRIO_PORT, {"net": net.key, "eth_dst": port.mac},
                                   [SetField("outport", port.key)], goto=NEXT,
                                   cookie=f"port:{port.id}"))
    return flows
