"""Trunks (``trunk``, ``trunk-details``) through the real openstacksdk and CLI: a parent
port with VLAN subports, Neutron's conflicts, the subports following the parent's
binding, and what the agents are told (the hidden keys on the ports)."""

from __future__ import annotations

import pytest

from plexus.model.keys import SUBPORT_KEY, TRUNK_KEY
from tests.api.helpers import error, raw


@pytest.fixture
def nets(demo):
    made = []

    def make(name, mtu=None):
        kw = {"mtu": mtu} if mtu else {}
        net = demo.network.create_network(name=name, **kw)
        demo.network.create_subnet(network_id=net.id, cidr=f"10.{60 + len(made)}.0.0/24",
                                   ip_version=4)
        made.append(net)
        return net
    yield make
    for trunk in demo.network.trunks():
        if trunk.port_id in {p.id for n in made for p in demo.network.ports(network_id=n.id)}:
            demo.network.delete_trunk(trunk)
    for net in made:
        for port in demo.network.ports(network_id=net.id):
            demo.network.delete_port(port)
        demo.network.delete_network(net)


def stored(server, port_id):
    """The port as the store holds it (with the keys agents read)."""
    import orjson
    kv = server.app.state.services.store.get(f"/plexus/model/ports/{port_id}")
    return orjson.loads(kv.value)


def test_trunk_lifecycle_and_details(server, demo, nets, cli):
    a, b, c = nets("tr-parent"), nets("tr-sub1"), nets("tr-sub2")
    parent = demo.network.create_port(network_id=a.id)
    s1 = demo.network.create_port(network_id=b.id)
    s2 = demo.network.create_port(network_id=c.id)
    trunk = demo.network.create_trunk(
        port_id=parent.id, name="t1",
        sub_ports=[{"port_id": s1.id, "segmentation_type": "vlan", "segmentation_id": 101}])
    assert trunk.status == "DOWN" and trunk.is_admin_state_up
    assert [s["segmentation_id"] for s in trunk.sub_ports] == [101]
    # the subport is owned by the trunk; the parent shows trunk_details
    got = demo.network.get_port(s1.id)
    assert (got.device_owner, got.device_id) == ("trunk:subport", trunk.id)
    details = raw(server, demo, "GET", f"/v2.0/ports/{parent.id}").json()["port"]["trunk_details"]
    assert details == {"trunk_id": trunk.id, "sub_ports": [
        {"port_id": s1.id, "segmentation_type": "vlan", "segmentation_id": 101,
         "mac_address": s1.mac_address}]}
    assert "trunk_details" not in raw(server, demo, "GET", f"/v2.0/ports/{s1.id}").json()["port"]
    # what agents read
    assert stored(server, s1.id)[SUBPORT_KEY] == {"parent": parent.id, "vlan": 101}
    assert stored(server, parent.id)[TRUNK_KEY] == trunk.id
    # add and remove subports (SDK and CLI)
    demo.network.add_trunk_subports(trunk, [{"port_id": s2.id, "segmentation_type": "vlan",
                                             "segmentation_id": 102}])
    listed = cli("network", "subport", "list", "--trunk", trunk.id, cloud="devstack")
    assert sorted(s["Segmentation ID"] for s in listed) == [101, 102]
    demo.network.delete_trunk_subports(trunk, [{"port_id": s1.id}])
    assert [s["port_id"] for s in demo.network.get_trunk_subports(trunk)["sub_ports"]] == [s2.id]
    freed = demo.network.get_port(s1.id)
    assert (freed.device_owner, freed.device_id) == ("", "")
    assert SUBPORT_KEY not in stored(server, s1.id)
    # a port in a trunk cannot be deleted
    error(raw(server, demo, "DELETE", f"/v2.0/ports/{parent.id}"), 409, "PortInUseAsTrunkParent")
    error(raw(server, demo, "DELETE", f"/v2.0/ports/{s2.id}"), 409, "PortInUseAsSubPort")
    # deleting the trunk frees both
    demo.network.delete_trunk(trunk)
    assert TRUNK_KEY not in stored(server, parent.id)
    assert SUBPORT_KEY not in stored(server, s2.id)
    demo.network.delete_port(s2.id)


