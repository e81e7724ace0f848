"""Batched inventory teardown (issue 12, item 8): phases by kind in a fixed order, one
batch call per kind, a caller's own handler still wins, veths whose namespaces both go
are forgotten with them (and deleted one by one if a namespace stays), failures stay in
the inventory and are reported. No namespaces are touched: handlers are fakes."""

from __future__ import annotations

import pytest

from plexus.lab import inventory as inv
from plexus.lab.inventory import Inventory


@pytest.fixture
def lab(tmp_path, monkeypatch):
    existing: set[str] = set()
    monkeypatch.setattr(inv.netlink, "ns_exists", lambda name: name in existing)
    store = Inventory.create(tmp_path / "lab", {"lab": "t"})
    # recorded in creation order, as the lab does
    store.record("process", label="server", pid=1)
    store.record("netns", name="ul")
    store.record("netns", group="chassis:c1", name="c1")
    store.record("link", group="chassis:c1", ns="c1", name="ul0", peer_ns="ul", peer="c1")
    store.record("process", group="chassis:c1", label="c1/ovs", pid=2)
    store.record("vm", group="vm:a", name="a")
    store.record("netns", group="vm:a", name="vm-a")
    store.record("link", group="vm:a", ns="vm-a", name="eth0", peer_ns="c1", peer="tap")
    store.record("ovs-port", group="vm:a", chassis="c1", bridge="br-int", name="tap")
    store.record("widget", group="vm:a", name="w")
    return store, existing


def recorder(calls, kind, fail=()):
    def batch(entries):
        calls.append((kind, [e.get("name") or e.get("label") for e in entries]))
        return {e["id"]: "boom" for e in entries if e.get("name") in fail}
    return batch


def test_a_whole_lab_goes_in_phases_one_call_per_kind(lab):
    store, existing = lab
    calls: list = []
    batches = {k: recorder(calls, k) for k in ("ovs-port", "process", "link", "netns")}
    errors = store.teardown({"vm": lambda e: calls.append(("vm", [e["name"]])),
                             "widget": lambda e: calls.append(("widget", [e["name"]]))},
                            batches=batches)
    assert errors == []
    assert calls == [
        ("ovs-port", ["tap"]),
        ("widget", ["w"]),                        # kinds not named: before processes
        ("process", ["c1/ovs", "server"]),        # newest first, all at once
        # no link call: every veth's namespaces go too
        ("netns", ["vm-a", "c1", "ul"]),
        ("vm", ["a"]),
    ]
    assert not store.exists()                     # the lab directory went too


def test_one_vm_deletes_its_veth_whose_peer_namespace_stays(lab):
    store, existing = lab
    existing.update({"c1", "ul"})
    calls: list = []
    batches = {k: recorder(calls, k) for k in ("ovs-port", "process", "link", "netns")}
    assert store.teardown({"vm": lambda e: None, "widget": lambda e: None},
                          group="vm:a", batches=batches) == []
    assert ("link", ["eth0"]) in calls and ("netns", ["vm-a"]) in calls
    assert [e["kind"] for e in store.entries()] == ["process", "netns", "netns", "link",
                                                    "process"]


def test_failures_stay_recorded_and_links_of_a_kept_namespace_are_deleted(lab, monkeypatch):
    store, existing = lab
    existing.add("ul")                            # "ul" could not be removed
    calls: list = []
    batches = {k: recorder(calls, k, fail={"ul"}) for k in ("ovs-port", "process", "netns")}
    removed: list = []
    monkeypatch.setitem(inv.HANDLERS, "link", lambda e: removed.append(e["name"]))
    errors = store.teardown({"vm": lambda e: None, "widget": lambda e: None},
                            batches=batches)
    assert errors == ["namespace ul: boom"]
    assert removed == ["ul0"]                     # its peer's namespace stays: deleted
    assert [(e["kind"], e["name"]) for e in store.entries()] == [("netns", "ul")]


def test_a_callers_own_handler_overrides_the_built_in_batch(lab, monkeypatch):
    store, _ = lab
    monkeypatch.setitem(inv.BATCHES, "process", lambda entries: pytest.fail("batched"))
    stopped: list = []
    store.teardown({"process": lambda e: stopped.append(e["label"]), "vm": lambda e: None,
                    "widget": lambda e: None, "ovs-port": lambda e: None},
                   batches={"netns": lambda es: {}, "link": lambda es: {}})
    assert stopped == ["c1/ovs", "server"]
