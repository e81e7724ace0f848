"""The lab's pure parts (no root needed): topology data, overlap check, inventory."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys

import pytest

from plexus.lab.inventory import Inventory, InventoryError, resolve_pid, start_time
from plexus.lab.topology import LabSpec, TopologyError, overlaps, tap_name


def test_names_and_addresses_are_derived_and_short():
    spec = LabSpec(name="demo", chassis=12, gateways=2).validate()
    chassis = spec.chassis_list()
    assert [c.name for c in chassis[:3]] == ["c1", "c2", "c3"]
    assert [c.tunnel_ip for c in chassis[:2]] == ["198.18.0.11", "198.18.0.12"]
    assert chassis[11].tunnel_ip == "198.18.0.22"
    assert [c.gateway for c in chassis[:3]] == [True, True, False]
    assert {spec.underlay_ns, spec.provider_ns, spec.external_ns, spec.internet_ns,
            spec.vm_ns("a")} == {"plx-demo-ul", "plx-demo-pn", "plx-demo-ext", "plx-demo-inet",
                                 "plx-demo-vm-a"}
    assert all(ipaddress.ip_address(c.tunnel_ip) in ipaddress.ip_network("198.18.0.0/24")
               for c in chassis)
    assert len(tap_name("0123456789abcdef")) == 14
    assert LabSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "Bad_Name"}, "lab name"),
    ({"name": "x" * 13}, "lab name"),
    ({"name": "a-b"}, "lab name"),
    ({"chassis": 0}, "--chassis"),
    ({"chassis": 2, "gateways": 3}, "--gateways"),
    ({"store": "redis"}, "unknown store"),
])
def test_bad_specs_are_refused(kwargs, message):
    with pytest.raises(TopologyError, match=message):
        LabSpec(**kwargs).validate()


def test_overlap_ignores_default_routes_and_other_families():
    ranges = LabSpec().ranges()
    assert overlaps(ranges, ["0.0.0.0/0", "192.0.2.2/24", "::/0", "fd00::/64",
                             "127.0.0.0/8"]) == []
    assert overlaps(ranges, ["198.18.0.0/15"]) == [("198.18.0.0/24", "198.18.0.0/15"),
                                                   ("198.19.0.0/24", "198.18.0.0/15")]
    assert overlaps(ranges, ["203.0.113.7/32"]) == [("203.0.113.0/24", "203.0.113.7/32")]
    assert overlaps(ranges, ["198.19.0.0/16"]) == [("198.19.0.0/24", "198.19.0.0/16")]


def test_inventory_records_before_and_tears_down_newest_first(tmp_path):
    inv = Inventory.create(tmp_path / "lab", {"lab": "t"})
    with pytest.raises(InventoryError):
        Inventory.create(tmp_path / "lab", {"lab": "t"})
    done = []
    a = inv.record("thing", name="a")
    inv.record("thing", group="vm:x", name="b")
    inv.update(a, extra=1)
    assert inv.entries("thing")[0]["extra"] == 1
    assert inv.teardown({"thing": lambda e: done.append(e["name"])}, group="vm:x") == []
    assert done == ["b"] and [e["name"] for e in inv.entries()] == ["a"]

    def broken(entry):
        raise RuntimeError("still busy")
    assert inv.teardown({"thing": broken}) == ["thing a: still busy"]
    assert inv.exists()                     # kept, so `down` can be run again
    assert inv.teardown({"thing": lambda e: None}) == []
    assert not (tmp_path / "lab").exists()
    assert inv.teardown() == []             # idempotent


def test_a_recycled_pid_is_never_trusted(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "print('up', flush=True); "
                             "import time; time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "up\n"   # exec'd: its command line is final
        real = {"pid": proc.pid, "start": start_time(proc.pid)}
        assert resolve_pid(real) == proc.pid
        assert resolve_pid({**real, "start": real["start"] - 1}) is None
        pidfile = tmp_path / "x.pid"
        pidfile.write_text(str(proc.pid))
        # found through a pidfile: only if its command line names the recorded marker
        assert resolve_pid({"pidfile": str(pidfile)}) is None
        assert resolve_pid({"pidfile": str(pidfile), "marker": "time.sleep(30)"}) == proc.pid
        assert resolve_pid({"pid": os.getpid() + 10**6}) is None
    finally:
        proc.kill()
        proc.wait()
