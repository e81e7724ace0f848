"""Security groups with Neutron's OVS-firewall semantics, stateful through conntrack, for
the four ACL stages (egress_ct → egress_acl before routing and L2 lookup, ingress_ct →
ingress_acl after them). Directions are the VM's: egress leaves the in-port, ingress enters a local
out-port (from a local port or a tunnel). The stage modules are thin; this is the
compiler they share.

A port is guarded when it is bound here, admin up, has port security, and the view
carries security groups (``View.security``); its rules are compiled from its binding,
before its VIF is plugged. Each guarded port has its own conntrack zone: its OpenFlow
port number, which OVS keeps for as long as the VIF is plugged and which no other VIF on
br-int has meanwhile. Only the ``*_ct`` stages' tracking flow of a port names it (and
exists once the VIF is plugged: until then the port's IPv4 drops there, as nothing can
reach it); the ACL stages commit in the zone the packet was tracked in
(``ct(commit,zone=NXM_NX_CT_ZONE[])``), so their flows do not change when the port is
plugged, moved to another ofport or unplugged.

- ``*_ct``: IPv4 and IPv6 of a guarded port are sent through conntrack in the port's
  zone (stateless groups: not tracked) and on to the ACL stage. Egress: DHCP and DHCPv6
  requests pass untracked, DHCP and DHCPv6 replies from a VM (a rogue server) drop,
  neighbour discovery and MLD (ICMPv6 130-133, 135, 136, 143; port_security has checked
  them) pass untracked. Ingress: ARP, DHCP and DHCPv6 replies, neighbour solicitations
  and advertisements and MLD queries pass, and router advertisements from the link-local
  address of a router interface of the port's network (Neutron's RA rule); anything else
  that is neither IPv4 nor IPv6 drops. Floods and unguarded ports pass.
- ``*_acl``: invalid packets and connections marked revoked (``ct_mark=1``) drop;
  replies and related packets of accepted connections pass; new packets and
  established ones in the original direction pass when a rule of the port's groups
  allows them (committed in the zone); an established connection that no rule allows
  any more is marked revoked (Neutron's behaviour: a removed rule also cuts live
  connections, at their next packet); anything else drops.

A group's own rules (no remote group) are one conjunctive match per group: dimension 1 is
each port holding the group (one flow per port, an action per group), dimension 2 each
rule's protocol/port/prefix match (one flow per match, no port in it, shared by every
port holding the group); a ``conj_id`` flow per port and group commits in the zone the
packet was tracked in. So a rule added to or removed from a group costs one flow per
match of the rule, not one per port holding the group.

Rules with a remote group are conjunctive matches (``conjunction(id, k/2)``): dimension 1
is the group's member addresses, one flow each, shared by every port of the chassis
(cookie ``sg:<group>:members``, so a membership change touches only those); dimension 2
is the port's protocol/port matches. N members × M port ranges cost N + M flows. A rule
with a remote address group is the same, its CIDRs as the members (cookie
``ag:<address group>:members``): an address group's change touches only its member flows.

The per-port flows are built from the groups' shapes (``SecurityView.shapes``), not their
rules, so the incremental compiler recompiles them as lookups when a rule changes."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

from plexus.model.objects import ADDRESS_GROUP
from plexus.pipeline.flows import Conjunction, Ct, CtClear, Flow, ct_state
from plexus.model.keys import INTERFACE_OWNERS
from plexus.pipeline.stages.common import (
    ETH_ARP, ETH_IP, ETH_IPV6, IP_ICMPV6, IP_UDP, MLD2_REPORT, MLD_DONE, MLD_QUERY, MLD_REPORT,
    ND_NA, ND_NS, ND_RA, ND_RS, as_match, bound_ports, default_flow, is_ipv4, link_local,
)
from plexus.pipeline.view import PortView, RuleView, View


@dataclass(frozen=True, eq=False)
class Direction:
    """One direction of filtering: its two stages and how it names port and peer (two
    constants, ``EGRESS`` and ``INGRESS``, compared and hashed by identity)."""

    name: str                 # the rules' direction
    ct_stage: str
    acl_stage: str
    after: str                # the stage an accepted packet continues in
    port_register: str        # which register names the guarded port
    peer_field: str           # where the remote address is: destination when egress


EGRESS = Direction("egress", "egress_ct", "egress_acl", "l3_input", "inport", "ipv4_dst")
INGRESS = Direction("ingress", "ingress_ct", "ingress_acl", "output", "outport", "ipv4_src")
IP_TYPES = (ETH_IP, ETH_IPV6)           # what conntrack and the rules see
ETHERTYPES = {"IPv4": ETH_IP, "IPv6": ETH_IPV6}

PRIO_DHCP = 100        # *_ct: DHCP allowances (before conntrack)
PRIO_TRACK = 90        # *_ct: IPv4 (and, ingress, ARP) of a guarded port
PRIO_OTHER = 80        # ingress_ct: anything else to a guarded port drops
PRIO_INVALID = 100     # *_acl
PRIO_REVOKED = 95
PRIO_RETURN = 90
PRIO_RULE = 70         # ordinary rule flows and conj_id flows
PRIO_CONJ = 60         # the dimensions of conjunctive rules
PRIO_UNALLOWED = 40    # established, no rule allows it: mark revoked

INVALID = ct_state("+inv+trk")
REPLY = ct_state("+est-rel+rpl+trk")
RELATED = ct_state("-new-est+rel-inv+trk")
ESTABLISHED = ct_state("+est+trk")
REVOKED_MARK = 1
PORT_FIELDS = {6: "tcp_dst", 17: "udp_dst", 132: "sctp_dst"}   # protocols with ports
IP_ICMP = 1
DHCP_REQUEST = {"eth_type": ETH_IP, "ip_proto": IP_UDP, "udp_src": 68, "udp_dst": 67}
DHCP_REPLY = {"eth_type": ETH_IP, "ip_proto": IP_UDP, "udp_src": 67, "udp_dst": 68}
DHCP6_REQUEST = {"eth_type": ETH_IPV6, "ip_proto": IP_UDP, "udp_src": 546, "udp_dst": 547}
DHCP6_REPLY = {"eth_type": ETH_IPV6, "ip_proto": IP_UDP, "udp_src": 547, "udp_dst": 546}
ICMP6 = {"eth_type": ETH_IPV6, "ip_proto": IP_ICMPV6}
# ICMPv6 that passes untracked (Neutron's ICMPV6_ALLOWED_*_TYPES, MLD reports added)
EGRESS_ICMP6 = (MLD_QUERY, MLD_REPORT, MLD_DONE, ND_RS, ND_NS, ND_NA, MLD2_REPORT)
INGRESS_ICMP6 = (MLD_QUERY, ND_NS, ND_NA)


# --- which ports, which rules ---------------------------------------------------------

def guarded_ports(view: View) -> list[PortView]:
    """Local ports whose traffic is filtered (none until the view carries security)."""
    if view.security is None:
        return []
    return [p for p in bound_ports(view) if p.port_security]


def zone(view: View, port: PortView) -> int | None:
    """The port's conntrack zone: its OpenFlow port number on br-int (None while its VIF
    is not plugged)."""
    return view.vif_ofports.get(port.id)


# What the ACL stages commit in: the zone the ``*_ct`` stage tracked the packet in.
TRACKED_ZONE = "ct_zone"


def groups_of(view: View, port: PortView) -> list[str]:
    """Ids of the port's security groups the view knows, sorted."""
    sec = view.security
    shapes = sec.shapes
    return sorted(g for g in sec.port_groups.get(port.id, ()) if g in shapes)


