"""Router and floating IP status through the real clients, following what the data
plane does: DOWN with no live gateway chassis, BUILD until the active gateway reports
the router programmed, ACTIVE after; floating IPs DOWN until the chassis hosting their
port reports them, and DOWN again when it dies. The pure rules first."""

from __future__ import annotations

import pytest

from plexus.api.services.l3_status import floatingip_status, router_status
from tests.api.helpers import raw, register_chassis
from tests.api.l3 import connect, error, fresh_server, run_cli

GC = "plexus:gateway_chassis"
MISSING = "5f0f7f6c-1111-4c3c-9c6e-000000000000"


def test_rules():
    r = {"gw_port_id": "p", GC: ["a", "b"], "revision_number": 3}
    ok = {"status": "ACTIVE", "revision_number": 3}
    assert router_status({"gw_port_id": None}, set(), {}) == "ACTIVE"
    assert router_status(r, set(), {"a": ok}) == "DOWN"
    assert router_status(r, {"a", "b"}, {}) == "BUILD"
    assert router_status(r, {"a", "b"}, {"a": ok}) == "ACTIVE"
    assert router_status(r, {"a", "b"}, {"b": ok}) == "BUILD"       # b is standby
    assert router_status(r, {"b"}, {"b": ok}) == "ACTIVE"           # a dead: b is active
    assert router_status(r, {"a"}, {"a": dict(ok, revision_number=2)}) == "BUILD"   # stale
    assert router_status(r, {"a"}, {"a": dict(ok, status="ERROR")}) == "ERROR"
    fip = {"port_id": "p", "revision_number": 1}
    assert floatingip_status({"port_id": None}, "h", {"h"}, {}) == "DOWN"
    assert floatingip_status(fip, None, {"h"}, {}) == "DOWN"
    assert floatingip_status(fip, "h", {"h"}, {}) == "DOWN"
    assert floatingip_status(fip, "h", {"h"}, {"h": {"status": "ACTIVE",
                                                     "revision_number": 1}}) == "ACTIVE"
    assert floatingip_status(fip, "h", set(), {"h": {"status": "ACTIVE",
                                                     "revision_number": 1}}) == "DOWN"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A server of this module's own with an external network and a private subnet."""
    with fresh_server(tmp_path_factory.mktemp("l3status")) as srv:
        admin, demo = connect(srv), connect(srv, "devstack")
        ext = admin.network.create_network(name="public", is_router_external=True)
        admin.network.create_subnet(network_id=ext.id, cidr="172.24.4.0/24", ip_version=4)
        net = demo.network.create_network(name="private")
        sub = demo.network.create_subnet(network_id=net.id, cidr="10.9.0.0/24", ip_version=4)
        yield {"server": srv, "admin": admin, "demo": demo, "ext": ext, "net": net,
               "sub": sub}


def report(lab, kind: str, ident: str, host: str, status: str = "ACTIVE", **extra):
    return raw(lab["server"], lab["admin"], "PUT", f"/southbound/v1/{kind}/{ident}/status",
               {"host": host, "status": status, **extra})


