"""port_security: a local port may send only from its own MAC with its own IPv4
addresses (fixed IPs and allowed address pairs, CIDR pairs as masked matches), ARP
only about those addresses (or an RFC 5227 probe from 0.0.0.0), and DHCP from
0.0.0.0:68 to 255.255.255.255:67. A port the agent serves DHCP to (an IPv4 subnet with
DHCP enabled) may send DHCP requests (its MAC, UDP 68 → 67) from any source address:
the ``dhcp`` stage punts every one of them to the agent, so none goes further, and a
client renewing an address the port no longer holds (its fixed IP changed) reaches the
agent and is told DHCPNAK instead of being dropped unanswered.

IPv6 (as Neutron's firewalls): from the port's MAC with its fixed IPv6 addresses or its
link-local address (EUI-64 of its MAC), and from its IPv6 allowed address pairs (with
the link-local address of each pair's MAC). Neighbour discovery is checked more closely:
a solicitation's source link-layer address must be the sender's MAC (or absent), an
advertisement must be about one of the sender's addresses with its MAC as target
link-layer address (or none), and router advertisements are dropped (only the agent's,
which never pass here, reach VMs). From :: a port may send what duplicate address
detection and MLD need: solicitations and MLD reports (Neutron's
``ICMPV6_ALLOWED_UNSPEC_ADDR_TYPES``).

Everything else from the port is dropped; a port with port security disabled may send
anything.

An ARP whose sender is a VIP several ports of the network list (keepalived: the MASTER's
gratuitous ARP) is also copied to the agent (``vip:arp``), which reports the port as the
VIP's owner (``l3_neighbor`` routes the VIP to it); the ARP goes on as before."""

from __future__ import annotations

from plexus.pipeline.flows import Controller, Flow
from plexus.pipeline.stages.common import (
    ETH_ARP, ETH_IP, ETH_IPV6, IP_ICMPV6, IP_UDP, MLD2_REPORT, MLD_REPORT, ND_NA, ND_NS,
    ND_RA, UNSPECIFIED6, bound_ports, default_flow, sources, sources6,
)
from plexus.pipeline.stages.dhcp import dhcp_subnets
from plexus.pipeline.stages.l3_neighbor import shared_vips
from plexus.pipeline.view import NetworkView, PortView, View

STAGE = "port_security"
NEXT = "arp_responder"
PRIO_UNCHECKED = 100
PRIO_VIP = 95           # an ARP from a shared VIP: to the agent too, then on as allowed
PRIO_ND = 94            # neighbour discovery the port may send
PRIO_ND_DROP = 92       # any other neighbour discovery (and every router advertisement)
PRIO_ALLOW = 90
NO_MAC = "00:00:00:00:00:00"    # an ND message without its link-layer address option
ICMP6 = {"eth_type": ETH_IPV6, "ip_proto": IP_ICMPV6}
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
    flows += ipv6_flows(me, port, cookie)
    for mac, address in sources(port):
        if address in shared:
            flows.append(Flow.make(
                STAGE, PRIO_VIP, {**me, "eth_src": mac, "eth_type": ETH_ARP, "arp_sha": mac,
                                  "arp_spa": address},
                [Controller(VIP_ARP)], goto=NEXT, cookie=cookie,
                note="ARP from a shared VIP: the agent learns its owner"))
    return flows


def ipv6_flows(me: dict, port: PortView, cookie: str) -> list[Flow]:
    """What a port with port security may send over IPv6 (see the module's doc)."""
    flows = [Flow.make(STAGE, PRIO_ND_DROP, {**me, **ICMP6, "icmpv6_type": kind}, cookie=cookie,
                       note=note)
             for kind, note in ((ND_RA, "router advertisement from a VM"),
                                (ND_NS, "solicitation: spoofed source or link-layer address"),
                                (ND_NA, "advertisement: spoofed target or link-layer address"))]

    def allow(prio, match, note=""):
        flows.append(Flow.make(STAGE, prio, {**me, **match}, goto=NEXT, cookie=cookie,
                               note=note))
    pairs = sources6(port)
    for mac in sorted({mac for mac, _ in pairs}):
        unspecified = {"eth_src": mac, **ICMP6, "ipv6_src": UNSPECIFIED6}
        allow(PRIO_ND, {**unspecified, "icmpv6_type": ND_NS}, "duplicate address detection")
        for kind in (MLD_REPORT, MLD2_REPORT):
            allow(PRIO_ALLOW, {**unspecified, "icmpv6_type": kind}, "MLD report from ::")
    for mac, address in pairs:
        allow(PRIO_ALLOW, {"eth_src": mac, "eth_type": ETH_IPV6, "ipv6_src": address})
        for lladdr in (mac, NO_MAC):
            allow(PRIO_ND, {"eth_src": mac, **ICMP6, "icmpv6_type": ND_NS, "ipv6_src": address,
                            "ipv6_nd_sll": lladdr})
            allow(PRIO_ND, {"eth_src": mac, **ICMP6, "icmpv6_type": ND_NA,
                            "ipv6_nd_target": address, "ipv6_nd_tll": lladdr})
    return flows
