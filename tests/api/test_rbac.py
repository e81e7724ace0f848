"""RBAC policies (rbac-policies, rbac-security-groups) through the real openstacksdk, the
`openstack network rbac` CLI and raw HTTP, against a real server with three projects:
A (demo) owns, B (alt_demo) is the target, C (carol) is neither."""

from __future__ import annotations

import os

import openstack
import pytest

from plexus.config import SeedUser
from plexus.server.runner import write_clouds_yaml
from tests.api.conftest import serving
from tests.api.helpers import error, raw, state

PASSWORD = "carol-secret-pw"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    """A server whose identity also has project carol (C, never targeted)."""
    tmp = tmp_path_factory.mktemp("rbac")

    def carol(config):
        config.identity.projects.append("carol")
        config.identity.users.append(SeedUser(name="carol", password=PASSWORD,
                                              project="carol"))
    with serving(tmp, carol) as server:
        server.clouds = write_clouds_yaml(tmp / "clouds.yaml", server.url, server.config_used)
        yield server


def _conn(srv, cloud):
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(srv.clouds)
    return openstack.connect(cloud=cloud)


@pytest.fixture(scope="module")
def clouds(srv):
    a, b, admin = (_conn(srv, c) for c in ("devstack", "devstack-alt", "devstack-admin"))
    c = openstack.connect(auth_url=f"{srv.url}/identity/v3", username="carol",
                          password=PASSWORD, project_name="carol", user_domain_name="Default",
                          project_domain_name="Default", region_name="RegionOne",
                          identity_api_version=3)
    return {"A": a, "B": b, "C": c, "admin": admin}


@pytest.fixture
def net(clouds):
    """A's network with a subnet."""
    a = clouds["A"]
    n = a.network.create_network(name="rbac-net")
    a.network.create_subnet(network_id=n.id, cidr="10.77.0.0/24", ip_version=4)
    yield n
    for port in clouds["admin"].network.ports(network_id=n.id):
        clouds["admin"].network.delete_port(port)
    for p in clouds["admin"].network.rbac_policies(object_id=n.id):
        clouds["admin"].network.delete_rbac_policy(p)
    clouds["admin"].network.delete_network(n)


def _share(clouds, net_id, target="B", who="A", action="access_as_shared"):
    return clouds[who].network.create_rbac_policy(
        object_type="network", object_id=net_id, action=action,
        target_tenant=clouds[target].current_project_id)


def test_extensions_advertised(clouds):
    aliases = {e.alias for e in clouds["A"].network.extensions()}
    assert {"rbac-policies", "rbac-security-groups"} <= aliases


def test_share_with_one_project(clouds, net):
    a, b, c = clouds["A"], clouds["B"], clouds["C"]
    assert b.network.find_network(net.id) is None
    p = _share(clouds, net.id)
    assert (p.object_type, p.object_id, p.action, p.project_id) == (
        "network", net.id, "access_as_shared", a.current_project_id)
    assert p.target_project_id == b.current_project_id
    # B sees the network as shared, its subnet, and can plug a port into it.
    seen = b.network.get_network(net.id)
    assert seen.is_shared is True
    assert net.id in {n.id for n in b.network.networks()}
    assert net.id in {n.id for n in b.network.networks(is_shared=True)}
    assert [s.network_id for s in b.network.subnets(network_id=net.id)] == [net.id]
    port = b.network.create_port(network_id=net.id)
    assert port.project_id == b.current_project_id and port.fixed_ips
    # A (the owner) still sees it unshared: the policy names B, not everyone.
    assert a.network.get_network(net.id).is_shared is False
    # C is not targeted: sees neither network, subnet nor policy, cannot plug a port.
    assert c.network.find_network(net.id) is None
    assert net.id not in {n.id for n in c.network.networks()}
    assert not list(c.network.subnets(network_id=net.id))
    assert c.network.find_rbac_policy(p.id) is None
    r = raw(_SRV[0], c, "POST", "/v2.0/ports", {"port": {"network_id": net.id}})
    assert r.status_code == 404, r.text
    # The target does not see the policy either (only its project and admins do).
    assert b.network.find_rbac_policy(p.id) is None
    assert p.id in {x.id for x in a.network.rbac_policies()}
    assert p.id in {x.id for x in clouds["admin"].network.rbac_policies()}
    assert p.id not in {x.id for x in c.network.rbac_policies()}


_SRV: list = []


@pytest.fixture(autouse=True)
def _remember(srv):
    _SRV[:] = [srv]


def test_revoke_refused_while_target_has_ports(srv, clouds, net):
    a, b = clouds["A"], clouds["B"]
    p = _share(clouds, net.id)
    port = b.network.create_port(network_id=net.id)
    before = state(srv)
    r = raw(srv, a, "DELETE", f"/v2.0/rbac-policies/{p.id}")
    error(r, 409, "RbacPolicyInUse")
    assert state(srv) == before
    # Retargeting away from B is refused the same way; to C it is allowed once B's port goes.
    r = raw(srv, a, "PUT", f"/v2.0/rbac-policies/{p.id}",
            {"rbac_policy": {"target_tenant": clouds["C"].current_project_id}})
    error(r, 409, "RbacPolicyInUse")
    b.network.delete_port(port)
    moved = a.network.update_rbac_policy(p, target_tenant=clouds["C"].current_project_id)
    assert moved.target_project_id == clouds["C"].current_project_id
    assert b.network.find_network(net.id) is None
    assert clouds["C"].network.get_network(net.id).is_shared is True
    a.network.delete_rbac_policy(p)
    assert clouds["C"].network.find_network(net.id) is None


