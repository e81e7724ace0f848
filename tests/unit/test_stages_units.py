"""Stage compilers one by one: edge cases of the view, the registry checks they rely on,
and what compile_view promises (checked, sorted, deterministic)."""

from dataclasses import replace

import pytest

from plexus.pipeline.compile import by_stage, compile_view, compilers
from plexus.pipeline.flows import Flow
from plexus.pipeline.registry import STAGES, PipelineViolation, check_flow
from plexus.pipeline.stages.common import as_match, sources
from plexus.pipeline.stages.dhcp import compile_dhcp
from plexus.pipeline.stages.output import compile_output
from plexus.pipeline.view import PortView, View
from plexus.tools.evaluator import Pipeline
from tests.golden.reference import PORTS, reference_view

PORT = {p.id: p for p in PORTS}


def test_every_declared_stage_has_a_compiler():
    assert [st.name for st, _ in compilers()] == [st.name for st in STAGES]
    for st, fn in compilers():
        assert fn.__module__ == st.owner and fn.__doc__


def test_an_empty_view_gives_one_default_flow_per_stage():
    flows = compile_view(View("hv1", "192.168.50.1"))
    assert [f.stage for f in flows] == [st.name for st in STAGES]
    assert all(f.priority == 0 and f.cookie == f"pipeline:{f.stage}" for f in flows)


def test_compile_view_is_sorted_in_pipeline_order_and_repeatable():
    flows = compile_view(reference_view())
    assert flows == compile_view(reference_view())
    order = [(next(st.table for st in STAGES if st.name == f.stage), -f.priority)
             for f in flows]
    assert order == sorted(order)
    assert len({f.key() for f in flows}) == len(flows)


def test_check_flow_enforces_match_prerequisites():
    with pytest.raises(PipelineViolation):
        check_flow(Flow.make("port_security", 1, {"ipv4_src": "10.0.0.1"}))
    with pytest.raises(PipelineViolation):
        check_flow(Flow.make("port_security", 1, {"eth_type": 0x0806, "ipv4_src": "10.0.0.1"}))
    with pytest.raises(PipelineViolation):
        check_flow(Flow.make("dhcp", 1, {"eth_type": 0x0800, "udp_dst": 67}))
    check_flow(Flow.make("dhcp", 1, {"eth_type": 0x0800, "ip_proto": 17, "udp_dst": 67}))


def test_cookies_name_objects():
    kinds = {f.cookie.split(":", 1)[0] for f in compile_view(reference_view())}
    assert kinds == {"port", "network", "chassis", "pipeline", "subnet"}   # sub-b1: DHCP server ARP


def test_allowed_pair_addresses():
    assert as_match("10.0.0.5") == as_match("10.0.0.5/32") == "10.0.0.5"
    assert as_match("10.0.0.130/28") == ("10.0.0.128", "255.255.255.240")
    port = PORT["a1-vm2"]
    assert sources(port) == sorted([(port.mac, "10.0.0.12"), (port.mac, "10.0.0.100"),
                                    ("fa:16:3e:a1:0f:0f", ("10.0.0.128", "255.255.255.240"))],
                                   key=str)
    # a pair without a MAC uses the port's, and a pair equal to a fixed IP adds nothing
    bare = replace(port, allowed_pairs=(("10.0.0.12", ""), ("10.0.0.100", "")))
    assert sources(bare) == [(port.mac, "10.0.0.100"), (port.mac, "10.0.0.12")]


def plug_flows(view: View, port_id: str) -> tuple[set, set]:
    """(flows only the plugged view has, flows only the unplugged one has) of a port."""
    plugged = set(compile_view(view))
    unplugged = set(compile_view(replace(view, vif_ofports={
        k: v for k, v in view.vif_ofports.items() if k != port_id})))
    return plugged - unplugged, unplugged - plugged


