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


# ---- 8. IPv6 address modes ---------------------------------------------------------------

def eui64(prefix: str, mac: str) -> str:
    """RFC 4291 appendix A, written out independently of plexus.ipam."""
    import ipaddress
    b = bytes(int(x, 16) for x in mac.split(":"))
    iid = bytes([b[0] ^ 2]) + b[1:3] + b"\xff\xfe" + b[3:]
    return str(ipaddress.IPv6Address(int(ipaddress.IPv6Network(prefix).network_address)
                                     | int.from_bytes(iid, "big")))


def test_ipv6_mode_combinations(demo, server, cleanup):
    net = demo.network.create_network(name="c-v6modes")
    cleanup.append(net.id)

    def create(**kw):
        return raw(server, demo, "POST", "/v2.0/subnets", {"subnet": {
            "network_id": net.id, "ip_version": 6, "cidr": "fd00:70::/64", **kw}})
    before = state(server)
    for ra, addr in (("dhcpv6-stateless", "dhcpv6-stateful"), ("slaac", "dhcpv6-stateful"),
                     ("dhcpv6-stateful", "slaac"), ("slaac", "dhcpv6-stateless")):
        error(create(ipv6_ra_mode=ra, ipv6_address_mode=addr), 400, "InvalidInput",
              f"Invalid input for operation: ipv6_ra_mode set to '{ra}' with "
              f"ipv6_address_mode set to '{addr}' is not valid. If both attributes are set, "
              f"they must be the same value.")
    error(create(ipv6_address_mode="slaac", cidr="fd00:70::/80"), 400, "InvalidInput")
    error(create(ipv6_address_mode="slaac", enable_dhcp=False), 400, "InvalidInput")
    error(raw(server, demo, "POST", "/v2.0/subnets", {"subnet": {
        "network_id": net.id, "ip_version": 4, "cidr": "10.70.0.0/24",
        "ipv6_ra_mode": "slaac"}}), 400, "InvalidInput")
    assert state(server) == before
    for ra, addr in ((None, "slaac"), ("slaac", None), ("slaac", "slaac"),
                     ("dhcpv6-stateful", "dhcpv6-stateful"), ("dhcpv6-stateless", None)):
        body = {k: v for k, v in (("ipv6_ra_mode", ra), ("ipv6_address_mode", addr)) if v}
        r = create(**body)
        assert r.status_code == 201, (ra, addr, r.text)
        demo.network.delete_subnet(r.json()["subnet"]["id"])


def test_slaac_addresses_are_eui64_from_each_subnet(admin, demo, server, cleanup):
    net = demo.network.create_network(name="c-slaac")
    cleanup.append(net.id)
    v4 = demo.network.create_subnet(network_id=net.id, ip_version=4, cidr="10.71.0.0/24")
    a = demo.network.create_subnet(network_id=net.id, ip_version=6, cidr="fd00:71:a::/64",
                                   ipv6_ra_mode="slaac", ipv6_address_mode="slaac")
    b = demo.network.create_subnet(network_id=net.id, ip_version=6, cidr="fd00:71:b::/64",
                                   ipv6_address_mode="dhcpv6-stateless")
    stateful = demo.network.create_subnet(network_id=net.id, ip_version=6,
                                          cidr="fd00:71:c::/64",
                                          ipv6_address_mode="dhcpv6-stateful")
    port = demo.network.create_port(network_id=net.id, mac_address="fa:16:3e:00:71:01")
    got = {ip["subnet_id"]: ip["ip_address"] for ip in port.fixed_ips}
    # one IPv4, one stateful IPv6, and the EUI-64 address of each auto-addressed subnet
    assert set(got) == {v4.id, a.id, b.id, stateful.id}
    assert got[a.id] == eui64("fd00:71:a::/64", port.mac_address) == "fd00:71:a:0:f816:3eff:fe00:7101"
    assert got[b.id] == eui64("fd00:71:b::/64", port.mac_address)
    # naming the subnet gives the EUI-64 address; naming another address is refused
    named = demo.network.create_port(network_id=net.id, mac_address="fa:16:3e:00:71:02",
                                     fixed_ips=[{"subnet_id": a.id}])
    assert named.fixed_ips == [{"subnet_id": a.id,
                                "ip_address": eui64("fd00:71:a::/64", "fa:16:3e:00:71:02")}]
    before = state(server)
    error(raw(server, demo, "POST", "/v2.0/ports", {"port": {
        "network_id": net.id, "fixed_ips": [{"subnet_id": a.id, "ip_address": "fd00:71:a::5"}]}}),
        400, "AllocationOnAutoAddressSubnet")
    assert state(server) == before
    # the EUI-64 addresses follow a MAC change
    moved = admin.network.update_port(port.id, mac_address="fa:16:3e:00:71:99")
    now = {ip["subnet_id"]: ip["ip_address"] for ip in moved.fixed_ips}
    assert now[a.id] == eui64("fd00:71:a::/64", "fa:16:3e:00:71:99")
    assert now[b.id] == eui64("fd00:71:b::/64", "fa:16:3e:00:71:99")
    assert now[v4.id] == got[v4.id] and now[stateful.id] == got[stateful.id]
    # the old address is free again, the new one taken
    keys = {k for k, _ in state(server)}
    assert not any(k.endswith(f"/{a.id}/{got[a.id]}") for k in keys)
    assert any(k.endswith(f"/{a.id}/{now[a.id]}") for k in keys)
    # a new auto-addressed subnet gives the existing ports their addresses at once
    c = demo.network.create_subnet(network_id=net.id, ip_version=6, cidr="fd00:71:d::/64",
                                   ipv6_ra_mode="slaac")
    for p in (port, named):
        held = {ip["subnet_id"]: ip["ip_address"]
                for ip in demo.network.get_port(p.id).fixed_ips}
        assert held[c.id] == eui64("fd00:71:d::/64", demo.network.get_port(p.id).mac_address)


def test_deleting_slaac_subnet_removes_its_addresses(demo, server, cleanup):
    net = demo.network.create_network(name="c-slaac-del")
    cleanup.append(net.id)
    v6 = demo.network.create_subnet(network_id=net.id, ip_version=6, cidr="fd00:72::/64",
                                    ipv6_address_mode="slaac")
    stateful = demo.network.create_subnet(network_id=net.id, ip_version=6,
                                          cidr="fd00:73::/64")
    port = demo.network.create_port(network_id=net.id)
    assert {ip["subnet_id"] for ip in port.fixed_ips} == {v6.id, stateful.id}
    demo.network.delete_subnet(v6)
    after = demo.network.get_port(port.id)
    assert [ip["subnet_id"] for ip in after.fixed_ips] == [stateful.id]
    assert after.revision_number == port.revision_number + 1
    assert not any(v6.id in k for k, _ in state(server))
    # a stateful subnet with ports is still in use (409), nothing written
    before = state(server)
    error(raw(server, demo, "DELETE", f"/v2.0/subnets/{stateful.id}"), 409, "SubnetInUse")
    assert state(server) == before
