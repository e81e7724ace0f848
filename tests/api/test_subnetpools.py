"""Subnet pools and address scopes (subnet_allocation, default-subnetpools,
subnetpool-prefix-ops, address-scope) through the real openstacksdk and openstack CLI."""

from __future__ import annotations

import ipaddress
import threading

import pytest
from openstack import exceptions as osexc

from tests.api.helpers import error, raw, state


@pytest.fixture
def cleanup(admin):
    """Objects to delete after the test, newest first (admin deletes anything)."""
    made: list = []
    yield made
    for kind, ident in reversed(made):
        try:
            getattr(admin.network, f"delete_{kind}")(ident, ignore_missing=True)
        except osexc.SDKException:
            pass


def test_pool_defaults_and_first_free_prefix(demo, cleanup):
    pool = demo.network.create_subnet_pool(name="p1", prefixes=["10.90.0.0/16"],
                                           default_prefix_length=24)
    cleanup.append(("subnet_pool", pool.id))
    assert pool.ip_version == 4
    assert pool.minimum_prefix_length == 8 and pool.maximum_prefix_length == 32
    assert pool.default_prefix_length == 24
    assert pool.is_default is False and pool.is_shared is False
    assert pool.address_scope_id is None and pool.default_quota is None
    net = demo.network.create_network(name="pn")
    cleanup.append(("network", net.id))
    cidrs, subs = [], []
    for i in range(3):
        sub = demo.network.create_subnet(network_id=net.id, ip_version=4,
                                         subnetpool_id=pool.id) if i != 1 else \
            demo.network.create_subnet(network_id=net.id, ip_version=4,
                                       subnetpool_id=pool.id, prefixlen=26)
        assert sub.subnet_pool_id == pool.id
        cidrs.append(sub.cidr)
        subs.append(sub)
    # Neutron's order: the smallest free block first; the /26 splits a /24, the next /24
    # is the first whole one left.
    assert cidrs == ["10.90.0.0/24", "10.90.1.0/26", "10.90.2.0/24"]
    sub = demo.network.get_subnet(subs[1].id)
    assert sub.gateway_ip == "10.90.1.1"
    assert sub.allocation_pools == [{"start": "10.90.1.2", "end": "10.90.1.62"}]
    # the next /26 fills the hole left in 10.90.1.0/24 before any fresh /24
    sub4 = demo.network.create_subnet(network_id=net.id, ip_version=4, subnetpool_id=pool.id,
                                      prefixlen=26)
    assert sub4.cidr == "10.90.1.64/26"
    # a specific CIDR from the pool: free is taken, allocated or outside is refused
    sub5 = demo.network.create_subnet(network_id=net.id, ip_version=4, subnetpool_id=pool.id,
                                      cidr="10.90.200.0/24")
    assert sub5.subnet_pool_id == pool.id
    for cidr in ("10.90.0.128/25", "10.91.0.0/24"):
        with pytest.raises(osexc.ConflictException, match="Cannot allocate requested"):
            demo.network.create_subnet(network_id=net.id, ip_version=4,
                                       subnetpool_id=pool.id, cidr=cidr)
    # deleting a subnet gives its prefix back
    demo.network.delete_subnet(sub5)
    again = demo.network.create_subnet(network_id=net.id, ip_version=4, subnetpool_id=pool.id,
                                       cidr="10.90.200.0/24")
    assert again.cidr == "10.90.200.0/24"