def test_router_status_transitions(lab):
    srv, admin, demo, ext = lab["server"], lab["admin"], lab["demo"], lab["ext"]
    plain = demo.network.create_router(name="plain")
    assert plain.status == "ACTIVE"                 # no gateway: routed on every chassis
    router = demo.network.create_router(name="st",
                                        external_gateway_info={"network_id": ext.id})
    assert router.status == "DOWN"                  # no gateway chassis at all
    assert [r.id for r in demo.network.routers(status="DOWN")] == [router.id]
    leases = {name: register_chassis(srv, admin, name, gateway=True, ttl=60)
              for name in ("gw-1", "gw-2")}
    assert demo.network.get_router(router.id).status == "BUILD"
    order = [a.host for a in admin.network.routers_hosting_l3_agents(router)]
    # the standby's report does not make the router ACTIVE; the active one's does
    standby, active = order[1], order[0]
    assert report(lab, "routers", router.id, standby).json()["router"]["status"] == "BUILD"
    resp = report(lab, "routers", router.id, active)
    assert resp.status_code == 200 and resp.json()["router"]["status"] == "ACTIVE"
    assert demo.network.get_router(router.id).status == "ACTIVE"
    assert run_cli(srv, "router", "show", router.id, "-f", "json",
                   cloud="devstack")["status"] == "ACTIVE"
    # a change of the router is not programmed until reported at its new revision
    renamed = demo.network.update_router(router, name="st2")
    assert renamed.status == "BUILD"
    resp = report(lab, "routers", router.id, active,
                  revision_number=renamed.revision_number - 1)
    assert resp.json()["router"]["status"] == "BUILD"
    resp = report(lab, "routers", router.id, active, revision_number=renamed.revision_number)
    assert resp.json()["router"]["status"] == "ACTIVE"
    report(lab, "routers", router.id, active, "ERROR")
    assert demo.network.get_router(router.id).status == "ERROR"
    report(lab, "routers", router.id, active)
    # the standby's report above was for the old revision: stale until it reports again
    report(lab, "routers", router.id, standby)
    # the active gateway stops: the standby takes over
    raw(srv, admin, "DELETE", f"/southbound/v1/chassis/{active}?lease={leases[active]}")
    assert demo.network.get_router(router.id).status == "ACTIVE"
    # every gateway chassis dead: DOWN
    raw(srv, admin, "DELETE", f"/southbound/v1/chassis/{standby}?lease={leases[standby]}")
    assert demo.network.get_router(router.id).status == "DOWN"
    # a chassis coming back has to report again (its reports died with its lease)
    register_chassis(srv, admin, active, gateway=True, ttl=60)
    assert demo.network.get_router(router.id).status == "BUILD"
    report(lab, "routers", router.id, active)
    assert demo.network.get_router(router.id).status == "ACTIVE"
    # refusals
    register_chassis(srv, admin, "compute", ttl=60)
    error(report(lab, "routers", router.id, "compute"), 409, "RouterNotHostedByChassis")
    error(report(lab, "routers", router.id, standby), 409, "ChassisNotAlive")
    error(report(lab, "routers", router.id, active, "SIDEWAYS"), 400, "InvalidInput")
    error(report(lab, "routers", router.id, active, revision_number=-1), 400, "InvalidInput")
    error(raw(srv, admin, "PUT", f"/southbound/v1/routers/{router.id}/status",
              {"status": "ACTIVE"}), 400, "InvalidInput")
    error(report(lab, "routers", MISSING, active), 404, "RouterNotFound")
    assert raw(srv, demo, "PUT", f"/southbound/v1/routers/{router.id}/status",
               {"host": active, "status": "ACTIVE"}).status_code == 403
    demo.network.update_router(router, external_gateway_info={})
    assert demo.network.get_router(router.id).status == "ACTIVE"
    demo.network.delete_router(router)
    demo.network.delete_router(plain)


