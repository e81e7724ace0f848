"""The API's questions about one network, device or group are answered from the
server's model index (the southbound hub's catalog), and as current as a store read:
what a request just wrote is there, what it deleted is gone, objects of other
networks never show up."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def hub(server):
    return server.app.state.hub


@pytest.fixture
def made(admin):
    """Register networks and groups; deleted (with their ports) after the test."""
    objs: list = []

    def add(obj):
        objs.append(obj)
        return obj
    yield add
    for obj in reversed(objs):
        if obj.__class__.__name__ == "Network":
            for port in admin.network.ports(network_id=obj.id):
                admin.network.delete_port(port)
            admin.network.delete_network(obj.id, ignore_missing=True)
        elif obj.__class__.__name__ == "SecurityGroup":
            for port in admin.network.ports(security_group_ids=[obj.id]):
                admin.network.delete_port(port)
            admin.network.delete_security_group(obj.id, ignore_missing=True)


def test_lists_by_network_and_device_read_the_index_and_their_own_writes(admin, hub, made):
    nets = [made(admin.network.create_network(name=f"idx-{i}")) for i in range(2)]
    for net in nets:
        admin.network.create_subnet(network_id=net.id, cidr="10.81.0.0/24", ip_version=4)
    device = str(uuid.uuid4())
    before = hub.stats["lookups"]
    mine = []
    for i in range(4):
        port = admin.network.create_port(network_id=nets[0].id,
                                         device_id=device if i == 0 else "")
        mine.append(port.id)
        # listed at once: each list sees the create that just returned
        assert set(mine) <= {p.id for p in admin.network.ports(network_id=nets[0].id)}
    other = admin.network.create_port(network_id=nets[1].id)
    assert {p.id for p in admin.network.ports(network_id=nets[0].id)} == set(mine)
    assert [p.id for p in admin.network.ports(device_id=device)] == [mine[0]]
    both = {p.id for p in admin.network.ports(network_id=[nets[0].id, nets[1].id])}
    assert both == set(mine) | {other.id}
    admin.network.delete_port(mine.pop())
    assert {p.id for p in admin.network.ports(network_id=nets[0].id)} == set(mine)
    assert hub.stats["lookups"] > before          # the index answered, not a scan


def test_in_use_checks_through_the_index(admin, hub, made):
    net = made(admin.network.create_network(name="idx-use"))
    admin.network.create_subnet(network_id=net.id, cidr="10.82.0.0/24", ip_version=4)
    group = made(admin.network.create_security_group(name="idx-use"))
    port = admin.network.create_port(network_id=net.id, security_group_ids=[group.id])
    before = hub.stats["lookups"]
    with pytest.raises(Exception) as exc:
        admin.network.delete_security_group(group.id)
    assert getattr(exc.value, "status_code", None) == 409
    with pytest.raises(Exception) as exc:
        admin.network.delete_network(net.id)
    assert getattr(exc.value, "status_code", None) == 409
    # a SLAAC subnet addresses the network's port at once (and no other network's)
    v6 = admin.network.create_subnet(network_id=net.id, cidr="fd00:82::/64", ip_version=6,
                                     ipv6_ra_mode="slaac", ipv6_address_mode="slaac")
    assert any(ip["subnet_id"] == v6.id for ip in admin.network.get_port(port.id).fixed_ips)
    assert hub.stats["lookups"] >= before + 3
    admin.network.delete_port(port.id)
    admin.network.delete_security_group(group.id)      # free now
