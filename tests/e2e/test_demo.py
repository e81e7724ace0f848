"""The README's main job: the demo topology on a 3-chassis lab (a router with a gateway,
a floating IP, SNAT) reaches exactly what it is designed to reach, measured with real
pings."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from plexus.lab import demo

pytestmark = pytest.mark.e2e


def test_demo_topology_matches_its_design(lab_factory):
    lab = lab_factory(chassis=3, gateways=2)
    booted = demo.build(lab.lab)
    assert all(vm.ip for vm in booted.values()), {n: v.ip for n, v in booted.items()}
    cells = demo.matrix(lab.lab)
    n = len(demo.VMS)
    assert len(cells) == n * (n - 1) + n + n + 1        # pairs, → inet, inet → FIP and VMs
    assert any(c.dst == "web1-fip" and c.reached for c in cells)
    assert any(c.src == "db1" and c.dst == "inet" and c.reached for c in cells)
    assert [c for c in cells if not c.ok] == []
    assert any(c.reached for c in cells) and any(not c.reached for c in cells)
    # the picture the demo prints the path of: valid SVG naming the demo's objects
    written = demo.picture(lab.lab)
    svg = next(p for p in written if p.suffix == ".svg")
    assert svg.parent == lab.lab.dir
    root = ET.parse(svg).getroot()
    text = " ".join(t.text or "" for t in root.iter() if t.tag.endswith("text"))
    for name, _, cidr in demo.NETWORKS:
        assert name in text and cidr in text
    assert demo.ROUTER[0] in text and demo.PUBLIC[0] in text
    for vm in booted.values():
        assert vm.ip in text
    assert all(f"c{i}" in text for i in (1, 2, 3)) and "DEAD" not in text
