"""Floating IPs through the real clients: allocation, requested addresses, association
and its reachability rules, port deletion, the conflicts it creates on routers,
isolation, races against router changes and port deletion, and the CLI."""

from __future__ import annotations

import ipaddress

import pytest
from openstack import exceptions as osexc

from tests.api.helpers import raw, state
from tests.api.l3 import commit_paused, error, in_thread

MISSING = "5f0f7f6c-1111-4c3c-9c6e-000000000000"


@pytest.fixture
def topo(admin, demo):
    """public (external, admin's) <- demo's router -> demo's private subnet, and a port on it."""
    public = admin.network.create_network(name="f-public", is_router_external=True)
    pub_sub = admin.network.create_subnet(network_id=public.id, cidr="172.25.0.0/24",
                                          ip_version=4)
    private = demo.network.create_network(name="f-private")
    priv_sub = demo.network.create_subnet(network_id=private.id, cidr="10.3.0.0/24",
                                          ip_version=4)
    router = demo.network.create_router(name="f-router",
                                        external_gateway_info={"network_id": public.id})
    demo.network.add_interface_to_router(router, subnet_id=priv_sub.id)
    vm = demo.network.create_port(network_id=private.id, name="vm")
    yield {"public": public, "pub_sub": pub_sub, "private": private, "priv_sub": priv_sub,
           "router": router, "vm": vm}
    for fip in admin.network.ips(floating_network_id=public.id):
        admin.network.delete_ip(fip)
    for port in demo.network.ports(device_id=router.id,
                                   device_owner="network:router_interface"):
        demo.network.remove_interface_from_router(router, port_id=port.id)
    demo.network.delete_router(router)
    for port in demo.network.ports(network_id=private.id):
        demo.network.delete_port(port)
    demo.network.delete_network(private)
    admin.network.delete_network(public)


def test_allocate_and_release(admin, demo, server, topo):
    fip = demo.network.create_ip(floating_network_id=topo["public"].id, description="d")
    assert ipaddress.ip_address(fip.floating_ip_address) in ipaddress.ip_network("172.25.0.0/24")
    assert fip.floating_ip_address != topo["pub_sub"].gateway_ip
    assert fip.status == "DOWN" and fip.port_id is None and fip.router_id is None
    assert fip.fixed_ip_address is None and fip.port_details is None
    assert fip.project_id == demo.current_project_id and fip.description == "d"
    body = raw(server, demo, "GET", f"/v2.0/floatingips/{fip.id}").json()["floatingip"]
    assert "subnet_id" not in body and "name" not in body
    [held] = admin.network.ports(device_id=fip.id)
    assert held.device_owner == "network:floatingip"
    assert held.project_id == demo.current_project_id
    assert held.fixed_ips == [{"subnet_id": topo["pub_sub"].id,
                               "ip_address": fip.floating_ip_address}]
    error(raw(server, demo, "DELETE", f"/v2.0/ports/{held.id}"), 409, "ServicePortInUse")
    listed = demo.network.ips(floating_ip_address=fip.floating_ip_address)
    assert [f.id for f in listed] == [fip.id]
    demo.network.delete_ip(fip)
    assert list(admin.network.ports(device_id=fip.id)) == []
    with pytest.raises(osexc.NotFoundException):
        demo.network.get_ip(fip.id)
    port = admin.network.create_port(network_id=topo["public"].id,   # the address is free again
                                     fixed_ips=[{"ip_address": fip.floating_ip_address}])
    admin.network.delete_port(port)


def test_requested_address_and_subnet(admin, demo, server, topo):
    fip = admin.network.create_ip(floating_network_id=topo["public"].id,
                                  floating_ip_address="172.25.0.77",
                                  project_id=demo.current_project_id)
    assert fip.floating_ip_address == "172.25.0.77" and fip.project_id == demo.current_project_id
    before = state(server)
    error(raw(server, admin, "POST", "/v2.0/floatingips", {"floatingip": {
        "floating_network_id": topo["public"].id, "floating_ip_address": "172.25.0.77"}}),
        409, "IpAddressAlreadyAllocated")
    body = error(raw(server, demo, "POST", "/v2.0/floatingips", {"floatingip": {
        "floating_network_id": topo["public"].id, "floating_ip_address": "172.25.0.78"}}),
        403, "PolicyNotAuthorized")
    assert "create_floatingip:floating_ip_address" in body["message"]
    error(raw(server, admin, "POST", "/v2.0/floatingips", {"floatingip": {
        "floating_network_id": topo["public"].id, "floating_ip_address": "10.9.9.9"}}),
        400, "InvalidIpForNetwork")
    assert state(server) == before
    second = admin.network.create_subnet(network_id=topo["public"].id, cidr="172.26.0.0/24",
                                         ip_version=4)
    chosen = demo.network.create_ip(floating_network_id=topo["public"].id,
                                    subnet_id=second.id)
    assert chosen.floating_ip_address.startswith("172.26.0.")
    demo.network.delete_ip(chosen)
    admin.network.delete_ip(fip)
    admin.network.delete_subnet(second)