def test_who_may_create(srv, clouds, net):
    b, c = clouds["B"], clouds["C"]
    # B may not share A's network even once it is shared with B (400, as Neutron).
    _share(clouds, net.id)
    r = raw(srv, b, "POST", "/v2.0/rbac-policies", {"rbac_policy": {
        "object_type": "network", "object_id": net.id, "action": "access_as_shared",
        "target_tenant": c.current_project_id}})
    error(r, 400, "InvalidInput")
    # C cannot see the network: 404.
    r = raw(srv, c, "POST", "/v2.0/rbac-policies", {"rbac_policy": {
        "object_type": "network", "object_id": net.id, "action": "access_as_shared",
        "target_tenant": c.current_project_id}})
    assert r.status_code == 404, r.text
    # Only an admin shares with everyone.
    before = state(srv)
    r = raw(srv, clouds["A"], "POST", "/v2.0/rbac-policies", {"rbac_policy": {
        "object_type": "network", "object_id": net.id, "action": "access_as_shared",
        "target_tenant": "*"}})
    error(r, 403, "PolicyNotAuthorized")
    # Duplicates, bad types and actions, missing targets: Neutron's errors, nothing written.
    r = raw(srv, clouds["A"], "POST", "/v2.0/rbac-policies", {"rbac_policy": {
        "object_type": "network", "object_id": net.id, "action": "access_as_shared",
        "target_tenant": b.current_project_id}})
    error(r, 409, "DuplicateRbacPolicy")
    # A known type naming an object of another type: that object is not found (404).
    r = raw(srv, clouds["A"], "POST", "/v2.0/rbac-policies", {"rbac_policy": {
        "object_type": "qos_policy", "object_id": net.id, "action": "access_as_shared",
        "target_tenant": "x"}})
    error(r, 404, "QosPolicyNotFound", f"QoS policy {net.id} could not be found.")
    for body in ({"object_type": "bgpvpn", "object_id": net.id,
                  "action": "access_as_shared", "target_tenant": "x"},
                 {"object_type": "network", "object_id": net.id,
                  "action": "access_as_owner", "target_tenant": "x"},
                 {"object_type": "network", "object_id": net.id,
                  "action": "access_as_shared", "target_tenant": None},
                 {"object_type": "network", "object_id": net.id,
                  "action": "access_as_shared"},
                 {"object_type": "network", "object_id": net.id,
                  "action": "access_as_shared", "target_tenant": "x" * 256},
                 {"object_type": "network", "object_id": "not-a-uuid",
                  "action": "access_as_shared", "target_tenant": "x"}):
        r = raw(srv, clouds["A"], "POST", "/v2.0/rbac-policies", {"rbac_policy": body})
        assert r.status_code == 400, (body, r.text)
    r = raw(srv, clouds["A"], "PUT", "/v2.0/rbac-policies/" + net.id,
            {"rbac_policy": {"target_tenant": "x"}})
    assert r.status_code == 404
    assert state(srv) == before


def test_wildcard_is_shared_flag(srv, clouds, net):
    admin, a, c = clouds["admin"], clouds["A"], clouds["C"]
    p = admin.network.create_rbac_policy(object_type="network", object_id=net.id,
                                         action="access_as_shared", target_tenant="*")
    assert a.network.get_network(net.id).is_shared is True
    assert c.network.get_network(net.id).is_shared is True
    port = c.network.create_port(network_id=net.id)
    error(raw(srv, admin, "DELETE", f"/v2.0/rbac-policies/{p.id}"), 409, "RbacPolicyInUse")
    r = raw(srv, admin, "PUT", f"/v2.0/networks/{net.id}", {"network": {"shared": False}})
    error(r, 409, "InvalidSharedSetting")
    c.network.delete_port(port)
    admin.network.delete_rbac_policy(p)
    assert a.network.get_network(net.id).is_shared is False
    assert c.network.find_network(net.id) is None
    # ... and the other way: shared=True makes the `*` policy, shared=False removes it.
    admin.network.update_network(net, is_shared=True)
    wild = [x for x in admin.network.rbac_policies(object_id=net.id)]
    assert [(x.target_project_id, x.action, x.project_id) for x in wild] == [
        ("*", "access_as_shared", a.current_project_id)]
    assert a.network.get_rbac_policy(wild[0].id).id == wild[0].id   # the owner's policy
    admin.network.update_network(net, is_shared=False)
    assert not list(admin.network.rbac_policies(object_id=net.id))


