"""egress_acl: the egress rules of the in-port's security groups, after conntrack (see
``acl``): invalid and revoked connections drop, replies and related pass, what a rule
allows is committed and passes on to l3_input (routing, else L2 lookup), the rest
drops."""

from __future__ import annotations

from plexus.pipeline.flows import Flow
from plexus.pipeline.stages.acl import EGRESS, acl_flows, acl_port_flows, acl_shared_flows
from plexus.pipeline.view import View


def compile_egress_acl(view: View) -> list[Flow]:
    """Connection-state flows and each guarded local port's egress rules."""
    return acl_flows(view, EGRESS)


def compile_egress_acl_network(view: View) -> list[Flow]:
    """The guarded local ports' rules (per network)."""
    return acl_port_flows(view, EGRESS)


def compile_egress_acl_chassis(view: View) -> list[Flow]:
    """Connection state and the remote groups' member addresses."""
    return acl_shared_flows(view, EGRESS)
