"""Quotas on etcd: two servers on one etcd cluster, eight clients spread over them racing
to create ports (pairs in bulk, then singles) — together they end exactly at the quota,
never one past it, and the usage both servers report equals what exists."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from plexus.config import Config
from plexus.server.runner import ThreadedServer
from tests.api.test_quotas import race_creates
from tests.ha.conftest import admin_token, running_etcd


@pytest.fixture
def etcd(tmp_path: Path):
    """A three-member etcd cluster on loopback."""
    with running_etcd(tmp_path / "etcd", size=3) as cluster:
        yield cluster


def _server(url: str) -> ThreadedServer:
    config = Config()
    config.server.port = 0
    config.store.url = url
    return ThreadedServer(config)


def test_racing_clients_on_two_servers_never_pass_the_quota(etcd):
    with _server(etcd.url) as one, _server(etcd.url) as two:
        token = admin_token(one.url)
        headers = {"X-Auth-Token": token}
        with httpx.Client(base_url=one.url, headers=headers, timeout=60) as http:
            project = http.get("/v2.0/quotas/project").json()["project"]["project_id"]
            net = http.post("/v2.0/networks", json={"network": {"name": "race"}}).json()["network"]
            r = http.post("/v2.0/subnets", json={"subnet": {
                "network_id": net["id"], "cidr": "10.69.0.0/24", "ip_version": 4}})
            assert r.status_code == 201, r.text
            http.get("/v2.0/security-groups")                  # the default group, first
            limit = 37
            r = http.put(f"/v2.0/quotas/{project}", json={"quota": {"port": limit}})
            assert r.status_code == 200, r.text
            created: list[str] = []
            try:
                created, statuses, odd = race_creates([one.url, two.url], token,
                                                      {"network_id": net["id"]})
                assert not odd, odd[:3]
                assert len(created) == len(set(created)) == limit
                assert statuses[409] >= 8
                for srv in (one.url, two.url):
                    details = httpx.get(f"{srv}/v2.0/quotas/{project}/details", headers=headers,
                                        timeout=30).json()["quota"]
                    assert details["port"] == {"used": limit, "limit": limit, "reserved": 0}
                listed = http.get(f"/v2.0/ports?project_id={project}&fields=id").json()["ports"]
                assert len(listed) == limit
                # one past is refused on either server; a delete on one frees a slot on both
                r = httpx.post(f"{two.url}/v2.0/ports", headers=headers, timeout=30,
                               json={"port": {"network_id": net["id"]}})
                assert r.status_code == 409 and r.json()["NeutronError"]["type"] == "OverQuota"
                assert http.delete(f"/v2.0/ports/{created.pop()}").status_code == 204
                r = httpx.post(f"{two.url}/v2.0/ports", headers=headers, timeout=30,
                               json={"port": {"network_id": net["id"]}})
                assert r.status_code == 201, r.text
                created.append(r.json()["port"]["id"])
            finally:
                for ident in created:
                    http.delete(f"/v2.0/ports/{ident}")
                http.delete(f"/v2.0/networks/{net['id']}")
                http.delete(f"/v2.0/quotas/{project}")
            details = http.get(f"/v2.0/quotas/{project}/details").json()["quota"]
            assert details["port"]["used"] == 0 and details["network"]["used"] == 0
