"""Routers through the real clients: CRUD, external gateway and SNAT, extra routes,
interfaces by subnet and by port with Neutron's conflicts, isolation, and the CLI."""

from __future__ import annotations

import pytest
from openstack import exceptions as osexc

from tests.api.helpers import raw, state
from tests.api.l3 import commit_paused, error, in_thread


@pytest.fixture
def ext(admin):
    """An external network (admin's) with one IPv4 subnet."""
    network = admin.network.create_network(name="r-public", is_router_external=True)
    subnet = admin.network.create_subnet(network_id=network.id, cidr="172.24.4.0/24",
                                         ip_version=4, name="r-public-sub")
    yield network, subnet
    admin.network.delete_network(network)


@pytest.fixture
def private(demo):
    """A network of project demo with subnet 10.1.0.0/24."""
    network = demo.network.create_network(name="r-private")
    subnet = demo.network.create_subnet(network_id=network.id, cidr="10.1.0.0/24",
                                        ip_version=4, name="r-private-sub")
    yield network, subnet
    for port in demo.network.ports(network_id=network.id):
        demo.network.delete_port(port)
    demo.network.delete_network(network)


@pytest.fixture
def router(demo):
    """A router of project demo, deleted (interfaces first) after the test."""
    r = demo.network.create_router(name="r-test")
    yield r
    for port in demo.network.ports(device_id=r.id, device_owner="network:router_interface"):
        demo.network.remove_interface_from_router(r, port_id=port.id)
    demo.network.delete_router(r, ignore_missing=True)


def interface_ports(conn, router_id: str) -> list:
    return list(conn.network.ports(device_id=router_id,
                                   device_owner="network:router_interface"))


def test_router_crud_and_defaults(admin, demo, server):
    r = demo.network.create_router(name="crud", description="first")
    try:
        assert r.status == "ACTIVE" and r.is_admin_state_up is True
        assert r.external_gateway_info is None and r.routes == []
        assert r.project_id == demo.current_project_id
        assert r.availability_zone_hints == [] and r.flavor_id is None
        body = raw(server, demo, "GET", f"/v2.0/routers/{r.id}").json()["router"]
        assert "distributed" not in body and "ha" not in body       # admin-only (dvr, l3-ha)
        body = raw(server, admin, "GET", f"/v2.0/routers/{r.id}").json()["router"]
        assert body["distributed"] is True and body["ha"] is True
        assert r.id in [x.id for x in demo.network.routers()]
        assert [x.id for x in demo.network.routers(name="crud")] == [r.id]
        revision = r.revision_number
        updated = demo.network.update_router(r, name="crud2", description="second",
                                             admin_state_up=False)
        assert updated.name == "crud2" and updated.is_admin_state_up is False
        assert updated.revision_number == revision + 1
        assert demo.network.get_router(r.id).description == "second"
        error(raw(server, demo, "POST", "/v2.0/routers",
                  {"router": {"name": "x", "routes": []}}), 400, "InvalidInput")
        error(raw(server, demo, "PUT", f"/v2.0/routers/{r.id}", {"router": {"status": "DOWN"}}),
              400, "InvalidInput")
    finally:
        demo.network.delete_router(r)
    with pytest.raises(osexc.NotFoundException):
        demo.network.get_router(r.id)
    error(raw(server, demo, "DELETE", f"/v2.0/routers/{r.id}"), 404, "RouterNotFound")