def stateful(view: View, port: PortView) -> bool:
    """Whether the port's groups are stateful (the API keeps a port's groups all alike)."""
    shapes = view.security.shapes
    return all(shapes[g].stateful for g in groups_of(view, port))


# --- rules → matches ------------------------------------------------------------------

def port_masks(low: int, high: int) -> list[int | tuple[int, int]]:
    """The fewest value/mask matches covering ports ``low..high`` (exact for one port)."""
    out: list[int | tuple[int, int]] = []
    while low <= high:
        size = low & -low if low else 1 << 16
        while size > high - low + 1:
            size >>= 1
        out.append(low if size == 1 else (low, 0xFFFF & ~(size - 1)))
        low += size
    return out


def rule_matches(rule: RuleView) -> list[dict]:
    """The rule's protocol part as matches (several for a port range): its ethertype,
    ports for TCP, UDP and SCTP, type and code for ICMP and ICMPv6; ports of other
    protocols (DCCP, UDP-Lite) are not matched, as in Neutron's OVS firewall. A rule
    whose protocol cannot be carried by its ethertype (ICMP on IPv6 is ICMPv6 already)
    matches it anyway (IPv4 ICMP on IPv6 never occurs: nothing is allowed by it)."""
    base: dict = {"eth_type": ETHERTYPES[rule.ethertype]}
    if rule.protocol is None:
        return [base]
    if (rule.protocol, base["eth_type"]) in ((IP_ICMP, ETH_IPV6), (IP_ICMPV6, ETH_IP)):
        return []                       # a protocol of the other family: allows nothing
    base["ip_proto"] = rule.protocol
    field = PORT_FIELDS.get(rule.protocol)
    if field and rule.port_min and rule.port_max:
        return [{**base, field: m} for m in port_masks(rule.port_min, rule.port_max)]
    icmp = {IP_ICMP: "icmpv4", IP_ICMPV6: "icmpv6"}.get(rule.protocol)
    if icmp and rule.port_min is not None:
        match = {**base, f"{icmp}_type": rule.port_min}
        if rule.port_max is not None:
            match[f"{icmp}_code"] = rule.port_max
        return [match]
    return [base]


