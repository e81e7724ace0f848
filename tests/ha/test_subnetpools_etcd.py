"""Subnet pool allocation on etcd: two servers on one etcd cluster, clients on both
racing to take prefixes of mixed lengths from one pool — every prefix given out lies in
the pool, none overlaps another, and requests are refused only when no room of their
size is left (the pool's allocation lock is a compare-and-swap in the store, as on
SQLite)."""

from __future__ import annotations

import ipaddress
import threading

import httpx

from tests.ha.conftest import admin_token
from tests.ha.test_quotas_etcd import _server, etcd  # noqa: F401 - the cluster fixture


def test_racing_allocations_on_two_servers_never_overlap(etcd):
    with _server(etcd.url) as one, _server(etcd.url) as two:
        headers = {"X-Auth-Token": admin_token(one.url)}
        with httpx.Client(base_url=one.url, headers=headers, timeout=60) as http:
            pool = http.post("/v2.0/subnetpools", json={"subnetpool": {
                "name": "race", "prefixes": ["10.77.0.0/22"]}}).json()["subnetpool"]
            nets = [http.post("/v2.0/networks", json={"network": {"name": f"r{i}"}})
                    .json()["network"]["id"] for i in range(12)]
        # 4 × /24 of room: 4 /25s and 6 /24s and 2 /23s ask for more than there is
        lengths = [25] * 4 + [24] * 6 + [23] * 2
        results: list = []

        def take(i: int) -> None:
            url = (one.url, two.url)[i % 2]
            r = httpx.post(f"{url}/v2.0/subnets", headers=headers, timeout=60, json={
                "subnet": {"network_id": nets[i], "ip_version": 4,
                           "subnetpool_id": pool["id"], "prefixlen": lengths[i]}})
            results.append((r.status_code, r.json()))
        threads = [threading.Thread(target=take, args=(i,)) for i in range(len(nets))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        statuses = sorted({s for s, _ in results})
        assert set(statuses) <= {201, 409}, results
        given = [ipaddress.ip_network(b["subnet"]["cidr"]) for s, b in results if s == 201]
        for i, a in enumerate(given):
            assert a.subnet_of(ipaddress.ip_network("10.77.0.0/22"))
            for b in given[i + 1:]:
                assert not a.overlaps(b), (a, b)
        refused = [b for s, b in results if s == 409]
        assert all(b["NeutronError"]["type"] in ("SubnetAllocationError",
                                                 "ConcurrentModification") for b in refused)
        # whatever was refused for lack of room, the pool is full once the rest is given
        room = 1024 - sum(n.num_addresses for n in given)
        assert room < 256 or any(b["NeutronError"]["type"] == "ConcurrentModification"
                                 for b in refused), (given, refused)
