"""The southbound stream: snapshot at a revision, ordered events resumable from it,
compaction answered with 410, and agents' status reports."""

from __future__ import annotations

import threading
import time

from tests.api.helpers import raw


def test_snapshot_then_watch_sees_changes_in_order(server, admin):
    snap = raw(server, admin, "GET", "/southbound/v1/snapshot").json()
    start = snap["revision"] + 1
    net = admin.network.create_network(name="sb")
    port = admin.network.create_port(network_id=net.id)
    admin.network.update_port(port, name="renamed")
    admin.network.delete_port(port)
    admin.network.delete_network(net)
    body = raw(server, admin, "GET", f"/southbound/v1/watch?from={start}").json()
    mine = [(e["type"], e["collection"], e["id"]) for e in body["events"]
            if e["id"] in (net.id, port.id)]
    assert mine == [("put", "networks", net.id), ("put", "ports", port.id),
                    ("put", "ports", port.id), ("delete", "ports", port.id),
                    ("delete", "networks", net.id)]
    revisions = [e["revision"] for e in body["events"]]
    assert revisions == sorted(revisions)
    renamed = [e for e in body["events"] if e["id"] == port.id][1]
    assert renamed["object"]["name"] == "renamed"
    # resuming from "next" yields nothing old
    again = raw(server, admin, "GET", f"/southbound/v1/watch?from={body['next']}").json()
    assert not [e for e in again["events"] if e["id"] in (net.id, port.id)]


def test_watch_long_polls_until_a_change(server, admin):
    rev = raw(server, admin, "GET", "/southbound/v1/snapshot").json()["revision"]
    made = []
    timer = threading.Timer(0.5, lambda: made.append(admin.network.create_network(name="lp")))
    timer.start()
    began = time.monotonic()
    body = raw(server, admin, "GET", f"/southbound/v1/watch?from={rev + 1}&timeout=10").json()
    timer.join()
    assert made and any(e["id"] == made[0].id for e in body["events"])
    assert time.monotonic() - began < 10
    admin.network.delete_network(made[0])


def test_compacted_revision_is_410(server, admin):
    store = server.app.state.services.store
    net = admin.network.create_network(name="compact")
    store.compact(store.revision() - 1)
    r = raw(server, admin, "GET", "/southbound/v1/watch?from=1")
    assert r.status_code == 410
    assert r.json()["NeutronError"]["type"] == "Compacted"
    admin.network.delete_network(net)


def test_southbound_needs_admin(server, demo):
    assert raw(server, demo, "GET", "/southbound/v1/snapshot").status_code == 403


def test_agent_reports_port_status(server, admin):
    net = admin.network.create_network(name="status")
    port = admin.network.create_port(network_id=net.id, binding_host_id="chassis-a")
    try:
        assert port.status == "DOWN"
        r = raw(server, admin, "PUT", f"/southbound/v1/ports/{port.id}/status",
                {"status": "ACTIVE", "host": "chassis-a"})
        assert r.status_code == 200
        assert admin.network.get_port(port.id).status == "ACTIVE"
        wrong = raw(server, admin, "PUT", f"/southbound/v1/ports/{port.id}/status",
                    {"status": "DOWN", "host": "chassis-b"})
        assert wrong.status_code == 409
        assert admin.network.get_port(port.id).status == "ACTIVE"
        bad = raw(server, admin, "PUT", f"/southbound/v1/ports/{port.id}/status",
                  {"status": "SIDEWAYS"})
        assert bad.status_code == 400
    finally:
        admin.network.delete_port(port)
        admin.network.delete_network(net)


def test_agent_reports_many_port_statuses_in_one_request(server, admin):
    net = admin.network.create_network(name="statuses")
    here = [admin.network.create_port(network_id=net.id, binding_host_id="chassis-a")
            for _ in range(3)]
    elsewhere = admin.network.create_port(network_id=net.id, binding_host_id="chassis-b")
    gone = "00000000-0000-4000-8000-00000000dead"
    try:
        store = server.app.state.services.store
        before = store.revision()
        r = raw(server, admin, "PUT", "/southbound/v1/ports/status", {
            "host": "chassis-a",
            "ports": [{"id": p.id, "status": "ACTIVE"} for p in here]
            + [{"id": elsewhere.id, "status": "ACTIVE"}, {"id": gone, "status": "ACTIVE"}]})
        assert r.status_code == 200, r.text
        answers = r.json()["ports"]
        assert answers[:3] == [{"id": p.id, "status": "ACTIVE"} for p in here]
        assert answers[3]["id"] == elsewhere.id and answers[3]["code"] == 409
        assert answers[3]["error"]["NeutronError"]["type"] == "PortBindingMismatch"
        assert answers[4]["id"] == gone and answers[4]["code"] == 404
        assert answers[4]["error"]["NeutronError"]["type"] == "PortNotFound"
        assert [admin.network.get_port(p.id).status for p in here] == ["ACTIVE"] * 3
        assert admin.network.get_port(elsewhere.id).status == "DOWN"
        assert store.revision() == before + 1           # the three in one transaction
        # the same again changes nothing; DOWN for one changes only that one
        again = raw(server, admin, "PUT", "/southbound/v1/ports/status", {
            "host": "chassis-a", "ports": [{"id": p.id, "status": "ACTIVE"} for p in here]})
        assert again.status_code == 200 and store.revision() == before + 1
        down = raw(server, admin, "PUT", "/southbound/v1/ports/status", {
            "host": "chassis-a", "ports": [{"id": here[0].id, "status": "DOWN"}]})
        assert down.json()["ports"] == [{"id": here[0].id, "status": "DOWN"}]
        assert [admin.network.get_port(p.id).status for p in here] == \
            ["DOWN", "ACTIVE", "ACTIVE"]
        # bad reports: 400, nothing written
        revision = store.revision()
        for body in ({"host": "chassis-a", "ports": [{"id": here[1].id, "status": "DOWN"},
                                                     {"id": here[2].id, "status": "SIDEWAYS"}]},
                     {"host": "chassis-a", "ports": [{"id": here[1].id, "status": "DOWN"},
                                                     {"id": here[1].id, "status": "DOWN"}]},
                     {"host": "chassis-a", "ports": {"id": here[1].id}},
                     {"host": "", "ports": []}, {"ports": []}, ["DOWN"],
                     {"host": "chassis-a", "ports": [{"id": 7, "status": "DOWN"}]},
                     {"host": "chassis-a",
                      "ports": [{"id": here[1].id, "status": "DOWN"}] * 1001}):
            bad = raw(server, admin, "PUT", "/southbound/v1/ports/status", body)
            assert bad.status_code == 400, (body, bad.text)
            assert "NeutronError" in bad.json()
        assert store.revision() == revision
        assert admin.network.get_port(here[1].id).status == "ACTIVE"
    finally:
        for p in here + [elsewhere]:
            admin.network.delete_port(p)
        admin.network.delete_network(net)


def test_batch_status_report_needs_admin(server, demo):
    r = raw(server, demo, "PUT", "/southbound/v1/ports/status",
            {"host": "chassis-a", "ports": []})
    assert r.status_code == 403
