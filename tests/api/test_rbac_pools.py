"""RBAC policies on subnet pools and address scopes (rbac-subnetpool, rbac-address-scope)
through the real openstacksdk, the `openstack network rbac` CLI and raw HTTP, against a
real server with three projects: A (demo) owns, B (alt_demo) is the target, C (carol) is
neither."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.api.helpers import error, raw, state
from tests.api.test_rbac import clouds, srv  # noqa: F401  (the three-project server)


@pytest.fixture
def pool(clouds):  # noqa: F811
    """A's (unshared) IPv4 subnet pool."""
    a = clouds["A"]
    p = a.network.create_subnet_pool(name="rbac-pool", prefixes=["10.90.0.0/16"],
                                     default_prefix_length=24)
    yield p
    admin = clouds["admin"]
    for s in admin.network.subnets(subnet_pool_id=p.id):
        admin.network.delete_subnet(s)
    for x in admin.network.rbac_policies(object_id=p.id):
        admin.network.delete_rbac_policy(x)
    admin.network.delete_subnet_pool(p)


@pytest.fixture
def scope(clouds):  # noqa: F811
    """A's (unshared) IPv4 address scope."""
    admin = clouds["admin"]
    s = clouds["A"].network.create_address_scope(name="rbac-scope", ip_version=4)
    yield s
    for p in admin.network.subnet_pools(address_scope_id=s.id):
        admin.network.delete_subnet_pool(p)
    for x in admin.network.rbac_policies(object_id=s.id):
        admin.network.delete_rbac_policy(x)
    admin.network.delete_address_scope(s)


def _policy(conn, kind, obj_id, target):
    return conn.network.create_rbac_policy(object_type=kind, object_id=obj_id,
                                           action="access_as_shared", target_tenant=target)


def _subnet_from(srv, conn, pool_id):  # noqa: F811
    """POST a subnet of ``conn``'s own new network from the pool (raw: status kept)."""
    net = conn.network.create_network(name="pool-user")
    r = raw(srv, conn, "POST", "/v2.0/subnets", {"subnet": {
        "network_id": net.id, "ip_version": 4, "subnetpool_id": pool_id}})
    return net, r


def test_extensions_advertised(clouds):  # noqa: F811
    aliases = {e.alias for e in clouds["A"].network.extensions()}
    assert {"rbac-subnetpool", "rbac-address-scope"} <= aliases


def test_subnetpool_shared_with_one_project(srv, clouds, pool):  # noqa: F811
    a, b, c = clouds["A"], clouds["B"], clouds["C"]
    # Not shared: B neither sees the pool nor allocates from it.
    assert b.network.find_subnet_pool(pool.id) is None
    bnet, r = _subnet_from(srv, b, pool.id)
    assert r.status_code == 404, r.text
    p = _policy(a, "subnetpool", pool.id, b.current_project_id)
    assert (p.object_type, p.object_id, p.project_id) == (
        "subnetpool", pool.id, a.current_project_id)
    # B sees it as shared (listed, filtered by shared) and allocates a subnet from it.
    assert b.network.get_subnet_pool(pool.id).is_shared is True
    assert pool.id in {x.id for x in b.network.subnet_pools(is_shared=True)}
    assert a.network.get_subnet_pool(pool.id).is_shared is False
    _, r = _subnet_from(srv, b, pool.id)
    assert r.status_code == 201, r.text
    sub = r.json()["subnet"]
    assert sub["subnetpool_id"] == pool.id and sub["cidr"].startswith("10.90.")
    assert sub["project_id"] == b.current_project_id
    # C is not targeted: no pool, no policy, no subnet from it.
    assert c.network.find_subnet_pool(pool.id) is None
    assert pool.id not in {x.id for x in c.network.subnet_pools()}
    assert c.network.find_rbac_policy(p.id) is None
    cnet, r = _subnet_from(srv, c, pool.id)
    assert r.status_code == 404, r.text
    # Revoking while B's subnet holds a prefix: 409, nothing written; retargeting too.
    before = state(srv)
    error(raw(srv, a, "DELETE", f"/v2.0/rbac-policies/{p.id}"), 409, "RbacPolicyInUse")
    r = raw(srv, a, "PUT", f"/v2.0/rbac-policies/{p.id}",
            {"rbac_policy": {"target_tenant": c.current_project_id}})
    error(r, 409, "RbacPolicyInUse")
    assert state(srv) == before
    assert b.network.get_subnet_pool(pool.id).is_shared is True
    # Once B's subnet is gone the policy goes, and with it B's access.
    b.network.delete_subnet(sub["id"])
    a.network.delete_rbac_policy(p)
    assert b.network.find_subnet_pool(pool.id) is None
    _, r = _subnet_from(srv, b, pool.id)
    assert r.status_code == 404, r.text
    for n in (bnet, cnet):
        clouds["admin"].network.delete_network(n.id)
    for n in b.network.networks(name="pool-user"):
        b.network.delete_network(n)


