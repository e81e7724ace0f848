"""dhcp: DHCP client traffic (UDP 68 → 67) from a local port with an IPv4 subnet that
has DHCP enabled goes to the agent as a packet-in; the agent identifies the port by
its in_port / inport register and injects the reply. Nothing goes to the agent from
ports whose subnets have DHCP disabled: their DHCP continues like any other packet."""

from __future__ import annotations

from plexus.pipeline.flows import Controller, Flow
from plexus.pipeline.stages.common import ETH_IP, IP_UDP, default_flow, local_ports
from plexus.pipeline.view import PortView, View

STAGE = "dhcp"
NEXT = "egress_ct"
PRIO = 50


def compile_dhcp(view: View) -> list[Flow]:
    """A packet-in flow per local port on a DHCP-enabled IPv4 subnet."""
    flows = [default_flow(STAGE, goto=NEXT)]
    for port in local_ports(view):
        served = dhcp_subnets(view, port)
        if not served:
            continue
        match = {"net": view.networks[port.network_id].key, "inport": port.key,
                 "eth_type": ETH_IP, "ip_proto": IP_UDP, "udp_src": 68, "udp_dst": 67}
        flows.append(Flow.make(STAGE, PRIO, match, [Controller("dhcp")],
                               cookie=f"port:{port.id}", note=f"subnets {', '.join(served)}"))
    return flows


def dhcp_subnets(view: View, port: PortView) -> list[str]:
    """Ids of the port's IPv4 subnets that have DHCP enabled, sorted."""
    return sorted({sid for sid, _ in port.ips
                   if sid in view.subnets and view.subnets[sid].enable_dhcp
                   and view.subnets[sid].ip_version == 4})