def test_rejected_networks(admin, demo, server, topo):
    v6only = admin.network.create_network(name="f-v6", is_router_external=True)
    admin.network.create_subnet(network_id=v6only.id, cidr="2001:db8:5::/64", ip_version=6)
    try:
        before = state(server)
        body = error(raw(server, demo, "POST", "/v2.0/floatingips", {"floatingip": {
            "floating_network_id": topo["private"].id}}), 400, "BadRequest")
        assert body["message"] == (f"Bad floatingip request: Network {topo['private'].id} "
                                   f"is not a valid external network.")
        body = error(raw(server, demo, "POST", "/v2.0/floatingips", {"floatingip": {
            "floating_network_id": v6only.id}}), 400, "BadRequest")
        assert "does not contain any IPv4 subnet" in body["message"]
        error(raw(server, demo, "POST", "/v2.0/floatingips", {"floatingip": {
            "floating_network_id": MISSING}}), 404, "NetworkNotFound")
        error(raw(server, demo, "POST", "/v2.0/floatingips", {"floatingip": {}}),
              400, "InvalidInput")
        assert state(server) == before
    finally:
        admin.network.delete_network(v6only)


def test_associate_and_disassociate(demo, server, topo):
    vm = topo["vm"]
    fip = demo.network.create_ip(floating_network_id=topo["public"].id, port_id=vm.id)
    fixed = vm.fixed_ips[0]["ip_address"]
    assert fip.port_id == vm.id and fip.fixed_ip_address == fixed
    # DOWN until the chassis hosting the port reports it programmed (test_l3_status.py)
    assert fip.router_id == topo["router"].id and fip.status == "DOWN"
    assert fip.port_details == {"name": "vm", "network_id": topo["private"].id,
                                "mac_address": vm.mac_address, "admin_state_up": True,
                                "status": "DOWN", "device_id": "", "device_owner": ""}
    assert [f.id for f in demo.network.ips(port_id=vm.id)] == [fip.id]
    # a second floating IP for the same fixed IP is refused
    other = demo.network.create_ip(floating_network_id=topo["public"].id)
    before = state(server)
    body = error(raw(server, demo, "PUT", f"/v2.0/floatingips/{other.id}",
                     {"floatingip": {"port_id": vm.id}}), 409, "FloatingIPPortAlreadyAssociated")
    assert f"using fixed IP {fixed}, as that fixed IP already has a floating IP" in body["message"]
    body = error(raw(server, demo, "PUT", f"/v2.0/floatingips/{other.id}",
                     {"floatingip": {"port_id": vm.id, "fixed_ip_address": "10.3.0.250"}}),
                 400, "BadRequest")
    assert f"Port {vm.id} does not have fixed ip 10.3.0.250" in body["message"]
    error(raw(server, demo, "PUT", f"/v2.0/floatingips/{other.id}",
              {"floatingip": {"fixed_ip_address": fixed}}), 400, "BadRequest")
    error(raw(server, demo, "PUT", f"/v2.0/floatingips/{other.id}",
              {"floatingip": {"port_id": MISSING}}), 404, "PortNotFound")
    error(raw(server, demo, "PUT", f"/v2.0/floatingips/{other.id}",
              {"floatingip": {"floating_ip_address": "172.25.0.3"}}), 400, "InvalidInput")
    assert state(server) == before
    # disassociate, then the other one may take the fixed IP (by explicit address)
    off = demo.network.update_ip(fip, port_id=None)
    assert off.port_id is None and off.fixed_ip_address is None and off.router_id is None
    assert off.status == "DOWN" and off.port_details is None
    moved = demo.network.update_ip(other, port_id=vm.id, fixed_ip_address=fixed)
    assert moved.fixed_ip_address == fixed and moved.router_id == topo["router"].id
    renamed = demo.network.update_ip(moved, description="kept")   # association unchanged
    assert renamed.port_id == vm.id and renamed.description == "kept"


