"""Golden flows of the router stages on the L3 reference topology with address scopes
(sub-a and the external subnet in "red", sub-b in "blue"): the address-scope drops of
l3_route, the unNATed way out of l3_snat and the way back in of l3_input. Rewritten only
with PLEXUS_REGEN_GOLDEN=1 (then review the diff)."""

import os
from pathlib import Path

import pytest

from plexus.model.keys import ADDRESS_SCOPE_KEY
from plexus.pipeline.compile import by_stage, compile_view
from plexus.pipeline.flows import dump
from tests.golden.l3_reference import changed, objects, view

GOLDEN = Path(__file__).parent / "scopes"
REGEN = os.environ.get("PLEXUS_REGEN_GOLDEN") == "1"
STAGES = ("l3_input", "l3_route", "l3_snat")


def scoped_objects() -> dict:
    objs = objects()
    for subnet, scope in (("sub-a", "red"), ("sub-b", "blue"), ("sub-ext", "red")):
        objs = changed(objs, "subnets", subnet, **{ADDRESS_SCOPE_KEY: scope})
    return objs


@pytest.mark.parametrize("chassis", ["hv1", "gw1"])
def test_scoped_router_stages_match_golden(chassis):
    stages = by_stage(compile_view(view(chassis, scoped_objects())))
    text = "".join(f"# {name}\n" + dump(stages[name]) for name in STAGES)
    path = GOLDEN / f"{chassis}.flows"
    if REGEN:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with PLEXUS_REGEN_GOLDEN=1 and review it"
    assert text == path.read_text(), (
        f"{chassis} differs from {path.name}; if intended, rerun with PLEXUS_REGEN_GOLDEN=1 "
        "and review the diff")
