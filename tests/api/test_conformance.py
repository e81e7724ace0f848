"""Behaviours where Plexus differed from Neutron (issue 13), each asserted against
Neutron's answer through openstacksdk or raw HTTP, with nothing else changed."""

from __future__ import annotations

import uuid

import pytest

from tests.api.helpers import error, raw, state
from tests.api.test_floatingips import topo  # noqa: F401 (fixture)


@pytest.fixture
def cleanup(admin):
    """Networks (by id) to delete after the test, as admin, whatever they hold."""
    made: list[str] = []
    yield made
    for net_id in reversed(made):
        for fip in admin.network.ips(floating_network_id=net_id):
            admin.network.delete_ip(fip)
        for port in admin.network.ports(network_id=net_id):
            admin.network.delete_port(port)
        admin.network.delete_network(net_id, ignore_missing=True)


def ids(resp, key: str) -> set[str]:
    assert resp.status_code == 200, resp.text
    return {o["id"] for o in resp.json()[key]}


# ---- 1. shared as a subnet filter -------------------------------------------------------

def test_subnets_filter_by_their_networks_shared(admin, demo, server, cleanup):
    shared = admin.network.create_network(name="c-shared", is_shared=True)
    cleanup.append(shared.id)
    own = demo.network.create_network(name="c-own")
    cleanup.append(own.id)
    s_shared = admin.network.create_subnet(network_id=shared.id, cidr="10.61.0.0/24",
                                           ip_version=4)
    s_own = demo.network.create_subnet(network_id=own.id, cidr="10.62.0.0/24", ip_version=4)
    yes = ids(raw(server, demo, "GET", "/v2.0/subnets?shared=True"), "subnets")
    no = ids(raw(server, demo, "GET", "/v2.0/subnets?shared=false"), "subnets")
    assert s_shared.id in yes and s_own.id not in yes
    assert s_own.id in no and s_shared.id not in no
    # combined with other filters, and repeated values are any-of
    both = ids(raw(server, demo, "GET", "/v2.0/subnets?shared=true&shared=false"
                                        "&cidr=10.62.0.0/24"), "subnets")
    assert both == {s_own.id}
    # the subnet body still has no shared attribute (Neutron's is not visible)
    body = raw(server, demo, "GET", f"/v2.0/subnets/{s_shared.id}").json()["subnet"]
    assert "shared" not in body
    r = raw(server, demo, "GET", "/v2.0/subnets?shared=maybe")
    assert r.status_code == 400


# ---- 2. pagination: a full last page has a next link ------------------------------------

def test_full_last_page_has_next_link(demo, server):
    made = [demo.network.create_network(name=f"pg{i}") for i in range(4)]
    try:
        names = "&".join(f"name=pg{i}" for i in range(4))
        url = f"/v2.0/networks?{names}&sort_key=name&sort_dir=asc&limit=2"
        pages = []
        while url is not None:
            body = raw(server, demo, "GET", url).json()
            links = {link["rel"]: link["href"] for link in body.get("networks_links", [])}
            pages.append(([n["name"] for n in body["networks"]], sorted(links)))
            url = links["next"].removeprefix(server.url) if "next" in links else None
        # Neutron: next while the page is full (the last full page too), previous always
        # when paging forward; the empty page after it ends the walk
        assert pages == [(["pg0", "pg1"], ["next", "previous"]),
                         (["pg2", "pg3"], ["next", "previous"]),
                         ([], ["previous"])]
        # paging backward: previous only while the page is full, next always
        marker = made[1].id
        body = raw(server, demo, "GET", f"/v2.0/networks?{names}&sort_key=name&limit=2"
                                        f"&marker={marker}&page_reverse=True").json()
        assert [n["name"] for n in body["networks"]] == ["pg0"]
        assert [link["rel"] for link in body["networks_links"]] == ["next"]
        # no limit, no links
        assert "networks_links" not in raw(server, demo, "GET",
                                           f"/v2.0/networks?{names}").json()
        # the sdk walks it to the end
        assert sorted(n.name for n in demo.network.networks(
            name=[f"pg{i}" for i in range(4)], limit=2)) == ["pg0", "pg1", "pg2", "pg3"]
    finally:
        for n in made:
            demo.network.delete_network(n)


# ---- 3. blank floating IP update ---------------------------------------------------------

