"""lb_nat: the member choice of load balancing (see ``plexus.pipeline.stages.lb``)."""

from __future__ import annotations

from plexus.pipeline.flows import Flow
from plexus.pipeline.stages.lb import compile_nat_flows
from plexus.pipeline.view import View


def compile_lb_nat(view: View) -> list[Flow]:
    """New connections to a listener: DNAT to their slot's member; established ones:
    their member's MAC and out-port."""
    return compile_nat_flows(view)