def test_trunk_conflicts_change_nothing(server, demo, alt, nets):
    a, b = nets("tr-c-parent"), nets("tr-c-sub")
    parent = demo.network.create_port(network_id=a.id)
    s1 = demo.network.create_port(network_id=b.id)
    s2 = demo.network.create_port(network_id=b.id)
    trunk = demo.network.create_trunk(port_id=parent.id, sub_ports=[
        {"port_id": s1.id, "segmentation_type": "vlan", "segmentation_id": 10}])
    before = stored(server, s2.id)
    body = {"sub_ports": [{"port_id": s2.id, "segmentation_type": "vlan", "segmentation_id": 10}]}
    error(raw(server, demo, "PUT", f"/v2.0/trunks/{trunk.id}/add_subports", body),
          409, "DuplicateSubPort")
    assert stored(server, s2.id) == before
    for bad in (0, 4095, "x"):
        body = {"sub_ports": [{"port_id": s2.id, "segmentation_type": "vlan",
                               "segmentation_id": bad}]}
        error(raw(server, demo, "PUT", f"/v2.0/trunks/{trunk.id}/add_subports", body),
              400, "InvalidInput")
    body = {"sub_ports": [{"port_id": s2.id, "segmentation_type": "qinq",
                           "segmentation_id": 5}]}
    error(raw(server, demo, "PUT", f"/v2.0/trunks/{trunk.id}/add_subports", body),
          400, "InvalidInput")
    # the parent or a subport cannot head another trunk
    error(raw(server, demo, "POST", "/v2.0/trunks", body={"trunk": {"port_id": parent.id}}),
          409, "TrunkPortInUse")
    error(raw(server, demo, "POST", "/v2.0/trunks", body={"trunk": {"port_id": s1.id}}),
          409, "PortInUseAsSubPort")
    # a subport of one trunk is not taken by another
    other = demo.network.create_port(network_id=a.id)
    body = {"trunk": {"port_id": other.id, "sub_ports": [
        {"port_id": s1.id, "segmentation_type": "vlan", "segmentation_id": 20}]}}
    error(raw(server, demo, "POST", "/v2.0/trunks", body), 409, "PortInUseAsSubPort")
    assert TRUNK_KEY not in stored(server, other.id)        # nothing half written
    # another project sees no trunk and cannot trunk these ports
    assert raw(server, alt, "GET", f"/v2.0/trunks/{trunk.id}").status_code == 404
    error(raw(server, alt, "POST", "/v2.0/trunks", body={"trunk": {"port_id": other.id}}),
          404, "PortNotFound")
    # removing a port that is no subport: 404, nothing changes
    body = {"sub_ports": [{"port_id": s2.id}]}
    error(raw(server, demo, "PUT", f"/v2.0/trunks/{trunk.id}/remove_subports", body),
          404, "SubPortNotFound")
    # a disabled trunk takes no subport change
    demo.network.update_trunk(trunk, is_admin_state_up=False)
    body = {"sub_ports": [{"port_id": s2.id, "segmentation_type": "vlan", "segmentation_id": 11}]}
    error(raw(server, demo, "PUT", f"/v2.0/trunks/{trunk.id}/add_subports", body),
          409, "TrunkDisabled")
    demo.network.update_trunk(trunk, is_admin_state_up=True)
    demo.network.delete_trunk(trunk)


def test_subport_mtu_above_the_parents_is_refused(server, demo, nets):
    a, b = nets("tr-m-parent", mtu=1400), nets("tr-m-sub", mtu=1450)
    parent = demo.network.create_port(network_id=a.id)
    sub = demo.network.create_port(network_id=b.id)
    body = {"trunk": {"port_id": parent.id, "sub_ports": [
        {"port_id": sub.id, "segmentation_type": "vlan", "segmentation_id": 7}]}}
    error(raw(server, demo, "POST", "/v2.0/trunks", body),
          409, "SubPortMtuGreaterThanTrunkPortMtu")
    assert TRUNK_KEY not in stored(server, parent.id)


def test_subports_follow_the_parents_binding(server, admin, demo, nets):
    a, b = nets("tr-b-parent"), nets("tr-b-sub")
    parent = demo.network.create_port(network_id=a.id)
    sub = demo.network.create_port(network_id=b.id)
    trunk = demo.network.create_trunk(port_id=parent.id, sub_ports=[
        {"port_id": sub.id, "segmentation_type": "vlan", "segmentation_id": 300}])
    admin.network.update_port(parent, binding_host_id="hv-trunk-1")
    assert admin.network.get_port(sub.id).binding_host_id == "hv-trunk-1"
    admin.network.update_port(parent, binding_host_id="hv-trunk-2")
    assert admin.network.get_port(sub.id).binding_host_id == "hv-trunk-2"
    # a subport added later lands on the parent's host at once
    late = demo.network.create_port(network_id=b.id)
    demo.network.add_trunk_subports(trunk, [{"port_id": late.id, "segmentation_type": "vlan",
                                             "segmentation_id": 301}])
    assert admin.network.get_port(late.id).binding_host_id == "hv-trunk-2"
    demo.network.delete_trunk(trunk)
    assert admin.network.get_port(sub.id).binding_host_id == ""


def test_extensions_advertised(demo):
    aliases = {e.alias for e in demo.network.extensions()}
    assert {"trunk", "trunk-details"} <= aliases
