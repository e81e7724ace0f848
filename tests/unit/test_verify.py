"""``plexus verify`` over the L3 reference topology (two projects, the same CIDR on two
of their networks, a SNAT router and a routed-as-is one, floating IPs), with projects,
security groups and liveness added: it finds nothing on the real compilers, and finds
each planted leak — a compiler stage deliberately broken for the test — with a
``plexus trace`` command that shows it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from plexus.pipeline.flows import Flow
from plexus.pipeline.flows import SetField
from plexus.pipeline.stages import ingress_acl, l2, port_security
from plexus.tools.fabric import Fabric, Model
from plexus.tools.trace import Probe, trace
from plexus.tools.verify import verify
from tests.golden.l3_reference import CHASSIS, objects

PROJECT = {"net-a": "a", "net-b": "a", "net-c": "b", "ext-net": "admin", "ext-vlan": "admin"}


def rule(rid: str, group: str, direction: str, **extra) -> dict:
    return {"id": rid, "security_group_id": group, "direction": direction,
            "ethertype": "IPv4", "protocol": None, "port_range_min": None,
            "port_range_max": None, "remote_ip_prefix": None, "remote_group_id": None,
            **extra}


def group(gid: str, project: str, members: bool = True) -> dict:
    return {"id": gid, "name": f"default-{project}", "project_id": project, "stateful": True,
            "security_group_rules": [
                rule(f"{gid}-eg", gid, "egress")] + ([
                rule(f"{gid}-in", gid, "ingress", remote_group_id=gid)] if members else []) + [
                rule(f"{gid}-ssh", gid, "ingress", protocol="tcp", port_range_min=22,
                     port_range_max=22, remote_ip_prefix="0.0.0.0/0"),
                rule(f"{gid}-ping", gid, "ingress", protocol="icmp", port_range_min=8,
                     remote_ip_prefix="203.0.113.0/24")]}


def cloud() -> dict:
    """The reference objects with what verify also reads."""
    objs = objects()
    for net in objs["networks"].values():
        net["project_id"] = PROJECT[net["id"]]
    for port in objs["ports"].values():
        port["project_id"] = PROJECT[port["network_id"]]
        port["name"] = port["id"]
        if port["device_owner"] == "compute:nova":
            port["security_groups"] = ["sg-" + PROJECT[port["network_id"]]]
    objs["security-groups"] = {"sg-a": group("sg-a", "a"), "sg-b": group("sg-b", "b", members=False)}
    objs["liveness"] = [{"host": c} for c in CHASSIS]
    return objs


def fabric() -> Fabric:
    return Fabric(Model(cloud()))


def test_nothing_found_on_the_reference_cloud():
    result = verify(fabric())
    assert not result.findings, [f.message for f in result.findings]
    assert result.counts["ports"] == 7
    assert result.counts["header classes"] > 20


def test_trace_names_the_objects_and_the_nat():
    f = fabric()
    report = trace(f, "a-vm2", Probe("tcp", "198.18.5.5", dport=443))
    text = [o for s in report.stages for o in s.objects]
    assert any(o.startswith("security group default-a (sg-a), rule sg-a-eg") for o in text)
    assert any(o.startswith("router r1") for o in text)
    assert report.hops[-1]["kind"] == "patch"
    assert "ipv4_src: 10.1.0.12 → 203.0.113.10" in report.hops[-1]["rewrites"]
    # across a tunnel, delivered with the ingress rule that allowed it
    report = trace(f, "a-vm1", Probe("tcp", "b-vm1", dport=22))
    assert report.delivered == ["b-vm1"]
    assert [h["kind"] for h in report.hops] == ["tunnel", "vif"]
    assert any("sg-a-ssh" in o or "sg-a-in" in o for s in report.stages
               if s.stage == "ingress_acl" for o in s.objects)
    # same CIDR, other project: never delivered; a-vm1's router answers unreachable
    report = trace(f, "a-vm1", Probe("tcp", "c-vm3", dport=22))
    assert report.delivered == [] and "icmp:unreachable" in report.verdict, report.verdict
    # dropped, and why: a port security spoof is not needed, a closed port does it
    report = trace(f, "c-vm1", Probe("tcp", "c-vm2", dport=80))
    assert report.verdict.startswith("dropped: ingress_acl on hv3"), report.verdict


def test_finds_an_acl_that_allows_everything(monkeypatch):
    real = ingress_acl.compile_ingress_acl

    def leaky(view):
        return [replace(f, goto="output") if f.goto is None and not f.actions else f
                for f in real(view)]
    monkeypatch.setattr(ingress_acl, "compile_ingress_acl", leaky)
    result = verify(fabric(), checks=("security-groups",))
    found = [f for f in result.findings if f.check == "security-groups"]
    assert found, result.counts
    assert all("ingress ACL" in f.message and "the flows allow" in f.message for f in found)
    assert any("--to" in f.command for f in found)


def test_finds_a_port_security_that_lets_spoofing_through(monkeypatch):
    real = port_security.compile_port_security

    def blind(view):
        return [f for f in real(view) if not (f.goto is None and not f.actions
                                              and f.priority > 0)] + [
            Flow.make("port_security", 1, {}, goto="arp_responder", cookie="planted")]
    monkeypatch.setattr(port_security, "compile_port_security", blind)
    result = verify(fabric(), checks=("anti-spoofing",))
    spoofed = {f.message.split()[1] for f in result.findings}
    assert {"a-vm1", "a-vm2", "b-vm1", "c-vm1"} <= spoofed, result.findings
    assert "b-app" not in spoofed               # port security off: may send anything
    assert all(f.command.startswith("plexus trace ") for f in result.findings)


def test_finds_an_l2_lookup_that_crosses_networks(monkeypatch):
    real = l2.compile_l2_lookup

    def crossing(view):                   # by MAC alone, into the destination's network
        extra = [Flow.make("l2_lookup", 60000, {"eth_dst": p.mac},
                           [SetField("net", view.networks[p.network_id].key),
                            SetField("outport", p.key)], "ingress_ct", f"port:{p.id}")
                 for p in view.local_ports()]
        return real(view) + extra
    monkeypatch.setattr(l2, "compile_l2_lookup", crossing)
    result = verify(fabric(), checks=("isolation",))
    assert any(f.check == "isolation" and "project b" in f.message and "project a" in f.message
               for f in result.findings), [f.message for f in result.findings]
    assert all(f.command.startswith("plexus trace ") for f in result.findings)


def test_finds_a_tenant_address_leaving_un_natted(monkeypatch):
    from plexus.pipeline.stages import snat_guard
    real = snat_guard.compile_snat_guard
    monkeypatch.setattr(snat_guard, "compile_snat_guard", lambda view: [
        replace(f, goto="output") if f.goto is None and not f.actions else f
        for f in real(view)])
    from plexus.pipeline.stages import l3_snat
    real_snat = l3_snat.compile_l3_snat

    def no_nat(view):
        from plexus.pipeline.flows import Ct
        out = []
        for f in real_snat(view):
            acts = tuple(a for a in f.actions if not (isinstance(a, Ct) and a.nat))
            if len(acts) != len(f.actions):
                f = replace(f, actions=acts, goto="snat_guard")
            out.append(f)
        return out
    monkeypatch.setattr(l3_snat, "compile_l3_snat", no_nat)
    result = verify(fabric(), checks=("snat",))
    assert any(f.check == "snat" and "(a tenant address)" in f.message
               for f in result.findings), [f.message for f in result.findings]


@pytest.mark.parametrize("ref", ["a-vm1", "nope"])
def test_unknown_ports_are_refused(ref):
    f = fabric()
    if ref == "nope":
        with pytest.raises(LookupError):
            trace(f, ref, Probe("icmp", "8.8.8.8"))
    else:
        assert trace(f, ref, Probe("icmp", "8.8.8.8")).hops


def test_one_representative_per_class_the_others_symbolically():
    result = verify(fabric())
    counts = result.counts
    assert counts["port classes"] < counts["ports"]
    assert counts["ports checked concretely"] == counts["port classes"]
    assert counts["ports checked symbolically"] == counts["ports"] - counts["port classes"]


def test_a_member_not_like_its_representative_is_checked_concretely():
    objs = cloud()
    # c-vm2 (a member of c-vm3's class) takes c-vm3's MAC: no longer unique on its
    # network, so not provably c-vm3 with other addresses
    ports = objs["ports"]
    ports["c-vm2"]["mac_address"] = ports["c-vm3"]["mac_address"]
    result = verify(Fabric(Model(objs)))
    assert result.counts["ports checked concretely"] > result.counts["port classes"]


# --- the shortcuts are proven to still catch a leak that touches one member or one pair ----

def members_not_checked_concretely() -> list[str]:
    """Ports verify proves symbolically (members of a class, not its representative)."""
    from plexus.tools.verify import choose_representatives, is_vm, port_class
    f = fabric()
    model = f.model
    ports = [p for p in model.catalog.objects["ports"].values() if is_vm(p) and p.admin_up]
    classes: dict = {}
    for p in ports:
        classes.setdefault(port_class(f, p), []).append(p)
    return sorted(m.id for _, rest in choose_representatives(classes) for m in rest)


def test_finds_a_spoofing_leak_of_one_member_of_a_class(monkeypatch):
    """Port security broken for one port only, a member its class' representative
    stands for: the member's own flows differ from the representative's, so it is
    checked concretely and its leak is found (and no other port is blamed)."""
    members = members_not_checked_concretely()
    assert members
    victim = members[0]
    real = port_security.port_flows

    def one_open(net, port, **kw):
        flows = real(net, port, **kw)
        if port.id == victim:        # any source MAC and address from this port
            flows.append(Flow.make("port_security", port_security.PRIO_ALLOW,
                                   {"net": net.key, "inport": port.key},
                                   goto=port_security.NEXT, cookie=f"port:{port.id}"))
        return flows
    monkeypatch.setattr(port_security, "port_flows", one_open)
    result = verify(fabric(), checks=("anti-spoofing",))
    spoofed = {f.message.split()[1] for f in result.findings}
    assert spoofed == {victim}, [f.message for f in result.findings]
    assert result.counts["ports checked concretely"] > result.counts["port classes"]


def test_finds_an_l2_lookup_that_crosses_one_pair_of_networks(monkeypatch):
    """A crossing from net-a (project a) into net-c (project b) only, by the MAC of every
    net-c port: the isolation packets net-a's representative sends to net-c find it;
    no other pair is reported."""
    real = l2.compile_l2_lookup

    def crossing(view):
        if "net-a" not in view.networks or "net-c" not in view.networks:
            return real(view)
        key_a, key_c = view.networks["net-a"].key, view.networks["net-c"].key
        extra = [Flow.make("l2_lookup", 60000, {"net": key_a, "eth_dst": p.mac},
                           [SetField("net", key_c), SetField("outport", p.key)],
                           "ingress_ct", f"port:{p.id}")
                 for p in view.ports_on("net-c")]
        return real(view) + extra
    monkeypatch.setattr(l2, "compile_l2_lookup", crossing)
    result = verify(fabric(), checks=("isolation",))
    assert result.findings
    for f in result.findings:
        assert "network net-a" in f.message and "network net-c" in f.message, f.message
        assert f.command.startswith("plexus trace ")


def test_a_remembered_lookup_is_the_lookup(monkeypatch):
    """Each stage's answer is remembered per value of the fields its flows match on:
    over every lookup a verification makes, the remembered answer is what the stage's
    flows give the packet."""
    from plexus.tools.evaluator import Pipeline
    from plexus.tools.fabric import LazyPipeline
    remembered = LazyPipeline.resolve
    seen = []

    def both(self, stage, packet):
        got = remembered(self, stage, packet)
        assert got == Pipeline.resolve(self, stage, packet), (stage, packet)
        seen.append(stage)
        return got
    monkeypatch.setattr(LazyPipeline, "resolve", both)
    result = verify(fabric())
    assert not result.findings
    assert len(seen) > 500 and {"l2_lookup", "ingress_acl", "egress_acl"} <= set(seen)