def test_pool_bad_input(server, demo, cleanup):
    cases = [
        ({"prefixes": []}, 400, "EmptySubnetPoolPrefixList"),
        ({"prefixes": ["10.0.0.0/8", "fd00::/8"]}, 400, "PrefixVersionMismatch"),
        ({"prefixes": ["10.0.0.0/8"], "min_prefixlen": 24, "max_prefixlen": 16}, 400,
         "IllegalSubnetPoolPrefixBounds"),
        ({"prefixes": ["10.0.0.0/8"], "default_prefixlen": 4}, 400,
         "IllegalSubnetPoolPrefixBounds"),
        ({"prefixes": ["10.0.0.0/8"], "max_prefixlen": 33}, 400,
         "IllegalSubnetPoolPrefixBounds"),
        ({"prefixes": ["not-a-cidr"]}, 400, "InvalidInput"),
        ({"prefixes": ["10.0.0.0/8"], "is_default": True}, 403, "PolicyNotAuthorized"),
        ({"prefixes": ["10.0.0.0/8"], "shared": True}, 403, "PolicyNotAuthorized"),
        ({"prefixes": ["10.0.0.0/8"], "default_quota": -1}, 400, "InvalidInput"),
    ]
    before = state(server)
    for body, status, kind in cases:
        r = raw(server, demo, "POST", "/v2.0/subnetpools", {"subnetpool": body})
        error(r, status, kind)
    assert state(server) == before          # nothing half written
    pool = demo.network.create_subnet_pool(name="pb", prefixes=["10.92.0.0/16"],
                                           min_prefixlen=20, max_prefixlen=26)
    cleanup.append(("subnet_pool", pool.id))
    net = demo.network.create_network(name="pbn")
    cleanup.append(("network", net.id))
    base = {"network_id": net.id, "ip_version": 4}
    subnet_cases = [
        (dict(base, subnetpool_id=pool.id, prefixlen=27), 400,
         "MaxPrefixSubnetAllocationError"),
        (dict(base, subnetpool_id=pool.id, prefixlen=16), 400,
         "MinPrefixSubnetAllocationError"),
        (dict(base, subnetpool_id=pool.id, prefixlen=24, cidr="10.92.0.0/24"), 400,
         "BadRequest"),                      # Neutron's exceptions.BadRequest(resource=)
        (dict(base, subnetpool_id=pool.id, ip_version=6), 400, "HTTPBadRequest"),
        (dict(base), 400, "BadRequest"),                            # neither cidr nor pool
        (dict(base, subnetpool_id="00000000-0000-0000-0000-000000000000"), 404,
         "SubnetPoolNotFound"),
        (dict(base, subnetpool_id=pool.id, use_default_subnetpool=True), 400,
         "BadRequest"),
    ]
    before = state(server)
    for body, status, kind in subnet_cases:
        r = raw(server, demo, "POST", "/v2.0/subnets", {"subnet": body})
        error(r, status, kind)
    assert state(server) == before
    # a pool of another project is not visible: 404, as Neutron
    alt_pool = raw(server, demo, "GET", f"/v2.0/subnetpools/{pool.id}")
    assert alt_pool.status_code == 200


def test_pool_not_visible_to_others_unless_shared(admin, demo, alt, cleanup):
    pool = demo.network.create_subnet_pool(name="priv", prefixes=["10.93.0.0/16"])
    cleanup.append(("subnet_pool", pool.id))
    shared = admin.network.create_subnet_pool(name="shr", prefixes=["10.94.0.0/16"],
                                              shared=True, default_prefix_length=24)
    cleanup.append(("subnet_pool", shared.id))
    seen = {p.id for p in alt.network.subnet_pools()}
    assert shared.id in seen and pool.id not in seen
    with pytest.raises(osexc.NotFoundException):
        alt.network.get_subnet_pool(pool.id)
    net = alt.network.create_network(name="altn")
    cleanup.append(("network", net.id))
    with pytest.raises(osexc.NotFoundException):
        alt.network.create_subnet(network_id=net.id, ip_version=4, subnetpool_id=pool.id)
    sub = alt.network.create_subnet(network_id=net.id, ip_version=4, subnetpool_id=shared.id)
    assert ipaddress.ip_network(sub.cidr).subnet_of(ipaddress.ip_network("10.94.0.0/16"))
    # only the owner (or admin) changes a shared pool
    with pytest.raises(osexc.ForbiddenException):
        alt.network.update_subnet_pool(shared, name="mine")
    # a pool with allocations cannot be deleted (Neutron: 400 SubnetPoolDeleteError)
    with pytest.raises(osexc.BadRequestException, match="existing allocations"):
        admin.network.delete_subnet_pool(shared)
    alt.network.delete_subnet(sub)
    admin.network.delete_subnet_pool(shared)


