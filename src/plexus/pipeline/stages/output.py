"""output: a local out-port leaves by its VIF (through its ingress QoS meter, if its
policy limits ingress: ``qos.ingress_meters``); a remote one by the tunnel to its
chassis with the network's VNI (never from a packet that came by tunnel: no transit).
A flood reaches every local port of the network (OVS skips the in_port) and, unless
it came by tunnel, each chassis that shares the network. A network a local router routes
to (no local port) has its remote ports only. The external out-port of an external
network leaves by the patch port toward its bridge (tagged for a VLAN network).

A flat or VLAN network with a local port is *bridged* when this chassis has a patch port
toward its physical network (``router.patch_of``): its remote ports, its unknown unicast
and its floods from local ports leave by that patch (VLAN pushed), never by tunnels; the
physical network carries them to the other chassis. A frame that came from the physical
network or a tunnel never goes back out to it. A routed frame leaves with this chassis'
own MAC as source (``chassis_mac``), so the physical switches never see a router port's
MAC from several chassis (OVN's ovn-chassis-mac-mappings). Everything else is dropped."""

from __future__ import annotations

import functools
import hashlib

from plexus.pipeline.flows import Flow, Output, SetField
from plexus.pipeline.registry import (
    FLAG_FROM_EXTERNAL, FLAG_FROM_TUNNEL, OUTPORT_EXTERNAL, OUTPORT_FLOOD, ROUTED,
)
from plexus.pipeline.stages.common import (
    default_flow, local_networks, local_ports, peers, to_vif,
)
from plexus.pipeline.stages.qos import ingress_meters
from plexus.pipeline.stages.router import (
    external_networks, patch_of, routed_networks, vlan_push,
)
from plexus.pipeline.view import NetworkView, View

STAGE = "output"
PRIO = 50
PRIO_BRIDGED_FLOOD = 49     # a flood that came from the physical network or a tunnel
PRIO_ROUTED_OUT = 11        # bridged network: a routed frame to the physical network
PRIO_BRIDGED_OUT = 10       # bridged network: anything else from a VIF
FROM_VIF = (0, FLAG_FROM_TUNNEL)
FROM_TUNNEL = (FLAG_FROM_TUNNEL, FLAG_FROM_TUNNEL)
FROM_INSIDE = (0, FLAG_FROM_TUNNEL | FLAG_FROM_EXTERNAL)   # neither tunnel nor patch


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


def chassis_mac(chassis: str) -> str:
    """The source MAC of frames this chassis routes onto a bridged network: locally
    administered, unicast (first octet 0x0a), the rest a hash of the chassis name."""
    digest = hashlib.blake2b(f"chassis-mac/{chassis}".encode(), digest_size=5).digest()
    return "0a:" + ":".join(f"{b:02x}" for b in digest)


def network_flows(view: View, net: NetworkView) -> list[Flow]:
    """The output flows of one local network."""
    patch = patch_of(view, net)
    if patch is not None:
        return bridged_flows(view, net, patch)
    tunnels = peers(view, net.id)
    vifs = []
    flows = []
    for port in (p for p in local_ports(view) if p.network_id == net.id):
        vif = to_vif(view, port)
        vifs += vif
        flows.append(Flow.make(STAGE, PRIO, {"net": net.key, "outport": port.key},
                               [*ingress_meters(view, port), *vif], cookie=f"port:{port.id}"))
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


def bridged_flows(view: View, net: NetworkView, patch: int) -> list[Flow]:
    """The output flows of a local network bridged to its physical network here."""
    vifs = [a for p in local_ports(view) if p.network_id == net.id for a in to_vif(view, p)]
    flows = [Flow.make(STAGE, PRIO, {"net": net.key, "outport": p.key},
                       [*ingress_meters(view, p), *to_vif(view, p)], cookie=f"port:{p.id}")
             for p in local_ports(view) if p.network_id == net.id]
    return flows + list(physical_flows(net.key, net.id, patch, tuple(vlan_push(net)),
                                       tuple(vifs), chassis_mac(view.chassis)))


@functools.lru_cache(maxsize=1 << 12)
def physical_flows(key: int, network_id: str, patch: int, tag: tuple, vifs: tuple,
                   mac: str) -> tuple[Flow, ...]:
    """A bridged network's floods and its way out to the physical network (by value)."""
    cookie = f"network:{network_id}"
    flood = {"net": key, "outport": OUTPORT_FLOOD}
    out = [*tag, Output(patch)]
    return (
        Flow.make(STAGE, PRIO, {**flood, "flags": FROM_INSIDE}, [*vifs, *out], cookie=cookie,
                  note="flood: local ports and the physical network"),
        Flow.make(STAGE, PRIO_BRIDGED_FLOOD, flood, list(vifs), cookie=cookie,
                  note="flood from the physical network or a tunnel: local ports"),
        Flow.make(STAGE, PRIO_ROUTED_OUT, {"net": key, "flags": FROM_VIF, "router": ROUTED},
                  [SetField("eth_src", mac), *out], cookie=cookie,
                  note="routed: this chassis' MAC, to the physical network"),
        Flow.make(STAGE, PRIO_BRIDGED_OUT, {"net": key, "flags": FROM_INSIDE}, out,
                  cookie=cookie, note="not here: to the physical network"),
    )