def test_gateway_set_and_clear(admin, demo, server, ext, router):
    network, subnet = ext
    r = demo.network.update_router(router, external_gateway_info={"network_id": network.id})
    info = r.external_gateway_info
    assert info["network_id"] == network.id and info["enable_snat"] is True
    [fixed] = info["external_fixed_ips"]
    assert fixed["subnet_id"] == subnet.id and fixed["ip_address"].startswith("172.24.4.")
    [gw] = admin.network.ports(device_id=r.id, device_owner="network:router_gateway")
    assert gw.network_id == network.id and gw.project_id == demo.current_project_id
    assert gw.fixed_ips == [fixed]
    # the gateway port belongs to the router: the port API refuses to delete it
    error(raw(server, admin, "DELETE", f"/v2.0/ports/{gw.id}"), 409, "ServicePortInUse")
    cleared = demo.network.update_router(r, external_gateway_info={})
    assert cleared.external_gateway_info is None
    assert list(admin.network.ports(device_id=r.id)) == []
    again = demo.network.update_router(r, external_gateway_info={"network_id": network.id})
    assert again.external_gateway_info["network_id"] == network.id
    resp = raw(server, demo, "PUT", f"/v2.0/routers/{r.id}",
               {"router": {"external_gateway_info": None}})
    assert resp.status_code == 200 and resp.json()["router"]["external_gateway_info"] is None
    assert list(admin.network.ports(device_id=r.id)) == []


def test_snat_and_external_ips_need_admin(admin, demo, server, ext, router):
    network, subnet = ext
    before = state(server)
    body = error(raw(server, demo, "PUT", f"/v2.0/routers/{router.id}",
                     {"router": {"external_gateway_info": {"network_id": network.id,
                                                           "enable_snat": False}}}),
                 403, "PolicyNotAuthorized")
    assert "enable_snat" in body["message"]
    error(raw(server, demo, "PUT", f"/v2.0/routers/{router.id}",
              {"router": {"external_gateway_info": {
                  "network_id": network.id,
                  "external_fixed_ips": [{"ip_address": "172.24.4.40"}]}}}),
          403, "PolicyNotAuthorized")
    assert state(server) == before
    r = admin.network.update_router(router, external_gateway_info={
        "network_id": network.id, "enable_snat": False,
        "external_fixed_ips": [{"subnet_id": subnet.id, "ip_address": "172.24.4.40"}]})
    assert r.external_gateway_info == {
        "network_id": network.id, "enable_snat": False,
        "external_fixed_ips": [{"subnet_id": subnet.id, "ip_address": "172.24.4.40"}]}
    # a new address on the same network re-addresses the same gateway port
    [gw] = admin.network.ports(device_id=r.id, device_owner="network:router_gateway")
    r = admin.network.update_router(r, external_gateway_info={
        "network_id": network.id, "external_fixed_ips": [{"ip_address": "172.24.4.41"}]})
    assert r.external_gateway_info["external_fixed_ips"][0]["ip_address"] == "172.24.4.41"
    assert r.external_gateway_info["enable_snat"] is True     # omitted: back to the default
    [same] = admin.network.ports(device_id=r.id, device_owner="network:router_gateway")
    assert same.id == gw.id
    # .40 was released: a port may take it now
    taker = admin.network.create_port(network_id=network.id,
                                      fixed_ips=[{"ip_address": "172.24.4.40"}])
    admin.network.delete_port(taker)


def test_gateway_rejections_change_nothing(admin, demo, server, ext, private, router):
    network, subnet = ext
    before = state(server)
    body = error(raw(server, demo, "PUT", f"/v2.0/routers/{router.id}",
                     {"router": {"external_gateway_info": {"network_id": private[0].id}}}),
                 400, "BadRequest")
    assert body["message"] == (f"Bad router request: Network {private[0].id} is not an "
                               f"external network.")
    error(raw(server, demo, "PUT", f"/v2.0/routers/{router.id}",
              {"router": {"external_gateway_info": {
                  "network_id": "5f0f7f6c-1111-4c3c-9c6e-000000000000"}}}),
          404, "NetworkNotFound")
    error(raw(server, demo, "PUT", f"/v2.0/routers/{router.id}",
              {"router": {"external_gateway_info": {"enable_snat": True}}}),
          400, "InvalidInput")
    error(raw(server, admin, "PUT", f"/v2.0/routers/{router.id}",
              {"router": {"external_gateway_info": {
                  "network_id": network.id,
                  "external_fixed_ips": [{"ip_address": subnet.gateway_ip}]}}}),
          400, "BadRequest")
    holder = admin.network.create_port(network_id=network.id,
                                       fixed_ips=[{"ip_address": "172.24.4.60"}])
    try:
        before = state(server)
        error(raw(server, admin, "PUT", f"/v2.0/routers/{router.id}",
                  {"router": {"external_gateway_info": {
                      "network_id": network.id,
                      "external_fixed_ips": [{"ip_address": "172.24.4.60"}]}}}),
              409, "IpAddressAlreadyAllocated")
        assert state(server) == before
    finally:
        admin.network.delete_port(holder)
    assert demo.network.get_router(router.id).external_gateway_info is None