def test_default_pool_one_per_version(server, admin, demo, cleanup):
    v4 = admin.network.create_subnet_pool(name="d4", prefixes=["10.95.0.0/16"],
                                          is_default=True, shared=True,
                                          default_prefix_length=26)
    cleanup.append(("subnet_pool", v4.id))
    r = raw(server, admin, "POST", "/v2.0/subnetpools", {"subnetpool": {
        "prefixes": ["10.96.0.0/16"], "is_default": True}})
    error(r, 400, "InvalidInput")
    v6 = admin.network.create_subnet_pool(name="d6", prefixes=["fd95::/48"], is_default=True,
                                          shared=True)
    cleanup.append(("subnet_pool", v6.id))
    assert v6.ip_version == 6 and v6.default_prefix_length == 64
    net = demo.network.create_network(name="dn")
    cleanup.append(("network", net.id))
    sub = demo.network.create_subnet(network_id=net.id, ip_version=4,
                                     use_default_subnetpool=True)
    assert sub.subnet_pool_id == v4.id and sub.cidr == "10.95.0.0/26"
    sub6 = demo.network.create_subnet(network_id=net.id, ip_version=6,
                                      use_default_subnetpool=True)
    assert sub6.subnet_pool_id == v6.id and sub6.cidr == "fd95::/64"
    # a member cannot unmark it; an admin can, and then another pool may be the default
    with pytest.raises(osexc.ForbiddenException):
        demo.network.update_subnet_pool(v4, is_default=False)
    other = admin.network.create_subnet_pool(name="d4b", prefixes=["10.97.0.0/16"])
    cleanup.append(("subnet_pool", other.id))
    r = raw(server, admin, "PUT", f"/v2.0/subnetpools/{other.id}",
            {"subnetpool": {"is_default": True}})
    error(r, 400, "InvalidInput")
    admin.network.update_subnet_pool(v4, is_default=False)
    assert admin.network.update_subnet_pool(other, is_default=True).is_default is True
    demo.network.delete_network(net)
    cleanup.remove(("network", net.id))
    # the network's delete gave the prefixes back: the pools can go
    admin.network.delete_subnet_pool(v4)
    admin.network.delete_subnet_pool(v6)


def test_prefix_ops_and_updates(server, demo, cleanup):
    pool = demo.network.create_subnet_pool(name="ops", prefixes=["10.98.0.0/24"],
                                           default_prefix_length=26)
    cleanup.append(("subnet_pool", pool.id))
    # add: compacted with the existing prefixes
    r = raw(server, demo, "PUT", f"/v2.0/subnetpools/{pool.id}/add_prefixes",
            {"prefixes": ["10.98.1.0/24", "10.99.0.0/24"]})
    assert r.status_code == 200, r.text
    assert r.json() == {"prefixes": ["10.98.0.0/23", "10.99.0.0/24"]}
    net = demo.network.create_network(name="opsn")
    cleanup.append(("network", net.id))
    sub = demo.network.create_subnet(network_id=net.id, ip_version=4, subnetpool_id=pool.id,
                                     cidr="10.98.1.0/26")
    # remove: refused where a subnet holds a prefix, done elsewhere
    r = raw(server, demo, "PUT", f"/v2.0/subnetpools/{pool.id}/remove_prefixes",
            {"prefixes": ["10.98.1.0/24"]})
    error(r, 400, "IllegalSubnetPoolPrefixUpdate")
    r = raw(server, demo, "PUT", f"/v2.0/subnetpools/{pool.id}/remove_prefixes",
            {"prefixes": ["10.98.0.0/24", "10.99.0.128/25"]})
    assert r.json() == {"prefixes": ["10.98.1.0/24", "10.99.0.0/25"]}, r.text
    r = raw(server, demo, "PUT", f"/v2.0/subnetpools/{pool.id}/remove_prefixes",
            {"prefixes": ["fd00::/64"]})
    assert r.json() == {"prefixes": ["10.98.1.0/24", "10.99.0.0/25"]}, r.text
    for body in ({}, {"prefixes": "10.0.0.0/8"}, {"prefixes": ["bad"]}):
        error(raw(server, demo, "PUT", f"/v2.0/subnetpools/{pool.id}/add_prefixes", body),
              400, "InvalidInput")
    # an update may only grow the prefixes
    r = raw(server, demo, "PUT", f"/v2.0/subnetpools/{pool.id}",
            {"subnetpool": {"prefixes": ["10.98.1.0/24"]}})
    error(r, 400, "IllegalSubnetPoolPrefixUpdate")
    r = raw(server, demo, "PUT", f"/v2.0/subnetpools/{pool.id}",
            {"subnetpool": {"min_prefixlen": 28}})
    error(r, 400, "IllegalSubnetPoolPrefixBounds")
    rev = demo.network.get_subnet_pool(pool.id).revision_number
    updated = demo.network.update_subnet_pool(
        pool.id, prefixes=["10.98.1.0/24", "10.99.0.0/24", "10.100.0.0/24"], name="ops2")
    assert updated.prefixes == ["10.98.1.0/24", "10.99.0.0/24", "10.100.0.0/24"]
    assert updated.revision_number == rev + 1
    # subnetpool_id is a filter on subnets
    assert [s.id for s in demo.network.subnets(subnetpool_id=pool.id)] == [sub.id]


