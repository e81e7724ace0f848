"""nd_responder (and ``nd_reply``, its second table): the IPv6 counterpart of the ARP responder. A neighbour
solicitation for a known IPv6 address of a local network (wherever its port is bound:
VM ports and router interface ports, their fixed IPv6 addresses and the link-local
EUI-64 address of their MAC) is turned into the owner's neighbour advertisement in
place and sent back out of the in-port, so neighbour discovery never crosses a tunnel
(OVN's ``nd_na`` / ``nd_na_router``, here in flows only).

The rewrite takes two tables because Open vSwitch sets the target link-layer address
option only on a packet that already is an advertisement: ``nd_responder`` swaps the
Ethernet and IPv6 addresses (the target becomes the source), makes the message an
advertisement (type 136; flags solicited and override, and router for a router port)
and turns its source link-layer option into a target link-layer option; ``nd_reply``
then writes the new source MAC into that option and outputs to the in-port.

Not answered, as for ARP: solicitations from :: (duplicate address detection: the
owner, or a duplicate, answers itself), allowed-address-pair addresses (a VIP moves
between ports; its holder answers the flooded solicitation), router gateway and
floating IP ports (on external networks: the gateway chassis' business)."""

from __future__ import annotations

import functools

from plexus.pipeline.flows import Flow, Move, SetField
from plexus.pipeline.stages.common import (
    ETH_IPV6, IP_ICMPV6, ND_NA, ND_NS, UNSPECIFIED6, default_flow, ipv6_addresses,
    link_local, local_networks,
)
from plexus.pipeline.stages.router import EXTERNAL_OWNERS
from plexus.pipeline.view import View
from plexus.model.keys import INTERFACE_OWNERS

STAGE = "nd_responder"
REPLY = "nd_reply"
NEXT = "dhcp"
PRIO_DAD = 60
PRIO_ANSWER = 50
# the advertisement's flags (the 32 bits after its checksum): router, solicited, override
NA_ROUTER, NA_SOLICITED, NA_OVERRIDE = 0x80000000, 0x40000000, 0x20000000
OPT_TARGET_LL = 2               # ND option: target link-layer address
SOLICITATION = {"eth_type": ETH_IPV6, "ip_proto": IP_ICMPV6, "icmpv6_type": ND_NS}


def compile_nd_responder(view: View) -> list[Flow]:
    """An answer per known IPv6 address of each local network; DAD probes pass."""
    flows = [default_flow(STAGE, goto=NEXT)]
    networks = local_networks(view)
    if networks:
        flows.append(Flow.make(STAGE, PRIO_DAD, {**SOLICITATION, "ipv6_src": UNSPECIFIED6},
                               goto=NEXT, cookie=f"pipeline:{STAGE}",
                               note="duplicate address detection: not answered here"))
    for net in networks:
        answered: set[str] = set()
        for port in view.ports_on(net.id):
            if port.device_owner in EXTERNAL_OWNERS:
                continue
            router = port.device_owner in INTERFACE_OWNERS
            for ip in [*ipv6_addresses(port), link_local(port.mac)]:
                if ip in answered:      # a stale duplicate: the first port (by id) wins
                    continue
                answered.add(ip)
                flows.append(answer(net.key, port.mac, ip, router, port.id))
    return flows


def solicitation(net_key: int, ip: str) -> dict:
    """Match of a neighbour solicitation for ``ip`` on a network."""
    return {"net": net_key, **SOLICITATION, "ipv6_nd_target": ip}


@functools.lru_cache(maxsize=1 << 16)
def answer(net_key: int, mac: str, ip: str, router: bool, port_id: str) -> Flow:
    """Turn a solicitation for ``ip`` into the advertisement of ``mac`` (one flow object
    per distinct value)."""
    flags = NA_SOLICITED | NA_OVERRIDE | (NA_ROUTER if router else 0)
    return Flow.make(STAGE, PRIO_ANSWER, solicitation(net_key, ip), [
        Move("eth_src", "eth_dst"), SetField("eth_src", mac),
        Move("ipv6_src", "ipv6_dst"), SetField("ipv6_src", ip),
        SetField("icmpv6_type", ND_NA), SetField("nd_reserved", flags),
        SetField("nd_options_type", OPT_TARGET_LL),
    ], goto=REPLY, cookie=f"port:{port_id}", note="router port" if router else "")
