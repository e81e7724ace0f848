"""l3_snat: a routed packet leaving by the router's external network, on the chassis
where it entered the router (the VM's own), unless said otherwise:

Every packet NATed here goes on to snat_guard, which lets it out only with a source the
router owns outside (conntrack lets a packet through untranslated when its range has
no free port).

- From a port with a floating IP (its port is plugged here): SNAT to the floating IP
  (conntrack, router zone; replies of DNATed connections get their reverse), source MAC
  the floating IP's.
- From the internal address and port of a port forwarding (its port plugged here):
  SNAT to the floating IP and external port (replies of the forwarded connections get
  their reverse DNAT), before any other rule of the address.
- TCP and UDP of other ports, when the router SNATs: SNAT to the gateway address with
  a source port from this chassis' blocks (adjacent blocks form one range; several
  ranges: bits of the source port pick one, see ``buckets``), source MAC this chassis' own for the router (``router.snat_mac``). With no
  block yet, they drop (a SYN is retried; none goes through another chassis, whose
  state a failover would lose).
- Portless protocols (ICMP...) of other ports: the router's active gateway SNATs them
  (to the gateway address, source MAC the gateway port's): here when this chassis is
  the active gateway, else through the tunnel to it (key: the external network's); a
  peer's request arriving by tunnel is SNATed here whatever this chassis believes.
- A router without SNAT: routed unchanged, source MAC this chassis' own for it. So is,
  on a router with SNAT, a subnet in the external network's address scope (Neutron's
  address-scope routing: no NAT within a scope).
Then out of this chassis' patch port toward the external network (``output``). A
chassis without a bridge mapping for the external network sends nothing out itself."""

from __future__ import annotations

from plexus.pipeline.flows import Ct, Flow, Nat, Output, SetField
from plexus.pipeline.registry import FLAG_FROM_TUNNEL, OUTPORT_EXTERNAL
from plexus.pipeline.stages.common import ETH_IP, as_match, default_flow
from plexus.pipeline.stages.acl import port_masks
from plexus.pipeline.stages.common import local_ports
from plexus.pipeline.stages.router import (
    PORT_FIELDS, Gateway, forwarding_owner, forwardings, gateway, gateway6, interfaces,
    is_active, is_candidate, local_fips, own_ranges, port_map, programmed, snat_mac, unnated,
)
from plexus.pipeline.view import RouterView, View

STAGE = "l3_snat"
PRIO_FORWARD = 105      # from a forwarded internal port (replies to the floating IP's port)
PRIO_FIP = 100
PRIO_SCOPE = 95         # a subnet in the external network's address scope: no SNAT
PRIO_PORTS = 90
PRIO_PEER = 80
PRIO_PORTLESS = 70
PRIO_NO_SNAT = 60
GUARD = "snat_guard"            # where NATed packets go before leaving (never un-NATed)
ETH_IP6 = 0x86DD
FROM_HERE = (0, FLAG_FROM_TUNNEL)
FROM_PEER = (FLAG_FROM_TUNNEL, FLAG_FROM_TUNNEL)


def compile_l3_snat(view: View) -> list[Flow]:
    """Per programmed router with a gateway: floating IPs, port blocks, portless."""
    flows = [default_flow(STAGE)]
    for router, zone in programmed(view):
        gw = gateway(view, router)
        if gw is not None:
            flows += router_flows(view, router, zone, gw)
        gw6 = gateway6(view, router)
        if gw6 is not None and gw6.patch is not None:
            flows.append(Flow.make(
                STAGE, PRIO_NO_SNAT, {"router": zone, "eth_type": ETH_IP6},
                [SetField("eth_src", snat_mac(router.id, view.chassis)),
                 SetField("outport", OUTPORT_EXTERNAL)], "output", f"router:{router.id}",
                note="IPv6: out as is (no NAT), source MAC this chassis' own"))
    return flows


MAX_BUCKET_BITS = 5             # at most 32 buckets when a chassis' blocks are scattered


def buckets(ranges: list[tuple[int, int]]) -> list[tuple[int | None, int, tuple[int, int]]]:
    """Spread new connections over several port ranges (a chassis' blocks that are not
    adjacent) by bits 1 and up of their source port — not bit 0: Linux prefers even
    ports for connect() — each range getting buckets in proportion to its size:
    (value, mask, range) per bucket (value None: one range, no match needed). Blocks
    are leased adjacent to a chassis' own where they can be, so this is the exception."""
    if len(ranges) == 1:
        return [(None, 0, ranges[0])]
    bits = min((len(ranges) - 1).bit_length() + 2, MAX_BUCKET_BITS)
    slots = 1 << bits
    sizes = [hi - lo + 1 for lo, hi in ranges]
    total = sum(sizes)
    out = []
    for i in range(slots):
        # slot i takes the range at the midpoint of its bit-reversed index: consecutive
        # source ports (and slots) alternate between the ranges
        spread = int(f"{i:0{bits}b}"[::-1], 2)
        point, k = (2 * spread + 1) * total // (2 * slots), 0
        while point >= sizes[k]:
            point -= sizes[k]
            k += 1
        out.append((i << 1, (slots - 1) << 1, ranges[k]))
    return out