def test_access_as_external(srv, clouds, net):
    admin, b, c = clouds["admin"], clouds["B"], clouds["C"]
    admin.network.create_rbac_policy(object_type="network", object_id=net.id,
                                     action="access_as_external",
                                     target_tenant=b.current_project_id)
    assert admin.network.get_network(net.id).is_router_external is True
    assert b.network.get_network(net.id).is_router_external is True
    assert c.network.find_network(net.id) is None
    router = b.network.create_router(external_gateway_info={"network_id": net.id})
    r = raw(srv, c, "POST", "/v2.0/routers",
            {"router": {"external_gateway_info": {"network_id": net.id}}})
    assert r.status_code == 404, r.text
    p = next(iter(admin.network.rbac_policies(object_id=net.id)))
    error(raw(srv, admin, "DELETE", f"/v2.0/rbac-policies/{p.id}"), 409, "RbacPolicyInUse")
    # Clearing router:external while a gateway is on the network: 409, nothing written.
    before = state(srv)
    r = raw(srv, admin, "PUT", f"/v2.0/networks/{net.id}",
            {"network": {"router:external": False}})
    error(r, 409, "ExternalNetworkInUse")
    assert state(srv) == before
    b.network.delete_router(router)
    admin.network.delete_rbac_policy(p)
    assert admin.network.get_network(net.id).is_router_external is False
    assert b.network.find_network(net.id) is None
    # router:external=True is the `*` policy; False removes every access_as_external one.
    admin.network.update_network(net, is_router_external=True)
    assert [(x.action, x.target_project_id) for x in admin.network.rbac_policies(
        object_id=net.id)] == [("access_as_external", "*")]
    assert c.network.get_network(net.id).is_router_external is True
    admin.network.create_rbac_policy(object_type="network", object_id=net.id,
                                     action="access_as_external",
                                     target_tenant=b.current_project_id)
    admin.network.update_network(net, is_router_external=False)
    assert not list(admin.network.rbac_policies(object_id=net.id))
    assert c.network.find_network(net.id) is None


def test_security_group_shared(srv, clouds, net):
    a, b, c = clouds["A"], clouds["B"], clouds["C"]
    sg = a.network.create_security_group(name="rbac-sg")
    try:
        _share(clouds, net.id)
        bnet = b.network.create_network(name="b-net")
        b.network.create_subnet(network_id=bnet.id, cidr="10.78.0.0/24", ip_version=4)
        r = raw(srv, b, "POST", "/v2.0/ports",
                {"port": {"network_id": bnet.id, "security_groups": [sg.id]}})
        assert r.status_code == 404, r.text
        assert b.network.find_security_group(sg.id) is None
        p = a.network.create_rbac_policy(object_type="security_group", object_id=sg.id,
                                         action="access_as_shared",
                                         target_tenant=b.current_project_id)
        assert b.network.get_security_group(sg.id).is_shared is True
        assert sg.id in {g.id for g in b.network.security_groups()}
        assert sg.id not in {g.id for g in c.network.security_groups()}
        port = b.network.create_port(network_id=bnet.id, security_group_ids=[sg.id])
        assert port.security_group_ids == [sg.id]
        r = raw(srv, c, "POST", "/v2.0/ports", {"port": {"network_id": net.id}})
        assert r.status_code == 404
        error(raw(srv, a, "DELETE", f"/v2.0/rbac-policies/{p.id}"), 409, "RbacPolicyInUse")
        b.network.delete_port(port)
        a.network.delete_rbac_policy(p)
        assert b.network.find_security_group(sg.id) is None
        r = raw(srv, a, "POST", "/v2.0/rbac-policies", {"rbac_policy": {
            "object_type": "security_group", "object_id": sg.id,
            "action": "access_as_external", "target_tenant": b.current_project_id}})
        error(r, 400, "InvalidInput")
        b.network.delete_network(bnet)
    finally:
        a.network.delete_security_group(sg)


def test_delete_object_removes_its_policies(srv, clouds):
    a = clouds["A"]
    n = a.network.create_network(name="gone")
    p = _share(clouds, n.id)
    a.network.delete_network(n)
    assert clouds["admin"].network.find_rbac_policy(p.id) is None
    kvs, _ = srv.app.state.services.store.range("/plexus/rbac/")
    assert not [kv.key for kv in kvs if n.id in str(kv.key)]


def test_cli_network_rbac(srv, clouds, net):
    import json
    import subprocess
    import sys
    from pathlib import Path
    exe = str(Path(sys.executable).with_name("openstack"))
    env = dict(os.environ, OS_CLIENT_CONFIG_FILE=str(srv.clouds), OS_CLOUD="devstack-admin")

    def run(*args):
        proc = subprocess.run([exe, *args, "-f", "json"], env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    b = clouds["B"].current_project_id
    made = run("network", "rbac", "create", net.id, "--type", "network",
               "--action", "access_as_shared", "--target-project", b)
    assert made["object_id"] == net.id and made["target_project_id"] == b
    assert made["id"] in {x["ID"] for x in run("network", "rbac", "list")}
    shown = run("network", "rbac", "show", made["id"])
    assert (shown["action"], shown["object_type"]) == ("access_as_shared", "network")
    proc = subprocess.run([exe, "network", "rbac", "delete", made["id"]], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert clouds["B"].network.find_network(net.id) is None