def peer_field(d: Direction, address: str) -> str:
    """The field of the remote address (IPv4 or IPv6) in a direction."""
    return d.peer_field if is_ipv4(address) else d.peer_field.replace("ipv4", "ipv6")


def peer_match(d: Direction, address: str) -> dict:
    """Match of the remote address (none for 0.0.0.0/0 or ::/0)."""
    value = as_match(address)
    return {} if value in (("0.0.0.0", "0.0.0.0"), ("::", "::")) else {
        peer_field(d, address): value}


def conj_ids(groups: list[str]) -> dict[str, int]:
    """A conjunction id per remote group: a hash of its id, so it does not depend on which
    other groups are used (on a rare collision, the later group in sorted order probes on)."""
    out: dict[str, int] = {}
    taken: set[int] = set()
    for group in sorted(set(groups)):
        cid = int.from_bytes(hashlib.blake2b(group.encode(), digest_size=4).digest(), "big")
        while cid == 0 or cid in taken:
            cid = (cid + 1) & 0xFFFFFFFF
        taken.add(cid)
        out[group] = cid
    return out


# --- the stages -----------------------------------------------------------------------

def conntrack_flows(view: View, d: Direction) -> list[Flow]:
    """The ``*_ct`` stage: per guarded port, the DHCP allowances and the conntrack step."""
    flows = [default_flow(d.ct_stage, goto=d.after)]
    if view.security is not None:
        flows += icmp6_flows(d)
    networks: set[str] = set()
    for port in guarded_ports(view):
        net_key, keep = view.networks[port.network_id].key, stateful(view, port)
        if d is INGRESS and port.network_id not in networks:
            networks.add(port.network_id)
            flows += ra_flows(net_key, port.network_id,
                              router_link_locals(view, port.network_id))
        flows += port_ct_flows(d, net_key, port.key, port.id, keep)
        ct_zone = zone(view, port)
        if keep and ct_zone is not None:            # plugged: its IP is tracked
            flows += track_flows(d, net_key, port.key, port.id, ct_zone)
    return flows


@functools.lru_cache(maxsize=2)
def icmp6_flows(d: Direction) -> tuple[Flow, ...]:
    """Neighbour discovery and MLD pass untracked, whoever sends or receives them (one
    flow per type for the chassis: port_security has checked what a VM sends)."""
    kinds = EGRESS_ICMP6 if d is EGRESS else INGRESS_ICMP6
    return tuple(Flow.make(d.ct_stage, PRIO_DHCP, {**ICMP6, "icmpv6_type": kind}, goto=d.after,
                           cookie=f"pipeline:{d.ct_stage}", note="neighbour discovery, MLD")
                 for kind in kinds)


@functools.lru_cache(maxsize=1 << 12)
def ra_flows(net_key: int, network_id: str, sources: tuple[str, ...]) -> tuple[Flow, ...]:
    """Router advertisements on a network pass untracked from the link-local addresses
    of its router interfaces (Neutron's RA rule), and only from them."""
    return tuple(Flow.make(INGRESS.ct_stage, PRIO_DHCP,
                           {"net": net_key, **ICMP6, "icmpv6_type": ND_RA, "ipv6_src": source},
                           goto=INGRESS.after, cookie=f"network:{network_id}",
                           note="router advertisements of the network's routers")
                 for source in sources)


def router_link_locals(view: View, network_id: str) -> tuple[str, ...]:
    """The link-local addresses of the network's router interfaces: where the router
    advertisements a guarded port accepts come from (sorted)."""
    return tuple(sorted({link_local(p.mac) for p in view.ports_on(network_id)
                         if p.device_owner in INTERFACE_OWNERS}))


