"""metadata: 169.254.169.254:80 answered on the VM's own chassis, without a namespace
per network.

A chassis that serves metadata has one metadata namespace whose veth end is br-int's
port ``view.metadata_ofport`` (the agent requests ``METADATA_OFPORT``); the agent's
proxy listens on 169.254.169.254:80 inside it. A local port's TCP to
169.254.169.254:80 is committed to conntrack in the port's zone (its ofport, the zone
its security groups use; the metadata connection's tuple is its own) with its source
NATed to the port's **link-local address** — ``link_local(ofport)``, unique on the
chassis — and sent to the metadata port. The proxy knows the port from that source
address alone, so overlapping tenant addresses on different networks are harmless and
a VM cannot pass for another (port security has already checked its source). The
proxy's replies (from the metadata port to that address) are un-NATed in the same zone
and go straight out of the port's VIF. Anything else from the metadata port drops.

Two flows per local port with an IPv4 address (cookie ``port:<id>``), in the port's
network part: a port change recompiles its network's part only."""

from __future__ import annotations

import ipaddress

from plexus.pipeline.flows import Ct, Flow, Nat, Output, SetField
from plexus.pipeline.stages.common import ETH_IP, default_flow, ipv4_addresses, local_ports
from plexus.pipeline.view import View

STAGE = "metadata"
NEXT = "egress_ct"
PRIO = 100
IP_TCP = 6
METADATA_IP = "169.254.169.254"
METADATA_PORT = 80
# the metadata namespace's MAC (locally administered, outside Neutron's fa:16:3e range)
METADATA_MAC = "fa:16:3f:00:00:02"
# the OpenFlow port number the agent asks for the metadata namespace's veth end
METADATA_OFPORT = 65000
# the next hop the metadata namespace routes 169.254.0.0/16 through (a static neighbour
# there: it never ARPs); no local port's link-local address, since ofports stay below it
METADATA_NEXTHOP = "169.254.255.254"
_BASE = int(ipaddress.IPv4Address("169.254.0.0"))


def link_local(ofport: int) -> str | None:
    """The link-local address a port's metadata requests come from: 169.254.0.0 plus
    its ofport (unique on the chassis); None for the ofport that would give the
    metadata address itself."""
    if not 0 < ofport < 0xFF00:
        return None
    address = str(ipaddress.IPv4Address(_BASE + ofport))
    return None if address == METADATA_IP else address


def ofport_of(address: str) -> int | None:
    """Inverse of ``link_local``: the ofport a link-local source address stands for."""
    try:
        ofport = int(ipaddress.IPv4Address(address)) - _BASE
    except ValueError:
        return None
    return ofport if link_local(ofport) == address else None


def compile_metadata(view: View) -> list[Flow]:
    """The whole stage (the reference the incremental parts are checked against)."""
    return compile_metadata_chassis(view) + compile_metadata_network(view)


def compile_metadata_chassis(view: View) -> list[Flow]:
    """The default (go on) and, with a metadata port, a drop for what else comes from it."""
    flows = [default_flow(STAGE, goto=NEXT)]
    if view.metadata_ofport:
        flows.append(Flow.make(STAGE, 1, {"in_port": view.metadata_ofport},
                               cookie="pipeline:metadata", note="nothing else from metadata"))
    return flows


def compile_metadata_network(view: View) -> list[Flow]:
    """Each local port's request and reply flows (per network part)."""
    md = view.metadata_ofport
    if not md:
        return []
    flows = []
    for port in local_ports(view):
        ofport = view.vif_ofports[port.id]
        source = link_local(ofport)
        if source is None or not ipv4_addresses(port) or ofport == md or port.parent:
            continue
        cookie = f"port:{port.id}"
        net = view.networks[port.network_id]
        flows.append(Flow.make(
            STAGE, PRIO, {"net": net.key, "inport": port.key, "eth_type": ETH_IP,
                          "ip_proto": IP_TCP, "ipv4_dst": METADATA_IP,
                          "tcp_dst": METADATA_PORT},
            [Ct(zone=ofport, commit=True, nat=Nat("src", source)),
             SetField("eth_dst", METADATA_MAC), Output(md)],
            cookie=cookie, note=f"metadata request, as {source}"))
        flows.append(Flow.make(
            STAGE, PRIO, {"in_port": md, "eth_type": ETH_IP, "ip_proto": IP_TCP,
                          "ipv4_src": METADATA_IP, "tcp_src": METADATA_PORT,
                          "ipv4_dst": source},
            [Ct(zone=ofport, nat=Nat()), SetField("eth_src", METADATA_MAC),
             SetField("eth_dst", port.mac), Output(ofport)],
            cookie=cookie, note="metadata reply, un-NATed"))
    return flows
