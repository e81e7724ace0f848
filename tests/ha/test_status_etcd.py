"""A batch port status report on etcd: 160 ports of one chassis reported ACTIVE in one
request are written (etcd takes at most 128 operations a transaction: the server writes
them 50 a transaction), and each is ACTIVE afterwards."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from plexus.config import Config
from plexus.server.runner import ThreadedServer
from tests.ha.conftest import admin_token, running_etcd

HOST = "hv-status"


@pytest.fixture
def etcd(tmp_path: Path):
    """A one-member etcd cluster on loopback."""
    with running_etcd(tmp_path / "etcd", size=1) as cluster:
        yield cluster


def test_a_report_of_more_ports_than_one_etcd_transaction_takes(etcd):
    config = Config()
    config.server.port = 0
    config.store.url = etcd.url
    with ThreadedServer(config) as srv:
        headers = {"X-Auth-Token": admin_token(srv.url)}
        with httpx.Client(base_url=srv.url, headers=headers, timeout=120) as http:
            r = http.put(f"/southbound/v1/chassis/{HOST}", json={
                "tunnel_ip": "198.18.0.41", "bridge_mappings": {}, "gateway": False,
                "ttl": 60})
            assert r.status_code == 200, r.text
            net = http.post("/v2.0/networks", json={"network": {"name": "st"}}).json()
            net = net["network"]
            ports = []
            for _ in range(4):
                r = http.post("/v2.0/ports", json={"ports": [
                    {"network_id": net["id"], "binding:host_id": HOST}] * 40})
                assert r.status_code == 201, r.text
                ports += [p["id"] for p in r.json()["ports"]]
            r = http.put("/southbound/v1/ports/status", json={
                "host": HOST, "ports": [{"id": p, "status": "ACTIVE"} for p in ports]})
            assert r.status_code == 200, r.text
            assert r.json()["ports"] == [{"id": p, "status": "ACTIVE"} for p in ports]
            listed = http.get(f"/v2.0/ports?network_id={net['id']}&fields=id"
                              "&fields=status").json()["ports"]
            assert sorted((p["id"], p["status"]) for p in listed) == sorted(
                (p, "ACTIVE") for p in ports)
