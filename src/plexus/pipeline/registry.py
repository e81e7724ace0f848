"""The one place that names every OpenFlow table (stage) and register of br-int.

Flows name stages and registers, never numbers; only the lowering step turns names
into numbers. Each stage declares the fields its flows may match, the stages they may
go to, and the module that owns it; ``check_flow`` enforces those promises and
``docs/pipeline.md`` is rendered from this module."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Register:
    """A named register: which OVS field carries it, and what it means."""

    name: str
    field: str
    bits: int
    doc: str


@dataclass(frozen=True)
class Stage:
    """One table of the pipeline."""

    name: str
    table: int
    owner: str                      # compiler module that alone may emit flows here
    matches: frozenset[str]         # fields flows of this stage may match
    next: tuple[str, ...]           # stages flows may go to
    doc: str
    # its flows are the union of its flows over each local network's part of the view
    # (``plexus.pipeline.incremental.part``), so one network's change recompiles that part
    partitioned: bool = False


REGISTERS: dict[str, Register] = {r.name: r for r in (
    Register("net", "metadata", 32,
             "logical network key of the packet (the network's tunnel key / VNI)"),
    Register("inport", "reg6", 32, "logical port key the packet came from (0 = tunnel)"),
    Register("outport", "reg7", 32, "logical port key chosen by L2 lookup"),
    Register("flags", "reg5", 32, "bit 0: arrived through a tunnel; bit 1: arrived from an "
             "external network (its patch port, or a tunnel with the external network's key); "
             "bit 2: routed packet longer than the next network's MTU (l3_route's "
             "check_pkt_larger)"),
    Register("router", "reg4", 32,
             "the router routing the packet (its conntrack zone on this chassis; 0 = none)"),
    Register("nexthop", "reg3", 32, "IPv4 next hop chosen by l3_route, resolved by l3_neighbor"),
    Register("nexthop6", "xxreg2", 128,
             "IPv6 next hop chosen by l3_route, resolved by l3_neighbor (reg8-reg11)"),
)}

FLAG_FROM_TUNNEL = 0x1
FLAG_FROM_EXTERNAL = 0x2
FLAG_TOO_BIG = 0x4              # set by l3_route when the frame exceeds the next MTU
FLAG_TOO_BIG_BIT = 2
OUTPORT_FLOOD = 0xFFFF          # outport value meaning "flood" (never a port key)
OUTPORT_EXTERNAL = 0x10000      # outport value meaning "out of the external network's patch"
                                # (on a bridged network: "not here, to the physical network")
# the conntrack zone of load-balanced connections (stage lb), apart from the ports' zones
# (their ofports) and the routers' (0xFF00 and up)
LB_ZONE = 0xFE00
ROUTED = (0xFF00, 0xFF00)       # router register match: routed by some router (its zone)

_L2 = {"in_port", "eth_src", "eth_dst", "eth_type", "vlan_vid"}
_ARP = {"arp_op", "arp_spa", "arp_tpa", "arp_sha", "arp_tha"}
_IP = {"ipv4_src", "ipv4_dst", "ip_proto", "ipv6_src", "ipv6_dst"}
_L4 = {"udp_src", "udp_dst", "tcp_src", "tcp_dst", "icmpv4_type", "icmpv4_code", "icmpv6_type",
       "icmpv6_code"}
_ND = {"ipv6_nd_target", "ipv6_nd_sll", "ipv6_nd_tll"}
_SCTP = {"sctp_src", "sctp_dst"}
_REGS = {"metadata", "reg3", "reg4", "reg5", "reg6", "reg7"}
_REGS6 = {"xxreg2"}             # the IPv6 next hop: only the L3 stages read it
_TUN = {"tunnel_id"}
_CT = {"ct_state", "ct_zone", "ct_mark", "conj_id"}
_CT_DISPATCH = frozenset(_REGS | {"eth_type", "ip_proto", "udp_src", "udp_dst", "icmpv6_type",
                                  "ipv6_src"})
_ACL = frozenset(_REGS | _IP | _L4 | _SCTP | _CT | {"eth_type"})
# No stage matches nw_ttl: os-ken writes NXM fields (nw_ttl is one) before OXM ones, so
# it would precede its eth_type prerequisite and Open vSwitch refuses the match. TTL 0
# and 1 are stopped by dec_ttl itself, which sends them to the agent (see flows.DecTtl).
_L3 = frozenset(_L2 | _ARP | _IP | _L4 | _REGS | _REGS6 | _ND)

STAGES: tuple[Stage, ...] = (
    Stage("classify", 0, "plexus.pipeline.stages.classify",
          frozenset({"in_port", "vlan_vid"} | _TUN),
          ("egress_qos", "l3_input", "l2_lookup", "metadata"),
          "in_port (VIF) or tunnel key → logical network and logical in-port registers; "
          "the patch port toward an external bridge (untagged for a flat network, its VLAN "
          "popped for a VLAN network) → the external network, or a local flat/VLAN network "
          "bridged to that physical network, on to l3_input; the external network's key "
          "from a tunnel → the external network, on to l3_input; a VIF goes on to egress_qos; "
          "the metadata port (when "
          "the chassis serves metadata) → metadata; unknown in_ports are dropped",
          partitioned=True),
    Stage("egress_qos", 5, "plexus.pipeline.stages.qos",
          frozenset(_REGS | {"eth_type"}), ("lb_probe",),
          "QoS of what leaves a VM (its port's policy, else its network's): the port's "
          "egress OpenFlow meter (a drop band at the bandwidth limit) and, for IPv4 and "
          "IPv6, the policy's DSCP mark; the ingress limit is the port's meter on "
          "output's flow to its VIF",
          partitioned=True),
    Stage("lb_probe", 7, "plexus.pipeline.stages.lb_probe",
          frozenset(_REGS | _IP | _L4 | {"eth_type"}), ("port_security",),
          "replies to the load balancer health probes this chassis sends its local "
          "members (from the VIP, to a source port of the probe range: a TCP SYN-ACK or "
          "RST, a UDP answer, an ICMP port unreachable) go to the agent "
          "(``agent.lbhealth``) before port security and conntrack see them; everything "
          "else goes on to port_security"),
    Stage("port_security", 10, "plexus.pipeline.stages.port_security",
          frozenset(_L2 | _ARP | _IP | _L4 | _ND | _REGS), ("arp_responder",),
          "source MAC and IP (and allowed address pairs) must belong to the in-port; "
          "DHCP from 0.0.0.0 is allowed (from any source address where the agent "
          "serves DHCP: all of it goes to the agent); an ARP from a VIP several ports "
          "list is also copied to the agent (it learns the VIP's owner). IPv6: from the "
          "port's fixed IPv6 addresses, its link-local (EUI-64 of its MAC) and IPv6 "
          "allowed address pairs; neighbour solicitations only with the port's MAC as "
          "source link-layer address (or none), from :: only for duplicate address "
          "detection (as MLD reports); advertisements only for the port's own addresses "
          "with its MAC as target link-layer address; router advertisements drop. "
          "Everything else from a VIF is dropped",
          partitioned=True),
    Stage("arp_responder", 20, "plexus.pipeline.stages.arp",
          frozenset(_L2 | _ARP | _REGS), ("nd_responder",),
          "ARP requests for every known address on the network are answered in place "
          "and sent back out of the in-port",
          partitioned=True),
    Stage("nd_responder", 25, "plexus.pipeline.stages.nd",
          frozenset(_L2 | _IP | _L4 | _ND | _REGS), ("nd_reply", "dhcp"),
          "IPv6 neighbour solicitations for every known IPv6 address on the network "
          "(VM and router ports' fixed addresses and the link-local EUI-64 address of "
          "each port's MAC) become the owner's advertisement (router ports' with the "
          "router flag) and go on to nd_reply; solicitations from :: (duplicate address "
          "detection) and for unknown targets go on like other packets",
          partitioned=True),
    Stage("nd_reply", 26, "plexus.pipeline.stages.nd_reply",
          frozenset(_L2 | _IP | _L4 | _REGS), (),
          "the advertisement nd_responder made gets its target link-layer address (its "
          "new source MAC: Open vSwitch only sets that option on a packet that already is "
          "an advertisement) and leaves by the in-port"),
    Stage("dhcp", 30, "plexus.pipeline.stages.dhcp",
          frozenset(_L2 | _IP | _L4 | _REGS | _ND), ("metadata",),
          "DHCP requests from local ports on DHCP-enabled subnets go to the agent "
          "(packet-in); the agent's reply is injected back; so do DHCPv6 messages from "
          "ports on dhcpv6-stateful/-stateless subnets, and router solicitations on a "
          "network where a router has an IPv6 interface (the agent answers with that "
          "router's advertisement, and sends them unsolicited too), and neighbour "
          "solicitations for such a router port's link-local address (the agent answers)",
          partitioned=True),
    Stage("metadata", 35, "plexus.pipeline.stages.metadata",
          frozenset(_L2 | _IP | _L4 | _REGS), ("egress_ct",),
          "where the chassis serves metadata: TCP from a local port to 169.254.169.254:80 "
          "is source-NATed (conntrack, the port's zone) to the port's own link-local "
          "address and sent to the chassis' metadata port, whose proxy knows the port by "
          "that address; its replies (from the metadata port, to that address) are "
          "un-NATed and go straight to the port; anything else from the metadata port "
          "drops; other packets go on",
          partitioned=True),
    Stage("egress_ct", 40, "plexus.pipeline.stages.egress_ct",
          _CT_DISPATCH, ("egress_acl", "l3_input"),
          "security groups, leaving a VM: IPv4 from a guarded port (port security on, "
          "groups known) goes through conntrack in the port's zone (its ofport) and on to "
          "egress_acl; DHCP requests pass, DHCP replies from a VM drop; the rest passes",
          partitioned=True),
    Stage("egress_acl", 45, "plexus.pipeline.stages.egress_acl",
          _ACL, ("l3_input",),
          "the port's egress rules (conjunctive matches: the port's groups × their "
          "rules, shared by the ports; remote groups' members × the port's matches): "
          "invalid and "
          "revoked (ct_mark=1) connections drop, replies and related pass, new and "
          "established packets a rule allows are committed and pass; an established "
          "connection no rule allows any more is marked revoked and dropped",
          partitioned=True),
    Stage("l3_input", 46, "plexus.pipeline.stages.l3_input",
          _L3, ("l3_route", "l3_snat", "l2_lookup"),
          "packets for a router. From a VM (to a router port MAC): ICMP echo to a router "
          "address is answered in place, anything else to one of its interface addresses "
          "drops, the rest is routed (the gateway address included: hairpin replies). "
          "From an external network: ARP for a floating IP is answered only on the chassis "
          "hosting its port, ARP and ping for a router gateway only on its active gateway "
          "chassis; a floating IP is DNATed (conntrack, router zone; NAT flows first look "
          "the packet up in the forget zone, dropping a connection Open vSwitch cached on "
          "a looped-back hairpin frame); TCP/UDP to a gateway "
          "address goes statelessly to the chassis owning the destination port's SNAT block "
          "(unNATed there); other gateway traffic is unNATed on the active gateway; "
          "portless packets a chassis sends its router's active gateway are SNATed there; "
          "to an internal subnet of a router without SNAT, or one in the external "
          "network's address scope, routed as is on the active gateway; "
          "everything else from outside drops; other packets go on to l2_lookup. IPv6 "
          "(no NAT): from a VM, echo requests to the router's IPv6 addresses (its "
          "link-local one included) are answered in place, anything else to them, to a "
          "link-local or a multicast address drops, the rest is routed; from outside, on "
          "the active gateway only, a neighbour solicitation for the IPv6 gateway address "
          "goes to the agent (which answers it), ping to it is answered, packets to the "
          "router's IPv6 subnets are routed as they are"),
    Stage("l3_route", 47, "plexus.pipeline.stages.l3_route",
          _L3, ("l3_neighbor",),
          "the router's routing table, longest prefix first (priority by prefix length), "
          "after dropping traffic between two of its subnets in different address scopes "
          "(Neutron: routed only through NAT): "
          "connected subnets, extra routes, the router's own gateway and floating IP "
          "addresses (hairpin), external host and subnet routes and the default "
          "route via the external gateway (never for packets that came from outside); TTL "
          "is decremented (TTL 1 or 0: dec_ttl stops there and sends an invalid-TTL "
          "packet-in, answered with ICMP time exceeded), a frame longer than the next "
          "network's MTU sets flags bit 2 (check_pkt_larger), the source MAC becomes the "
          "router port's on the next network, net and the next hop are set. IPv6 has a "
          "table of its own (connected, extra routes, the external subnet, resolved "
          "hosts and ::/0 via the IPv6 gateway's next hop; no hairpin), the hop limit "
          "decremented by dec_ttl, the next hop in nexthop6"),
    Stage("l3_neighbor", 48, "plexus.pipeline.stages.l3_neighbor",
          _L3, ("l3_snat", "l2_lookup"),
          "next hop → destination MAC: from the model for ports (no ARP), for "
          "allowed-address-pair VIPs held by one port and for a router's own external "
          "addresses (hairpin), from the agent's resolutions for other external addresses "
          "(unknown: drop); internal networks go on to l2_lookup, external ones to "
          "l3_snat. A packet too big for the next network (flags bit 2) goes to the agent "
          "(ICMP fragmentation needed if DF is set), as does one to an address of a router "
          "subnet that no port holds (ICMP host unreachable). IPv6 next hops (nexthop6): "
          "every IPv6 address of the routed networks' ports from the model (SLAAC "
          "addresses are the EUI-64 ones the API assigned), and the agent's neighbour "
          "resolutions of external ones; an address of a router IPv6 subnet no port holds "
          "goes to the agent (ICMPv6 address unreachable), others drop"),
    Stage("l3_snat", 49, "plexus.pipeline.stages.l3_snat",
          _L3, ("output", "snat_guard"),
          "leaving by an external network: a port with a floating IP is SNATed to it "
          "(source MAC: the floating IP's); TCP/UDP of other ports to the gateway address "
          "with source ports from this chassis' blocks (source MAC: this chassis' own for "
          "the router); portless protocols go through the tunnel to the router's active "
          "gateway, which SNATs them (source MAC: the gateway port's); routers without SNAT, "
          "and subnets in the external network's address scope, route unchanged; NATed "
          "packets go on to snat_guard, the rest to output. IPv6 leaves unchanged (no "
          "NAT) from the VM's own chassis, source MAC this chassis' own for the router"),
    Stage("l2_lookup", 50, "plexus.pipeline.stages.l2",
          frozenset(_L2 | _REGS), ("ingress_ct", "lb"),
          "destination MAC → logical out-port, on local networks and on networks a local "
          "router routes to; broadcast and multicast flood (local networks only); unknown "
          "unicast on a bridged flat/VLAN network goes to its physical network; where a "
          "load balancer is reachable, its VIP port's MAC and the local ports of its "
          "client networks go on to lb",
          partitioned=True),
    Stage("lb", 60, "plexus.pipeline.stages.lb",
          frozenset(_REGS | _IP | _L4 | {"eth_type"}), ("lb_nat", "ingress_ct"),
          "load balancing on the client's chassis (conntrack zone LB_ZONE): to a "
          "listener's VIP:port, through conntrack (an established connection comes back "
          "NATed to its member) on to lb_nat; from a member's address and port to a "
          "local client port, a reply is un-NATed on the way to ingress_ct; the rest "
          "goes on to ingress_ct"),
    Stage("lb_nat", 65, "plexus.pipeline.stages.lb_nat",
          frozenset(_REGS | _IP | _L4 | {"eth_type", "ct_state"}), ("ingress_ct",),
          "a new connection to a listener: the member its hash slot picks (low bits of "
          "the source port, or of the source address for SOURCE_IP; slots shared by "
          "weight): its MAC and out-port, then committed with DNAT to it (none in "
          "selection: drop); an established one: its member's MAC and out-port; on to "
          "ingress_ct"),
    Stage("ingress_ct", 70, "plexus.pipeline.stages.ingress_ct",
          _CT_DISPATCH, ("ingress_acl", "output"),
          "security groups, entering a VM (from a local port or a tunnel): IPv4 to a "
          "guarded local port goes through conntrack in that port's zone and on to "
          "ingress_acl; ARP and DHCP replies pass, other traffic to it drops; floods and "
          "unguarded ports pass",
          partitioned=True),
    Stage("ingress_acl", 75, "plexus.pipeline.stages.ingress_acl",
          _ACL, ("output",),
          "the out-port's ingress rules, as egress_acl does for the in-port's egress "
          "rules",
          partitioned=True),
    Stage("snat_guard", 79, "plexus.pipeline.stages.snat_guard",
          _L3, ("output",),
          "after l3_snat's conntrack NAT: a packet of a router with SNAT leaves only with "
          "its gateway address or a floating IP hosted here as source; anything else "
          "(NAT found no free port) drops, counted per router; routers without SNAT pass"),
    Stage("output", 80, "plexus.pipeline.stages.output",
          frozenset(_REGS | {"eth_dst"}), (),
          "out-port → local VIF, or tunnel to the chassis hosting it (VNI = network); "
          "floods reach local ports and only the chassis that share the network; the "
          "external out-port leaves by the patch port toward the external bridge (VLAN "
          "pushed for a VLAN network); a flat/VLAN network bridged here sends remote ports, "
          "unknown unicast and floods from local ports out of that patch instead of tunnels "
          "(routed frames with this chassis' own MAC), never back out what came from it",
          partitioned=True),
)

BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}

# OpenFlow match prerequisites: a field may only be matched when the field it depends
# on is matched too, with one of these values (Open vSwitch refuses the flow otherwise).
_ETH_IP = ("eth_type", frozenset({0x0800}))
_ETH_ARP = ("eth_type", frozenset({0x0806}))
PREREQUISITES: dict[str, tuple[str, frozenset]] = {
    **{f: _ETH_ARP for f in _ARP},
    "ipv4_src": _ETH_IP, "ipv4_dst": _ETH_IP,
    "ipv6_src": ("eth_type", frozenset({0x86DD})), "ipv6_dst": ("eth_type", frozenset({0x86DD})),
    "ip_proto": ("eth_type", frozenset({0x0800, 0x86DD})),
    "udp_src": ("ip_proto", frozenset({17})), "udp_dst": ("ip_proto", frozenset({17})),
    "tcp_src": ("ip_proto", frozenset({6})), "tcp_dst": ("ip_proto", frozenset({6})),
    "icmpv4_type": ("ip_proto", frozenset({1})), "icmpv4_code": ("ip_proto", frozenset({1})),
    "icmpv6_type": ("ip_proto", frozenset({58})), "icmpv6_code": ("ip_proto", frozenset({58})),
    "ipv6_nd_target": ("icmpv6_type", frozenset({135, 136})),
    "sctp_src": ("ip_proto", frozenset({132})), "sctp_dst": ("ip_proto", frozenset({132})),
    "ipv6_nd_sll": ("icmpv6_type", frozenset({135})),
    "ipv6_nd_tll": ("icmpv6_type", frozenset({136})),
}
# ICMPv6 exists only over IPv6 (ICMP only over IPv4): a second condition on ip_proto
PROTOCOL_ETH_TYPE = {58: 0x86DD, 1: 0x0800}


def stage(name: str) -> Stage:
    """The stage called ``name`` (KeyError if it is not declared)."""
    return BY_NAME[name]


def table_of(name: str) -> int:
    """OpenFlow table number of a stage."""
    return BY_NAME[name].table


def register_field(name: str) -> str:
    """The OVS field that carries a named register."""
    return REGISTERS[name].field


class PipelineViolation(AssertionError):
    """A flow breaks a promise of the registry."""


def check_flow(flow, owner: str | None = None) -> None:
    """Raise PipelineViolation unless the flow respects its stage's declaration."""
    st = BY_NAME.get(flow.stage)
    if st is None:
        raise PipelineViolation(f"flow in undeclared stage {flow.stage!r}")
    if owner is not None and owner != st.owner:
        raise PipelineViolation(f"{owner} emitted into {st.name}, owned by {st.owner}")
    for field in flow.match_fields():
        if field not in st.matches:
            raise PipelineViolation(f"{st.name} may not match {field!r}")
    matched = dict(flow.match)
    for field in matched:
        need = PREREQUISITES.get(field)
        if need and matched.get(need[0]) not in need[1]:
            raise PipelineViolation(f"{st.name}: matching {field!r} needs {need[0]} in "
                                    f"{sorted(need[1])}")
    family = PROTOCOL_ETH_TYPE.get(matched.get("ip_proto"))
    if family is not None and matched.get("eth_type") != family:
        raise PipelineViolation(f"{st.name}: ip_proto {matched['ip_proto']} needs eth_type "
                                f"{family:#x}")
    for target in flow.goto_targets():
        if target not in st.next:
            raise PipelineViolation(f"{st.name} may not go to {target!r}")
    _check_actions(st, flow)