def test_create_with_gateway_and_delete_releases_it(admin, ext):
    network, subnet = ext
    r = admin.network.create_router(name="with-gw", external_gateway_info={
        "network_id": network.id, "external_fixed_ips": [{"ip_address": "172.24.4.9"}]})
    assert r.external_gateway_info["external_fixed_ips"] == [
        {"subnet_id": subnet.id, "ip_address": "172.24.4.9"}]
    admin.network.delete_router(r)
    assert list(admin.network.ports(device_id=r.id)) == []
    port = admin.network.create_port(network_id=network.id,
                                     fixed_ips=[{"ip_address": "172.24.4.9"}])
    admin.network.delete_port(port)


def test_interface_by_subnet(demo, server, private, router):
    network, subnet = private
    info = demo.network.add_interface_to_router(router, subnet_id=subnet.id)
    [port] = interface_ports(demo, router.id)
    assert info == {"id": router.id, "subnet_id": subnet.id, "subnet_ids": [subnet.id],
                    "port_id": port.id, "network_id": network.id,
                    "tenant_id": demo.current_project_id,
                    "project_id": demo.current_project_id, "tags": []}
    assert port.fixed_ips == [{"subnet_id": subnet.id, "ip_address": "10.1.0.1"}]
    assert port.device_owner == "network:router_interface" and port.device_id == router.id
    error(raw(server, demo, "DELETE", f"/v2.0/ports/{port.id}"), 409, "ServicePortInUse")
    before = state(server)
    body = error(raw(server, demo, "PUT", f"/v2.0/routers/{router.id}/add_router_interface",
                     {"subnet_id": subnet.id}), 400, "BadRequest")
    assert body["message"] == (f"Bad router request: Router already has a port on subnet "
                               f"{subnet.id}.")
    other = demo.network.create_network(name="r-other")
    overlapping = demo.network.create_subnet(network_id=other.id, cidr="10.1.0.128/25",
                                             ip_version=4)
    no_gw = demo.network.create_subnet(network_id=other.id, cidr="10.9.0.0/24", ip_version=4,
                                       gateway_ip=None)
    try:
        before = state(server)
        body = error(raw(server, demo, "PUT",
                         f"/v2.0/routers/{router.id}/add_router_interface",
                         {"subnet_id": overlapping.id}), 400, "BadRequest")
        assert "overlaps with cidr 10.1.0.0/24" in body["message"]
        body = error(raw(server, demo, "PUT",
                         f"/v2.0/routers/{router.id}/add_router_interface",
                         {"subnet_id": no_gw.id}), 400, "BadRequest")
        assert body["message"] == ("Bad router request: Subnet for router interface must "
                                   "have a gateway IP.")
        assert state(server) == before
    finally:
        demo.network.delete_network(other)
    removed = demo.network.remove_interface_from_router(router, subnet_id=subnet.id)
    assert removed == info
    assert interface_ports(demo, router.id) == []
    error(raw(server, demo, "PUT", f"/v2.0/routers/{router.id}/remove_router_interface",
              {"subnet_id": subnet.id}), 404, "RouterInterfaceNotFoundForSubnet")
    assert demo.network.get_router(router.id).revision_number == router.revision_number + 2