@functools.lru_cache(maxsize=1 << 14)
def port_ct_flows(d: Direction, net_key: int, port_key: int, port_id: str,
                  keep: bool) -> tuple[Flow, ...]:
    """One guarded port's ``*_ct`` flows but the tracking step, by value (from its
    binding: none names its ofport; a rule change that leaves its groups' statefulness
    alone costs a lookup). A stateful port's IP drops here until its VIF is plugged
    (``track_flows``)."""
    me = {"net": net_key, d.port_register: port_key}
    cookie = f"port:{port_id}"
    flows = []

    def add(prio, match, actions=(), goto=None, note=""):
        flows.append(Flow.make(d.ct_stage, prio, {**me, **match}, actions, goto, cookie, note))
    if d is EGRESS:
        add(PRIO_DHCP, DHCP_REQUEST, goto=d.after, note="DHCP requests always pass")
        add(PRIO_DHCP, DHCP_REPLY, note="no DHCP server on an instance")
        add(PRIO_DHCP, DHCP6_REQUEST, goto=d.after, note="DHCPv6 requests always pass")
        add(PRIO_DHCP, DHCP6_REPLY, note="no DHCPv6 server on an instance")
    else:
        add(PRIO_DHCP, DHCP_REPLY, goto=d.after, note="DHCP replies always pass")
        add(PRIO_DHCP, DHCP6_REPLY, goto=d.after, note="DHCPv6 replies always pass")
        add(PRIO_TRACK, {"eth_type": ETH_ARP}, goto=d.after)
        add(PRIO_OTHER, {}, note="neither IP nor ARP")
    if not keep:
        for eth_type in IP_TYPES:
            add(PRIO_TRACK, {"eth_type": eth_type}, [CtClear()] if d is INGRESS else [],
                goto=d.acl_stage, note="stateless groups: not tracked")
    return tuple(flows)


@functools.lru_cache(maxsize=1 << 14)
def track_flows(d: Direction, net_key: int, port_key: int, port_id: str,
                ofport: int) -> tuple[Flow, ...]:
    """A plugged stateful port's conntrack step: its IPv4 and IPv6 through conntrack in
    its zone (its ofport), on to the ACL stage. The only ACL-side flows that name the
    ofport."""
    return tuple(Flow.make(d.ct_stage, PRIO_TRACK, {"net": net_key, d.port_register: port_key,
                                                    "eth_type": eth_type},
                           [Ct(ofport, table=d.acl_stage)], cookie=f"port:{port_id}")
                 for eth_type in IP_TYPES)


def acl_flows(view: View, d: Direction) -> list[Flow]:
    """The ``*_acl`` stage: connection state, then each guarded port's rules."""
    return acl_shared_flows(view, d) + acl_port_flows(view, d)


RULES = "rules:"                # the conjunction key of a group's own (non-remote) rules


def _is_plain(rule: RuleView, d: Direction) -> bool:
    return rule.direction == d.name and rule.remote is None


def acl_ids(view: View, d: Direction) -> dict[str, int]:
    """Conjunction ids of this direction, over every group the view carries (the same ids
    whichever ports are being compiled): a remote group's by its id, a group's own rules'
    by ``RULES`` + its id."""
    if view.security is None:
        return {}
    shapes = view.security.shapes
    return _acl_ids(d, tuple((g, shapes[g]) for g in sorted(shapes)))


@functools.lru_cache(maxsize=64)
def _acl_ids(d: Direction, shapes: tuple) -> dict[str, int]:
    return conj_ids([r.remote for _, s in shapes for r in s.remote
                     if r.direction == d.name] + [RULES + g for g, _ in shapes])


@functools.lru_cache(maxsize=1 << 12)
def _plain_rules(d: Direction, group) -> tuple:
    """A group's own rules of one direction (no remote group)."""
    return tuple(r for r in group.rules if _is_plain(r, d))


@functools.lru_cache(maxsize=1 << 12)
def _remote_rules(d: Direction, shape) -> tuple:
    """A group's remote-group rules of one direction, from its shape."""
    return tuple(r for r in shape.remote if r.direction == d.name)


@functools.lru_cache(maxsize=1 << 16)
def _rule_dims(d: Direction, group: str, rule: RuleView) -> tuple:
    """A rule's side of its group's conjunction: (match, cookie) per match of the rule
    (protocol, ports, remote prefix), with no port in it."""
    cookie = f"sg:{group}:rule:{rule.id}"
    peer = peer_match(d, rule.remote_prefix) if rule.remote_prefix else {}
    return tuple((tuple(sorted({**match, **peer}.items())), cookie)
                 for match in rule_matches(rule))