def test_a_bound_port_has_its_flows_before_its_vif_is_plugged_and_nothing_reaches_it():
    """a2-vm1 bound to hv1, its VIF not plugged yet: its network is local (tunnels,
    floods, L2, ARP answers) and its own logical flows are in, but nothing names an
    ofport of it, so no packet comes from it or reaches it."""
    view = reference_view()
    unplugged = replace(view, vif_ofports={k: v for k, v in view.vif_ofports.items()
                                           if k != "a2-vm1"})
    flows = compile_view(unplugged)
    text = [str(f) for f in flows]
    assert any("net=0x66" in t and "port:a2-vm1" in t for t in text)    # port security
    assert not any("in_port=3" in t or "output:3" in t for t in text)
    pipeline = Pipeline(flows)
    a2, a2_far = PORT["a2-vm1"], PORT["a2-vm2"]
    # from the (not yet classified) VIF: dropped at classify
    assert pipeline.run({"in_port": 3, "eth_src": a2.mac, "eth_dst": a2_far.mac,
                         "eth_type": 0x0800, "ipv4_src": "10.0.1.11",
                         "ipv4_dst": "10.0.1.12"}).dropped
    # to it from its network's other chassis, unicast and broadcast: reaches no port
    for dst in (a2.mac, "ff:ff:ff:ff:ff:ff"):
        assert pipeline.run({"in_port": 101, "tunnel_id": 102, "eth_src": a2_far.mac,
                             "eth_dst": dst, "eth_type": 0x0800, "ipv4_src": "10.0.1.12",
                             "ipv4_dst": "10.0.1.11"}).dropped
    # plugging it adds only what names its ofport: its classify and output flows, its
    # metadata request and reply (conntrack zone and link-local source = its ofport),
    # and its network's two floods (which now include its VIF)
    added, gone = plug_flows(view, "a2-vm1")
    assert sorted((f.stage, f.cookie) for f in added) == [
        ("classify", "port:a2-vm1"), ("metadata", "port:a2-vm1"),
        ("metadata", "port:a2-vm1"), ("output", "network:net-a2"),
        ("output", "network:net-a2"), ("output", "port:a2-vm1")]
    assert sorted((f.stage, f.cookie) for f in gone) == [
        ("output", "network:net-a2"), ("output", "network:net-a2")]
    # and a plugged neighbour on another network behaves as before
    a1 = PORT["a1-vm1"]
    packet = {"in_port": 1, "eth_src": a1.mac, "eth_dst": PORT["a1-vm3"].mac,
              "eth_type": 0x0800, "ipv4_src": "10.0.0.11", "ipv4_dst": "10.0.0.13"}
    assert Pipeline(compile_view(view)).run(dict(packet)).ports == \
        pipeline.run(dict(packet)).ports == [100]


def test_a_port_of_an_unknown_network_compiles_to_nothing():
    view = reference_view()
    orphan = PortView("orphan", 9, "net-gone", "fa:16:3e:99:00:01", (), "hv1")
    view2 = replace(view, ports={**view.ports, "orphan": orphan},
                    vif_ofports={**view.vif_ofports, "orphan": 9})
    assert compile_view(view2) == compile_view(view)


def test_remote_ports_without_a_tunnel_yet_are_unreachable_not_an_error():
    view = replace(reference_view(), tunnel_ofports={})
    pipeline = Pipeline(compile_view(view))
    a1, a3 = PORT["a1-vm1"], PORT["a1-vm3"]
    packet = {"in_port": 1, "eth_src": a1.mac, "eth_dst": a3.mac, "eth_type": 0x0800,
              "ipv4_src": "10.0.0.11", "ipv4_dst": "10.0.0.13"}
    assert pipeline.run(packet).dropped
    assert not any("tunnel_id" in str(f) for f in compile_output(view))


def test_stale_duplicates_resolve_to_the_first_port_by_id():
    """A view caught mid-update may hold one IP or MAC twice; compile must not fail."""
    view = reference_view()
    twin = replace(PORT["a1-vm3"], id="a1-zz", key=99)
    flows = compile_view(replace(view, ports={**view.ports, "a1-zz": twin}))
    arp = [f for f in flows if f.stage == "arp_responder" and ("arp_tpa", "10.0.0.13") in f.match
           and ("net", 101) in f.match]
    assert [f.cookie for f in arp] == ["port:a1-vm3"]


def test_dhcp_follows_enable_dhcp_and_ignores_ipv6_subnets():
    view = reference_view()
    cookies = {f.cookie for f in compile_dhcp(view)}
    assert cookies == {"pipeline:dhcp", "port:a1-vm1", "port:a1-vm2", "port:b1-vm1"}
    off = {k: replace(s, enable_dhcp=False) if s.ip_version == 4 else s
           for k, s in view.subnets.items()}
    assert [f.cookie for f in compile_dhcp(replace(view, subnets=off))] == ["pipeline:dhcp"]