def test_interface_by_port(admin, demo, server, private, router):
    network, subnet = private
    port = demo.network.create_port(network_id=network.id, name="mine")
    info = demo.network.add_interface_to_router(router, port_id=port.id)
    assert info["port_id"] == port.id and info["subnet_ids"] == [subnet.id]
    assert info["network_id"] == network.id and info["id"] == router.id
    attached = demo.network.get_port(port.id)
    assert attached.device_id == router.id
    assert attached.device_owner == "network:router_interface"
    other = demo.network.create_router(name="r-second")
    try:
        before = state(server)
        body = error(raw(server, demo, "PUT", f"/v2.0/routers/{other.id}/add_router_interface",
                         {"port_id": port.id}), 409, "PortInUse")
        assert f"Port already has an attached device {router.id}" in body["message"]
        error(raw(server, demo, "PUT", f"/v2.0/routers/{other.id}/remove_router_interface",
                  {"port_id": port.id}), 404, "RouterInterfaceNotFound")
        bare = demo.network.create_port(network_id=network.id, fixed_ips=[])
        before = state(server)
        body = error(raw(server, demo, "PUT", f"/v2.0/routers/{other.id}/add_router_interface",
                         {"port_id": bare.id}), 400, "BadRequest")
        assert "Router port must have at least one fixed IP" in body["message"]
        second = demo.network.create_subnet(network_id=network.id, cidr="10.2.0.0/24",
                                            ip_version=4)
        double = demo.network.create_port(network_id=network.id, fixed_ips=[
            {"subnet_id": subnet.id}, {"subnet_id": second.id}])
        before = state(server)
        body = error(raw(server, demo, "PUT", f"/v2.0/routers/{other.id}/add_router_interface",
                         {"port_id": double.id}), 400, "BadRequest")
        assert "Cannot have multiple IPv4 subnets on router port" in body["message"]
        assert state(server) == before
        for p in (bare, double):
            demo.network.delete_port(p)
    finally:
        demo.network.delete_router(other)
    # removing by port with a subnet the port is not on
    error(raw(server, demo, "PUT", f"/v2.0/routers/{router.id}/remove_router_interface",
              {"port_id": port.id, "subnet_id": second.id}), 400, "SubnetMismatchForPort")
    removed = demo.network.remove_interface_from_router(router, port_id=port.id)
    assert removed["port_id"] == port.id
    with pytest.raises(osexc.NotFoundException):   # Neutron deletes the port too
        demo.network.get_port(port.id)


def test_interface_body_validation(demo, server, private, router):
    path = f"/v2.0/routers/{router.id}/add_router_interface"
    before = state(server)
    body = error(raw(server, demo, "PUT", path, {}), 400, "BadRequest")
    assert "Either subnet_id or port_id must be specified" in body["message"]
    body = error(raw(server, demo, "PUT", path, {"subnet_id": private[1].id,
                                                 "port_id": private[1].id}), 400, "BadRequest")
    assert "Cannot specify both subnet-id and port-id" in body["message"]
    error(raw(server, demo, "PUT", path, {"subnet_id": "nope"}), 400, "BadRequest")
    error(raw(server, demo, "PUT", path, {"subnet_id": "5f0f7f6c-1111-4c3c-9c6e-000000000000"}),
          404, "SubnetNotFound")
    error(raw(server, demo, "PUT", "/v2.0/routers/5f0f7f6c-1111-4c3c-9c6e-000000000000"
              "/add_router_interface", {"subnet_id": private[1].id}), 404, "RouterNotFound")
    assert state(server) == before


def test_router_delete_in_use(admin, demo, server, ext, private):
    r = demo.network.create_router(name="busy",
                                   external_gateway_info={"network_id": ext[0].id})
    demo.network.add_interface_to_router(r, subnet_id=private[1].id)
    before = state(server)
    body = error(raw(server, demo, "DELETE", f"/v2.0/routers/{r.id}"), 409, "RouterInUse")
    assert body["message"] == f"Router {r.id} still has ports"
    assert state(server) == before
    demo.network.remove_interface_from_router(r, subnet_id=private[1].id)
    demo.network.delete_router(r)
    assert list(admin.network.ports(device_id=r.id)) == []


