"""Networks, subnets and ports through the real clients (openstacksdk and the CLI)."""

from __future__ import annotations

import ipaddress

import pytest
from openstack import exceptions as osexc

from tests.api.helpers import raw, register_chassis


@pytest.fixture
def net(demo):
    """A network with one IPv4 subnet, owned by project demo."""
    network = demo.network.create_network(name="t-net")
    subnet = demo.network.create_subnet(network_id=network.id, cidr="10.20.0.0/24",
                                        ip_version=4, name="t-sub")
    yield network, subnet
    for port in demo.network.ports(network_id=network.id):
        demo.network.delete_port(port)
    demo.network.delete_network(network)


def test_network_defaults_and_provider_fields(admin, demo):
    network = demo.network.create_network(name="n-defaults")
    try:
        assert network.mtu == 1450
        assert network.status == "ACTIVE"
        assert network.is_admin_state_up is True
        assert network.is_shared is False
        assert network.is_port_security_enabled is True
        assert network.project_id == demo.current_project_id
        # provider attributes are admin-only: a member does not see them
        assert network.provider_network_type is None
        seen = admin.network.get_network(network.id)
        assert seen.provider_network_type == "vxlan"
        assert 1001 <= seen.provider_segmentation_id <= 16000
    finally:
        demo.network.delete_network(network)


def test_vni_unique_and_explicit_segments(admin):
    nets = [admin.network.create_network(name=f"seg-{i}") for i in range(5)]
    vlan = admin.network.create_network(name="vlan", provider_network_type="vlan",
                                        provider_physical_network="physnet1",
                                        provider_segmentation_id=123)
    try:
        vnis = [admin.network.get_network(n.id).provider_segmentation_id for n in nets]
        assert len(set(vnis)) == 5
        assert vlan.provider_segmentation_id == 123 and vlan.mtu == 1500
        with pytest.raises(osexc.ConflictException):
            admin.network.create_network(name="vlan2", provider_network_type="vlan",
                                         provider_physical_network="physnet1",
                                         provider_segmentation_id=123)
        with pytest.raises(osexc.BadRequestException):
            admin.network.create_network(name="bad", provider_network_type="vlan",
                                         provider_physical_network="nope")
    finally:
        for n in nets + [vlan]:
            admin.network.delete_network(n)


def test_member_cannot_set_provider_attributes(demo, server):
    r = raw(server, demo, "POST", "/v2.0/networks",
            {"network": {"name": "x", "provider:network_type": "vxlan"}})
    assert r.status_code == 403
    assert r.json()["NeutronError"]["type"] == "PolicyNotAuthorized"


def test_update_and_if_match(demo, server):
    network = demo.network.create_network(name="before")
    try:
        updated = demo.network.update_network(network, name="after", description="d")
        assert updated.name == "after" and updated.revision_number == 1
        r = raw(server, demo, "PUT", f"/v2.0/networks/{network.id}",
                {"network": {"name": "stale"}}, headers={"If-Match": "revision_number=0"})
        assert r.status_code == 412
        assert demo.network.get_network(network.id).name == "after"
        r = raw(server, demo, "PUT", f"/v2.0/networks/{network.id}",
                {"network": {"name": "fresh"}}, headers={"If-Match": "revision_number=1"})
        assert r.status_code == 200 and r.json()["network"]["name"] == "fresh"
    finally:
        demo.network.delete_network(network)


def test_subnet_defaults_and_overlap(demo, net):
    network, subnet = net
    assert subnet.gateway_ip == "10.20.0.1"
    assert subnet.allocation_pools == [{"start": "10.20.0.2", "end": "10.20.0.254"}]
    assert subnet.is_dhcp_enabled is True
    assert demo.network.get_network(network.id).subnet_ids == [subnet.id]
    with pytest.raises(osexc.BadRequestException):
        demo.network.create_subnet(network_id=network.id, cidr="10.20.0.128/25", ip_version=4)
    other = demo.network.create_network(name="overlap-ok")
    try:
        same = demo.network.create_subnet(network_id=other.id, cidr="10.20.0.0/24",
                                          ip_version=4)
        assert same.cidr == subnet.cidr
    finally:
        demo.network.delete_network(other)


