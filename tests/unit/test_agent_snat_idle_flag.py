"""``plexus-agent --snat-idle`` sets ``timing.snat_idle``; the lab passes it from its spec."""

from __future__ import annotations

from plexus.agent.main import parse_args
from plexus.agent.timing import Timing
from plexus.lab.topology import LabSpec

BASE = ["--server", "http://s", "--chassis", "c1", "--tunnel-ip", "198.18.0.11",
        "--ovsdb", "unix:/x", "--ovs-rundir", "/x"]


def test_the_flag_defaults_to_the_timing_default():
    assert parse_args(BASE).snat_idle == Timing().snat_idle == 60.0
    assert parse_args(BASE + ["--snat-idle", "5"]).snat_idle == 5.0


def test_the_lab_spec_carries_it_and_old_inventories_still_load():
    spec = LabSpec(name="t", snat_idle=5.0)
    assert LabSpec.from_dict(spec.to_dict()).snat_idle == 5.0
    old = {k: v for k, v in spec.to_dict().items() if k != "snat_idle"}
    assert LabSpec.from_dict(old).snat_idle is None
