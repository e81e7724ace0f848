"""Rules with a remote address group (security-groups-remote-address-group) in the ACL
stages: the peer must be in one of the group's CIDRs; an address group's change touches
only its member flows, and recompiles no per-port flow."""

from __future__ import annotations

from dataclasses import replace

from plexus.pipeline.compile import compile_view
from plexus.pipeline.incremental import IncrementalCompiler
from plexus.pipeline.security import security_view
from tests.golden.acl_reference import DB, VIF_OFPORTS, WEB, group, rule, view, wire_ports
from tests.unit.test_acl import packet, passes, pipeline

SG = group("sg-a", dict(rule("ssh-from-ag", "ingress", "tcp", 22, 22),
                        remote_address_group_id="ag-1"),
           dict(rule("dns-to-ag", "egress", "udp", 53, 53), remote_address_group_id="ag-1"))


def ag_view(addresses: list[str], present: bool = True):
    """hv1 with port vm in sg-a, whose rules name address group ag-1 (``addresses``)."""
    local = {"vm": ["sg-a"]}
    base = view([SG], local)
    objects = {"ports": wire_ports(local),
               "security-groups": {g["id"]: g for g in (WEB, DB, SG)},
               "address-groups": {"ag-1": {"id": "ag-1", "addresses": addresses}}
               if present else {}}
    return replace(base, security=security_view(objects, list(VIF_OFPORTS)))


def test_peer_in_the_group_passes_and_outside_drops():
    p = pipeline(ag_view(["192.168.7.0/24", "10.1.0.99/32", "fd00::/64"]))
    assert passes(p, packet("other", "vm", dport=22, ipv4_src="192.168.7.7"), "vm")
    assert passes(p, packet("other", "vm", dport=22, ipv4_src="10.1.0.99"), "vm")
    assert not passes(p, packet("other", "vm", dport=22), "vm")              # 10.1.0.41
    assert not passes(p, packet("other", "vm", dport=22, ipv4_src="192.168.8.1"), "vm")
    assert not passes(p, packet("other", "vm", dport=23, ipv4_src="192.168.7.7"), "vm")
    assert passes(p, packet("vm", "other", "udp", dport=53, ipv4_dst="192.168.7.53"), "other")
    assert not passes(p, packet("vm", "other", "udp", dport=53), "other")


def test_adding_an_address_lets_it_in_and_removing_it_shuts_it_out():
    assert not passes(pipeline(ag_view([])), packet("other", "vm", dport=22), "vm")
    assert passes(pipeline(ag_view(["10.1.0.41"])), packet("other", "vm", dport=22), "vm")
    assert not passes(pipeline(ag_view(["10.1.0.40/32"])), packet("other", "vm", dport=22),
                      "vm")
    # an address group the chassis does not know (yet) allows nothing
    assert not passes(pipeline(ag_view(["10.1.0.41"], present=False)),
                      packet("other", "vm", dport=22), "vm")


def test_a_change_touches_only_its_member_flows_and_no_port_flows():
    old = {f.key(): f for f in compile_view(ag_view(["192.168.7.0/24"]))}
    new = {f.key(): f for f in compile_view(ag_view(["192.168.7.0/24", "10.1.0.41"]))}
    changed = [k for k in old.keys() | new.keys() if old.get(k) != new.get(k)]
    assert changed
    for key in changed:
        names = {c for f in (old.get(key), new.get(key)) if f for c in f.cookie.split(",")}
        assert names == {"ag:ag-1:members"}, key
    inc = IncrementalCompiler()
    inc.compile(ag_view(["192.168.7.0/24"]))
    delta = inc.compile(ag_view(["192.168.7.0/24", "10.1.0.41"]))
    assert {f.cookie for f in delta.added} == {"ag:ag-1:members"} and not delta.removed
    assert {stage for stage, _ in delta.recompiled} <= {"egress_acl", "ingress_acl"}
    assert {f.key(): f for f in inc.flows()} == new
