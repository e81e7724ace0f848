"""Bad input: every case gets the right status and a Neutron-format body, and the
store's model and allocations are exactly as before."""

from __future__ import annotations

import httpx
import pytest

from tests.api.helpers import raw, state


@pytest.fixture(scope="module")
def world(demo):
    """A network with a tiny subnet (2 addresses) whose pool is full, and a port on it."""
    net = demo.network.create_network(name="bad-input")
    sub = demo.network.create_subnet(network_id=net.id, cidr="10.77.0.0/29", ip_version=4,
                                     allocation_pools=[{"start": "10.77.0.2",
                                                        "end": "10.77.0.3"}])
    p1 = demo.network.create_port(network_id=net.id)
    p2 = demo.network.create_port(network_id=net.id)
    yield {"net": net.id, "sub": sub.id, "port": p1.id}
    for p in (p1, p2):
        demo.network.delete_port(p)
    demo.network.delete_network(net)


NET = "{net}"
CASES = [
    # (label, method, path, body (dict or raw bytes), status, NeutronError type or None)
    ("malformed json", "POST", "/v2.0/networks", b"{not json", 400, None),
    ("wrong root key", "POST", "/v2.0/networks", {"netwerk": {}}, 400, None),
    ("body not object", "POST", "/v2.0/networks", {"network": [1]}, 400, None),
    ("unknown attribute", "POST", "/v2.0/networks", {"network": {"colour": "red"}}, 400,
     "InvalidInput"),
    ("wrong type bool", "POST", "/v2.0/networks", {"network": {"admin_state_up": "maybe"}},
     400, "InvalidInput"),
    ("name too long", "POST", "/v2.0/networks", {"network": {"name": "x" * 256}}, 400,
     "InvalidInput"),
    ("mtu too big", "POST", "/v2.0/networks", {"network": {"mtu": 9000}}, 400, "InvalidInput"),
    ("read-only attribute", "POST", "/v2.0/networks", {"network": {"status": "DOWN"}}, 400,
     "InvalidInput"),
    ("bad cidr", "POST", "/v2.0/subnets",
     {"subnet": {"network_id": NET, "cidr": "10.300.0.0/24", "ip_version": 4}}, 400,
     "InvalidInput"),
    ("cidr version mismatch", "POST", "/v2.0/subnets",
     {"subnet": {"network_id": NET, "cidr": "10.78.0.0/24", "ip_version": 6}}, 400,
     "InvalidInput"),
    ("missing cidr", "POST", "/v2.0/subnets", {"subnet": {"network_id": NET, "ip_version": 4}},
     400, "BadRequest"),        # Neutron: "Bad subnets request: a subnetpool must be ..."
    ("overlapping subnet", "POST", "/v2.0/subnets",
     {"subnet": {"network_id": NET, "cidr": "10.77.0.0/24", "ip_version": 4}}, 400,
     "InvalidInput"),
    ("pool outside cidr", "POST", "/v2.0/subnets",
     {"subnet": {"network_id": NET, "cidr": "10.79.0.0/24", "ip_version": 4,
                 "allocation_pools": [{"start": "10.80.0.2", "end": "10.80.0.9"}]}}, 400, None),
    ("gateway in pool", "POST", "/v2.0/subnets",
     {"subnet": {"network_id": NET, "cidr": "10.79.0.0/24", "ip_version": 4,
                 "gateway_ip": "10.79.0.5",
                 "allocation_pools": [{"start": "10.79.0.2", "end": "10.79.0.9"}]}}, 409, None),
    ("subnet on missing network", "POST", "/v2.0/subnets",
     {"subnet": {"network_id": "5f0f7f6c-1111-4c3c-9c6e-000000000000", "cidr": "10.1.0.0/24",
                 "ip_version": 4}}, 404, "NetworkNotFound"),
    ("bad uuid", "POST", "/v2.0/ports", {"port": {"network_id": "not-a-uuid"}}, 400,
     "InvalidInput"),
    ("bad mac", "POST", "/v2.0/ports", {"port": {"network_id": NET, "mac_address": "zz:zz"}},
     400, "InvalidInput"),
    ("bad ip", "POST", "/v2.0/ports",
     {"port": {"network_id": NET, "fixed_ips": [{"ip_address": "10.77.0.999"}]}}, 400,
     "InvalidInput"),
    ("ip outside subnet", "POST", "/v2.0/ports",
     {"port": {"network_id": NET, "fixed_ips": [{"ip_address": "10.99.0.4"}]}}, 400, None),
    ("ip in use", "POST", "/v2.0/ports",
     {"port": {"network_id": NET, "fixed_ips": [{"ip_address": "10.77.0.2"}]}}, 409,
     "IpAddressAlreadyAllocated"),
    ("pool exhausted", "POST", "/v2.0/ports", {"port": {"network_id": NET}}, 409,
     "IpAddressGenerationFailure"),
    ("delete network in use", "DELETE", "/v2.0/networks/{net}", None, 409, "NetworkInUse"),
    ("delete subnet in use", "DELETE", "/v2.0/subnets/{sub}", None, 409, "SubnetInUse"),
    ("update read-only", "PUT", "/v2.0/ports/{port}", {"port": {"network_id": NET}}, 400,
     "InvalidInput"),
    ("bad If-Match", "PUT", "/v2.0/networks/{net}", {"network": {"name": "z"}}, 400, None),
    ("missing object", "GET", "/v2.0/ports/5f0f7f6c-1111-4c3c-9c6e-000000000000", None, 404,
     "PortNotFound"),
    ("unknown collection", "GET", "/v2.0/widgets", None, 404, None),
    ("bad limit", "GET", "/v2.0/ports?limit=-3", None, 400, None),
    ("method not allowed", "PATCH", "/v2.0/networks/{net}", {}, 405, None),
]