def test_unreachable_port(demo, server, topo):
    lonely = demo.network.create_network(name="f-lonely")
    sub = demo.network.create_subnet(network_id=lonely.id, cidr="10.4.0.0/24", ip_version=4)
    port = demo.network.create_port(network_id=lonely.id)
    try:
        fip = demo.network.create_ip(floating_network_id=topo["public"].id)
        before = state(server)
        body = error(raw(server, demo, "PUT", f"/v2.0/floatingips/{fip.id}",
                         {"floatingip": {"port_id": port.id}}),
                     404, "ExternalGatewayForFloatingIPNotFound")
        assert body["message"] == (
            f"External network {topo['public'].id} is not reachable from subnet {sub.id}.  "
            f"Therefore, cannot associate Port {port.id} with a Floating IP.")
        error(raw(server, demo, "POST", "/v2.0/floatingips", {"floatingip": {
            "floating_network_id": topo["public"].id, "port_id": port.id}}),
            404, "ExternalGatewayForFloatingIPNotFound")
        assert state(server) == before
        # a router on the subnet without a gateway does not make it reachable either
        r = demo.network.create_router(name="no-gw")
        demo.network.add_interface_to_router(r, subnet_id=sub.id)
        error(raw(server, demo, "PUT", f"/v2.0/floatingips/{fip.id}",
                  {"floatingip": {"port_id": port.id}}),
              404, "ExternalGatewayForFloatingIPNotFound")
        demo.network.update_router(r, external_gateway_info={"network_id": topo["public"].id})
        assert demo.network.update_ip(fip, port_id=port.id).router_id == r.id
        demo.network.update_ip(fip, port_id=None)
        demo.network.remove_interface_from_router(r, subnet_id=sub.id)
        demo.network.delete_router(r)
    finally:
        demo.network.delete_port(port)
        demo.network.delete_network(lonely)


def test_port_delete_disassociates(demo, topo):
    port = demo.network.create_port(network_id=topo["private"].id)
    fip = demo.network.create_ip(floating_network_id=topo["public"].id, port_id=port.id)
    demo.network.delete_port(port)
    after = demo.network.get_ip(fip.id)
    assert after.port_id is None and after.fixed_ip_address is None
    assert after.router_id is None and after.status == "DOWN"
    assert after.revision_number == fip.revision_number + 1
    # the fixed IP's index went with the port: a new port may take a floating IP again
    again = demo.network.create_port(network_id=topo["private"].id,
                                     fixed_ips=[{"ip_address": port.fixed_ips[0]["ip_address"]}])
    assert demo.network.update_ip(after, port_id=again.id).router_id == topo["router"].id


def test_router_changes_blocked_by_fip(demo, server, topo):
    router, sub = topo["router"], topo["priv_sub"]
    fip = demo.network.create_ip(floating_network_id=topo["public"].id, port_id=topo["vm"].id)
    before = state(server)
    body = error(raw(server, demo, "PUT", f"/v2.0/routers/{router.id}/remove_router_interface",
                     {"subnet_id": sub.id}), 409, "RouterInterfaceInUseByFloatingIP")
    assert body["message"] == (f"Router interface for subnet {sub.id} on router {router.id} "
                               f"cannot be deleted, as it is required by one or more floating "
                               f"IPs.")
    error(raw(server, demo, "PUT", f"/v2.0/routers/{router.id}",
              {"router": {"external_gateway_info": {}}}),
          409, "RouterExternalGatewayInUseByFloatingIp")
    error(raw(server, demo, "DELETE", f"/v2.0/routers/{router.id}"), 409, "RouterInUse")
    assert state(server) == before
    demo.network.update_ip(fip, port_id=None)
    demo.network.remove_interface_from_router(router, subnet_id=sub.id)
    assert demo.network.update_router(router, external_gateway_info={}).external_gateway_info \
        is None


