"""egress_ct: traffic leaving a VM whose port has security groups. Its IPv4 goes through
conntrack in the port's zone and continues in egress_acl (see ``acl``); DHCP requests
pass untracked and DHCP replies from the VM are dropped; everything else passes."""

from __future__ import annotations

from plexus.pipeline.flows import Flow
from plexus.pipeline.stages.acl import EGRESS, conntrack_flows
from plexus.pipeline.view import View


def compile_egress_ct(view: View) -> list[Flow]:
    """Per guarded local port: DHCP allowances and the conntrack step."""
    return conntrack_flows(view, EGRESS)
