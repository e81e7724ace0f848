"""ingress_ct: traffic entering a VM on this chassis (from a local port or a tunnel)
whose port has security groups. Its IPv4 goes through conntrack in that port's zone and
continues in ingress_acl (see ``acl``); ARP and DHCP replies pass; anything else to it
drops. Floods and ports without security groups pass."""

from __future__ import annotations

from plexus.pipeline.flows import Flow
from plexus.pipeline.stages.acl import INGRESS, conntrack_flows
from plexus.pipeline.view import View


def compile_ingress_ct(view: View) -> list[Flow]:
    """Per guarded local port: ARP, DHCP replies, and the conntrack step."""
    return conntrack_flows(view, INGRESS)