def test_who_may_create(srv, clouds, pool, scope):  # noqa: F811
    a, b, c = clouds["A"], clouds["B"], clouds["C"]
    before = state(srv)
    for kind, obj in (("subnetpool", pool.id), ("address_scope", scope.id)):
        # C cannot see the object: 404; A may not share with everyone (admin only).
        body = {"object_type": kind, "object_id": obj, "action": "access_as_shared",
                "target_tenant": c.current_project_id}
        assert raw(srv, c, "POST", "/v2.0/rbac-policies",
                   {"rbac_policy": body}).status_code == 404
        error(raw(srv, a, "POST", "/v2.0/rbac-policies",
                  {"rbac_policy": dict(body, target_tenant="*")}), 403, "PolicyNotAuthorized")
        error(raw(srv, a, "POST", "/v2.0/rbac-policies",
                  {"rbac_policy": dict(body, action="access_as_external")}), 400,
              "InvalidInput")
    assert state(srv) == before
    # B, once shared with, still may not share A's objects onward (400, as Neutron).
    for kind, obj in (("subnetpool", pool.id), ("address_scope", scope.id)):
        _policy(a, kind, obj, b.current_project_id)
        error(raw(srv, b, "POST", "/v2.0/rbac-policies", {"rbac_policy": {
            "object_type": kind, "object_id": obj, "action": "access_as_shared",
            "target_tenant": c.current_project_id}}), 400, "InvalidInput")
        error(raw(srv, a, "POST", "/v2.0/rbac-policies", {"rbac_policy": {
            "object_type": kind, "object_id": obj, "action": "access_as_shared",
            "target_tenant": b.current_project_id}}), 409, "DuplicateRbacPolicy")


def test_wildcard_is_shared_flag(srv, clouds, pool):  # noqa: F811
    admin, a, c = clouds["admin"], clouds["A"], clouds["C"]
    w = _policy(admin, "subnetpool", pool.id, "*")
    assert a.network.get_subnet_pool(pool.id).is_shared is True
    assert c.network.get_subnet_pool(pool.id).is_shared is True
    cnet, r = _subnet_from(srv, c, pool.id)
    assert r.status_code == 201, r.text
    error(raw(srv, admin, "DELETE", f"/v2.0/rbac-policies/{w.id}"), 409, "RbacPolicyInUse")
    # A policy naming C keeps C's access: then the wildcard may go.
    mine = _policy(a, "subnetpool", pool.id, c.current_project_id)
    admin.network.delete_rbac_policy(w)
    assert a.network.get_subnet_pool(pool.id).is_shared is False
    assert c.network.get_subnet_pool(pool.id).is_shared is True
    error(raw(srv, a, "DELETE", f"/v2.0/rbac-policies/{mine.id}"), 409, "RbacPolicyInUse")
    c.network.delete_subnet(r.json()["subnet"]["id"])
    c.network.delete_network(cnet)
    a.network.delete_rbac_policy(mine)
    # shared=True at create is the `*` policy; deleting the pool deletes it.
    shared = admin.network.create_subnet_pool(name="all", prefixes=["10.91.0.0/16"],
                                              shared=True, project_id=a.current_project_id)
    made = list(admin.network.rbac_policies(object_id=shared.id))
    assert [(x.object_type, x.target_project_id, x.project_id) for x in made] == [
        ("subnetpool", "*", a.current_project_id)]
    assert c.network.get_subnet_pool(shared.id).is_shared is True
    admin.network.delete_subnet_pool(shared)
    assert admin.network.find_rbac_policy(made[0].id) is None


