"""snat_guard: what l3_snat sent through conntrack NAT, before it leaves by the external
network. Conntrack NAT does not drop a packet it finds no free port for (the range
is full: "tuple space exhaustion"): the packet goes on untranslated. So a packet of a
router that SNATs leaves only with a source the router owns on the outside — its
gateway address, a floating IP hosted here or one a port forwarding NATs here — and anything else (a tenant address
whose connection found its blocks full) is dropped here, counted by the drop flow of
its router (cookie ``router:<id>:snat-guard``; the agent reads its packet count and
leases more blocks). A router without SNAT passes what it sends unchanged (the
operator's choice). Nothing else comes here: the default flow drops."""

from __future__ import annotations

from plexus.pipeline.flows import Flow
from plexus.pipeline.stages.common import ETH_IP, default_flow
from plexus.pipeline.stages.common import local_ports
from plexus.pipeline.stages.router import forwardings, gateway, local_fips, programmed
from plexus.pipeline.view import View

STAGE = "snat_guard"
PRIO_OWNED = 100
PRIO_ROUTER = 10


def guard_cookie(router_id: str) -> str:
    """The cookie of a router's guard drop flow (the agent reads its packet count)."""
    return f"router:{router_id}:snat-guard"


def compile_snat_guard(view: View) -> list[Flow]:
    """Per programmed router with a gateway reachable from here: its own outside sources
    pass, the rest drops (or passes, without SNAT)."""
    flows = [default_flow(STAGE)]
    for router, zone in programmed(view):
        gw = gateway(view, router)
        if gw is None or gw.patch is None:
            continue
        cookie = f"router:{router.id}"
        base = {"router": zone, "eth_type": ETH_IP}
        if not router.enable_snat:
            flows.append(Flow.make(STAGE, PRIO_ROUTER, base, goto="output", cookie=cookie,
                                   note="no SNAT: out as is"))
            continue
        plugged = {p.id for p in local_ports(view)}
        owned = [(gw.ip, cookie, "gateway address")] + [
            (f.address, f"floatingip:{f.id}", "floating IP") for f in local_fips(view, router, gw)]
        owned += [(pfs[0].address, f"floatingip:{fid}", "port forwarding floating IP")
                  for fid, pfs in forwardings(view, router, gw.network.id)
                  if any(pf.port_id in plugged for pf in pfs)]
        for ip, c, what in owned:
            flows.append(Flow.make(STAGE, PRIO_OWNED, {**base, "ipv4_src": ip}, goto="output",
                                   cookie=c, note=f"NATed to the {what}: out"))
        flows.append(Flow.make(STAGE, PRIO_ROUTER, base, cookie=guard_cookie(router.id),
                               note="not NATed (no free SNAT port): dropped, counted"))
    return flows
