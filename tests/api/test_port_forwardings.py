"""Floating IP port forwarding (floating-ip-port-forwarding, -description, -port-ranges,
expose-port-forwarding-in-fip) through the real openstacksdk and openstack CLI: the
life cycle, Neutron's validation and conflicts (a floating IP with a port association
takes no forwarding and one with forwardings no association; duplicate external ports;
the internal address must be a fixed IP of the internal port, reached by a router
with a gateway on the floating IP's network), router_id following the forwardings,
policy (the floating IP's project), and the internal port's deletion removing its
forwardings. Nothing half-written after a refusal."""

from __future__ import annotations

import pytest
from openstack import exceptions as osexc

from tests.api.helpers import raw, state
from tests.api.l3 import error

MISSING = "5f0f7f6c-1111-4c3c-9c6e-000000000000"


@pytest.fixture
def topo(admin, demo):
    """public (external) <- demo's router -> demo's private subnet; two VM ports."""
    public = admin.network.create_network(name="pf-public", is_router_external=True)
    admin.network.create_subnet(network_id=public.id, cidr="172.26.0.0/24", ip_version=4)
    private = demo.network.create_network(name="pf-private")
    priv_sub = demo.network.create_subnet(network_id=private.id, cidr="10.4.0.0/24",
                                          ip_version=4)
    lonely = demo.network.create_network(name="pf-unrouted")
    lonely_sub = demo.network.create_subnet(network_id=lonely.id, cidr="10.5.0.0/24",
                                            ip_version=4)
    router = demo.network.create_router(name="pf-router",
                                        external_gateway_info={"network_id": public.id})
    demo.network.add_interface_to_router(router, subnet_id=priv_sub.id)
    vm = demo.network.create_port(network_id=private.id, name="vm")
    vm2 = demo.network.create_port(network_id=private.id, name="vm2")
    out = demo.network.create_port(network_id=lonely.id, name="unrouted")
    yield {"public": public, "private": private, "router": router, "vm": vm, "vm2": vm2,
           "unrouted": out, "priv_sub": priv_sub, "lonely_sub": lonely_sub}
    for fip in admin.network.ips(floating_network_id=public.id):
        for pf in admin.network.floating_ip_port_forwardings(fip):
            admin.network.delete_floating_ip_port_forwarding(fip, pf)
        admin.network.delete_ip(fip)
    for port in demo.network.ports(device_id=router.id,
                                   device_owner="network:router_interface"):
        demo.network.remove_interface_from_router(router, port_id=port.id)
    demo.network.delete_router(router)
    for net in (private, lonely):
        for port in demo.network.ports(network_id=net.id):
            demo.network.delete_port(port)
        demo.network.delete_network(net)
    admin.network.delete_network(public)


def _ip(port) -> str:
    return port.fixed_ips[0]["ip_address"]


def _pf(conn, fip, port, internal=22, external=2222, protocol="tcp", **kw):
    return conn.network.create_floating_ip_port_forwarding(
        fip, internal_port_id=port.id, internal_ip_address=_ip(port), internal_port=internal,
        external_port=external, protocol=protocol, **kw)


