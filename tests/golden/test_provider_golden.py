"""Golden flows of every chassis of the provider-network reference topology
(tests/golden/provider_reference.py): a VLAN network and a flat external network bridged
to physnet1. All stages; compared exactly; rewritten only with PLEXUS_REGEN_GOLDEN=1
(then review the diff)."""

import os
from pathlib import Path

import pytest

from plexus.pipeline.compile import by_stage, compile_view
from plexus.pipeline.flows import dump
from tests.golden.provider_reference import CHASSIS, view

GOLDEN = Path(__file__).parent / "provider"
REGEN = os.environ.get("PLEXUS_REGEN_GOLDEN") == "1"


@pytest.mark.parametrize("chassis", CHASSIS)
def test_chassis_matches_golden(chassis):
    stages = by_stage(compile_view(view(chassis)))
    text = "".join(f"# {name}\n" + dump(flows) for name, flows in stages.items())
    path = GOLDEN / f"{chassis}.flows"
    if REGEN:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with PLEXUS_REGEN_GOLDEN=1 and review it"
    assert text == path.read_text(), (
        f"{chassis} differs from {path.name}; if intended, rerun with PLEXUS_REGEN_GOLDEN=1 "
        "and review the diff")