@pytest.mark.parametrize("label,method,path,body,status,kind", CASES, ids=[c[0] for c in CASES])
def test_bad_input(server, demo, world, label, method, path, body, status, kind):
    path = path.format(**world)
    headers = {"If-Match": "revision=abc"} if label == "bad If-Match" else None
    before = state(server)
    if isinstance(body, bytes):
        r = raw(server, demo, method, path, content=body, headers=headers)
    else:
        if isinstance(body, dict):
            body = {k: ({kk: (world["net"] if vv == NET else vv) for kk, vv in v.items()}
                        if isinstance(v, dict) else v) for k, v in body.items()}
        r = raw(server, demo, method, path, body, headers=headers)
    assert r.status_code == status, r.text
    err = r.json()["NeutronError"]
    assert set(err) == {"type", "message", "detail"} and err["message"]
    if kind:
        assert err["type"] == kind
    assert state(server) == before


def test_no_token_is_401(server):
    r = httpx.get(server.url + "/v2.0/networks")
    assert r.status_code == 401
    assert "NeutronError" in r.json()
    r = httpx.get(server.url + "/v2.0/networks", headers={"X-Auth-Token": "garbage"})
    assert r.status_code == 401


def test_reader_cannot_write(server, admin):
    """A user with only the reader role can list but not create."""
    ident = admin.identity
    project = ident.find_project("demo")
    user = ident.create_user(name="reader-only", password="pw", domain_id="default",
                             default_project_id=project.id)
    try:
        reader_role = ident.find_role("reader")
        ident.assign_project_role_to_user(project, user, reader_role)
        token = httpx.post(server.url + "/identity/v3/auth/tokens", json={"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": "reader-only", "domain": {"id": "default"}, "password": "pw"}}},
            "scope": {"project": {"id": project.id}}}}).headers["X-Subject-Token"]
        hdrs = {"X-Auth-Token": token}
        assert httpx.get(server.url + "/v2.0/networks", headers=hdrs).status_code == 200
        before = state(server)
        r = httpx.post(server.url + "/v2.0/networks", json={"network": {"name": "r"}},
                       headers=hdrs)
        assert r.status_code == 403 and r.json()["NeutronError"]["type"] == "PolicyNotAuthorized"
        assert state(server) == before
    finally:
        ident.delete_user(user)