def _check_actions(st: Stage, flow) -> None:
    """OVS's rules for conjunction and recirculating ct actions."""
    kinds = [type(a).__name__ for a in flow.actions]
    conj = flow.conjunctions()
    if conj:
        if len(conj) != len(flow.actions) or flow.goto:
            raise PipelineViolation(f"{st.name}: a flow with conjunction actions may have "
                                    f"no other action and no goto: {kinds}")
        if "conj_id" in dict(flow.match):
            raise PipelineViolation(f"{st.name}: a conj_id flow may not be conjunctive")
        for c in conj:
            if not (2 <= c.n <= 64 and 1 <= c.k <= c.n):
                raise PipelineViolation(f"{st.name}: bad conjunction {c}")
        if len({c.id for c in conj}) != len(conj):
            raise PipelineViolation(f"{st.name}: one conjunction id twice in a flow")
    for i, name in enumerate(kinds):
        action = flow.actions[i]
        if name == "Ct" and action.table and (i != len(kinds) - 1 or flow.goto):
            raise PipelineViolation(f"{st.name}: ct(table=...) must be the last action of a "
                                    f"flow without goto")
        if name == "Ct" and action.mark is not None and not action.commit:
            raise PipelineViolation(f"{st.name}: setting ct_mark needs commit")
        if name == "Ct" and dict(flow.match).get("eth_type") not in (0x0800, 0x86DD):
            raise PipelineViolation(f"{st.name}: a ct action needs an IPv4 or IPv6 match")
        nat = getattr(action, "nat", None) if name == "Ct" else None
        if nat is not None and nat.kind:
            if nat.kind not in ("src", "dst") or not nat.ip or not action.commit:
                raise PipelineViolation(f"{st.name}: nat({nat.kind}=...) needs an address "
                                        f"and commit")
            if (nat.port_min or nat.port_max) and not 0 < nat.port_min <= nat.port_max:
                raise PipelineViolation(f"{st.name}: bad NAT port range {nat}")
        if name in ("DecTtl",) and dict(flow.match).get("eth_type") not in (0x0800, 0x86DD):
            raise PipelineViolation(f"{st.name}: dec_ttl needs an IPv4 or IPv6 match")
