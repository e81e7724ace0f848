"""Golden flows of every chassis of the L3 reference topology (tests/golden/l3_reference.py):
the routing, floating IP and SNAT compilers' specification, and what they add to
classify, L2 lookup and output. All stages, stage by stage; compared exactly; rewritten
only with PLEXUS_REGEN_GOLDEN=1 (then review the diff)."""

import os
from pathlib import Path

import pytest

from plexus.pipeline.compile import by_stage, compile_view
from plexus.pipeline.flows import dump
from plexus.model.keys import ADDRESS_SCOPE_KEY
from tests.golden.l3_reference import CHASSIS, changed, objects, view

GOLDEN = Path(__file__).parent / "l3"
REGEN = os.environ.get("PLEXUS_REGEN_GOLDEN") == "1"


def chassis_text(chassis: str) -> str:
    """Every stage's flows on one chassis, stage by stage."""
    stages = by_stage(compile_view(view(chassis)))
    return "".join(f"# {name}\n" + dump(flows) for name, flows in stages.items())


@pytest.mark.parametrize("chassis", CHASSIS)
def test_chassis_matches_golden(chassis):
    matches(chassis_text(chassis), GOLDEN / f"{chassis}.flows")


def scoped_objects() -> dict:
    """The reference objects with address scopes: sub-a and the external subnet in
    "red", sub-b in "blue"."""
    objs = objects()
    for subnet, scope in (("sub-a", "red"), ("sub-b", "blue"), ("sub-ext", "red")):
        objs = changed(objs, "subnets", subnet, **{ADDRESS_SCOPE_KEY: scope})
    return objs


@pytest.mark.parametrize("chassis", ["hv1", "gw1"])
def test_scoped_router_stages_match_golden(chassis):
    """The router stages with address scopes: l3_route's drops between scopes, l3_snat's
    way out without SNAT for red, l3_input's way back in."""
    stages = by_stage(compile_view(view(chassis, scoped_objects())))
    text = "".join(f"# {name}\n" + dump(stages[name])
                   for name in ("l3_input", "l3_route", "l3_snat"))
    matches(text, GOLDEN.parent / "scopes" / f"{chassis}.flows")


def matches(text: str, path: Path) -> None:
    """``text`` equals the golden at ``path`` (rewritten with PLEXUS_REGEN_GOLDEN=1)."""
    chassis = path.stem
    if REGEN:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with PLEXUS_REGEN_GOLDEN=1 and review it"
    assert text == path.read_text(), (
        f"{chassis} differs from {path.name}; if intended, rerun with PLEXUS_REGEN_GOLDEN=1 "
        "and review the diff")
