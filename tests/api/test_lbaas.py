"""Octavia v2 load balancing through the real ``openstack loadbalancer`` CLI
(python-octaviaclient) and openstacksdk: the tree, Octavia's validation and error
bodies, statuses, cascade delete, the VIP's Neutron port, policy per project, and
nothing half written."""

from __future__ import annotations

import orjson
import pytest

from tests.api.helpers import raw, state


@pytest.fixture
def subnet(demo):
    net = demo.network.create_network(name="lb-net")
    sub = demo.network.create_subnet(network_id=net.id, cidr="10.77.0.0/24", ip_version=4)
    yield sub
    for port in demo.network.ports(network_id=net.id):
        demo.network.delete_port(port)
    demo.network.delete_network(net)


def fault(r, status: int, text: str | None = None) -> None:
    """An Octavia fault body with ``status``."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"faultcode", "faultstring", "debuginfo"}, r.text
    if text is not None:
        assert text in body["faultstring"], r.text


def tree(server, lb_id):
    kv = server.app.state.services.store.get(f"/plexus/model/loadbalancers/{lb_id}")
    return orjson.loads(kv.value) if kv else None


def test_cli_lifecycle(server, demo, subnet, cli):
    lb = cli("loadbalancer", "create", "--name", "lb1", "--vip-subnet-id", subnet.id,
             cloud="devstack")
    assert lb["provisioning_status"] == "ACTIVE" and lb["provider"] == "plexus"
    assert lb["vip_network_id"] == subnet.network_id
    vip_port = demo.network.get_port(lb["vip_port_id"])
    assert vip_port.device_owner == "Octavia"
    assert vip_port.fixed_ips[0]["ip_address"] == lb["vip_address"]
    li = cli("loadbalancer", "listener", "create", "--name", "l1", "--protocol", "TCP",
             "--protocol-port", "80", lb["id"], cloud="devstack")
    pool = cli("loadbalancer", "pool", "create", "--name", "p1", "--protocol", "TCP",
               "--lb-algorithm", "ROUND_ROBIN", "--listener", li["id"],
               "--session-persistence", "type=SOURCE_IP", cloud="devstack")
    assert pool["session_persistence"]["type"] == "SOURCE_IP"
    members = [cli("loadbalancer", "member", "create", "--address", f"10.77.0.{10 + i}",
                   "--protocol-port", "8080", "--subnet-id", subnet.id, pool["id"],
                   cloud="devstack") for i in range(3)]
    assert {m["operating_status"] for m in members} == {"NO_MONITOR"}
    hm = cli("loadbalancer", "healthmonitor", "create", "--delay", "2", "--timeout", "1",
             "--max-retries", "2", "--type", "TCP", pool["id"], cloud="devstack")
    assert hm["type"] == "TCP"
    got = cli("loadbalancer", "show", lb["id"], cloud="devstack")
    assert got["operating_status"] == "ONLINE"
    shown = cli("loadbalancer", "listener", "show", li["id"], cloud="devstack")
    assert shown["default_pool_id"] == pool["id"]
    rows = cli("loadbalancer", "member", "list", pool["id"], cloud="devstack")
    assert {r["id"] for r in rows} == {m["id"] for m in members}
    assert {r["operating_status"] for r in rows} == {"ONLINE"}
    cli("loadbalancer", "member", "set", "--weight", "5", pool["id"], members[0]["id"],
        cloud="devstack", fmt=False)
    assert cli("loadbalancer", "member", "show", pool["id"], members[0]["id"],
               cloud="devstack")["weight"] == 5
    status = cli("loadbalancer", "status", "show", lb["id"], cloud="devstack", fmt=False)
    assert status.returncode == 0 and members[0]["id"] in status.stdout
    # a member reported down by its chassis: ERROR; the pool DEGRADED
    server.app.state.services.lbaas.report_health(members[0]["id"], "ERROR", "hv1")
    assert cli("loadbalancer", "member", "show", pool["id"], members[0]["id"],
               cloud="devstack")["operating_status"] == "ERROR"
    assert cli("loadbalancer", "pool", "show", pool["id"],
               cloud="devstack")["operating_status"] == "DEGRADED"
    # its monitor replaced: no monitor, then a new one without the old verdict
    cli("loadbalancer", "healthmonitor", "delete", hm["id"], cloud="devstack", fmt=False)
    assert cli("loadbalancer", "member", "show", pool["id"], members[0]["id"],
               cloud="devstack")["operating_status"] == "NO_MONITOR"
    hm = cli("loadbalancer", "healthmonitor", "create", "--delay", "2", "--timeout", "1",
             "--max-retries", "2", "--type", "TCP", pool["id"], cloud="devstack")
    assert cli("loadbalancer", "member", "show", pool["id"], members[0]["id"],
               cloud="devstack")["operating_status"] == "ONLINE"
    # the tree the chassis read
    stored = tree(server, lb["id"])
    assert set(stored["children"]["members"]) == {m["id"] for m in members}
    # no delete with children; cascade deletes all (VIP port too)
    refused = cli("loadbalancer", "delete", lb["id"], cloud="devstack", check=False,
                  fmt=False)
    assert refused.returncode != 0 and "has children" in refused.stderr
    cli("loadbalancer", "delete", "--cascade", lb["id"], cloud="devstack", fmt=False)
    assert tree(server, lb["id"]) is None
    assert demo.network.find_port(lb["vip_port_id"]) is None
    kvs, _ = server.app.state.services.store.range("/plexus/lbaas/")
    assert kvs == []


def test_validation_and_faults(server, demo, subnet):
    bad = [
        ({"loadbalancer": {"name": "x"}}, 400, "VIP must contain one of"),
        ({"loadbalancer": {"vip_subnet_id": "nope"}}, 400, None),
        ({"loadbalancer": {"vip_subnet_id": "6b6ac5c5-0a39-4b6f-8dd6-9d1ac26e0b55"}}, 400,
         "not found"),
        ({"loadbalancer": {"vip_subnet_id": subnet.id, "provider": "amphora"}}, 400,
         "not enabled"),
        ({"loadbalancer": {"vip_subnet_id": subnet.id, "bogus": 1}}, 400, None),
        ({"lb": {}}, 400, None),
    ]
    before = state(server)
    for body, status, text in bad:
        fault(raw(server, demo, "POST", "/v2.0/lbaas/loadbalancers", body), status, text)
    assert state(server) == before
    lb = raw(server, demo, "POST", "/v2/lbaas/loadbalancers",
             {"loadbalancer": {"vip_subnet_id": subnet.id}}).json()["loadbalancer"]

    def post(path, body):
        return raw(server, demo, "POST", f"/v2/lbaas/{path}", body)
    li = post("listeners", {"listener": {"loadbalancer_id": lb["id"], "protocol": "UDP",
                                         "protocol_port": 53}}).json()["listener"]
    fault(post("listeners", {"listener": {"loadbalancer_id": lb["id"], "protocol": "UDP",
                                          "protocol_port": 53}}), 409, "already using")
    fault(post("listeners", {"listener": {"loadbalancer_id": lb["id"], "protocol": "HTTP",
                                          "protocol_port": 80}}), 501, "does not support")
    fault(post("listeners", {"listener": {"loadbalancer_id": lb["id"], "protocol": "TCP",
                                          "protocol_port": 70000}}), 400)
    fault(post("listeners", {"listener": {"loadbalancer_id": subnet.id, "protocol": "TCP",
                                          "protocol_port": 80}}), 404, "not found")
    fault(post("pools", {"pool": {"listener_id": li["id"], "protocol": "TCP",
                                  "lb_algorithm": "ROUND_ROBIN"}}), 400, "is invalid while")
    fault(post("pools", {"pool": {"listener_id": li["id"], "protocol": "UDP",
                                  "lb_algorithm": "LEAST_CONNECTIONS"}}), 501)
    fault(post("pools", {"pool": {"protocol": "UDP", "lb_algorithm": "ROUND_ROBIN"}}), 400)
    pool = post("pools", {"pool": {"listener_id": li["id"], "protocol": "UDP",
                                   "lb_algorithm": "SOURCE_IP"}}).json()["pool"]
    assert pool["listeners"] == [{"id": li["id"]}]
    fault(post("pools", {"pool": {"listener_id": li["id"], "protocol": "UDP",
                                  "lb_algorithm": "SOURCE_IP"}}), 409, "default pool")
    m = post(f"pools/{pool['id']}/members", {"member": {"address": "10.77.0.20",
                                                        "protocol_port": 53}})
    assert m.status_code == 201, m.text
    fault(post(f"pools/{pool['id']}/members", {"member": {"address": "10.77.0.20",
                                                          "protocol_port": 53}}), 409)
    fault(post(f"pools/{pool['id']}/members", {"member": {"address": "10.77.0.21",
                                                          "protocol_port": 53,
                                                          "weight": 300}}), 400)
    fault(post("healthmonitors", {"healthmonitor": {"pool_id": pool["id"], "type": "TCP",
                                                    "delay": 1, "timeout": 2,
                                                    "max_retries": 1}}), 400, "delay")
    fault(post("healthmonitors", {"healthmonitor": {"pool_id": pool["id"], "type": "PING",
                                                    "delay": 2, "timeout": 1,
                                                    "max_retries": 1}}), 501)
    for kind in ("HTTP", "HTTPS"):      # as Octavia's OVN provider: not supported
        fault(post("healthmonitors", {"healthmonitor": {"pool_id": pool["id"], "type": kind,
                                                        "delay": 2, "timeout": 1,
                                                        "max_retries": 1}}), 501,
              "does not support")
    hm = post("healthmonitors", {"healthmonitor": {"pool_id": pool["id"],
                                                   "type": "UDP-CONNECT", "delay": 2,
                                                   "timeout": 1, "max_retries": 1}})
    assert hm.status_code == 201, hm.text
    fault(post("healthmonitors", {"healthmonitor": {"pool_id": pool["id"],
                                                    "type": "UDP-CONNECT", "delay": 2,
                                                    "timeout": 1, "max_retries": 1}}), 409)
    # a member in another pool's path is not found
    fault(raw(server, demo, "GET", f"/v2/lbaas/pools/{lb['id']}/members/"
              f"{m.json()['member']['id']}"), 404)
    # deleting the pool takes its members and monitor; the listener loses its default
    assert raw(server, demo, "DELETE", f"/v2/lbaas/pools/{pool['id']}").status_code == 204
    got = raw(server, demo, "GET", f"/v2/lbaas/listeners/{li['id']}").json()["listener"]
    assert got["default_pool_id"] is None
    assert set(tree(server, lb["id"])["children"]["members"]) == set()
    assert raw(server, demo, "DELETE", f"/v2/lbaas/listeners/{li['id']}").status_code == 204
    assert raw(server, demo, "DELETE", f"/v2/lbaas/loadbalancers/{lb['id']}").status_code \
        == 204


def test_policy_per_project(server, demo, alt, admin, subnet):
    lb = raw(server, demo, "POST", "/v2/lbaas/loadbalancers",
             {"loadbalancer": {"vip_subnet_id": subnet.id}}).json()["loadbalancer"]
    try:
        fault(raw(server, alt, "GET", f"/v2/lbaas/loadbalancers/{lb['id']}"), 404)
        fault(raw(server, alt, "DELETE", f"/v2/lbaas/loadbalancers/{lb['id']}"), 404)
        fault(raw(server, alt, "POST", "/v2/lbaas/listeners", {"listener": {
            "loadbalancer_id": lb["id"], "protocol": "TCP", "protocol_port": 80}}), 404)
        ids = [x["id"] for x in raw(server, alt, "GET", "/v2/lbaas/loadbalancers")
               .json()["loadbalancers"]]
        assert lb["id"] not in ids
        # the admin sees every project's (read-global)
        ids = [x["id"] for x in raw(server, admin, "GET", "/v2/lbaas/loadbalancers")
               .json()["loadbalancers"]]
        assert lb["id"] in ids
        # another project's id in the body needs admin
        fault(raw(server, demo, "POST", "/v2/lbaas/loadbalancers", {"loadbalancer": {
            "vip_subnet_id": subnet.id, "project_id": "someone-else"}}), 403)
        assert demo.load_balancer.get_load_balancer(lb["id"]).vip_address == \
            lb["vip_address"]
    finally:
        raw(server, demo, "DELETE", f"/v2/lbaas/loadbalancers/{lb['id']}")