def test_address_scope_shared_with_one_project(srv, clouds, scope):  # noqa: F811
    a, b, c = clouds["A"], clouds["B"], clouds["C"]
    body = {"subnetpool": {"name": "in-scope", "prefixes": ["10.92.0.0/16"],
                           "address_scope_id": scope.id}}
    # Not shared: B cannot put its pool in A's scope; nothing written.
    before = state(srv)
    error(raw(srv, b, "POST", "/v2.0/subnetpools", body), 400,
          "IllegalSubnetPoolAssociationToAddressScope")
    assert state(srv) == before
    assert b.network.find_address_scope(scope.id) is None
    p = _policy(a, "address_scope", scope.id, b.current_project_id)
    assert b.network.get_address_scope(scope.id).is_shared is True
    assert scope.id in {x.id for x in b.network.address_scopes(is_shared=True)}
    assert a.network.get_address_scope(scope.id).is_shared is False
    r = raw(srv, b, "POST", "/v2.0/subnetpools", body)
    assert r.status_code == 201, r.text
    bpool = r.json()["subnetpool"]
    assert bpool["address_scope_id"] == scope.id
    # C: no scope, no association.
    assert c.network.find_address_scope(scope.id) is None
    error(raw(srv, c, "POST", "/v2.0/subnetpools",
              {"subnetpool": dict(body["subnetpool"], prefixes=["10.93.0.0/16"])}), 400,
          "IllegalSubnetPoolAssociationToAddressScope")
    # Revoking while B's pool is in the scope: 409, nothing written.
    before = state(srv)
    error(raw(srv, a, "DELETE", f"/v2.0/rbac-policies/{p.id}"), 409, "RbacPolicyInUse")
    assert state(srv) == before
    b.network.delete_subnet_pool(bpool["id"])
    a.network.delete_rbac_policy(p)
    assert b.network.find_address_scope(scope.id) is None
    # shared=True on update is the `*` policy (admin only); deleting the scope removes it.
    clouds["admin"].network.update_address_scope(scope, is_shared=True)
    made = list(clouds["admin"].network.rbac_policies(object_id=scope.id))
    assert [(x.object_type, x.target_project_id) for x in made] == [("address_scope", "*")]
    assert c.network.get_address_scope(scope.id).is_shared is True


def test_delete_removes_policies(srv, clouds):  # noqa: F811
    a, b = clouds["A"], clouds["B"]
    s = a.network.create_address_scope(name="gone", ip_version=4)
    p = a.network.create_subnet_pool(name="gone", prefixes=["10.94.0.0/16"])
    for kind, obj in (("address_scope", s.id), ("subnetpool", p.id)):
        _policy(a, kind, obj, b.current_project_id)
    a.network.delete_subnet_pool(p)
    a.network.delete_address_scope(s)
    kvs, _ = srv.app.state.services.store.range("/plexus/rbac/")
    assert not [kv.key for kv in kvs if s.id in str(kv.key) or p.id in str(kv.key)]


def test_cli_rbac_pool_and_scope(srv, clouds, pool, scope):  # noqa: F811
    exe = str(Path(sys.executable).with_name("openstack"))
    env = dict(os.environ, OS_CLIENT_CONFIG_FILE=str(srv.clouds), OS_CLOUD="devstack")

    def run(*args, check=True):
        proc = subprocess.run([exe, *args, "-f", "json"], env=env, capture_output=True,
                              text=True, timeout=120)
        if check:
            assert proc.returncode == 0, proc.stderr
            return json.loads(proc.stdout) if proc.stdout.strip() else None
        return proc

    b = clouds["B"].current_project_id
    for kind, obj, show in (("subnetpool", pool.id, "get_subnet_pool"),
                            ("address_scope", scope.id, "get_address_scope")):
        made = run("network", "rbac", "create", obj, "--type", kind,
                   "--action", "access_as_shared", "--target-project", b)
        assert (made["object_type"], made["object_id"], made["target_project_id"]) == (
            kind, obj, b)
        assert getattr(clouds["B"].network, show)(obj).is_shared is True
        assert made["id"] in {x["ID"] for x in run("network", "rbac", "list",
                                                     "--type", kind)}
        proc = subprocess.run([exe, "network", "rbac", "delete", made["id"]], env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert getattr(clouds["B"].network, show.replace("get", "find"))(obj) is None


def test_allocation_and_join_wait_for_a_revoke(srv, clouds, pool, scope):  # noqa: F811
    """While a revoke holds the object's guard (checking who uses it), a subnet from the
    pool or a pool joining the scope does not commit (it would slip past the check)."""
    a, b = clouds["A"], clouds["B"]
    _policy(a, "subnetpool", pool.id, b.current_project_id)
    _policy(a, "address_scope", scope.id, b.current_project_id)
    bnet = b.network.create_network(name="guarded")
    services = srv.app.state.services
    before = state(srv)
    with services.guarding("subnetpools", pool.id):
        r = raw(srv, b, "POST", "/v2.0/subnets", {"subnet": {
            "network_id": bnet.id, "ip_version": 4, "subnetpool_id": pool.id}})
        error(r, 409, "ConcurrentModification")
    with services.guarding("address-scopes", scope.id):
        r = raw(srv, b, "POST", "/v2.0/subnetpools", {"subnetpool": {
            "name": "late", "prefixes": ["10.95.0.0/16"], "address_scope_id": scope.id}})
        error(r, 409, "ConcurrentModification")
    assert state(srv) == before
    r = raw(srv, b, "POST", "/v2.0/subnets", {"subnet": {
        "network_id": bnet.id, "ip_version": 4, "subnetpool_id": pool.id}})
    assert r.status_code == 201, r.text
    b.network.delete_subnet(r.json()["subnet"]["id"])
    b.network.delete_network(bnet)