def test_life_cycle_through_the_sdk(admin, demo, server, topo):
    fip = demo.network.create_ip(floating_network_id=topo["public"].id)
    assert fip.port_forwardings == [] and fip.router_id is None
    pf = _pf(demo, fip, topo["vm"], description="ssh")
    assert (pf.internal_port, pf.external_port, pf.protocol) == (22, 2222, "tcp")
    assert pf.internal_ip_address == _ip(topo["vm"]) and pf.description == "ssh"
    assert pf.internal_port_id == topo["vm"].id
    body = raw(server, demo, "GET",
               f"/v2.0/floatingips/{fip.id}/port_forwardings/{pf.id}").json()
    assert body["port_forwarding"]["external_port_range"] == "2222:2222"
    assert "project_id" not in body["port_forwarding"]
    shown = demo.network.get_ip(fip.id)
    assert shown.router_id == topo["router"].id and shown.port_id is None
    assert shown.port_forwardings == [{
        "id": pf.id, "internal_ip_address": _ip(topo["vm"]), "protocol": "tcp",
        "internal_port": 22, "external_port": 2222, "internal_port_id": topo["vm"].id}]
    udp = _pf(demo, fip, topo["vm2"], internal=53, external=2222, protocol="udp")
    assert {p.id for p in demo.network.floating_ip_port_forwardings(fip)} == {pf.id, udp.id}
    assert [p.id for p in demo.network.floating_ip_port_forwardings(fip, protocol="udp")] \
        == [udp.id]
    changed = demo.network.update_floating_ip_port_forwarding(fip, pf, internal_port=2022)
    assert (changed.internal_port, changed.external_port) == (2022, 2222)
    # a floating IP with forwardings is not deleted (Neutron: 409)
    error(raw(server, demo, "DELETE", f"/v2.0/floatingips/{fip.id}"), 409,
          "FipInUseByPortForwarding")
    demo.network.delete_floating_ip_port_forwarding(fip, pf)
    with pytest.raises(osexc.NotFoundException):
        demo.network.get_floating_ip_port_forwarding(fip, pf)
    assert demo.network.get_ip(fip.id).router_id == topo["router"].id   # udp one left
    demo.network.delete_floating_ip_port_forwarding(fip, udp)
    assert demo.network.get_ip(fip.id).router_id is None          # the last one clears it
    demo.network.delete_ip(fip)
    assert "floating-ip-port-forwarding" in {e.alias for e in demo.network.extensions()}


def test_association_and_forwardings_exclude_each_other(admin, demo, server, topo):
    used = demo.network.create_ip(floating_network_id=topo["public"].id,
                                  port_id=topo["vm"].id)
    free = demo.network.create_ip(floating_network_id=topo["public"].id)
    url = f"/v2.0/floatingips/{used.id}/port_forwardings"
    body = {"port_forwarding": {"internal_port_id": topo["vm2"].id, "protocol": "tcp",
                                "internal_ip_address": _ip(topo["vm2"]),
                                "internal_port": 1, "external_port": 1}}
    before = state(server)
    error(raw(server, demo, "POST", url, body), 409, "FloatingIPPortAlreadyAssociated")
    # the port of an associated floating IP takes no forwarding
    body["port_forwarding"].update(internal_port_id=topo["vm"].id,
                                   internal_ip_address=_ip(topo["vm"]))
    error(raw(server, demo, "POST", f"/v2.0/floatingips/{free.id}/port_forwardings", body),
          409, "PortHasBindingFloatingIP")
    assert state(server) == before
    pf = _pf(demo, free, topo["vm2"])
    # a floating IP with forwardings takes no port; a port with forwardings no floating IP
    error(raw(server, demo, "PUT", f"/v2.0/floatingips/{free.id}",
              {"floatingip": {"port_id": topo["vm"].id}}), 409, "FipInUseByPortForwarding")
    demo.network.update_ip(used, port_id=None)
    error(raw(server, demo, "PUT", f"/v2.0/floatingips/{used.id}",
              {"floatingip": {"port_id": topo["vm2"].id}}), 400, "BadRequest")
    # a blank update keeps the forwardings' router
    raw(server, demo, "PUT", f"/v2.0/floatingips/{free.id}", {"floatingip": {}})
    assert demo.network.get_ip(free.id).router_id == topo["router"].id
    demo.network.delete_floating_ip_port_forwarding(free, pf)


