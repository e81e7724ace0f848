"""Golden flows of the dual-stack reference (tests/golden/ipv6_reference.py): the IPv6
services' punts (dhcp: DHCPv6 per port, router solicitations per network) and the IPv6
routing of the L3 stages, on a VM chassis of each router side and the active gateway.
Compared exactly; rewritten only with PLEXUS_REGEN_GOLDEN=1 (then review the diff)."""

from pathlib import Path

import pytest

from plexus.pipeline.compile import by_stage, compile_view
from plexus.pipeline.flows import dump
from tests.golden.ipv6_reference import CHASSIS, view
from tests.golden.test_l3_golden import matches

GOLDEN = Path(__file__).parent / "ipv6"
STAGES = ("dhcp", "l3_input", "l3_route", "l3_neighbor", "l3_snat")


@pytest.mark.parametrize("chassis", CHASSIS)
def test_ipv6_stages_match_golden(chassis):
    stages = by_stage(compile_view(view(chassis)))
    text = "".join(f"# {name}\n" + dump(stages[name]) for name in STAGES)
    matches(text, GOLDEN / f"{chassis}.flows")
