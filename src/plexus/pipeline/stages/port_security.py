"""port_security: a local port may send only from its own MAC with its own IPv4
addresses (fixed IPs and allowed address pairs, CIDR pairs as masked matches), ARP
only about those addresses (or an RFC 5227 probe from 0.0.0.0), and DHCP from
0.0.0.0:68 to 255.255.255.255:67. A port the agent serves DHCP to (an IPv4 subnet with
DHCP enabled) may send DHCP requests (its MAC, UDP 68 → 67) from any source address:
the ``dhcp`` stage punts every one of them to the agent, so none goes further, and a
client renewing an address the port no longer holds (its fixed IP changed) reaches the
agent and is told DHCPNAK instead of being dropped unanswered. IPv6 is dropped for now.
Everything else from the port is dropped; a port with port security disabled may send
anything.

An ARP whose sender is a VIP several ports of the network list (keepalived: the MASTER's
gratuitous ARP) is also copied to the agent (``vip:arp``), which reports the port as the
VIP's owner (``l3_neighbor`` routes the VIP to it); the ARP goes on as before."""

from __future__ import annotations

from plexus.pipeline.flows import Controller, Flow
from plexus.pipeline.stages.common import (
    ETH_ARP, ETH_IP, IP_UDP, bound_ports, default_flow, sources,
)
from plexus.pipeline.stages.dhcp import dhcp_subnets
from plexus.pipeline.stages.l3_neighbor import shared_vips
from plexus.pipeline.view import NetworkView, PortView, View

STAGE = "port_security"
NEXT = "arp_responder"
PRIO_UNCHECKED = 100
PRIO_VIP = 95           # an ARP from a shared VIP: to the agent too, then on as allowed
PRIO_ALLOW = 90
VIP_ARP = "vip:arp"

DHCP_FROM_NOWHERE = {"eth_type": ETH_IP, "ip_proto": IP_UDP, "ipv4_src": "0.0.0.0",
                     "ipv4_dst": "255.255.255.255", "udp_src": 68, "udp_dst": 67}
DHCP_REQUEST = {"eth_type": ETH_IP, "ip_proto": IP_UDP, "udp_src": 68, "udp_dst": 67}


def compile_port_security(view: View) -> list[Flow]:
    """Per port bound here (plugged or not: its flows match its logical key, which
    only ``classify`` gives a packet): what it may send, or everything when port
    security is off."""
    flows = [default_flow(STAGE)]
    shared: dict[str, set[str]] = {}
    for port in bound_ports(view):
        if port.port_security and port.allowed_pairs and port.network_id not in shared:
            shared[port.network_id] = shared_vips(view.ports_on(port.network_id))
        flows += port_flows(view.networks[port.network_id], port,
                            dhcp_served=bool(dhcp_subnets(view, port)),
                            shared=shared.get(port.network_id, ()))
    return flows


def port_flows(net: NetworkView, port: PortView, dhcp_served: bool = False,
               shared=()) -> list[Flow]:
    """The allow flows of one local port (``dhcp_served``: the agent answers its DHCP;
    ``shared``: the VIPs several ports of the network list, whose ARP the agent sees)."""
    me = {"net": net.key, "inport": port.key}
    cookie = f"port:{port.id}"
    if not port.port_security:
        return [Flow.make(STAGE, PRIO_UNCHECKED, me, goto=NEXT, cookie=cookie,
                          note="port security disabled")]
    dhcp = DHCP_REQUEST if dhcp_served else DHCP_FROM_NOWHERE
    allowed = [{"eth_src": port.mac, **dhcp},
               {"eth_src": port.mac, "eth_type": ETH_ARP, "arp_sha": port.mac,
                "arp_spa": "0.0.0.0"}]
    for mac, address in sources(port):
        allowed.append({"eth_src": mac, "eth_type": ETH_IP, "ipv4_src": address})
        allowed.append({"eth_src": mac, "eth_type": ETH_ARP, "arp_sha": mac,
                        "arp_spa": address})
    flows = [Flow.make(STAGE, PRIO_ALLOW, {**me, **m}, goto=NEXT, cookie=cookie)
             for m in allowed]
    for mac, address in sources(port):
        if address in shared:
            flows.append(Flow.make(
                STAGE, PRIO_VIP, {**me, "eth_src": mac, "eth_type": ETH_ARP, "arp_sha": mac,
                                  "arp_spa": address},
                [Controller(VIP_ARP)], goto=NEXT, cookie=cookie,
                note="ARP from a shared VIP: the agent learns its owner"))
    return flows