def forwarding_flows(view: View, router: RouterView, zone: int, gw: Gateway,
                     mine: str) -> list[Flow]:
    """From the internal address and ports of each port forwarding whose port is plugged
    here: SNAT to the floating IP and its external ports (a reply gets its connection's
    reverse DNAT), source MAC the floating IP's where this chassis owns it, else this
    chassis' own for the router (the external network learns the floating IP's MAC at
    its owner only). One internal address and port forwarded by two floating IPs: the
    first by address keeps it."""
    flows = []
    plugged = {p.id for p in local_ports(view)}
    seen = set()
    for fip_id, pfs in forwardings(view, router, gw.network.id):
        mac = pfs[0].mac if forwarding_owner(view, router, pfs) == view.chassis else mine
        for pf in pfs:
            if pf.port_id not in plugged:
                continue
            src, _ = PORT_FIELDS[pf.protocol]
            for elo, ehi, ilo, ihi in port_map(pf):
                for mask in port_masks(ilo, ihi):
                    match = {"router": zone, "eth_type": ETH_IP, "ipv4_src": pf.internal_ip,
                             "ip_proto": pf.protocol, src: mask}
                    key = (pf.internal_ip, pf.protocol, mask)
                    if key in seen:
                        continue
                    seen.add(key)
                    flows.append(Flow.make(
                        STAGE, PRIO_FORWARD, match,
                        [SetField("eth_src", mac), SetField("outport", OUTPORT_EXTERNAL),
                         Ct(zone, commit=True, table=GUARD,
                            nat=Nat("src", pf.address, elo, ehi))],
                        cookie=f"floatingip:{fip_id}:pf:{pf.id}",
                        note=f"port forwarding: from {pf.address}:{elo}"))
    return flows


def router_flows(view: View, router: RouterView, zone: int, gw: Gateway) -> list[Flow]:
    """The router's ways out of the external network from this chassis."""
    cookie = f"router:{router.id}"
    flows = []
    base = {"router": zone, "eth_type": ETH_IP}

    def add(prio, match, actions=(), goto=None, cookie=cookie, note=""):
        flows.append(Flow.make(STAGE, prio, {**base, **match}, actions, goto, cookie, note))
    out = [SetField("outport", OUTPORT_EXTERNAL)]
    if gw.patch is not None:
        for fip in local_fips(view, router, gw):
            add(PRIO_FIP, {"ipv4_src": fip.fixed_ip},
                [SetField("eth_src", fip.mac), *out,
                 Ct(zone, commit=True, table=GUARD, nat=Nat("src", fip.address))],
                cookie=f"floatingip:{fip.id}", note=f"floating IP {fip.address}")
    mine = snat_mac(router.id, view.chassis)
    if gw.patch is not None:
        flows += forwarding_flows(view, router, zone, gw, mine)
    if router.enable_snat and gw.patch is not None:
        for iface in interfaces(view, router):
            if unnated(gw, iface):
                add(PRIO_SCOPE, {"ipv4_src": as_match(iface.subnet.cidr)},
                    [SetField("eth_src", mine), *out], "output",
                    note="same address scope as the external network: out as is")
    if not router.enable_snat:
        if gw.patch is not None:
            add(PRIO_NO_SNAT, {}, [SetField("eth_src", mine), *out], "output",
                note="no SNAT: out as is")
        return flows
    ranges = own_ranges(view, router) if gw.patch is not None else []
    for proto, (src, _) in PORT_FIELDS.items():
        if not ranges:
            add(PRIO_PORTS, {"ip_proto": proto}, note="no SNAT block here (yet)")
            continue
        for value, mask, (lo, hi) in buckets(ranges):
            match = {"ip_proto": proto} | ({src: (value, mask)} if value is not None else {})
            add(PRIO_PORTS, match,
                [SetField("eth_src", mine), *out,
                 Ct(zone, commit=True, table=GUARD, nat=Nat("src", gw.ip, lo, hi))],
                cookie=f"router:{router.id}:snat:{view.chassis}",
                note=f"own block {lo}-{hi}")
    at_gateway = [SetField("eth_src", gw.port.mac), *out,
                  Ct(zone, commit=True, table=GUARD, nat=Nat("src", gw.ip))]
    if gw.patch is not None and is_candidate(view, router):
        add(PRIO_PEER, {"flags": FROM_PEER}, at_gateway, note="a peer's portless packet")
    active = view.active_gateway.get(router.id)
    tunnel = view.tunnel_ofports.get(active or "")
    if is_active(view, router) and gw.patch is not None:
        add(PRIO_PORTLESS, {"flags": FROM_HERE}, at_gateway, note="portless: active here")
    elif active and active != view.chassis and tunnel is not None:
        add(PRIO_PORTLESS, {"flags": FROM_HERE},
            [SetField("eth_src", gw.port.mac), SetField("tunnel_id", gw.network.key),
             Output(tunnel)], note=f"portless: to the active gateway {active}")
    return flows
