"""``plexus verify`` and ``plexus trace`` on the lab demo (real server, agents, OVS and
packets): verify, the real command against the lab's server, finds nothing; and for
every pair of demo VMs, ``plexus trace`` (ICMP echo, from the model) says "delivered"
exactly when a real ping got through (the demo's measured matrix)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from plexus.lab import demo

pytestmark = pytest.mark.e2e

PLEXUS = str(Path(sys.executable).with_name("plexus"))


def plexus(lab, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OS_CLIENT_CONFIG_FILE=str(lab.clouds))
    return subprocess.run([PLEXUS, *args, "--os-cloud", "plexus"], env=env,
                          capture_output=True, text=True, timeout=300)


def test_verify_and_trace_agree_with_the_demo(lab_factory):
    lab = lab_factory(chassis=3, gateways=2)
    booted = demo.build(lab.lab)
    cells = demo.matrix(lab.lab)
    proc = plexus(lab.lab, "verify", "--json")
    result = json.loads(proc.stdout)
    assert proc.returncode == 0 and result["ok"], result["findings"][:5]
    assert result["counts"]["ports"] == len(demo.VMS)
    pairs = [c for c in cells if c.src in booted and c.dst in booted]
    assert pairs
    wrong = []
    for cell in pairs:
        proc = plexus(lab.lab, "trace", booted[cell.src].port_id, "--icmp", "--to",
                      booted[cell.dst].port_id, "--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        report = json.loads(proc.stdout)
        traced = report["delivered"] == [booted[cell.dst].port_id]
        if traced != cell.reached:
            wrong.append((cell.src, cell.dst, cell.reached, report["verdict"]))
    assert not wrong, wrong
