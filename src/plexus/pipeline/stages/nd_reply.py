"""nd_reply: the second table of the ND responder (see ``nd``). Open vSwitch sets the
target link-layer address option only on a packet that already is an advertisement, so
the advertisement ``nd_responder`` made comes here to get its new source MAC written
into that option, and leaves by the in-port. Nothing else reaches this table."""

from __future__ import annotations

import functools

from plexus.pipeline.flows import Flow, Move, Output
from plexus.pipeline.stages.common import (
    ETH_IPV6, IP_ICMPV6, ND_NA, default_flow, local_networks,
)
from plexus.pipeline.view import View

STAGE = "nd_reply"
PRIO = 50
ADVERTISEMENT = {"eth_type": ETH_IPV6, "ip_proto": IP_ICMPV6, "icmpv6_type": ND_NA}


def compile_nd_reply(view: View) -> list[Flow]:
    """The advertisement's target link-layer address, and out of the in-port (once a
    network is local: before, nd_responder answers nothing)."""
    return [default_flow(STAGE)] + ([reply_flow()] if local_networks(view) else [])


@functools.lru_cache(maxsize=1)
def reply_flow() -> Flow:
    """The one flow of ``nd_reply`` (only nd_responder's advertisements get here)."""
    return Flow.make(STAGE, PRIO, ADVERTISEMENT,
                     [Move("eth_src", "ipv6_nd_tll"), Output("in_port")],
                     cookie=f"pipeline:{STAGE}", note="target link-layer address: the owner's MAC")