def acl_shared_flows(view: View, d: Direction) -> list[Flow]:
    """Connection state; the rules of the guarded ports' groups, each match one flow
    (dimension 2 of its group's conjunction, whose dimension 1 are the ports holding the
    group), shared by every port holding it; and the member addresses of the remote
    groups the guarded ports' rules name (one flow per address, whose conjunctions every
    group holding it shares). A match both kinds have is one flow with both."""
    flows = [default_flow(d.acl_stage)]
    if view.security is None:
        return flows
    stage, after = d.acl_stage, d.after
    common = f"pipeline:{stage}"
    flows += [
        Flow.make(stage, PRIO_INVALID, {"ct_state": INVALID}, cookie=common, note="invalid"),
        Flow.make(stage, PRIO_REVOKED, {"ct_mark": REVOKED_MARK}, cookie=common,
                  note="a connection no rule allows any more"),
        Flow.make(stage, PRIO_RETURN, {"ct_state": REPLY}, goto=after, cookie=common,
                  note="replies of accepted connections"),
        Flow.make(stage, PRIO_RETURN, {"ct_state": RELATED}, goto=after, cookie=common,
                  note="related to accepted connections (ICMP errors)"),
    ]
    sec = view.security
    ids = acl_ids(view, d)
    held = sorted({g for p in guarded_ports(view) for g in groups_of(view, p)})
    dims: dict[tuple, tuple[set, set]] = {}       # match → (conjunctions, cookies)
    for gid in held:
        group = sec.groups[gid]
        conj = Conjunction(ids[RULES + gid], 2, 2)
        for rule in _plain_rules(d, group):
            for match, cookie in _rule_dims(d, gid, rule):
                acts, cookies = dims.setdefault(match, (set(), set()))
                acts.add(conj)
                cookies.add(cookie)
    used = sorted({r.remote for g in held for r in _remote_rules(d, sec.shapes[g])})
    held_members = _member_flows(stage, d.peer_field, tuple(
        (gid, ids[gid], sec.members.get(gid, ())) for gid in used))
    both = dims.keys() & held_members.keys()
    flows += ([f for m, f in held_members.items() if m not in both] if both
              else held_members.values())
    for match, (acts, cookies) in dims.items():
        if match in both:
            acts.update(held_members[match].actions)
            cookies.update(held_members[match].cookie.split(","))
        flows.append(_dim_flow(stage, match, tuple(sorted(acts)), ",".join(sorted(cookies))))
    return flows


@functools.lru_cache(maxsize=256)
def _member_flows(stage: str, peer_field: str, groups: tuple) -> dict[tuple, Flow]:
    """The member flows of remote groups ((group, conjunction id, its member addresses)),
    by match: one per address, whose conjunctions every group holding it shares. Built
    once per value of the groups' memberships (a rule change costs a lookup)."""
    held: dict[tuple, list] = {}                  # match → [(conjunction id, group)]
    for gid, cid, addresses in groups:
        for address in addresses:
            held.setdefault(_member_match(peer_field, address), []).append((cid, gid))
    return {match: _member_flow(stage, match, tuple(sorted(set(by))) if len(by) > 1
                                else by[0]) for match, by in held.items()}


@functools.lru_cache(maxsize=1 << 16)
def _member_flow(stage: str, match: tuple, by: tuple) -> Flow:
    """The member flow of a remote address (``match``) that the remote groups ``by`` hold
    (one (conjunction id, group), or a sorted tuple of them), built once per value."""
    pairs = by if isinstance(by[0], tuple) else (by,)
    return _dim_flow(stage, match, tuple(sorted({Conjunction(cid, 1, 2) for cid, _ in pairs})),
                     ",".join(sorted({members_cookie(gid) for _, gid in pairs})))


def members_cookie(remote: str) -> str:
    """The cookie of a remote set's member flows: ``sg:<group>:members``, or
    ``ag:<address group>:members``."""
    if remote.startswith(ADDRESS_GROUP):
        return f"ag:{remote[len(ADDRESS_GROUP):]}:members"
    return f"sg:{remote}:members"