def test_blank_floatingip_update_clears_association(demo, server, topo):  # noqa: F811
    vm = topo["vm"]
    fip = demo.network.create_ip(floating_network_id=topo["public"].id, port_id=vm.id,
                                 description="d")
    assert fip.port_id == vm.id
    r = raw(server, demo, "PUT", f"/v2.0/floatingips/{fip.id}", {"floatingip": {}})
    assert r.status_code == 200, r.text
    body = r.json()["floatingip"]
    assert body["port_id"] is None and body["fixed_ip_address"] is None
    assert body["router_id"] is None and body["description"] == "d"
    assert body["revision_number"] == fip.revision_number + 1
    shown = demo.network.get_ip(fip.id)
    assert shown.port_id is None and shown.floating_ip_address == fip.floating_ip_address
    # the fixed IP is free for another floating IP now
    other = demo.network.create_ip(floating_network_id=topo["public"].id, port_id=vm.id)
    assert other.port_id == vm.id
    # a blank update of an unassociated floating IP changes nothing
    before = demo.network.get_ip(fip.id)
    r = raw(server, demo, "PUT", f"/v2.0/floatingips/{fip.id}", {"floatingip": {}})
    assert r.status_code == 200 and r.json()["floatingip"]["revision_number"] == \
        before.revision_number


# ---- 4. remote group that does not exist -------------------------------------------------

def test_rule_with_unknown_remote_group_is_404(demo, server):
    group = demo.network.create_security_group(name="c-sg")
    try:
        before = state(server)
        for remote in ("not-a-uuid", str(uuid.uuid4()), "a" * 255):
            r = raw(server, demo, "POST", "/v2.0/security-group-rules", {
                "security_group_rule": {"security_group_id": group.id, "direction": "ingress",
                                        "remote_group_id": remote}})
            error(r, 404, "SecurityGroupNotFound", f"Security group {remote} does not exist")
        assert state(server) == before
        # not a string at all is still bad input
        r = raw(server, demo, "POST", "/v2.0/security-group-rules", {
            "security_group_rule": {"security_group_id": group.id, "direction": "ingress",
                                    "remote_group_id": 5}})
        error(r, 400, "InvalidInput")
        # an upper-case id of a real group is that group
        rule = demo.network.create_security_group_rule(
            security_group_id=group.id, direction="ingress", ethertype="IPv6",
            remote_group_id=group.id.upper())
        assert rule.remote_group_id == group.id
    finally:
        demo.network.delete_security_group(group)


# ---- 5. subnets of a non-shared external network -----------------------------------------

def test_external_subnets_hidden_unless_shared(admin, demo, server, cleanup):
    ext = admin.network.create_network(name="c-ext", is_router_external=True)
    cleanup.append(ext.id)
    shared_ext = admin.network.create_network(name="c-ext-shared", is_router_external=True,
                                              is_shared=True)
    cleanup.append(shared_ext.id)
    hidden = admin.network.create_subnet(network_id=ext.id, cidr="172.31.61.0/24",
                                         ip_version=4)
    seen = admin.network.create_subnet(network_id=shared_ext.id, cidr="172.31.62.0/24",
                                       ip_version=4)
    listed = ids(raw(server, demo, "GET", "/v2.0/subnets"), "subnets")
    assert seen.id in listed and hidden.id not in listed
    error(raw(server, demo, "GET", f"/v2.0/subnets/{hidden.id}"), 404, "SubnetNotFound")
    assert demo.network.get_subnet(seen.id).cidr == "172.31.62.0/24"
    # the network itself stays visible (routers use it as a gateway), without its subnet
    net = raw(server, demo, "GET", f"/v2.0/networks/{ext.id}").json()["network"]
    assert net["subnets"] == [hidden.id]
    # the owner and the admin still see it
    assert hidden.id in {s.id for s in admin.network.subnets(network_id=ext.id)}


def test_subnet_visible_to_its_networks_owner(admin, demo, server, cleanup):
    """An admin's subnet (another project's) on demo's network is demo's to see."""
    own = demo.network.create_network(name="c-owned")
    cleanup.append(own.id)
    theirs = admin.network.create_subnet(network_id=own.id, cidr="10.63.0.0/24",
                                         ip_version=4, project_id=admin.current_project_id)
    assert theirs.project_id != own.project_id
    assert theirs.id in ids(raw(server, demo, "GET", "/v2.0/subnets"), "subnets")


# ---- 6. deleting an external network with floating IPs -----------------------------------

def test_external_network_delete_takes_its_floating_ips(admin, demo, server):
    ext = admin.network.create_network(name="c-ext-del", is_router_external=True)
    admin.network.create_subnet(network_id=ext.id, cidr="172.31.70.0/24", ip_version=4)
    fips = [demo.network.create_ip(floating_network_id=ext.id) for _ in range(2)]
    r = raw(server, admin, "DELETE", f"/v2.0/networks/{ext.id}")
    assert r.status_code == 204, r.text
    for fip in fips:
        error(raw(server, demo, "GET", f"/v2.0/floatingips/{fip.id}"), 404,
              "FloatingIPNotFound")
    left = [k for k, v in state(server) if ext.id.encode() in v or ext.id in k
            or any(f.id in k or f.id.encode() in v for f in fips)]
    assert left == []
    # quota usage follows: the project may allocate as many as before
    usage = raw(server, demo, "GET",
                f"/v2.0/quotas/{demo.current_project_id}/details").json()["quota"]
    assert usage["floatingip"]["used"] == len(list(demo.network.ips()))


