"""Concurrency: several workers allocate from one small subnet through the API; the
store's transactions (not a process lock) keep every address and MAC unique."""

from __future__ import annotations

import collections
import threading

import httpx

from tests.api.helpers import raw

WORKERS = 8
PORTS = 2000


def test_concurrent_port_creates_on_small_subnet(server, admin):
    # More ports than the default quota of 500: lift it for the admin project meanwhile.
    project = admin.current_project_id
    r = raw(server, admin, "PUT", f"/v2.0/quotas/{project}", {"quota": {"port": -1}})
    assert r.status_code == 200, r.text
    net = admin.network.create_network(name="busy")
    admin.network.create_subnet(network_id=net.id, cidr="10.88.0.0/22", ip_version=4)
    pool = 1021   # 1024 - network - broadcast - gateway
    token = admin.session.get_token()
    statuses: collections.Counter = collections.Counter()
    created: list[dict] = []
    errors: list[str] = []
    lock = threading.Lock()
    todo = iter(range(PORTS))

    def worker():
        with httpx.Client(base_url=server.url, headers={"X-Auth-Token": token},
                          timeout=60) as client:
            while True:
                with lock:
                    if next(todo, None) is None:
                        return
                r = client.post("/v2.0/ports", json={"port": {"network_id": net.id}})
                with lock:
                    statuses[r.status_code] += 1
                    if r.status_code == 201:
                        created.append(r.json()["port"])
                    elif r.json()["NeutronError"]["type"] != "IpAddressGenerationFailure":
                        errors.append(r.text)

    threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors, errors[:3]
        assert statuses[201] == pool
        assert statuses[409] == PORTS - pool
        assert not any(code >= 500 for code in statuses)
        ips = [p["fixed_ips"][0]["ip_address"] for p in created]
        macs = [p["mac_address"] for p in created]
        assert len(set(ips)) == pool and len(set(macs)) == pool
        assert not {"10.88.0.0", "10.88.0.1", "10.88.3.255"} & set(ips)
        listed = raw(server, admin, "GET", f"/v2.0/ports?network_id={net.id}&fields=id")
        assert len(listed.json()["ports"]) == pool
    finally:
        with httpx.Client(base_url=server.url, headers={"X-Auth-Token": token}) as client:
            for p in created:
                client.delete(f"/v2.0/ports/{p['id']}")
        admin.network.delete_network(net)
        raw(server, admin, "DELETE", f"/v2.0/quotas/{project}")