@functools.lru_cache(maxsize=1 << 16)
def _member_match(peer_field: str, address: str) -> tuple:
    """The match of a remote address (IPv4 or IPv6: the IPv4 ``peer_field``'s IPv6
    counterpart), as a flow carries it (sorted pairs)."""
    value = as_match(address)
    v4 = is_ipv4(address)
    field = peer_field if v4 else peer_field.replace("ipv4", "ipv6")
    peer = {} if value in (("0.0.0.0", "0.0.0.0"), ("::", "::")) else {field: value}
    return tuple(sorted({"eth_type": ETH_IP if v4 else ETH_IPV6, **peer}.items()))


@functools.lru_cache(maxsize=1 << 16)
def _dim_flow(stage: str, match: tuple, conj: tuple, cookie: str) -> Flow:
    """A shared conjunctive flow (a rule's match, a remote member address, or both): built
    once per distinct value, so an unchanged one is the same flow object from compile to
    compile."""
    return Flow(stage, PRIO_CONJ, match, conj, cookie=cookie)


def acl_port_flows(view: View, d: Direction) -> list[Flow]:
    """Each guarded port's side of its groups' conjunctions (a remote-group rule as the
    port's half of a conjunction), and the revocation of its established connections no
    rule allows."""
    if view.security is None:
        return []
    shapes = view.security.shapes
    ids = acl_ids(view, d)
    flows: list[Flow] = []
    for port in guarded_ports(view):
        groups = [(g, shapes[g]) for g in groups_of(view, port)]
        own = tuple((g, ids[RULES + g]) for g, s in groups if d.name in s.own)
        remote = tuple((g, r, ids[r.remote]) for g, s in groups
                       for r in _remote_rules(d, s))
        flows += port_acl_flows(d, view.networks[port.network_id].key, port.key, port.id,
                                all(s.stateful for _, s in groups), own, remote)
    return flows


@functools.lru_cache(maxsize=1 << 14)
def port_acl_flows(d: Direction, net_key: int, port_key: int, port_id: str,
                   keep: bool, own: tuple, remote: tuple) -> tuple[Flow, ...]:
    """One guarded port's ACL flows, by value: the port (its network's and its own key,
    its id; not its ofport: commits go to the zone the ``*_ct`` stage tracked the packet
    in, so the flows are the same before and after the VIF is plugged), whether its
    groups are stateful, ``own`` ((group, conjunction id) of its groups that have rules
    of their own in this direction) and ``remote`` ((group, rule, conjunction id) of its
    groups' remote-group rules). A group's own rules are not among them: adding or
    removing one leaves every port's flows alone (they are shared, see
    ``acl_shared_flows``). No two ports share a match (it holds the port's network and
    key), so a port's flows are its own."""
    me = {"net": net_key, d.port_register: port_key}
    commit = [Ct(TRACKED_ZONE, commit=True)] if keep else []
    cookie = f"port:{port_id}"
    flows = []
    if keep:
        flows += [Flow.make(d.acl_stage, PRIO_UNALLOWED,
                            {**me, "eth_type": eth_type, "ct_state": ESTABLISHED},
                            [Ct(TRACKED_ZONE, commit=True, mark=REVOKED_MARK)],
                            cookie=cookie, note="no rule allows it any more: revoke")
                  for eth_type in IP_TYPES]
    if own:
        flows.append(Flow.make(d.acl_stage, PRIO_CONJ, me,
                               sorted({Conjunction(cid, 1, 2) for _, cid in own}),
                               cookie=cookie, note="holds " + ", ".join(g for g, _ in own)))
    accept: dict[int, str] = {cid: f"rules of {g}" for g, cid in own}
    conj: dict[tuple, tuple[set, set]] = {}       # match → (conjunctions, cookies)
    for group, rule, cid in remote:
        accept[cid] = (f"remote group {rule.remote_group}" if rule.remote_group else
                       f"remote address group {rule.remote_address_group}")
        for match in rule_matches(rule):
            acts, cookies = conj.setdefault(tuple(sorted({**me, **match}.items())),
                                            (set(), set()))
            acts.add(Conjunction(cid, 2, 2))
            cookies.add(f"sg:{group}:rule:{rule.id}")
    for cid, note in accept.items():
        flows += [Flow.make(d.acl_stage, PRIO_RULE, {**me, "eth_type": eth_type, "conj_id": cid},
                            commit, d.after, cookie, note=note) for eth_type in IP_TYPES]
    for match, (acts, cookies) in conj.items():
        flows.append(Flow(d.acl_stage, PRIO_CONJ, match, tuple(sorted(acts)),
                          cookie=",".join(sorted(cookies))))
    return tuple(flows)
