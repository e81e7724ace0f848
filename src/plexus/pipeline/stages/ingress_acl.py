"""ingress_acl: the ingress rules of the out-port's security groups, after conntrack (see
``acl``): invalid and revoked connections drop, replies and related pass, what a rule
allows is committed and passes to output, the rest drops."""

from __future__ import annotations

from plexus.pipeline.flows import Flow
from plexus.pipeline.stages.acl import INGRESS, acl_flows, acl_port_flows, acl_shared_flows
from plexus.pipeline.view import View


def compile_ingress_acl(view: View) -> list[Flow]:
    """Connection-state flows and each guarded local port's ingress rules."""
    return acl_flows(view, INGRESS)


def compile_ingress_acl_network(view: View) -> list[Flow]:
    """The guarded local ports' rules (per network)."""
    return acl_port_flows(view, INGRESS)


def compile_ingress_acl_chassis(view: View) -> list[Flow]:
    """Connection state and the remote groups' member addresses."""
    return acl_shared_flows(view, INGRESS)
