"""dhcp: DHCP client traffic (UDP 68 → 67) from a local port with an IPv4 subnet that
has DHCP enabled goes to the agent as a packet-in; the agent identifies the port by
its in_port / inport register and injects the reply. Nothing goes to the agent from
ports whose subnets have DHCP disabled: their DHCP continues like any other packet.

The flow matches UDP 68 → 67 from the port whatever the destination, so a renewal or a
RELEASE unicast to the server (its MAC and address: ``SERVER_MAC``, ``server_ip``) is
punted like a broadcast. Who answers ARP for the server address: ``arp_responder``.

IPv6 (host-answered too, nothing reaches another host):

- DHCPv6 (UDP 546 → 547) from a local port with an address on an IPv6 subnet whose
  ``ipv6_address_mode`` is dhcpv6-stateful or dhcpv6-stateless (DHCP enabled) goes to
  the agent (``plexus.agent.dhcp6``: IA_NA with the port's fixed IP, DNS servers and
  the domain search list), one flow per port as for DHCPv4.
- Router solicitations (ICMPv6 type 133) on a network where a router has an IPv6
  interface go to the agent, which answers with that router's advertisement
  (``plexus.agent.ra``); one flow per such network. Solicitations on other networks go
  on like any packet (an external router may answer them).
- Neighbour solicitations for the link-local address an advertising router port sends
  its advertisements from (the VMs' default router), multicast or unicast (NUD), go to
  the agent, which answers for the router port (``ra.neighbor_answer``); one flow per
  such router port. The VMs learn the router's MAC from the advertisement itself; this
  keeps their neighbour entry for it reachable.

This module also holds the DHCP server's identity, which the agent's responders
(``plexus.agent.dhcp``, ``plexus.agent.dhcp6``) and the ARP responder must agree on."""

from __future__ import annotations

import functools
import ipaddress
from typing import Iterable

from plexus.pipeline.flows import Controller, Flow
from plexus.pipeline.stages.common import ETH_IP, IP_UDP, bound_ports, default_flow
from plexus.pipeline.stages.router import link_local
from plexus.pipeline.view import NetworkView, PortView, SubnetView, View

# The DHCP server's Ethernet address on every network: the source of the agent's
# replies and the address the ARP responder gives for the server identifier. Locally
# administered, outside Neutron's fa:16:3e range. One for all networks is enough: a
# network is its own L2 domain and the MAC is never learnt across networks.
SERVER_MAC = "fa:16:3f:00:00:01"

STAGE = "dhcp"
NEXT = "metadata"
PRIO = 50


ETH_IP6 = 0x86DD
IP_ICMP6 = 58
ROUTER_SOLICITATION, NEIGHBOR_SOLICITATION = 133, 135
ND_ROUTER = "nd:router"     # packet-in: a solicitation for a router port's link-local address
DHCP6_CLIENT, DHCP6_SERVER = 546, 547
DHCP6_MODES = ("dhcpv6-stateful", "dhcpv6-stateless")


def compile_dhcp(view: View) -> list[Flow]:
    """A packet-in flow per port bound here (plugged or not) on a DHCP-enabled IPv4
    subnet, and per port on a DHCPv6 subnet; one per local network whose router sends
    advertisements, for router solicitations."""
    flows = [default_flow(STAGE, goto=NEXT)]
    solicited: set[str] = set()
    for port in bound_ports(view):
        net = view.networks[port.network_id]
        flows += port_flows(net.key, port.key, port.id, tuple(dhcp_subnets(view, port)),
                            tuple(dhcp6_subnets(view, port)))
        if net.id in solicited:
            continue
        solicited.add(net.id)
        advertising = ra_ports(view, net.id)
        if advertising:
            match = {"net": net.key, "eth_type": ETH_IP6, "ip_proto": IP_ICMP6,
                     "icmpv6_type": ROUTER_SOLICITATION}
            flows.append(Flow.make(STAGE, PRIO, match, [Controller("rs")],
                                   cookie=f"network:{net.id}",
                                   note="router solicitation: answered by the agent for "
                                        + ", ".join(p.id for p in advertising)))
        for rp in advertising:
            match = {"net": net.key, "eth_type": ETH_IP6, "ip_proto": IP_ICMP6,
                     "icmpv6_type": NEIGHBOR_SOLICITATION,
                     "ipv6_nd_target": link_local(rp.mac)}
            flows.append(Flow.make(STAGE, PRIO, match, [Controller(ND_ROUTER)],
                                   cookie=f"port:{rp.id}",
                                   note="the advertising router port's link-local address: "
                                        "answered by the agent"))
    return flows


@functools.lru_cache(maxsize=1 << 16)
def port_flows(net_key: int, port_key: int, port_id: str, served: tuple[str, ...],
               served6: tuple[str, ...]) -> tuple[Flow, ...]:
    """A port's DHCPv4 and DHCPv6 punts (one flow object per distinct value: unchanged
    ports keep theirs from compile to compile)."""
    flows = []
    if served:
        match = {"net": net_key, "inport": port_key,
                 "eth_type": ETH_IP, "ip_proto": IP_UDP, "udp_src": 68, "udp_dst": 67}
        flows.append(Flow.make(STAGE, PRIO, match, [Controller("dhcp")],
                               cookie=f"port:{port_id}", note=f"subnets {', '.join(served)}"))
    if served6:
        match = {"net": net_key, "inport": port_key, "eth_type": ETH_IP6,
                 "ip_proto": IP_UDP, "udp_src": DHCP6_CLIENT, "udp_dst": DHCP6_SERVER}
        flows.append(Flow.make(STAGE, PRIO, match, [Controller("dhcp6")],
                               cookie=f"port:{port_id}",
                               note=f"DHCPv6 subnets {', '.join(served6)}"))
    return tuple(flows)


def dhcp6_subnets(view: View, port: PortView) -> list[str]:
    """Ids of the port's IPv6 subnets served by DHCPv6 (DHCP enabled, address mode
    dhcpv6-stateful or dhcpv6-stateless), sorted."""
    return sorted({sid for sid, _ in port.ips
                   if sid in view.subnets and view.subnets[sid].enable_dhcp
                   and view.subnets[sid].ip_version == 6
                   and view.subnets[sid].ipv6_address_mode in DHCP6_MODES})


def ra_ports(view: View, network_id: str) -> list[PortView]:
    """The router ports on a network that send router advertisements, by id: interfaces
    of an admin-up router with an address on an IPv6 subnet (as Neutron runs radvd for
    every router port with an IPv6 subnet; ``plexus.agent.ra`` says what they carry)."""
    out = {}
    for router in view.routers.values():
        if not router.admin_up:
            continue
        for pid in router.interfaces:
            port = view.ports.get(pid)
            if port is None or port.network_id != network_id:
                continue
            if any(view.subnets.get(sid) is not None and view.subnets[sid].ip_version == 6
                   for sid, _ in port.ips):
                out[port.id] = port
    return [out[k] for k in sorted(out)]


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
