"""dhcp: DHCP client traffic (UDP 68 → 67) from a local port with an IPv4 subnet that
has DHCP enabled goes to the agent as a packet-in; the agent identifies the port by
its in_port / inport register and injects the reply. Nothing goes to the agent from
ports whose subnets have DHCP disabled: their DHCP continues like any other packet.

The flow matches UDP 68 → 67 from the port whatever the destination, so a renewal or a
RELEASE unicast to the server (its MAC and address: ``SERVER_MAC``, ``server_ip``) is
punted like a broadcast. Who answers ARP for the server address: ``arp_responder``.

This module also holds the DHCP server's identity, which the agent's responder
(``plexus.agent.dhcp``) and the ARP responder must agree on."""

from __future__ import annotations

import ipaddress
from typing import Iterable

from plexus.pipeline.flows import Controller, Flow
from plexus.pipeline.stages.common import ETH_IP, IP_UDP, bound_ports, default_flow
from plexus.pipeline.view import NetworkView, PortView, SubnetView, View

# The DHCP server's Ethernet address on every network: the source of the agent's
# replies and the address the ARP responder gives for the server identifier. Locally
# administered, outside Neutron's fa:16:3e range. One for all networks is enough: a
# network is its own L2 domain and the MAC is never learnt across networks.
SERVER_MAC = "fa:16:3f:00:00:01"

STAGE = "dhcp"
NEXT = "metadata"
PRIO = 50


def compile_dhcp(view: View) -> list[Flow]:
    """A packet-in flow per port bound here (plugged or not) on a DHCP-enabled IPv4
    subnet."""
    flows = [default_flow(STAGE, goto=NEXT)]
    for port in bound_ports(view):
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


def server_ip(subnet: SubnetView, view: View, also_used: Iterable[str] = ()) -> str | None:
    """The server identifier for a subnet: its gateway, else its first unused host."""
    if subnet.gateway_ip and _v4(subnet.gateway_ip):
        return subnet.gateway_ip
    net = ipaddress.IPv4Network(subnet.cidr, strict=False)
    used = {ip for p in view.ports_on(subnet.network_id) for ip in p.addresses()}
    used.update(also_used)
    for host in net.hosts():
        if str(host) not in used:
            return str(host)
    return None


def answered_servers(view: View, net: NetworkView, subnets: Iterable[SubnetView],
                     held: set[str]) -> list[tuple[str, str]]:
    """(subnet id, server address) of the network's (``subnets``) DHCP-enabled IPv4 subnets whose server
    address no port holds (``held``: the addresses ports answer for), for the ARP
    responder to answer with ``SERVER_MAC``. Without this a subnet without a router
    interface has nobody answering for its server identifier (the gateway address), and
    a client's unicast renewal and its RELEASE never leave the VM.

    Only on overlay networks: on a flat or VLAN network (or an external one) the gateway
    can be a physical router the model does not know, which must not be hijacked; there
    such a client's unicast renewal and RELEASE reach the agent only when that router
    answers ARP (the ``dhcp`` stage punts them whatever their destination)."""
    if net.external or net.physical_network or net.network_type in ("flat", "vlan"):
        return []
    # an allowed-address pair (a tenant's own VRRP router holding the gateway as its VIP)
    # is answered by its holder: never hijacked either
    pairs = [n for p in view.ports_on(net.id) for a, _ in p.allowed_pairs
             if (n := _v4_net(a)) is not None]
    out = []
    for subnet in sorted(subnets, key=lambda s: s.id):
        if not subnet.enable_dhcp or subnet.ip_version != 4:
            continue
        try:
            server = server_ip(subnet, view)
        except ValueError:          # a bad cidr: nothing to answer for
            continue
        if server is not None and server not in held and not any(
                ipaddress.IPv4Address(server) in n for n in pairs):
            held.add(server)
            out.append((subnet.id, server))
    return out


def _v4_net(text: str) -> ipaddress.IPv4Network | None:
    try:
        return ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        return None


def _v4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
        return True
    except ValueError:
        return False