def test_interface_cannot_outrun_router_delete(admin, demo, server, ext, private):
    """An interface added while the router's delete is committing makes the delete fail."""
    r = demo.network.create_router(name="racing",
                                   external_gateway_info={"network_id": ext[0].id})
    with commit_paused(server, f"/plexus/model/routers/{r.id}") as planned:
        thread, out = in_thread(lambda: raw(server, demo, "DELETE", f"/v2.0/routers/{r.id}"))
        assert planned.wait(10)
        info = demo.network.add_interface_to_router(r, subnet_id=private[1].id)
        thread.join()
    error(out["value"], 409, "RouterInUse")
    assert [p.id for p in interface_ports(demo, r.id)] == [info["port_id"]]
    demo.network.remove_interface_from_router(r, subnet_id=private[1].id)
    demo.network.delete_router(r)
    assert list(admin.network.ports(device_id=r.id)) == []


def test_extra_routes(admin, demo, server, ext, private, router):
    demo.network.add_interface_to_router(router, subnet_id=private[1].id)
    demo.network.update_router(router, external_gateway_info={"network_id": ext[0].id})
    routes = [{"destination": "192.168.50.0/24", "nexthop": "10.1.0.5"},
              {"destination": "0.0.0.0/0", "nexthop": "172.24.4.254"}]
    r = demo.network.update_router(router, routes=routes)
    assert r.routes == routes
    before = state(server)
    body = error(raw(server, demo, "PUT", f"/v2.0/routers/{router.id}",
                     {"router": {"routes": [{"destination": "192.168.51.0/24",
                                             "nexthop": "10.99.0.5"}]}}), 400, "InvalidRoutes")
    assert body["message"].endswith("the nexthop is not connected with router")
    body = error(raw(server, demo, "PUT", f"/v2.0/routers/{router.id}",
                     {"router": {"routes": [{"destination": "192.168.51.0/24",
                                             "nexthop": "10.1.0.1"}]}}), 400, "InvalidRoutes")
    assert body["message"].endswith("the nexthop is used by router")
    error(raw(server, demo, "PUT", f"/v2.0/routers/{router.id}",
              {"router": {"routes": [routes[0], routes[0]]}}), 400, "InvalidInput")
    error(raw(server, demo, "PUT", f"/v2.0/routers/{router.id}",
              {"router": {"routes": [{"destination": "192.168.51.0/24"}]}}), 400, "InvalidInput")
    body = error(raw(server, demo, "PUT", f"/v2.0/routers/{router.id}/remove_router_interface",
                     {"subnet_id": private[1].id}), 409, "RouterInterfaceInUseByRoute")
    assert state(server) == before
    assert demo.network.get_router(router.id).routes == routes
    # extraroute-atomic: add to and remove from the current set
    extra = {"destination": "192.168.52.0/24", "nexthop": "10.1.0.6"}
    added = raw(server, demo, "PUT", f"/v2.0/routers/{router.id}/add_extraroutes",
                {"router": {"routes": [routes[0], extra]}})
    assert added.status_code == 200 and added.json()["router"]["routes"] == routes + [extra]
    before = state(server)
    error(raw(server, demo, "PUT", f"/v2.0/routers/{router.id}/add_extraroutes",
              {"router": {"routes": [{"destination": "192.168.53.0/24",
                                      "nexthop": "10.99.0.1"}]}}), 400, "InvalidRoutes")
    assert state(server) == before
    left = raw(server, demo, "PUT", f"/v2.0/routers/{router.id}/remove_extraroutes",
               {"router": {"routes": [extra, {"destination": "10.0.0.0/8",
                                              "nexthop": "10.1.0.9"}]}})
    assert left.status_code == 200 and left.json()["router"]["routes"] == routes
    cleared = raw(server, demo, "PUT", f"/v2.0/routers/{router.id}",
                  {"router": {"routes": None}})
    assert cleared.status_code == 200 and cleared.json()["router"]["routes"] == []
    demo.network.remove_interface_from_router(router, subnet_id=private[1].id)


