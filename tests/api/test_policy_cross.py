"""Cross-project references Neutron refuses: another project's port, subnet or security
group named in a request is answered as if it did not exist, and nothing is written."""

from __future__ import annotations

import pytest

from tests.api.helpers import raw, state


@pytest.fixture(scope="module")
def victim(admin, demo):
    """Project demo's network, subnet, port, security group and router."""
    net = demo.network.create_network(name="victim-net")
    sub = demo.network.create_subnet(network_id=net.id, cidr="10.251.0.0/24", ip_version=4)
    port = demo.network.create_port(network_id=net.id, name="victim-port")
    sg = demo.network.create_security_group(name="victim-sg")
    router = demo.network.create_router(name="victim-router")
    yield {"net": net.id, "sub": sub.id, "port": port.id, "sg": sg.id, "router": router.id}
    demo.network.delete_router(router)
    demo.network.delete_port(port)
    demo.network.delete_security_group(sg)
    demo.network.delete_network(net)


@pytest.fixture(scope="module")
def attacker(admin, alt):
    """Project alt_demo's own network and router, and an external network to take
    floating IPs from."""
    ext = admin.network.create_network(name="cross-ext", is_router_external=True)
    admin.network.create_subnet(network_id=ext.id, cidr="10.253.0.0/24", ip_version=4)
    net = alt.network.create_network(name="attacker-net")
    alt.network.create_subnet(network_id=net.id, cidr="10.252.0.0/24", ip_version=4)
    router = alt.network.create_router(name="attacker-router")
    yield {"net": net.id, "router": router.id, "ext": ext.id}
    alt.network.delete_router(router)
    alt.network.delete_network(net)
    admin.network.delete_network(ext)


CASES = [
    ("router interface on another project's subnet", "PUT",
     "/v2.0/routers/{router}/add_router_interface", {"subnet_id": "{sub}"}, 404),
    ("router interface on another project's port", "PUT",
     "/v2.0/routers/{router}/add_router_interface", {"port_id": "{port}"}, 404),
    ("port with another project's security group", "POST", "/v2.0/ports",
     {"port": {"network_id": "{own_net}", "security_groups": ["{sg}"]}}, 404),
    ("rule with another project's remote group", "POST", "/v2.0/security-group-rules",
     {"security_group_rule": {"security_group_id": "{own_sg}", "direction": "ingress",
                              "remote_group_id": "{sg}"}}, 404),
    ("rule in another project's group", "POST", "/v2.0/security-group-rules",
     {"security_group_rule": {"security_group_id": "{sg}", "direction": "ingress"}}, 404),
    ("floating IP for another project's port", "POST", "/v2.0/floatingips",
     {"floatingip": {"floating_network_id": "{ext}", "port_id": "{port}"}}, 404),
]


def _fill(value, ids):
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


@pytest.mark.parametrize("name,method,path,body,status", CASES, ids=[c[0] for c in CASES])
def test_cross_project_reference_is_refused(server, alt, victim, attacker, name, method,
                                            path, body, status):
    own_sg = alt.network.create_security_group(name="attacker-sg")
    try:
        ids = dict(victim, own_net=attacker["net"], router=attacker["router"],
                   ext=attacker["ext"], own_sg=own_sg.id)
        before = state(server)
        r = raw(server, alt, method, _fill(path, ids), _fill(body, ids))
        assert r.status_code == status, r.text
        assert "NeutronError" in r.json()
        assert state(server) == before
    finally:
        alt.network.delete_security_group(own_sg)
