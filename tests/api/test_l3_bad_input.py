"""Issue 5's bad input, through openstacksdk and the CLI: a router interface on a subnet
without a gateway, router subnets that overlap (by subnet and by port, either way
round), and a floating IP on a port the external network cannot reach — each a clear
Neutron 4xx with Neutron's message, and nothing written."""

from __future__ import annotations

import pytest
from openstack import exceptions as osexc

from tests.api.helpers import raw, state
from tests.api.l3 import error


@pytest.fixture
def world(admin, demo):
    """Two external networks; demo's router with a gateway on the first and an
    interface on 10.30.0.0/24; demo's other subnets to try."""
    made = []

    def network(conn, name, **kw):
        net = conn.network.create_network(name=name, **kw)
        made.append((conn, net))
        return net
    pub = network(admin, "bi-public", is_router_external=True)
    admin.network.create_subnet(network_id=pub.id, cidr="172.26.0.0/24", ip_version=4)
    pub2 = network(admin, "bi-public2", is_router_external=True)
    admin.network.create_subnet(network_id=pub2.id, cidr="172.27.0.0/24", ip_version=4)
    inside = network(demo, "bi-inside")
    attached = demo.network.create_subnet(network_id=inside.id, cidr="10.30.0.0/24",
                                          ip_version=4)
    router = demo.network.create_router(name="bi-router",
                                        external_gateway_info={"network_id": pub.id})
    demo.network.add_interface_to_router(router, subnet_id=attached.id)
    other = network(demo, "bi-other")
    w = {"pub": pub, "pub2": pub2, "inside": inside, "attached": attached,
         "router": router, "other": other}
    w["no_gw"] = demo.network.create_subnet(network_id=other.id, cidr="10.31.0.0/24",
                                            ip_version=4, gateway_ip=None)
    w["inner"] = demo.network.create_subnet(network_id=other.id, cidr="10.30.0.64/26",
                                            ip_version=4)
    w["outer"] = demo.network.create_subnet(network_id=network(demo, "bi-other2").id,
                                            cidr="10.16.0.0/12", ip_version=4)
    yield w
    for fip in demo.network.ips():
        demo.network.delete_ip(fip)
    for r in list(demo.network.routers(name="bi-router")):
        for port in demo.network.ports(device_id=r.id, device_owner="network:router_interface"):
            demo.network.remove_interface_from_router(r, port_id=port.id)
        demo.network.delete_router(r)
    for conn, net in reversed(made):
        for port in conn.network.ports(network_id=net.id):
            if not (port.device_owner or "").startswith("network:"):
                conn.network.delete_port(port)
        conn.network.delete_network(net)


def test_interface_on_subnet_without_gateway(server, demo, world, cli):
    router, subnet = world["router"], world["no_gw"]
    before = state(server)
    with pytest.raises(osexc.BadRequestException) as exc:
        demo.network.add_interface_to_router(router, subnet_id=subnet.id)
    assert "Bad router request: Subnet for router interface must have a gateway IP." \
        in str(exc.value)
    proc = cli("router", "add", "subnet", router.id, subnet.id, cloud="devstack",
               check=False, fmt=False)
    assert proc.returncode != 0
    assert "Subnet for router interface must have a gateway IP" in proc.stderr
    assert state(server) == before


@pytest.mark.parametrize("which,cidr", [("inner", "10.30.0.64/26"), ("outer", "10.16.0.0/12")])
def test_overlapping_router_subnets(server, demo, world, cli, which, cidr):
    router, subnet, attached = world["router"], world[which], world["attached"]
    message = (f"Bad router request: Cidr {cidr} of subnet {subnet.id} overlaps with cidr "
               f"10.30.0.0/24 of subnet {attached.id}.")
    before = state(server)
    body = error(raw(server, demo, "PUT", f"/v2.0/routers/{router.id}/add_router_interface",
                     {"subnet_id": subnet.id}), 400, "BadRequest")
    assert body["message"] == message
    proc = cli("router", "add", "subnet", router.id, subnet.id, cloud="devstack",
               check=False, fmt=False)
    assert proc.returncode != 0 and message in proc.stderr
    assert state(server) == before
    # the same through a port on the overlapping subnet
    port = demo.network.create_port(network_id=subnet.network_id,
                                    fixed_ips=[{"subnet_id": subnet.id}])
    before = state(server)
    body = error(raw(server, demo, "PUT", f"/v2.0/routers/{router.id}/add_router_interface",
                     {"port_id": port.id}), 400, "BadRequest")
    assert body["message"] == message
    assert state(server) == before
    demo.network.delete_port(port)


def test_same_subnet_twice(server, demo, world):
    router, attached = world["router"], world["attached"]
    before = state(server)
    with pytest.raises(osexc.BadRequestException) as exc:
        demo.network.add_interface_to_router(router, subnet_id=attached.id)
    assert f"Router already has a port on subnet {attached.id}." in str(exc.value)
    assert state(server) == before


def test_floating_ip_on_unreachable_port(server, admin, demo, world, cli):
    pub, pub2, router = world["pub"], world["pub2"], world["router"]
    fip = demo.network.create_ip(floating_network_id=pub.id)
    fip2 = demo.network.create_ip(floating_network_id=pub2.id)
    lonely = demo.network.create_port(network_id=world["other"].id,
                                      fixed_ips=[{"subnet_id": world["no_gw"].id}])
    reachable = demo.network.create_port(network_id=world["inside"].id)

    def unreachable(ip, port, subnet_id: str, network_id: str) -> None:
        before = state(server)
        body = error(raw(server, demo, "PUT", f"/v2.0/floatingips/{ip.id}",
                         {"floatingip": {"port_id": port.id}}),
                     404, "ExternalGatewayForFloatingIPNotFound")
        assert body["message"] == (
            f"External network {network_id} is not reachable from subnet {subnet_id}.  "
            f"Therefore, cannot associate Port {port.id} with a Floating IP.")
        assert state(server) == before

    # a subnet on no router at all
    unreachable(fip, lonely, world["no_gw"].id, pub.id)
    proc = cli("floating", "ip", "set", "--port", lonely.id, fip.floating_ip_address,
               cloud="devstack", check=False, fmt=False)
    assert proc.returncode != 0 and "is not reachable from subnet" in proc.stderr
    # a router whose gateway is on another external network
    unreachable(fip2, reachable, world["attached"].id, pub2.id)
    # a router without a gateway
    demo.network.update_router(router, external_gateway_info={})
    unreachable(fip, reachable, world["attached"].id, pub.id)
    # once the gateway is back, the association is accepted
    demo.network.update_router(router, external_gateway_info={"network_id": pub.id})
    assert demo.network.update_ip(fip, port_id=reachable.id).router_id == router.id
    demo.network.update_ip(fip, port_id=None)
    # a port with no IPv4 address cannot take a floating IP at all
    v6 = demo.network.create_subnet(network_id=world["other"].id, cidr="2001:db8:30::/64",
                                    ip_version=6)
    only_v6 = demo.network.create_port(network_id=world["other"].id,
                                       fixed_ips=[{"subnet_id": v6.id}])
    before = state(server)
    body = error(raw(server, demo, "PUT", f"/v2.0/floatingips/{fip.id}",
                     {"floatingip": {"port_id": only_v6.id}}), 400, "BadRequest")
    assert body["message"] == (f"Bad floatingip request: Cannot add floating IP to port "
                               f"{only_v6.id} that has no fixed IPv4 addresses.")
    assert state(server) == before
