"""Golden flows per stage for the reference topology: the compilers' specification.
Compared exactly; rewritten only with PLEXUS_REGEN_GOLDEN=1 (then review the diff)."""

import os
from pathlib import Path

import pytest

from plexus.pipeline.compile import by_stage, compile_view
from plexus.pipeline.flows import dump
from plexus.pipeline.registry import STAGES
from tests.golden.reference import reference_view

GOLDEN = Path(__file__).parent / "reference"
REGEN = os.environ.get("PLEXUS_REGEN_GOLDEN") == "1"


@pytest.mark.parametrize("stage", [st.name for st in STAGES])
def test_stage_matches_golden(stage):
    text = dump(by_stage(compile_view(reference_view()))[stage])
    path = GOLDEN / f"{stage}.flows"
    if REGEN:
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with PLEXUS_REGEN_GOLDEN=1 and review it"
    assert text == path.read_text(), (
        f"{stage} differs from {path.name}; if intended, rerun with PLEXUS_REGEN_GOLDEN=1 "
        "and review the diff")