def test_isolation(alt, demo, server, topo):
    fip = demo.network.create_ip(floating_network_id=topo["public"].id)
    assert fip.id not in [f.id for f in alt.network.ips()]
    before = state(server)
    error(raw(server, alt, "GET", f"/v2.0/floatingips/{fip.id}"), 404, "FloatingIPNotFound")
    error(raw(server, alt, "PUT", f"/v2.0/floatingips/{fip.id}",
              {"floatingip": {"port_id": None}}), 404, "FloatingIPNotFound")
    error(raw(server, alt, "DELETE", f"/v2.0/floatingips/{fip.id}"), 404, "FloatingIPNotFound")
    assert state(server) == before
    # alt may allocate on the shared external network, but not reach demo's port
    mine = alt.network.create_ip(floating_network_id=topo["public"].id)
    before = state(server)
    error(raw(server, alt, "PUT", f"/v2.0/floatingips/{mine.id}",
              {"floatingip": {"port_id": topo["vm"].id}}), 404, "PortNotFound")
    assert state(server) == before
    alt.network.delete_ip(mine)
    assert demo.network.get_ip(fip.id).id == fip.id


@pytest.mark.parametrize("change", ["remove interface", "clear gateway"])
def test_association_cannot_outrun_router_change(admin, demo, server, topo, change):
    """An association planned while a router change is committing must not survive it."""
    router, sub, vm = topo["router"], topo["priv_sub"], topo["vm"]
    fip = demo.network.create_ip(floating_network_id=topo["public"].id)
    if change == "remove interface":
        [port] = demo.network.ports(device_id=router.id, device_owner="network:router_interface")
        method, path, body = ("PUT", f"/v2.0/routers/{router.id}/remove_router_interface",
                              {"subnet_id": sub.id})
    else:
        [port] = admin.network.ports(device_id=router.id, device_owner="network:router_gateway")
        method, path, body = ("PUT", f"/v2.0/routers/{router.id}",
                              {"router": {"external_gateway_info": {}}})
    with commit_paused(server, f"/plexus/model/ports/{port.id}") as planned:
        thread, out = in_thread(lambda: raw(server, demo, method, path, body).status_code)
        assert planned.wait(10)
        associated = raw(server, demo, "PUT", f"/v2.0/floatingips/{fip.id}",
                         {"floatingip": {"port_id": vm.id}})
        thread.join()
    assert out["value"] == 200
    error(associated, 404, "ExternalGatewayForFloatingIPNotFound")
    assert demo.network.get_ip(fip.id).router_id is None


def test_association_cannot_outrun_port_delete(demo, server, topo):
    """A port deleted while being associated leaves no floating IP pointing at it."""
    port = demo.network.create_port(network_id=topo["private"].id)
    fip = demo.network.create_ip(floating_network_id=topo["public"].id)
    with commit_paused(server, f"/plexus/model/ports/{port.id}") as planned:
        thread, out = in_thread(lambda: raw(server, demo, "DELETE",
                                            f"/v2.0/ports/{port.id}").status_code)
        assert planned.wait(10)
        associated = demo.network.update_ip(fip, port_id=port.id)
        thread.join()
    assert out["value"] == 204 and associated.port_id == port.id
    after = demo.network.get_ip(fip.id)
    assert after.port_id is None and after.router_id is None and after.status == "DOWN"


def test_floating_ip_cli(cli, demo, topo):
    created = cli("floating", "ip", "create", topo["public"].id, cloud="devstack")
    address = created["floating_ip_address"]
    assert created["status"] == "DOWN" and created["port_id"] is None
    cli("floating", "ip", "set", "--port", topo["vm"].id, address, cloud="devstack", fmt=False)
    shown = cli("floating", "ip", "show", address, cloud="devstack")
    assert shown["port_id"] == topo["vm"].id and shown["router_id"] == topo["router"].id
    assert shown["fixed_ip_address"] == topo["vm"].fixed_ips[0]["ip_address"]
    listed = cli("floating", "ip", "list", "--port", topo["vm"].id, cloud="devstack")
    assert [f["Floating IP Address"] for f in listed] == [address]
    cli("floating", "ip", "unset", "--port", address, cloud="devstack", fmt=False)
    assert cli("floating", "ip", "show", address, cloud="devstack")["port_id"] is None
    cli("floating", "ip", "delete", address, cloud="devstack", fmt=False)
    assert list(demo.network.ips(floating_ip_address=address)) == []
