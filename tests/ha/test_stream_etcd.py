"""The southbound hub on etcd: the same per-chassis snapshots, events, long polls and
rebuild after compaction as on SQLite (the hub uses nothing but the store contract)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from plexus.config import Config
from plexus.server.runner import ThreadedServer
from plexus.server.stream import Hub
from plexus.store import Compacted, open_store
from tests.ha.conftest import admin_token, running_etcd
from tests.unit.test_stream_hub import Mirror, expected, full_catalog, network, port, put, \
    subnet


@pytest.fixture
def etcd(tmp_path: Path):
    """One etcd member on loopback."""
    with running_etcd(tmp_path / "etcd", size=1) as cluster:
        yield cluster


def test_hub_follows_etcd_and_rebuilds_after_compaction(etcd):
    store = open_store(etcd.url)
    try:
        for i in (0, 1):
            put(store, "networks", network(i))
            put(store, "subnets", subnet(i))
        put(store, "ports", port(0, 0, "c1"))
        hub = Hub(store)
        hub.load()
        one, two = Mirror(hub, "c1"), Mirror(hub, "c2")
        put(store, "ports", port(1, 1, "c2"))
        put(store, "ports", port(2, 0, "c2"))      # c2 joins c1's network
        hub.poll()
        one.catch_up(), two.catch_up()
        catalog = full_catalog(store)
        assert one.ids() == expected(catalog, "c1") and two.ids() == expected(catalog, "c2")
        assert two.ids()["networks"] == {"n0", "n1"}
        start = hub.next
        put(store, "ports", port(2, 0, "c2", rev=2))
        store.compact(store.revision())
        with pytest.raises(Compacted):
            hub.poll()
        hub.load()
        with pytest.raises(Compacted):
            hub.read("c2", start)
        assert Mirror(hub, "c2").ids() == expected(full_catalog(store), "c2")
    finally:
        store.close()


def test_server_on_etcd_serves_chassis_streams(etcd):
    config = Config()
    config.server.port = 0
    config.store.url = etcd.url
    with ThreadedServer(config) as srv:
        headers = {"X-Auth-Token": admin_token(srv.url)}
        with httpx.Client(base_url=srv.url, headers=headers, timeout=30) as http:
            net = http.post("/v2.0/networks", json={"network": {"name": "e"}}).json()["network"]
            snap = http.get("/southbound/v1/snapshot?chassis=ce").json()
            assert snap["objects"] == {}
            answer = {}

            def poll():
                answer["r"] = http.get(f"/southbound/v1/watch?from={snap['revision'] + 1}"
                                       f"&timeout=20&chassis=ce")
            waiter = threading.Thread(target=poll)
            waiter.start()
            deadline = time.monotonic() + 10
            while srv.app.state.hub.watchers() < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            began = time.monotonic()
            with httpx.Client(base_url=srv.url, headers=headers, timeout=30) as other:
                p = other.post("/v2.0/ports", json={"port": {
                    "network_id": net["id"], "binding:host_id": "ce",
                    "security_groups": []}}).json()["port"]
            waiter.join()
            assert time.monotonic() - began < 10
            got = {(e["collection"], e["id"]) for e in answer["r"].json()["events"]}
            assert {("ports", p["id"]), ("networks", net["id"])} <= got
            snap = http.get("/southbound/v1/snapshot?chassis=ce").json()
            assert {o["id"] for o in snap["objects"]["ports"]} == {p["id"]}
