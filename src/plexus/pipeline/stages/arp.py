"""arp_responder: ARP requests for every port's fixed IPv4 address on a local network
(wherever the port is bound, router interface gateways included) are answered in
place and sent back out of the in-port, so ARP never crosses a tunnel. Not answered:
a port asking for its own address (gratuitous ARP, duplicate address detection) and
allowed-address-pair addresses (a VIP moves between ports by gratuitous ARP, so its
requests are flooded and its current holder answers), and router gateway and floating
IP ports (l3_input answers those, only on the chassis that owns them).

Also answered: the DHCP server identifier of a DHCP-enabled subnet of an overlay network
when no port holds it (a subnet without a router interface: the gateway address, or the
subnet's first unused host when it has no gateway), with the DHCP server's MAC
(``dhcp.SERVER_MAC``, the source of the agent's replies), so that a client's unicast
renewal and its RELEASE leave the VM; the ``dhcp`` stage punts them to the agent. Other
traffic to that MAC finds no port in ``l2_lookup`` and is dropped there."""

from __future__ import annotations

import functools

from plexus.pipeline.flows import Flow, Move, Output, SetField
from plexus.pipeline.stages.common import (
    ARP_REPLY, ARP_REQUEST, ETH_ARP, bound_ports, default_flow, ipv4_addresses,
    local_networks,
)
from plexus.pipeline.stages.dhcp import SERVER_MAC, answered_servers
from plexus.pipeline.stages.router import EXTERNAL_OWNERS
from plexus.pipeline.view import NetworkView, PortView, View

STAGE = "arp_responder"
NEXT = "nd_responder"
PRIO_OWN = 60
PRIO_ANSWER = 50


def compile_arp_responder(view: View) -> list[Flow]:
    """An answer per known address of each local network; the owner's own asks pass."""
    flows = [default_flow(STAGE, goto=NEXT)]
    local = {p.id for p in bound_ports(view)}
    subnets: dict[str, list] = {}
    for subnet in view.subnets.values():
        subnets.setdefault(subnet.network_id, []).append(subnet)
    for net in local_networks(view):
        answered: set[str] = set()
        for port in view.ports_on(net.id):
            if port.device_owner in EXTERNAL_OWNERS:
                continue
            for ip in ipv4_addresses(port):
                if ip in answered:      # a stale duplicate: the first port (by id) wins
                    continue
                answered.add(ip)
                flows.append(answer(net, port, ip))
                if port.id in local:
                    flows.append(Flow.make(STAGE, PRIO_OWN, {**request(net, ip),
                                                             "inport": port.key},
                                           goto=NEXT, cookie=f"port:{port.id}",
                                           note="own address: let it through"))
        for subnet_id, server in answered_servers(view, net, subnets.get(net.id, ()),
                                                  answered):
            flows.append(_answer(net.key, SERVER_MAC, server, "", f"subnet:{subnet_id}"))
    return flows


def request(net: NetworkView, ip: str) -> dict:
    """Match of an ARP request for ``ip`` on a network."""
    return _request(net.key, ip)


def _request(key: int, ip: str) -> dict:
    return {"net": key, "eth_type": ETH_ARP, "arp_op": ARP_REQUEST, "arp_tpa": ip}


def answer(net: NetworkView, port: PortView, ip: str) -> Flow:
    """Turn a request for ``ip`` into the port's reply and send it back where it came from."""
    return _answer(net.key, port.mac, ip, port.id)


@functools.lru_cache(maxsize=1 << 16)
def _answer(key: int, mac: str, ip: str, port_id: str, cookie: str = "") -> Flow:
    """``answer`` by value (one flow object per distinct value)."""
    return Flow.make(STAGE, PRIO_ANSWER, _request(key, ip), [
        Move("eth_src", "eth_dst"), SetField("eth_src", mac),
        SetField("arp_op", ARP_REPLY),
        Move("arp_sha", "arp_tha"), SetField("arp_sha", mac),
        Move("arp_spa", "arp_tpa"), SetField("arp_spa", ip),
        Output("in_port"),
    ], cookie=cookie or f"port:{port_id}",
        note="DHCP server address" if cookie else "")

