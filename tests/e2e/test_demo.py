"""The README's main job: the demo topology on a 3-chassis lab reaches exactly what it
is designed to reach, measured with real pings."""

from __future__ import annotations

import pytest

from plexus.lab import demo

pytestmark = pytest.mark.e2e


def test_demo_topology_matches_its_design(lab_factory):
    lab = lab_factory(chassis=3, gateways=2)
    booted = demo.build(lab.lab)
    assert all(vm.ip for vm in booted.values()), {n: v.ip for n, v in booted.items()}
    cells = demo.matrix(lab.lab)
    assert len(cells) == len(demo.VMS) * (len(demo.VMS) - 1)
    assert [c for c in cells if not c.ok] == []
    assert any(c.reached for c in cells) and any(not c.reached for c in cells)
