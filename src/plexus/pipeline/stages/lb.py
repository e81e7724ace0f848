"""lb: distributed L4 load balancing on the client's chassis, conntrack-based like OVN's
load balancers (no central node; ``plexus.model.lbaas`` gives the load balancers).

l2_lookup sends to stage lb what is addressed to a VIP port's MAC (on its network, or
routed to it), and what goes to a local port on a network that reaches the VIP (its
network, or one a router connects to it). Everything is tracked in one conntrack zone,
``LB_ZONE`` (the registry's), apart from the ports' own zones:

- lb, to VIP:port of a listener: ``ct(zone=LB_ZONE,nat,table=lb_nat)`` (an established
  connection comes back with its member as destination; a new one unchanged);
- lb_nat, a new connection to VIP:port: its hash slot picks the member, whose MAC and
  out-port are set before ``ct(commit,zone=LB_ZONE,nat(dst=member:port),
  table=ingress_ct)``. The hash is the low bits (above bit 0,
  which Linux keeps even for connect()) of the client's source port (``ROUND_ROBIN``, ``SOURCE_IP_PORT``: one spread per
  connection) or of its source address (``SOURCE_IP`` algorithm or session
  persistence: one member per client while the selection stands); slots are shared
  out by weight (``model.lbaas.slots``). A listener with no member in selection drops;
- lb_nat, an established connection (its member as destination): that member's MAC
  and out-port (members are ports on the VIP's network), on to ingress_ct;
- lb, from a member's address and port toward a local port of a client network:
  ``ct(zone=LB_ZONE,nat,table=ingress_ct)`` un-NATs a reply (source: the VIP again)
  before the client's ingress ACL sees it, which then matches the client's own
  connection to the VIP;
- everything else goes on to ingress_ct.

Flows per chassis: per load balancer reachable here, per listener, one entry flow plus
its slots (8 per member, at most 256) plus one flow per member and client network:
proportional to the load balancers this chassis' networks reach, not to the cloud."""

from __future__ import annotations

from plexus.model.lbaas import HASH_SOURCE_IP, LoadBalancer, slots
from plexus.pipeline.flows import Ct, Flow, Nat, SetField, ct_state
from plexus.pipeline.registry import LB_ZONE
from plexus.pipeline.stages.common import default_flow
from plexus.pipeline.view import View

STAGE = "lb"
NAT_STAGE = "lb_nat"
NEXT = "ingress_ct"
ETH_IP = 0x0800
PRIO_SELECT = 300       # lb_nat: a new connection: its slot's member
PRIO_EMPTY = 290        # lb_nat: ... no member in selection: drop
PRIO_MEMBER = 260       # lb_nat: established, to a member: its MAC and out-port
PRIO_ENTRY = 100        # lb: to a listener, or from a member: into conntrack
NEW = ct_state("+new+trk")
PORTS = {6: ("tcp_src", "tcp_dst"), 17: ("udp_src", "udp_dst")}
# the source port's hash skips its lowest bit: Linux gives connect() ephemeral ports of
# one parity (even), so bit 0 is the same for every connection of a client
PORT_SHIFT = 1


def reachable(view: View) -> list[tuple[LoadBalancer, set[str]]]:
    """The load balancers whose VIP network this chassis knows, each with its client
    networks: the VIP's and those a router of the view connects to it."""
    out = []
    for lb in sorted(view.lbs.values(), key=lambda lb: lb.id):
        if lb.vip_network_id not in view.networks:
            continue
        nets = {lb.vip_network_id}
        for router in view.routers.values():
            on = {view.ports[p].network_id for p in router.interfaces if p in view.ports}
            if lb.vip_network_id in on:
                nets |= on
        out.append((lb, nets & set(view.networks)))
    return out


def vip_ports(view: View) -> set[str]:
    """The VIP ports of the load balancers reachable here (l2_lookup sends their MACs
    here)."""
    return {lb.vip_port_id for lb, _ in reachable(view)}


def client_networks(view: View) -> set[str]:
    """Networks whose local ports may be clients of a load balancer reachable here
    (l2_lookup sends what goes to those ports here)."""
    return {n for _, nets in reachable(view) for n in nets}