def test_validation_as_neutron(admin, demo, server, topo):
    fip = demo.network.create_ip(floating_network_id=topo["public"].id)
    url = f"/v2.0/floatingips/{fip.id}/port_forwardings"
    vm = topo["vm"]
    good = {"internal_port_id": vm.id, "internal_ip_address": _ip(vm), "protocol": "tcp",
            "internal_port": 80, "external_port": 8080}
    before = state(server)
    for change, status, kind in [
            ({"protocol": "udplite"}, 400, "InvalidInput"),
            ({"protocol": "6"}, 400, "InvalidInput"),
            ({"external_port": 0}, 400, "InvalidInput"),
            ({"internal_port": 65536}, 400, "InvalidInput"),
            ({"internal_ip_address": "10.4.0.250"}, 400, "BadRequest"),
            ({"internal_ip_address": "not-an-ip"}, 400, "InvalidInput"),
            ({"internal_port_id": MISSING}, 404, "PortNotFound"),
            ({"internal_port_id": topo["unrouted"].id,
              "internal_ip_address": _ip(topo["unrouted"])}, 400, "BadRequest"),
            ({"external_port": None}, 400, "BadRequest"),
            ({"external_port_range": "10:5", "external_port": None}, 400, "InvalidInput"),
            ({"internal_port": None, "internal_port_range": "80:82", "external_port": None,
              "external_port_range": "90:91"}, 400, "BadRequest"),
            ({"bogus": 1}, 400, "InvalidInput")]:
        error(raw(server, demo, "POST", url, {"port_forwarding": {**good, **change}}),
              status, kind)
    error(raw(server, demo, "POST", f"/v2.0/floatingips/{MISSING}/port_forwardings",
              {"port_forwarding": good}), 404, "FloatingIPNotFound")
    for missing in ("protocol", "internal_port_id", "internal_ip_address"):
        error(raw(server, demo, "POST", url, {"port_forwarding": {
            k: v for k, v in good.items() if k != missing}}), 400, "InvalidInput")
    assert state(server) == before
    first = raw(server, demo, "POST", url, {"port_forwarding": good}).json()["port_forwarding"]
    # the same external port and protocol again (any internal port): 400, as Neutron
    again = {**good, "internal_port_id": topo["vm2"].id,
             "internal_ip_address": _ip(topo["vm2"])}
    body = error(raw(server, demo, "POST", url, {"port_forwarding": again}), 400, "BadRequest")
    assert "collision" in body["message"]
    # ... and the same internal socket behind another external port
    error(raw(server, demo, "POST", url, {"port_forwarding": {**good, "external_port": 8081}}),
          400, "BadRequest")
    # ... also behind another floating IP
    other = demo.network.create_ip(floating_network_id=topo["public"].id)
    error(raw(server, demo, "POST", f"/v2.0/floatingips/{other.id}/port_forwardings",
              {"port_forwarding": good}), 400, "BadRequest")
    demo.network.delete_ip(other)
    # another protocol on the same port is fine; so is a 1-N range
    raw(server, demo, "POST", url, {"port_forwarding": {**good, "protocol": "udp"}})
    ranged = raw(server, demo, "POST", url, {"port_forwarding": {
        **again, "external_port": None, "external_port_range": "9000:9009",
        "internal_port": None, "internal_port_range": "9000:9009"}}).json()["port_forwarding"]
    assert ranged["external_port"] is None and ranged["internal_port_range"] == "9000:9009"
    error(raw(server, demo, "PUT", f"{url}/{first['id']}",
              {"port_forwarding": {"external_port": 9005}}), 400, "BadRequest")
    error(raw(server, demo, "PUT", f"{url}/{first['id']}",
              {"port_forwarding": {"internal_ip_address": "10.4.0.250"}}), 400, "BadRequest")
    error(raw(server, demo, "GET", f"{url}/{MISSING}"), 404, "PortForwardingNotFound")
    error(raw(server, demo, "GET", f"{url}?internal_port=80"), 400,
          "PortForwardingNotSupportFilterField")
    # deleting the internal port removes its forwardings, in its own transaction
    demo.network.delete_port(topo["vm2"])
    left = list(demo.network.floating_ip_port_forwardings(fip))
    assert {p.internal_port_id for p in left} == {vm.id}
    assert demo.network.get_ip(fip.id).router_id == topo["router"].id
    demo.network.delete_port(vm)
    assert list(demo.network.floating_ip_port_forwardings(fip)) == []
    assert demo.network.get_ip(fip.id).router_id is None
    demo.network.delete_ip(fip)


def test_policy_is_the_floating_ips_project(admin, demo, alt, server, topo):
    fip = demo.network.create_ip(floating_network_id=topo["public"].id)
    pf = _pf(demo, fip, topo["vm"])
    url = f"/v2.0/floatingips/{fip.id}/port_forwardings"
    error(raw(server, alt, "GET", url), 404, "FloatingIPNotFound")
    error(raw(server, alt, "DELETE", f"{url}/{pf.id}"), 404, "FloatingIPNotFound")
    assert [p.id for p in admin.network.floating_ip_port_forwardings(fip)] == [pf.id]
    admin.network.update_floating_ip_port_forwarding(fip, pf, description="by admin")
    assert demo.network.get_floating_ip_port_forwarding(fip, pf).description == "by admin"