def test_pool_quota(demo, cleanup):
    pool = demo.network.create_subnet_pool(name="q", prefixes=["10.101.0.0/16"],
                                           default_prefix_length=24, default_quota=512)
    cleanup.append(("subnet_pool", pool.id))
    net = demo.network.create_network(name="qn")
    cleanup.append(("network", net.id))
    demo.network.create_subnet(network_id=net.id, ip_version=4, subnetpool_id=pool.id)
    demo.network.create_subnet(network_id=net.id, ip_version=4, subnetpool_id=pool.id)
    with pytest.raises(osexc.ConflictException, match="quota exceeded"):
        demo.network.create_subnet(network_id=net.id, ip_version=4, subnetpool_id=pool.id,
                                   prefixlen=32)


def test_network_subnet_pool_affinity(server, demo, cleanup):
    pool = demo.network.create_subnet_pool(name="aff", prefixes=["10.102.0.0/16"],
                                           default_prefix_length=24)
    cleanup.append(("subnet_pool", pool.id))
    net = demo.network.create_network(name="affn")
    cleanup.append(("network", net.id))
    demo.network.create_subnet(network_id=net.id, ip_version=4, subnetpool_id=pool.id)
    r = raw(server, demo, "POST", "/v2.0/subnets", {"subnet": {
        "network_id": net.id, "ip_version": 4, "cidr": "10.103.0.0/24"}})
    error(r, 400, "NetworkSubnetPoolAffinityError")


