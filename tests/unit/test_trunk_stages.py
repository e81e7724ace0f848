"""A trunk's subport on the compiled pipeline (reference topology seen from hv1, with
b1-vm1 made a subport of a1-vm1 in VLAN 100): its frames come in tagged on the parent's
VIF and leave tagged there; the parent keeps its untagged frames; an unknown tag is
dropped; the subport's metadata flows are left out (it shares its parent's ofport)."""

from dataclasses import replace

import pytest

from plexus.pipeline.compile import compile_view
from plexus.pipeline.flows import VLAN_PRESENT
from plexus.tools.evaluator import Pipeline
from tests.golden.reference import PORTS, TUNNELS, reference_view
from tests.unit.test_stages import ip

PORT = {p.id: p for p in PORTS}
PARENT_OFPORT = 1


@pytest.fixture(scope="module")
def view():
    base = reference_view()
    ports = dict(base.ports)
    ports["a1-vm1"] = replace(ports["a1-vm1"], trunk="trunk-1")
    ports["b1-vm1"] = replace(ports["b1-vm1"], parent="a1-vm1", vlan=100)
    vifs = dict(base.vif_ofports, **{"b1-vm1": PARENT_OFPORT})
    return replace(base, ports=ports, vif_ofports=vifs)


@pytest.fixture(scope="module")
def pipeline(view):
    return Pipeline(compile_view(view))


def test_a_tagged_frame_is_the_subports(pipeline):
    packet = ip("b1-vm1", "b1-vm2", in_port=PARENT_OFPORT, vlan_vid=VLAN_PRESENT | 100)
    result = pipeline.run(packet)
    assert result.ports == [TUNNELS["hv2"]], result.explain()
    sent = result.outputs[0][1]
    assert sent["tunnel_id"] == 201 and sent["vlan_vid"] == 0      # on net-b1, untagged


def test_the_parent_keeps_its_untagged_frames(pipeline):
    result = pipeline.run(ip("a1-vm1", "a1-vm2", in_port=PARENT_OFPORT))
    assert result.ports == [2], result.explain()


def test_an_unknown_tag_on_the_parent_is_dropped(pipeline):
    for tag in (101, 0):
        packet = ip("b1-vm1", "b1-vm2", in_port=PARENT_OFPORT, vlan_vid=VLAN_PRESENT | tag)
        assert pipeline.run(packet).ports == [], tag
    # the parent's own frame, tagged with the subport's VLAN, is the subport's: its
    # addresses are not the subport's, so port security drops it
    packet = ip("a1-vm1", "a1-vm2", in_port=PARENT_OFPORT, vlan_vid=VLAN_PRESENT | 100)
    assert pipeline.run(packet).ports == []


def test_to_the_subport_it_leaves_tagged_by_the_parents_vif(pipeline):
    packet = {**ip("b1-vm2", "b1-vm1", in_port=TUNNELS["hv2"]), "tunnel_id": 201}
    result = pipeline.run(packet)
    assert result.ports == [PARENT_OFPORT], result.explain()
    assert result.outputs[0][1]["vlan_vid"] == VLAN_PRESENT | 100


def test_the_subport_gets_no_metadata_flows(view):
    flows = compile_view(view)
    cookies = {f.cookie for f in flows if f.stage == "metadata"}
    assert "port:b1-vm1" not in cookies and "port:a1-vm1" in cookies