def test_floatingip_status_transitions(lab):
    srv, admin, demo, ext = lab["server"], lab["admin"], lab["demo"], lab["ext"]
    router = demo.network.create_router(name="fr",
                                        external_gateway_info={"network_id": ext.id})
    demo.network.add_interface_to_router(router, subnet_id=lab["sub"].id)
    lease = register_chassis(srv, admin, "host-a", ttl=60)
    register_chassis(srv, admin, "host-b", ttl=60)
    vm = admin.network.create_port(network_id=lab["net"].id, binding_host_id="host-a",
                                   project_id=demo.current_project_id)
    fip = demo.network.create_ip(floating_network_id=ext.id)
    assert fip.status == "DOWN"
    error(report(lab, "floatingips", fip.id, "host-a"), 409, "FloatingIPBindingMismatch")
    fip = demo.network.update_ip(fip, port_id=vm.id)
    assert fip.status == "DOWN"                      # associated, not yet programmed
    error(report(lab, "floatingips", fip.id, "host-b"), 409, "FloatingIPBindingMismatch")
    resp = report(lab, "floatingips", fip.id, "host-a")
    assert resp.status_code == 200 and resp.json()["floatingip"]["status"] == "ACTIVE"
    assert demo.network.get_ip(fip.id).status == "ACTIVE"
    assert [f.id for f in demo.network.ips(status="ACTIVE")] == [fip.id]
    shown = run_cli(srv, "floating", "ip", "show", fip.floating_ip_address, "-f", "json",
                    cloud="devstack")
    assert shown["status"] == "ACTIVE"
    # the hosting chassis dies: DOWN, whatever it said before
    raw(srv, admin, "DELETE", f"/southbound/v1/chassis/host-a?lease={lease}")
    assert demo.network.get_ip(fip.id).status == "DOWN"
    register_chassis(srv, admin, "host-a", ttl=60)
    assert demo.network.get_ip(fip.id).status == "DOWN"
    report(lab, "floatingips", fip.id, "host-a")
    assert demo.network.get_ip(fip.id).status == "ACTIVE"
    # the port moves to another chassis: DOWN until that one reports
    admin.network.update_port(vm, binding_host_id="host-b")
    assert demo.network.get_ip(fip.id).status == "DOWN"
    report(lab, "floatingips", fip.id, "host-b")
    assert demo.network.get_ip(fip.id).status == "ACTIVE"
    # disassociated: DOWN (a new association must be reported afresh)
    assert demo.network.update_ip(fip, port_id=None).status == "DOWN"
    assert demo.network.update_ip(fip, port_id=vm.id).status == "DOWN"
    error(report(lab, "floatingips", MISSING, "host-b"), 404, "FloatingIPNotFound")
    demo.network.delete_ip(fip)
    admin.network.delete_port(vm)
    demo.network.remove_interface_from_router(router, subnet_id=lab["sub"].id)
    demo.network.delete_router(router)


def test_router_interface_ports_follow_the_router(lab):
    """As OVN's: an interface of a distributed router is ACTIVE once the router is
    programmed (at once without a gateway; once its active gateway chassis reported it
    with one), DOWN when it is not or when the port is down. No agent reports it."""
    srv, admin, demo, ext = lab["server"], lab["admin"], lab["demo"], lab["ext"]
    net = demo.network.create_network(name="if-net")
    sub = demo.network.create_subnet(network_id=net.id, cidr="10.19.0.0/24", ip_version=4)
    sub2 = demo.network.create_subnet(network_id=net.id, cidr="10.20.0.0/24", ip_version=4)
    plain = demo.network.create_router(name="if-plain")
    demo.network.add_interface_to_router(plain, subnet_id=sub.id)
    iface = next(demo.network.ports(device_id=plain.id))
    assert iface.status == "ACTIVE"
    assert [p.id for p in demo.network.ports(network_id=net.id, status="ACTIVE")] == [iface.id]
    down = demo.network.update_port(iface, admin_state_up=False)
    assert down.status == "DOWN" and demo.network.get_port(iface.id).status == "DOWN"
    demo.network.update_port(iface, admin_state_up=True)
    # a router with a gateway: DOWN until its active gateway chassis reports it
    register_chassis(srv, admin, "gw-if", gateway=True, ttl=60)
    gw = demo.network.create_router(name="if-gw", external_gateway_info={"network_id": ext.id})
    demo.network.add_interface_to_router(gw, subnet_id=sub2.id)
    gw_iface = next(demo.network.ports(device_id=gw.id,
                                       device_owner="network:router_interface"))
    assert gw_iface.status == "DOWN"
    active = [a.host for a in admin.network.routers_hosting_l3_agents(gw)][0]
    rev = demo.network.get_router(gw.id).revision_number
    report(lab, "routers", gw.id, active, revision_number=rev)
    assert demo.network.get_port(gw_iface.id).status == "ACTIVE"
    assert demo.network.get_port(iface.id).status == "ACTIVE"
    # a plain port on the network is still the agents' to report
    vm = demo.network.create_port(network_id=net.id)
    assert vm.status == "DOWN"
    demo.network.delete_port(vm)
    for router, subnet in ((plain, sub), (gw, sub2)):
        demo.network.remove_interface_from_router(router, subnet_id=subnet.id)
        demo.network.delete_router(router)
    demo.network.delete_network(net)
