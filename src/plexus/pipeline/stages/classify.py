"""classify: which logical network and port a packet comes from. A local VIF's in_port
gives its network and port key; a tunnel's in_port plus VNI gives a network shared
with that chassis. Anything else (a VIF bound to another chassis, an unknown VNI or
tunnel, a port that is administratively down) is dropped."""

from __future__ import annotations

from plexus.pipeline.flows import Flow, SetField
from plexus.pipeline.registry import FLAG_FROM_TUNNEL
from plexus.pipeline.stages.common import default_flow, local_networks, peers
from plexus.pipeline.view import View

STAGE = "classify"
PRIO = 100


def compile_classify(view: View) -> list[Flow]:
    """in_port of each local VIF, and (tunnel, VNI) of each shared network → registers."""
    flows = [default_flow(STAGE)]
    for port in view.local_ports():
        net = view.networks.get(port.network_id)
        if net is None:
            continue
        match = {"in_port": view.vif_ofports[port.id]}
        cookie = f"port:{port.id}"
        if not port.admin_up:
            flows.append(Flow.make(STAGE, PRIO, match, cookie=cookie, note="admin down"))
            continue
        flows.append(Flow.make(STAGE, PRIO, match,
                               [SetField("net", net.key), SetField("inport", port.key)],
                               goto="port_security", cookie=cookie))
    for net in local_networks(view):
        for chassis, ofport in peers(view, net.id).items():
            flows.append(Flow.make(
                STAGE, PRIO, {"in_port": ofport, "tunnel_id": net.key},
                [SetField("net", net.key), SetField("flags", FLAG_FROM_TUNNEL),
                 SetField("inport", 0)],
                goto="l2_lookup", cookie=f"chassis:{chassis}",
                note=f"network {net.id} from {chassis}; source checked by the sender"))
    return flows