def compile_lb(view: View) -> list[Flow]:
    """Into conntrack: what goes to a listener (on to lb_nat), and what comes from a
    member toward a local client network (un-NATed, on to ingress_ct)."""
    flows: dict[tuple, Flow] = {}
    here = {n.id for n in view.local_networks()}
    for lb, nets in reachable(view):
        net = view.networks[lb.vip_network_id]
        cookie = f"loadbalancer:{lb.id}"
        locals_on = sorted(view.networks[n].key for n in nets & here)
        for li in lb.listeners:
            src, dst = PORTS[li.protocol]
            _add(flows, STAGE, PRIO_ENTRY, _listener(net.key, lb, li),
                 [Ct(LB_ZONE, table=NAT_STAGE, nat=Nat())], cookie=cookie)
            for member in li.members:
                for key in locals_on:
                    _add(flows, STAGE, PRIO_ENTRY,
                         {"net": key, "eth_type": ETH_IP, "ip_proto": li.protocol,
                          "ipv4_src": member.address, src: member.port},
                         [Ct(LB_ZONE, table=NEXT, nat=Nat())], cookie=cookie)
    return [default_flow(STAGE, goto=NEXT)] + list(flows.values())


def compile_nat_flows(view: View) -> list[Flow]:
    """lb_nat's flows: back from the lookup, a new connection to a listener gets its
    slot's member (its MAC and out-port, then committed with DNAT), or drops when no
    member is in selection; an established one (already to its member) gets its
    member's MAC and out-port; all on to ingress_ct."""
    flows: dict[tuple, Flow] = {}
    for lb, _ in reachable(view):
        net = view.networks[lb.vip_network_id]
        cookie = f"loadbalancer:{lb.id}"
        by_address = {ip: p for p in view.ports_on(net.id) for ip in p.addresses()}

        def to(member) -> list:
            port = by_address.get(member.address)
            return [] if port is None else [SetField("eth_dst", port.mac),
                                            SetField("outport", port.key)]
        for li in lb.listeners:
            src, dst = PORTS[li.protocol]
            new = {**_listener(net.key, lb, li), "ct_state": NEW}
            bits, chosen = slots(li.members)
            if not chosen:
                _add(flows, NAT_STAGE, PRIO_EMPTY, new, cookie=cookie)
            field = "ipv4_src" if li.hash == HASH_SOURCE_IP else src
            for i, member in enumerate(chosen):
                mask = (1 << bits) - 1
                value = (_address(i), _address(mask)) if field == "ipv4_src" else \
                    (i << PORT_SHIFT, mask << PORT_SHIFT)
                _add(flows, NAT_STAGE, PRIO_SELECT, {**new, field: value},
                     to(member) + [Ct(LB_ZONE, commit=True, table=NEXT, nat=Nat(
                         "dst", member.address, member.port, member.port))], cookie=cookie)
            for member in li.members:
                if to(member):
                    _add(flows, NAT_STAGE, PRIO_MEMBER,
                         {"net": net.key, "eth_type": ETH_IP, "ip_proto": li.protocol,
                          "ipv4_dst": member.address, dst: member.port},
                         to(member), goto=NEXT, cookie=cookie)
    return [default_flow(NAT_STAGE, goto=NEXT)] + list(flows.values())


def _listener(net_key: int, lb: LoadBalancer, li) -> dict:
    return {"net": net_key, "eth_type": ETH_IP, "ip_proto": li.protocol, "ipv4_dst": lb.vip,
            PORTS[li.protocol][1]: li.port}


def _add(flows: dict, stage: str, prio: int, match: dict, actions=(), goto=None,
         cookie="") -> None:
    flow = Flow.make(stage, prio, match, actions, goto, cookie)
    flows.setdefault(flow.key(), flow)


def _address(value: int) -> str:
    """The low bits of an IPv4 address as a dotted mask/value."""
    return ".".join(str((value >> s) & 0xFF) for s in (24, 16, 8, 0))