def test_cross_project_isolation(alt, demo, server, private, router):
    assert router.id not in [r.id for r in alt.network.routers()]
    error(raw(server, alt, "GET", f"/v2.0/routers/{router.id}"), 404, "RouterNotFound")
    before = state(server)
    error(raw(server, alt, "PUT", f"/v2.0/routers/{router.id}", {"router": {"name": "x"}}),
          404, "RouterNotFound")
    error(raw(server, alt, "DELETE", f"/v2.0/routers/{router.id}"), 404, "RouterNotFound")
    error(raw(server, alt, "PUT", f"/v2.0/routers/{router.id}/add_router_interface",
              {"subnet_id": private[1].id}), 404, "RouterNotFound")
    # alt's own router cannot take demo's (private) subnet either
    mine = alt.network.create_router(name="alt-router")
    try:
        before = state(server)
        error(raw(server, alt, "PUT", f"/v2.0/routers/{mine.id}/add_router_interface",
                  {"subnet_id": private[1].id}), 404, "SubnetNotFound")
        assert state(server) == before
    finally:
        alt.network.delete_router(mine)
    assert demo.network.get_router(router.id).name == "r-test"


def test_router_cli(admin, cli, ext):
    network, subnet = ext
    net = cli("network", "create", "cli-r-net")
    sub = cli("subnet", "create", "--network", "cli-r-net", "--subnet-range", "10.5.0.0/24",
              "cli-r-sub")
    try:
        r = cli("router", "create", "cli-router")
        assert r["status"] == "ACTIVE" and not r["external_gateway_info"]
        cli("router", "set", "--external-gateway", network.id, "cli-router", fmt=False)
        shown = cli("router", "show", "cli-router")
        assert shown["external_gateway_info"]["network_id"] == network.id
        assert shown["external_gateway_info"]["enable_snat"] is True
        cli("router", "set", "--external-gateway", network.id, "--disable-snat", "cli-router",
            fmt=False)
        assert cli("router", "show", "cli-router")["external_gateway_info"]["enable_snat"] \
            is False
        cli("router", "add", "subnet", "cli-router", "cli-r-sub", fmt=False)
        ports = admin.network.ports(device_id=r["id"], device_owner="network:router_interface")
        assert [p.fixed_ips[0]["ip_address"] for p in ports] == ["10.5.0.1"]
        routed = cli("router", "add", "route", "--route",
                     "destination=10.6.0.0/24,gateway=10.5.0.10", "cli-router")
        assert routed["routes"] == [{"destination": "10.6.0.0/24", "nexthop": "10.5.0.10"}]
        cli("router", "remove", "route", "--route", "destination=10.6.0.0/24,gateway=10.5.0.10",
            "cli-router", fmt=False)
        assert cli("router", "show", "cli-router")["routes"] == []
        busy = cli("router", "delete", "cli-router", check=False, fmt=False)
        assert busy.returncode != 0
        cli("router", "remove", "subnet", "cli-router", "cli-r-sub", fmt=False)
        cli("router", "unset", "--external-gateway", "cli-router", fmt=False)
        assert not cli("router", "show", "cli-router")["external_gateway_info"]
        cli("router", "delete", "cli-router", fmt=False)
        assert cli("router", "list", "--name", "cli-router") == []
    finally:
        cli("network", "delete", net["id"], fmt=False, check=False)
    assert sub["cidr"] == "10.5.0.0/24"


def test_extensions_advertised(demo):
    aliases = {e.alias for e in demo.network.extensions()}
    assert {"router", "ext-gw-mode", "extraroute", "extraroute-atomic",
            "fip-port-details"} <= aliases
    assert {"l3-ha", "dvr"} <= aliases       # every Plexus router is distributed and HA
