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

- ``*_ct``: IPv4 of a guarded port is sent through conntrack in the port's zone
  (stateless groups: not tracked) and on to the ACL stage. Egress: DHCP requests pass
  untracked, DHCP replies from a VM (a rogue server) drop. Ingress: ARP and DHCP replies
  pass, anything else that is not IPv4 drops (IPv6 is not supported yet). Floods and
  unguarded ports pass.
- ``*_acl``: invalid packets and connections marked revoked (``ct_mark=1``) drop;
  replies and related packets of accepted connections pass; new packets and
  established ones in the original direction pass when a rule of the port's groups
  allows them (committed in the zone); an established connection that no rule allows
  any more is marked revoked (Neutron's behaviour: a removed rule also cuts live
  connections, at their next packet); anything else drops.

Rules with a remote group are conjunctive matches (``conjunction(id, k/2)``): dimension 1
is the group's member addresses, one flow each, shared by every port of the chassis
(cookie ``sg:<group>:members``, so a membership change touches only those); dimension 2
is the port's protocol/port matches. N members × M port ranges cost N + M flows."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

from plexus.pipeline.flows import Conjunction, Ct, CtClear, Flow, ct_state
from plexus.pipeline.stages.common import (
    ETH_ARP, ETH_IP, IP_UDP, as_match, bound_ports, default_flow, is_ipv4,
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
    return sorted(g for g in sec.port_groups.get(port.id, ()) if g in sec.groups)


def stateful(view: View, port: PortView) -> bool:
    """Whether the port's groups are stateful (the API keeps a port's groups all alike)."""
    return all(view.security.groups[g].stateful for g in groups_of(view, port))


def rules_of(view: View, port: PortView, d: Direction) -> list[tuple[str, RuleView]]:
    """(group id, rule) of the port's IPv4 rules in one direction, sorted."""
    return [(g, r) for g in groups_of(view, port) for r in view.security.groups[g].rules
            if r.direction == d.name and r.ethertype == "IPv4"]


def members(view: View, group: str) -> list[str]:
    """IPv4 member addresses (or CIDRs) of a remote group, sorted."""
    return sorted(a for a in view.security.members.get(group, ()) if is_ipv4(a))


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
    """The rule's protocol part as matches (several for a port range): ports for TCP,
    UDP and SCTP, type and code for ICMP; ports of other protocols (DCCP, UDP-Lite) are
    not matched, as in Neutron's OVS firewall."""
    base: dict = {"eth_type": ETH_IP}
    if rule.protocol is None:
        return [base]
    base["ip_proto"] = rule.protocol
    field = PORT_FIELDS.get(rule.protocol)
    if field and rule.port_min and rule.port_max:
        return [{**base, field: m} for m in port_masks(rule.port_min, rule.port_max)]
    if rule.protocol == IP_ICMP and rule.port_min is not None:
        icmp = {**base, "icmpv4_type": rule.port_min}
        if rule.port_max is not None:
            icmp["icmpv4_code"] = rule.port_max
        return [icmp]
    return [base]


def peer_match(d: Direction, address: str) -> dict:
    """Match of the remote address (none for 0.0.0.0/0)."""
    value = as_match(address)
    return {} if value == ("0.0.0.0", "0.0.0.0") else {d.peer_field: value}


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
    for port in guarded_ports(view):
        me = {"net": view.networks[port.network_id].key, d.port_register: port.key}
        cookie = f"port:{port.id}"

        def add(prio, match, actions=(), goto=None, note=""):
            flows.append(Flow.make(d.ct_stage, prio, {**me, **match}, actions, goto, cookie,
                                   note))
        if d is EGRESS:
            add(PRIO_DHCP, DHCP_REQUEST, goto=d.after, note="DHCP requests always pass")
            add(PRIO_DHCP, DHCP_REPLY, note="no DHCP server on an instance")
        else:
            add(PRIO_DHCP, DHCP_REPLY, goto=d.after, note="DHCP replies always pass")
            add(PRIO_TRACK, {"eth_type": ETH_ARP}, goto=d.after)
            add(PRIO_OTHER, {}, note="neither IPv4 nor ARP (IPv6 is not supported yet)")
        if stateful(view, port):
            ct_zone = zone(view, port)
            if ct_zone is not None:                 # plugged: its IPv4 is tracked
                add(PRIO_TRACK, {"eth_type": ETH_IP}, [Ct(ct_zone, table=d.acl_stage)])
        else:
            add(PRIO_TRACK, {"eth_type": ETH_IP}, [CtClear()] if d is INGRESS else [],
                goto=d.acl_stage, note="stateless groups: not tracked")
    return flows


def acl_flows(view: View, d: Direction) -> list[Flow]:
    """The ``*_acl`` stage: connection state, then each guarded port's rules."""
    return acl_shared_flows(view, d) + acl_port_flows(view, d)


def remote_ids(view: View, d: Direction) -> dict[str, int]:
    """Conjunction ids of the remote groups the rules of this direction name, over every
    group the view carries (the same ids whichever ports are being compiled)."""
    if view.security is None:
        return {}
    return conj_ids([r.remote_group for g in view.security.groups.values() for r in g.rules
                     if r.remote_group and r.direction == d.name and r.ethertype == "IPv4"])


def acl_shared_flows(view: View, d: Direction) -> list[Flow]:
    """Connection state, and the member addresses of the remote groups the guarded
    ports' rules name (one flow per address, whose conjunctions every group holding it
    shares)."""
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
    ids = remote_ids(view, d)
    used = sorted({r.remote_group for p in guarded_ports(view) for _, r in rules_of(view, p, d)
                   if r.remote_group})
    holders: dict[tuple, set] = {}                # match → the remote groups holding it
    for group in used:
        for address in members(view, group):
            holders.setdefault(_member_match(d.peer_field, address), set()).add(group)
    for match, groups in holders.items():
        flows.append(_member_flow(stage, match, tuple(sorted((ids[g], g) for g in groups))))
    return flows


@functools.lru_cache(maxsize=1 << 16)
def _member_match(peer_field: str, address: str) -> tuple:
    """The match of a remote address, as a flow carries it (sorted pairs)."""
    value = as_match(address)
    peer = {} if value == ("0.0.0.0", "0.0.0.0") else {peer_field: value}
    return tuple(sorted({"eth_type": ETH_IP, **peer}.items()))


@functools.lru_cache(maxsize=1 << 16)
def _member_flow(stage: str, match: tuple, held: tuple[tuple[int, str], ...]) -> Flow:
    """The member flow of a remote address (``match``) that the remote groups ``held``
    ((conjunction id, group), sorted) hold: built once per distinct value, so an
    unchanged member is the same flow object from compile to compile."""
    return Flow(stage, PRIO_CONJ, match,
                tuple(sorted({Conjunction(cid, 1, 2) for cid, _ in held})),
                cookie=",".join(sorted({f"sg:{g}:members" for _, g in held})))


def acl_port_flows(view: View, d: Direction) -> list[Flow]:
    """Each guarded port's rules (a remote-group rule as the port's half of a
    conjunction), and the revocation of its established connections no rule allows."""
    if view.security is None:
        return []
    sec = view.security
    ids = tuple(sorted(remote_ids(view, d).items()))
    flows: list[Flow] = []
    for port in guarded_ports(view):
        groups = tuple(sec.groups[g] for g in groups_of(view, port))
        flows += port_acl_flows(d, view.networks[port.network_id].key, port.key, port.id,
                                groups, ids)
    return flows


@functools.lru_cache(maxsize=1 << 14)
def port_acl_flows(d: Direction, net_key: int, port_key: int, port_id: str,
                   groups: tuple, ids: tuple) -> tuple[Flow, ...]:
    """One guarded port's ACL flows, by value: the port (its network's and its own key,
    its id; not its ofport: commits go to the zone the packet was tracked in), its
    groups (sorted by id) and the
    conjunction ids of the remote groups. No two ports share a match (it holds the port's
    network and key), so a port's flows are its own; an unchanged port costs a lookup."""
    conj_id = dict(ids)
    keep = all(g.stateful for g in groups)
    ct_zone = TRACKED_ZONE if keep else None
    conj: dict[tuple, tuple[set, set]] = {}       # match → (conjunctions, cookies)
    plain: dict[tuple, tuple[Flow, set]] = {}     # match → (flow, cookies)
    for group in groups:
        for rule in group.rules:
            if rule.direction != d.name or rule.ethertype != "IPv4":
                continue
            cid = conj_id[rule.remote_group] if rule.remote_group is not None else 0
            for conjunctive, match, item, cookie in rule_items(d, net_key, port_key, port_id,
                                                               ct_zone, group.id, rule, cid):
                if conjunctive:
                    acts, cookies = conj.setdefault(match, (set(), set()))
                    acts.add(item)
                else:
                    _, cookies = plain.setdefault(match, (item, set()))
                cookies.add(cookie)
    flows = []
    if keep:
        flows.append(Flow.make(d.acl_stage, PRIO_UNALLOWED,
                               {"net": net_key, d.port_register: port_key, "eth_type": ETH_IP,
                                "ct_state": ESTABLISHED},
                               [Ct(TRACKED_ZONE, commit=True, mark=REVOKED_MARK)],
                               cookie=f"port:{port_id}",
                               note="no rule allows it any more: revoke"))
    for (flow, cookies) in plain.values():
        if len(cookies) == 1 and flow.cookie in cookies:
            flows.append(flow)
        else:
            flows.append(Flow(flow.stage, flow.priority, flow.match, flow.actions, flow.goto,
                              ",".join(sorted(cookies)), flow.note))
    for match, (acts, cookies) in conj.items():
        flows.append(Flow(d.acl_stage, PRIO_CONJ, match, tuple(sorted(acts)),
                          cookie=",".join(sorted(cookies))))
    return tuple(flows)


@functools.lru_cache(maxsize=1 << 16)
def rule_items(d: Direction, net_key: int, port_key: int, port_id: str, ct_zone: str | None,
               group: str, rule: RuleView, cid: int) -> tuple:
    """What one rule of a port's group contributes, by value (a new rule of a group
    costs its own flows, not the group's others): (conjunctive, match, item, cookie)
    entries, ``item`` the accepting flow (not conjunctive) or the port's conjunction
    dimension."""
    stage, after = d.acl_stage, d.after
    me = {"net": net_key, d.port_register: port_key}
    commit = [Ct(ct_zone, commit=True)] if ct_zone is not None else []
    cookie = f"sg:{group}:rule:{rule.id}"
    out = []
    for match in rule_matches(rule):
        if rule.remote_group is None:
            peer = peer_match(d, rule.remote_prefix) if rule.remote_prefix else {}
            flow = Flow.make(stage, PRIO_RULE, {**me, **match, **peer}, commit, after, cookie)
            out.append((False, flow.match, flow, cookie))
        else:
            out.append((True, tuple(sorted({**me, **match}.items())),
                        Conjunction(cid, 2, 2), cookie))
            own = f"port:{port_id}"
            flow = Flow.make(stage, PRIO_RULE, {**me, "eth_type": ETH_IP, "conj_id": cid},
                             commit, after, own, note=f"remote group {rule.remote_group}")
            out.append((False, flow.match, flow, own))
    return tuple(out)
