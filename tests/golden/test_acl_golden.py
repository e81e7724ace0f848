"""Golden flows of the four ACL stages, one file per security-group rule kind, for the
reference topology of tests/golden/acl_reference.py: the security-group compiler's
specification. Compared exactly; rewritten only with PLEXUS_REGEN_GOLDEN=1 (then review
the diff)."""

import os
from pathlib import Path

import pytest

from plexus.pipeline.compile import by_stage, compile_view
from plexus.pipeline.flows import dump
from tests.golden.acl_reference import KINDS, kind_view

GOLDEN = Path(__file__).parent / "acl"
REGEN = os.environ.get("PLEXUS_REGEN_GOLDEN") == "1"
ACL_STAGES = ("egress_ct", "egress_acl", "ingress_ct", "ingress_acl")


def acl_text(kind: str) -> str:
    """The ACL stages' flows for one rule kind, stage by stage."""
    stages = by_stage(compile_view(kind_view(kind)))
    return "".join(f"# {name}\n" + dump(stages[name]) for name in ACL_STAGES)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_rule_kind_matches_golden(kind):
    text = acl_text(kind)
    path = GOLDEN / f"{kind}.flows"
    if REGEN:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with PLEXUS_REGEN_GOLDEN=1 and review it"
    assert text == path.read_text(), (
        f"{kind} differs from {path.name}; if intended, rerun with PLEXUS_REGEN_GOLDEN=1 "
        "and review the diff")
