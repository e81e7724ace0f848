"""output: a local out-port leaves by its VIF; a remote one by the tunnel to its
chassis with the network's VNI (never from a packet that came by tunnel: no transit).
A flood reaches every local port of the network (OVS skips the in_port) and, unless
it came by tunnel, each chassis that shares the network. A network a local router routes
to (no local port) has its remote ports only. The external out-port of an external
network leaves by the patch port toward its bridge (tagged for a VLAN network).
Everything else is dropped."""

from __future__ import annotations

from plexus.pipeline.flows import Flow, Output, SetField
from plexus.pipeline.registry import FLAG_FROM_TUNNEL, OUTPORT_EXTERNAL, OUTPORT_FLOOD
from plexus.pipeline.stages.common import default_flow, local_networks, local_ports, peers
from plexus.pipeline.stages.router import external_networks, routed_networks, vlan_push
from plexus.pipeline.view import NetworkView, View

STAGE = "output"
PRIO = 50
FROM_VIF = (0, FLAG_FROM_TUNNEL)
FROM_TUNNEL = (FLAG_FROM_TUNNEL, FLAG_FROM_TUNNEL)


def compile_output(view: View) -> list[Flow]:
    """Per local network: its local and remote ports, and its two flood flows; the
    remote ports of routed networks; the external out-ports."""
    return compile_output_chassis(view) + compile_output_network(view)


def compile_output_network(view: View) -> list[Flow]:
    """The output flows of the local networks (per network)."""
    return [f for net in local_networks(view) for f in network_flows(view, net)]


def compile_output_chassis(view: View) -> list[Flow]:
    """The default drop, routed networks' remote ports, external out-ports."""
    flows = [default_flow(STAGE)]
    for net in routed_networks(view):
        flows += remote_flows(view, net)
    for net, patch in external_networks(view):
        flows.append(Flow.make(STAGE, PRIO, {"net": net.key, "outport": OUTPORT_EXTERNAL},
                               vlan_push(net) + [Output(patch)], cookie=f"network:{net.id}",
                               note="to the external bridge"))
    return flows


def network_flows(view: View, net: NetworkView) -> list[Flow]:
    """The output flows of one local network."""
    tunnels = peers(view, net.id)
    vifs = []
    flows = []
    for port in (p for p in local_ports(view) if p.network_id == net.id):
        vif = Output(view.vif_ofports[port.id])
        vifs.append(vif)
        flows.append(Flow.make(STAGE, PRIO, {"net": net.key, "outport": port.key}, [vif],
                               cookie=f"port:{port.id}"))
    flows += remote_flows(view, net)
    to_peers = [SetField("tunnel_id", net.key)] + [Output(o) for o in tunnels.values()]
    flood = {"net": net.key, "outport": OUTPORT_FLOOD}
    flows.append(Flow.make(STAGE, PRIO, {**flood, "flags": FROM_VIF},
                           vifs + (to_peers if tunnels else []), cookie=f"network:{net.id}"))
    flows.append(Flow.make(STAGE, PRIO, {**flood, "flags": FROM_TUNNEL}, vifs,
                           cookie=f"network:{net.id}"))
    return flows


def remote_flows(view: View, net: NetworkView) -> list[Flow]:
    """A network's ports on other chassis: by the tunnel to their chassis (not in transit)."""
    tunnels = peers(view, net.id)
    return [Flow.make(STAGE, PRIO, {"net": net.key, "outport": port.key, "flags": FROM_VIF},
                      [SetField("tunnel_id", net.key), Output(tunnels[port.chassis])],
                      cookie=f"port:{port.id}", note=f"on {port.chassis}")
            for port in view.ports_on(net.id) if port.chassis in tunnels]