def test_concurrent_allocations_never_overlap(demo, cleanup):
    pool = demo.network.create_subnet_pool(name="race", prefixes=["10.104.0.0/20"],
                                           default_prefix_length=24)
    cleanup.append(("subnet_pool", pool.id))
    nets = [demo.network.create_network(name=f"race{i}") for i in range(8)]
    cleanup.extend(("network", n.id) for n in nets)
    got, failures = [], []

    def make(net, prefixlen):
        try:
            got.append(demo.network.create_subnet(network_id=net.id, ip_version=4,
                                                  subnetpool_id=pool.id,
                                                  prefixlen=prefixlen).cidr)
        except Exception as exc:            # noqa: BLE001 - reported below
            failures.append(exc)
    threads = [threading.Thread(target=make, args=(n, 23 + i % 3)) for i, n in
               enumerate(nets)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
    nets_ = [ipaddress.ip_network(c) for c in got]
    assert len(nets_) == 8
    for i, a in enumerate(nets_):
        assert a.subnet_of(ipaddress.ip_network("10.104.0.0/20"))
        for b in nets_[i + 1:]:
            assert not a.overlaps(b), (a, b)


def test_address_scopes(server, admin, demo, alt, cleanup):
    scope = demo.network.create_address_scope(name="s4", ip_version=4)
    cleanup.append(("address_scope", scope.id))
    assert scope.ip_version == 4 and scope.is_shared is False
    assert scope.project_id == demo.current_project_id
    with pytest.raises(osexc.NotFoundException):
        alt.network.get_address_scope(scope.id)
    error(raw(server, demo, "POST", "/v2.0/address-scopes", {"address_scope": {
        "name": "x", "ip_version": 4, "shared": True}}), 403, "PolicyNotAuthorized")
    error(raw(server, demo, "POST", "/v2.0/address-scopes", {"address_scope": {
        "name": "x", "ip_version": 5}}), 400, "InvalidInput")
    a = demo.network.create_subnet_pool(name="sa", prefixes=["10.105.0.0/16"],
                                        address_scope_id=scope.id, default_prefix_length=24)
    cleanup.append(("subnet_pool", a.id))
    # pools of one scope must not overlap
    r = raw(server, demo, "POST", "/v2.0/subnetpools", {"subnetpool": {
        "prefixes": ["10.105.128.0/17"], "address_scope_id": scope.id}})
    error(r, 409, "AddressScopePrefixConflict")
    r = raw(server, demo, "POST", "/v2.0/subnetpools", {"subnetpool": {
        "prefixes": ["fd05::/48"], "address_scope_id": scope.id}})
    error(r, 400, "IllegalSubnetPoolIpVersionAssociationToAddressScope")
    b = demo.network.create_subnet_pool(name="sb", prefixes=["10.106.0.0/16"],
                                        default_prefix_length=24)
    cleanup.append(("subnet_pool", b.id))
    r = raw(server, demo, "PUT", f"/v2.0/subnetpools/{b.id}/add_prefixes",
            {"prefixes": ["10.105.7.0/24"]})
    assert r.status_code == 200
    r = raw(server, demo, "PUT", f"/v2.0/subnetpools/{b.id}",
            {"subnetpool": {"address_scope_id": scope.id}})
    error(r, 409, "AddressScopePrefixConflict")
    # another project's private scope cannot be used
    r = raw(server, alt, "POST", "/v2.0/subnetpools", {"subnetpool": {
        "prefixes": ["10.107.0.0/16"], "address_scope_id": scope.id}})
    error(r, 400, "IllegalSubnetPoolAssociationToAddressScope")
    # a network shows the scope of its subnets' pool, and follows the pool's rescoping
    net = demo.network.create_network(name="sn")
    cleanup.append(("network", net.id))
    demo.network.create_subnet(network_id=net.id, ip_version=4, subnetpool_id=a.id)
    shown = raw(server, demo, "GET", f"/v2.0/networks/{net.id}").json()["network"]
    assert shown["ipv4_address_scope"] == scope.id and shown["ipv6_address_scope"] is None
    demo.network.update_subnet_pool(a, address_scope_id=None)
    shown = raw(server, demo, "GET", f"/v2.0/networks/{net.id}").json()["network"]
    assert shown["ipv4_address_scope"] is None
    demo.network.update_subnet_pool(a, address_scope_id=scope.id)
    # a scope in use is not deleted; unsharing is refused
    with pytest.raises(osexc.ConflictException):
        demo.network.delete_address_scope(scope)
    shared = admin.network.create_address_scope(name="sh", ip_version=4, shared=True)
    cleanup.append(("address_scope", shared.id))
    assert shared.id in {s.id for s in alt.network.address_scopes()}
    error(raw(server, admin, "PUT", f"/v2.0/address-scopes/{shared.id}",
              {"address_scope": {"shared": False}}), 400, "AddressScopeUpdateError")
    error(raw(server, demo, "PUT", f"/v2.0/address-scopes/{scope.id}",
              {"address_scope": {"ip_version": 6}}), 400, "InvalidInput")
    assert demo.network.update_address_scope(scope, name="renamed").name == "renamed"
    demo.network.delete_network(net)
    cleanup.remove(("network", net.id))
    demo.network.update_subnet_pool(a, address_scope_id=None)
    demo.network.delete_address_scope(scope)


def test_cli_subnet_pool_and_address_scope(cli, cleanup):
    scope = cli("address", "scope", "create", "--ip-version", "4", "cli-scope")
    cleanup.append(("address_scope", scope["id"]))
    pool = cli("subnet", "pool", "create", "--pool-prefix", "10.108.0.0/16",
               "--default-prefix-length", "24", "--address-scope", "cli-scope", "cli-pool")
    cleanup.append(("subnet_pool", pool["id"]))
    assert pool["address_scope_id"] == scope["id"]
    assert pool["prefixes"] in (["10.108.0.0/16"], "10.108.0.0/16")
    cli("subnet", "pool", "set", "--pool-prefix", "10.120.0.0/16", "cli-pool", fmt=False)
    shown = cli("subnet", "pool", "show", "cli-pool")
    assert "10.120.0.0/16" in str(shown["prefixes"])
    net = cli("network", "create", "cli-pool-net")
    cleanup.append(("network", net["id"]))
    sub = cli("subnet", "create", "--network", "cli-pool-net", "--subnet-pool", "cli-pool",
              "--prefix-length", "25", "cli-pool-sub")
    assert sub["cidr"] == "10.108.0.0/25" and sub["subnetpool_id"] == pool["id"]
    listed = cli("subnet", "pool", "list")
    assert any(p["ID"] == pool["id"] for p in listed)
    assert any(s["ID"] == scope["id"] for s in cli("address", "scope", "list"))
    proc = cli("subnet", "pool", "delete", "cli-pool", check=False, fmt=False)
    assert proc.returncode != 0
    cli("subnet", "delete", "cli-pool-sub", fmt=False)
    cli("subnet", "pool", "unset", "--pool-prefix", "10.120.0.0/16", "cli-pool", fmt=False,
        check=False)
    cli("subnet", "pool", "delete", "cli-pool", fmt=False)
    cli("address", "scope", "delete", "cli-scope", fmt=False)


def test_default_pool_edge_cases(server, admin, demo, cleanup):
    """As Neutron's _get_subnetpool_id: per IP version, no default is 400, the default
    follows is_default changes and deletes, and the request's own conflicts are 400."""
    for pool in admin.network.subnet_pools(is_default=True):
        pytest.skip(f"a default pool {pool.id} exists already")
    net = demo.network.create_network(name="dedge")
    cleanup.append(("network", net.id))

    def subnet(**extra):
        return raw(server, demo, "POST", "/v2.0/subnets", {"subnet": {
            "network_id": net.id, "ip_version": 4, **extra}})
    error(subnet(use_default_subnetpool=True), 400, "BadRequest",
          "Bad subnets request: No default subnetpool found for IPv4.")
    v6 = admin.network.create_subnet_pool(name="de6", prefixes=["fd96::/48"], is_default=True,
                                          shared=True)
    cleanup.append(("subnet_pool", v6.id))
    before = state(server)
    error(subnet(use_default_subnetpool=True), 400, "BadRequest",
          "Bad subnets request: No default subnetpool found for IPv4.")   # per version
    error(subnet(), 400, "BadRequest",
          "Bad subnets request: a subnetpool must be specified in the absence of a cidr.")
    error(subnet(use_default_subnetpool=True, subnetpool_id=v6.id), 400, "BadRequest",
          "Bad subnets request: subnetpool_id and use_default_subnetpool cannot both be "
          "specified.")
    error(subnet(cidr="10.1.2.0/24", prefixlen=26), 400, "BadRequest",
          "Bad subnets request: cidr and prefixlen must not be supplied together.")
    assert state(server) == before
    a = admin.network.create_subnet_pool(name="de4a", prefixes=["10.93.0.0/16"],
                                         is_default=True, shared=True, default_prefix_length=24)
    cleanup.append(("subnet_pool", a.id))
    b = admin.network.create_subnet_pool(name="de4b", prefixes=["10.94.0.0/16"], shared=True,
                                         default_prefix_length=24)
    cleanup.append(("subnet_pool", b.id))
    s1 = demo.network.create_subnet(network_id=net.id, ip_version=4,
                                    use_default_subnetpool=True, prefixlen=27)
    assert (s1.subnet_pool_id, s1.cidr) == (a.id, "10.93.0.0/27")
    # the default moves to b: new subnets of another network come from b
    admin.network.update_subnet_pool(a, is_default=False)
    admin.network.update_subnet_pool(b, is_default=True)
    net2 = demo.network.create_network(name="dedge2")
    cleanup.append(("network", net2.id))
    s2 = demo.network.create_subnet(network_id=net2.id, ip_version=4,
                                    use_default_subnetpool=True)
    assert (s2.subnet_pool_id, s2.cidr) == (b.id, "10.94.0.0/24")
    # a non-admin can neither make a pool the default nor unmark one
    error(raw(server, demo, "POST", "/v2.0/subnetpools", {"subnetpool": {
        "prefixes": ["10.92.0.0/16"], "is_default": True}}), 403, "PolicyNotAuthorized")
    # the default's subnets gone and the pool deleted: no IPv4 default any more
    demo.network.delete_network(net2)
    cleanup.remove(("network", net2.id))
    admin.network.delete_subnet_pool(b)
    cleanup.remove(("subnet_pool", b.id))
    net3 = demo.network.create_network(name="dedge3")
    cleanup.append(("network", net3.id))
    error(raw(server, demo, "POST", "/v2.0/subnets", {"subnet": {
        "network_id": net3.id, "ip_version": 4, "use_default_subnetpool": True}}), 400,
        "BadRequest", "Bad subnets request: No default subnetpool found for IPv4.")
    sub6 = demo.network.create_subnet(network_id=net3.id, ip_version=6,
                                      use_default_subnetpool=True)
    assert sub6.subnet_pool_id == v6.id