def test_subnet_without_gateway_and_ipv6(demo):
    network = demo.network.create_network(name="v6")
    try:
        v4 = demo.network.create_subnet(network_id=network.id, cidr="10.30.0.0/28",
                                        ip_version=4, gateway_ip=None)
        assert v4.gateway_ip is None
        assert v4.allocation_pools == [{"start": "10.30.0.1", "end": "10.30.0.14"}]
        v6 = demo.network.create_subnet(network_id=network.id, cidr="2001:db8::/64",
                                        ip_version=6)
        assert v6.gateway_ip == "2001:db8::1" and v6.ip_version == 6
        port = demo.network.create_port(network_id=network.id)
        versions = sorted(ipaddress.ip_address(ip["ip_address"]).version
                          for ip in port.fixed_ips)
        assert versions == [4, 6]
        demo.network.delete_port(port)
    finally:
        demo.network.delete_network(network)


def test_port_allocation_and_requests(demo, net):
    network, subnet = net
    port = demo.network.create_port(network_id=network.id, name="p1")
    assert port.status == "DOWN"
    assert port.mac_address.startswith("fa:16:3e:")
    ip = port.fixed_ips[0]["ip_address"]
    assert ip not in ("10.20.0.0", "10.20.0.1", "10.20.0.255")
    fixed = demo.network.create_port(network_id=network.id,
                                     fixed_ips=[{"ip_address": "10.20.0.50"}],
                                     mac_address="fa:16:3e:aa:bb:cc")
    assert fixed.fixed_ips == [{"subnet_id": subnet.id, "ip_address": "10.20.0.50"}]
    assert fixed.mac_address == "fa:16:3e:aa:bb:cc"
    with pytest.raises(osexc.ConflictException):
        demo.network.create_port(network_id=network.id, fixed_ips=[{"ip_address": "10.20.0.50"}])
    with pytest.raises(osexc.ConflictException):
        demo.network.create_port(network_id=network.id, mac_address="fa:16:3e:aa:bb:cc")
    with pytest.raises(osexc.ConflictException):   # the gateway is never handed out
        demo.network.create_port(network_id=network.id, fixed_ips=[{"ip_address": "10.20.0.1"}])
    with pytest.raises(osexc.BadRequestException):
        demo.network.create_port(network_id=network.id, fixed_ips=[{"ip_address": "10.99.0.5"}])
    # changing fixed IPs frees the old address for others
    moved = demo.network.update_port(fixed, fixed_ips=[{"ip_address": "10.20.0.51"}])
    assert moved.fixed_ips[0]["ip_address"] == "10.20.0.51"
    again = demo.network.create_port(network_id=network.id,
                                     fixed_ips=[{"ip_address": "10.20.0.50"}])
    assert again.fixed_ips[0]["ip_address"] == "10.20.0.50"
    # deleting a port frees its address and MAC
    demo.network.delete_port(again)
    assert demo.network.create_port(network_id=network.id,
                                    fixed_ips=[{"ip_address": "10.20.0.50"}])


def test_network_in_use_and_subnet_in_use(demo, net):
    network, subnet = net
    port = demo.network.create_port(network_id=network.id)
    with pytest.raises(osexc.ConflictException):
        demo.network.delete_network(network)
    with pytest.raises(osexc.ConflictException):
        demo.network.delete_subnet(subnet)
    demo.network.delete_port(port)
    demo.network.delete_subnet(subnet)
    assert demo.network.get_network(network.id).subnet_ids == []


def test_binding_is_admin_only(server, admin, demo, net):
    network, _ = net
    register_chassis(server, admin, "chassis-1")
    with pytest.raises(osexc.ForbiddenException):
        demo.network.create_port(network_id=network.id, binding_host_id="chassis-1")
    port = admin.network.create_port(network_id=network.id, binding_host_id="chassis-1",
                                     project_id=demo.current_project_id)
    assert port.binding_host_id == "chassis-1" and port.binding_vif_type == "ovs"
    assert demo.network.get_port(port.id).binding_host_id is None   # hidden from members
    unbound = admin.network.update_port(port, binding_host_id="")
    assert unbound.binding_vif_type == "unbound"


def test_port_security_and_address_pairs(demo, net):
    network, _ = net
    port = demo.network.create_port(network_id=network.id, allowed_address_pairs=[
        {"ip_address": "10.20.0.200"}, {"ip_address": "10.21.0.0/24",
                                        "mac_address": "fa:16:3e:00:00:01"}])
    pairs = {p["ip_address"]: p["mac_address"] for p in port.allowed_address_pairs}
    assert pairs == {"10.20.0.200": port.mac_address, "10.21.0.0/24": "fa:16:3e:00:00:01"}
    with pytest.raises(osexc.ConflictException):
        demo.network.update_port(port, port_security_enabled=False)
    off = demo.network.update_port(port, port_security_enabled=False, security_groups=[],
                                   allowed_address_pairs=[])
    assert off.is_port_security_enabled is False