def test_cli(admin, demo, server, topo, cli):
    fip = demo.network.create_ip(floating_network_id=topo["public"].id)
    vm = topo["vm"]
    made = cli("floating", "ip", "port", "forwarding", "create", "--internal-ip-address",
               _ip(vm), "--port", vm.id, "--internal-protocol-port", "8080",
               "--external-protocol-port", "80", "--protocol", "tcp",
               "--description", "web", fip.floating_ip_address, cloud="devstack")
    assert made["internal_port"] == 8080 and made["external_port"] == 80
    listed = cli("floating", "ip", "port", "forwarding", "list", fip.floating_ip_address,
                 cloud="devstack")
    assert [p["ID"] for p in listed] == [made["id"]]
    cli("floating", "ip", "port", "forwarding", "set", "--external-protocol-port", "81",
        fip.floating_ip_address, made["id"], cloud="devstack", fmt=False)
    shown = cli("floating", "ip", "port", "forwarding", "show", fip.floating_ip_address,
                made["id"], cloud="devstack")
    assert shown["external_port"] == 81 and shown["description"] == "web"
    cli("floating", "ip", "port", "forwarding", "delete", fip.floating_ip_address,
        made["id"], cloud="devstack", fmt=False)
    assert list(demo.network.floating_ip_port_forwardings(fip)) == []


def test_port_changes_and_router_interfaces(admin, demo, server, topo):
    vm = topo["vm"]
    first = _ip(vm)
    vm = demo.network.update_port(vm, fixed_ips=[{"subnet_id": topo["priv_sub"].id,
                                                  "ip_address": first},
                                                 {"subnet_id": topo["priv_sub"].id}])
    second = next(ip["ip_address"] for ip in vm.fixed_ips if ip["ip_address"] != first)
    fip = demo.network.create_ip(floating_network_id=topo["public"].id)
    keep = _pf(demo, fip, vm)
    drop = demo.network.create_floating_ip_port_forwarding(
        fip, internal_port_id=vm.id, internal_ip_address=second, internal_port=23,
        external_port=2323, protocol="tcp")
    # the interface the forwardings go through stays (as for a floating IP)
    body = raw(server, demo, "PUT", f"/v2.0/routers/{topo['router'].id}/remove_router_interface",
               {"subnet_id": topo["priv_sub"].id})
    error(body, 409, "RouterInterfaceInUseByFloatingIP")
    # removing a fixed IP removes the forwardings to it, in the port's update
    demo.network.update_port(vm, fixed_ips=[{"subnet_id": topo["priv_sub"].id,
                                             "ip_address": first}])
    assert [p.id for p in demo.network.floating_ip_port_forwardings(fip)] == [keep.id]
    with pytest.raises(osexc.NotFoundException):
        demo.network.get_floating_ip_port_forwarding(fip, drop)
    demo.network.delete_floating_ip_port_forwarding(fip, keep)


def test_concurrent_creates_take_an_external_port_once(admin, demo, server, topo):
    """Forwardings are stored in their floating IP (one compare-and-swap): of several
    creates racing for one external port, exactly one wins."""
    import threading
    fip = demo.network.create_ip(floating_network_id=topo["public"].id)
    url = f"/v2.0/floatingips/{fip.id}/port_forwardings"
    results: list[int] = []

    def create(n: int) -> None:
        port = topo["vm"] if n % 2 else topo["vm2"]
        body = {"port_forwarding": {"internal_port_id": port.id,
                                    "internal_ip_address": _ip(port), "protocol": "tcp",
                                    "internal_port": 1000 + n, "external_port": 7000}}
        results.append(raw(server, demo, "POST", url, body).status_code)
    threads = [threading.Thread(target=create, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [201] + [400] * 5, results
    [won] = list(demo.network.floating_ip_port_forwardings(fip))
    index = server.app.state.services.get(f"/plexus/alloc/pf-port/{won.internal_port_id}")
    assert index[0] == {won.id: fip.id}
    demo.network.delete_floating_ip_port_forwarding(fip, won)
