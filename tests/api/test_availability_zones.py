"""availability_zone, network_availability_zone and router_availability_zone through the
real openstacksdk and CLI: zones from the registered chassis (their agents' zone,
default nova), hints validated against them, zones reported."""

from __future__ import annotations

from tests.api.helpers import error, raw, register_chassis


def test_zones_from_chassis_and_hints(server, admin, demo, cli):
    lease_a = register_chassis(server, admin, "azhost-a", tunnel_ip="198.18.0.51")
    try:
        _zones_from_chassis_and_hints(server, admin, demo, cli)
    finally:
        # the chassis' liveness must not lapse in a later test that compares the store
        raw(server, admin, "DELETE", f"/southbound/v1/chassis/azhost-a?lease={lease_a}")


def _zones_from_chassis_and_hints(server, admin, demo, cli):
    r = raw(server, admin, "PUT", "/southbound/v1/chassis/azhost-b", {
        "tunnel_ip": "198.18.0.52", "availability_zone": "az-east", "ttl": 30})
    assert r.status_code == 200, r.text
    error(raw(server, admin, "PUT", "/southbound/v1/chassis/azhost-c", {
        "tunnel_ip": "198.18.0.53", "availability_zone": "", "ttl": 30}), 400, "InvalidInput")
    zones = {(z.name, z.resource, z.state) for z in demo.network.availability_zones()}
    assert {("nova", "network", "available"), ("nova", "router", "available"),
            ("az-east", "network", "available"), ("az-east", "router", "available")} <= zones
    assert {z.name for z in demo.network.availability_zones(resource="router")} >= {
        "nova", "az-east"}
    assert {z.resource for z in demo.network.availability_zones(name="az-east")} == {
        "network", "router"}
    agents = {a.host: a for a in admin.network.agents()}
    assert agents["azhost-b"].availability_zone == "az-east"
    assert agents["azhost-a"].availability_zone == "nova"
    net = demo.network.create_network(name="aznet", availability_zone_hints=["az-east"])
    try:
        assert net.availability_zone_hints == ["az-east"]
        assert net.availability_zones == ["az-east"]
        error(raw(server, demo, "POST", "/v2.0/networks", {"network": {
            "availability_zone_hints": ["az-nowhere"]}}), 404, "AvailabilityZoneNotFound",
            "AvailabilityZone az-nowhere could not be found.")
        error(raw(server, demo, "PUT", f"/v2.0/networks/{net.id}", {"network": {
            "availability_zone_hints": ["nova"]}}), 400, "InvalidInput")
        router = demo.network.create_router(name="azr",
                                            availability_zone_hints=["nova", "az-east"])
        try:
            assert sorted(router.availability_zones) == ["az-east", "nova"]
        finally:
            demo.network.delete_router(router)
        error(raw(server, demo, "POST", "/v2.0/routers", {"router": {
            "availability_zone_hints": ["az-nowhere"]}}), 404, "AvailabilityZoneNotFound")
        listed = cli("availability", "zone", "list", "--network", cloud="devstack")
        assert any(z["Zone Name"] == "az-east" for z in listed), listed
    finally:
        demo.network.delete_network(net)
    # a zone whose chassis are all gone is unavailable
    lease = r.json()["lease"]
    assert raw(server, admin, "DELETE",
               f"/southbound/v1/chassis/azhost-b?lease={lease}").status_code < 300
    states = {(z.name, z.state) for z in demo.network.availability_zones(resource="network")}
    assert ("az-east", "unavailable") in states