def test_external_network_with_associated_floating_ip_stays(admin, demo, server, topo):  # noqa: F811
    """An associated floating IP keeps the network in use (Neutron only deletes the
    disassociated ones); the free one is not deleted either: nothing half-written."""
    demo.network.create_ip(floating_network_id=topo["public"].id, port_id=topo["vm"].id)
    free = demo.network.create_ip(floating_network_id=topo["public"].id)
    before = state(server)
    r = raw(server, admin, "DELETE", f"/v2.0/networks/{topo['public'].id}")
    error(r, 409, "NetworkInUse")
    assert state(server) == before
    assert demo.network.get_ip(free.id).port_id is None


# ---- 7. network MTU and subnet minimums --------------------------------------------------

def test_mtu_minimums_are_subnet_rules(admin, demo, server, cleanup):
    tiny = demo.network.create_network(name="c-mtu67", mtu=67)
    cleanup.append(tiny.id)
    assert tiny.mtu == 67
    before = state(server)
    r = raw(server, demo, "POST", "/v2.0/subnets", {"subnet": {
        "network_id": tiny.id, "cidr": "10.64.0.0/24", "ip_version": 4}})
    assert r.status_code == 409, r.text
    assert state(server) == before
    small = demo.network.create_network(name="c-mtu1279", mtu=1279)
    cleanup.append(small.id)
    v4 = demo.network.create_subnet(network_id=small.id, cidr="10.65.0.0/24", ip_version=4)
    before = state(server)
    r = raw(server, demo, "POST", "/v2.0/subnets", {"subnet": {
        "network_id": small.id, "cidr": "fd00:65::/64", "ip_version": 6}})
    assert r.status_code == 409, r.text
    assert state(server) == before
    # updates: below 68 with an IPv4 subnet, below 1280 with an IPv6 one
    r = raw(server, demo, "PUT", f"/v2.0/networks/{small.id}", {"network": {"mtu": 67}})
    assert r.status_code == 409, r.text
    demo.network.delete_subnet(v4)
    ok = demo.network.create_network(name="c-mtu1280", mtu=1280)
    cleanup.append(ok.id)
    demo.network.create_subnet(network_id=ok.id, cidr="fd00:66::/64", ip_version=6)
    before = state(server)
    r = raw(server, demo, "PUT", f"/v2.0/networks/{ok.id}", {"network": {"mtu": 1279}})
    assert r.status_code == 409, r.text
    assert state(server) == before
    # negative is still bad input
    r = raw(server, demo, "POST", "/v2.0/networks", {"network": {"mtu": -1}})
    error(r, 400, "InvalidInput")


# ---- 9. routers are distributed and highly available -----------------------------------

def test_routers_are_distributed_and_ha(admin, demo, server):
    exts = {e["alias"] for e in raw(server, demo, "GET", "/v2.0/extensions").json()["extensions"]}
    assert {"dvr", "l3-ha"} <= exts
    r = demo.network.create_router(name="c-dvr")
    try:
        shown = admin.network.get_router(r.id)
        assert shown.is_distributed is True and shown.is_ha is True
        listed = raw(server, admin, "GET", f"/v2.0/routers?id={r.id}").json()["routers"]
        assert listed[0]["distributed"] is True and listed[0]["ha"] is True
        # admin-only attributes, as in Neutron: hidden from and refused to members
        body = raw(server, demo, "GET", f"/v2.0/routers/{r.id}").json()["router"]
        assert "distributed" not in body and "ha" not in body
        before = state(server)
        for attr in ("distributed", "ha"):
            error(raw(server, demo, "PUT", f"/v2.0/routers/{r.id}",
                      {"router": {attr: True}}), 403, "PolicyNotAuthorized")
            error(raw(server, demo, "POST", "/v2.0/routers",
                      {"router": {"name": "x", attr: "false"}}), 400, "InvalidInput")
            # an admin may say true (nothing changes) but not false: Plexus has no
            # centralized or single-chassis router to turn it into
            error(raw(server, admin, "PUT", f"/v2.0/routers/{r.id}",
                      {"router": {attr: False}}), 400, "InvalidInput")
        assert state(server) == before
        same = raw(server, admin, "PUT", f"/v2.0/routers/{r.id}",
                   {"router": {"distributed": True, "ha": True}})
        assert same.status_code == 200 and same.json()["router"]["revision_number"] == \
            shown.revision_number
        made = admin.network.create_router(name="c-dvr2", distributed=True, ha=True)
        assert made.is_distributed and made.is_ha
        admin.network.delete_router(made)
    finally:
        demo.network.delete_router(r)
