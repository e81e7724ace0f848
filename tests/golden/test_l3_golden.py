"""Golden flows of every chassis of the L3 reference topology (tests/golden/l3_reference.py):
the routing, floating IP and SNAT compilers' specification, and what they add to
classify, L2 lookup and output. All stages, stage by stage; compared exactly; rewritten
only with PLEXUS_REGEN_GOLDEN=1 (then review the diff)."""

import os
from pathlib import Path

import pytest

from plexus.pipeline.compile import by_stage, compile_view
from plexus.pipeline.flows import dump
from tests.golden.l3_reference import CHASSIS, view

GOLDEN = Path(__file__).parent / "l3"
REGEN = os.environ.get("PLEXUS_REGEN_GOLDEN") == "1"


def chassis_text(chassis: str) -> str:
    """Every stage's flows on one chassis, stage by stage."""
    stages = by_stage(compile_view(view(chassis)))
    return "".join(f"# {name}\n" + dump(flows) for name, flows in stages.items())


@pytest.mark.parametrize("chassis", CHASSIS)
def test_chassis_matches_golden(chassis):
    text = chassis_text(chassis)
    path = GOLDEN / f"{chassis}.flows"
    if REGEN:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with PLEXUS_REGEN_GOLDEN=1 and review it"
    assert text == path.read_text(), (
        f"{chassis} differs from {path.name}; if intended, rerun with PLEXUS_REGEN_GOLDEN=1 "
        "and review the diff")