def test_project_isolation(demo, alt, admin, net, server):
    network, subnet = net
    port = demo.network.create_port(network_id=network.id)
    assert network.id not in [n.id for n in alt.network.networks()]
    assert port.id not in [p.id for p in alt.network.ports()]
    for path in (f"/v2.0/networks/{network.id}", f"/v2.0/subnets/{subnet.id}",
                 f"/v2.0/ports/{port.id}"):
        assert raw(server, alt, "GET", path).status_code == 404
        assert raw(server, alt, "DELETE", path).status_code == 404
    with pytest.raises(osexc.NotFoundException):
        alt.network.create_port(network_id=network.id)
    assert network.id in [n.id for n in admin.network.networks()]


def test_shared_and_external_networks_visible(admin, demo, alt):
    shared = admin.network.create_network(name="shared-net", shared=True)
    external = admin.network.create_network(name="ext-net", is_router_external=True,
                                            provider_network_type="flat",
                                            provider_physical_network="physnet1")
    try:
        seen = {n.id for n in alt.network.networks()}
        assert shared.id in seen and external.id in seen
        sub = admin.network.create_subnet(network_id=shared.id, cidr="10.40.0.0/24",
                                          ip_version=4)
        port = alt.network.create_port(network_id=shared.id)
        assert port.project_id == alt.current_project_id
        assert sub.id in {s.id for s in alt.network.subnets()}
        alt.network.delete_port(port)
        with pytest.raises(osexc.ConflictException):   # flat physnet already used
            admin.network.create_network(name="ext2", provider_network_type="flat",
                                         provider_physical_network="physnet1")
    finally:
        admin.network.delete_network(shared)
        admin.network.delete_network(external)


def test_name_lookup_is_404_then_list(demo, server):
    network = demo.network.create_network(name="by-name")
    try:
        assert raw(server, demo, "GET", "/v2.0/networks/by-name").status_code == 404
        assert demo.network.find_network("by-name").id == network.id
    finally:
        demo.network.delete_network(network)


def test_bulk_create_is_atomic(demo, server, net):
    network, _ = net
    before = len(list(demo.network.ports(network_id=network.id)))
    r = raw(server, demo, "POST", "/v2.0/ports", {"ports": [
        {"network_id": network.id, "name": "b1"},
        {"network_id": network.id, "name": "b2", "fixed_ips": [{"ip_address": "10.99.9.9"}]}]})
    assert r.status_code == 400
    assert len(list(demo.network.ports(network_id=network.id))) == before
    r = raw(server, demo, "POST", "/v2.0/ports", {"ports": [
        {"network_id": network.id, "name": "b1"}, {"network_id": network.id, "name": "b2"}]})
    assert r.status_code == 201
    ports = r.json()["ports"]
    assert [p["name"] for p in ports] == ["b1", "b2"]
    assert ports[0]["fixed_ips"][0]["ip_address"] != ports[1]["fixed_ips"][0]["ip_address"]


def test_cli_network_subnet_port(cli):
    net = cli("network", "create", "cli-net", cloud="devstack")
    try:
        assert net["name"] == "cli-net" and net["mtu"] == 1450
        sub = cli("subnet", "create", "--network", "cli-net", "--subnet-range",
                  "10.50.0.0/24", "--dns-nameserver", "10.50.0.53", "--host-route",
                  "destination=10.60.0.0/16,gateway=10.50.0.254", "cli-sub", cloud="devstack")
        assert sub["cidr"] == "10.50.0.0/24" and sub["dns_nameservers"] == ["10.50.0.53"]
        port = cli("port", "create", "--network", "cli-net", "--fixed-ip",
                   "subnet=cli-sub,ip-address=10.50.0.10", "cli-port", cloud="devstack")
        assert port["fixed_ips"][0]["ip_address"] == "10.50.0.10"
        cli("port", "set", "--name", "cli-port2", "cli-port", cloud="devstack", fmt=False)
        shown = cli("port", "show", "cli-port2", cloud="devstack")
        assert shown["id"] == port["id"]
        listed = cli("port", "list", "--network", "cli-net", cloud="devstack")
        assert [p["ID"] for p in listed] == [port["id"]]
        cli("network", "set", "--description", "from-cli", "cli-net", cloud="devstack",
            fmt=False)
        assert cli("network", "show", "cli-net", cloud="devstack")["description"] == "from-cli"
        cli("port", "delete", "cli-port2", cloud="devstack", fmt=False)
        cli("subnet", "delete", "cli-sub", cloud="devstack", fmt=False)
    finally:
        cli("network", "delete", "cli-net", cloud="devstack", fmt=False, check=False)
    assert cli("network", "list", "--name", "cli-net", cloud="devstack") == []
