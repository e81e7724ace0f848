"""address-group and security-groups-remote-address-group through the real openstacksdk
and CLI: addresses normalised, add/remove with Neutron's errors, rules naming a group,
in-use deletes, visibility."""

from __future__ import annotations

import pytest

from tests.api.helpers import error, raw, state


@pytest.fixture
def group(demo):
    ag = demo.network.create_address_group(name="ag-test",
                                           addresses=["10.9.0.5", "10.9.1.7/24", "fd9::1"])
    yield ag
    if demo.network.find_address_group(ag.id, ignore_missing=True) is not None:
        demo.network.delete_address_group(ag)


def test_addresses_normalised_and_changed(server, demo, group):
    assert group.addresses == ["10.9.0.5/32", "10.9.1.0/24", "fd9::1/128"]
    assert group.project_id == demo.current_project_id
    got = demo.network.add_addresses_to_address_group(group, ["10.9.2.0/25", "10.9.2.0/25"])
    assert got.addresses == ["10.9.0.5/32", "10.9.1.0/24", "10.9.2.0/25", "fd9::1/128"]
    got = demo.network.remove_addresses_from_address_group(group, ["fd9::1"])
    assert got.addresses == ["10.9.0.5/32", "10.9.1.0/24", "10.9.2.0/25"]
    before = state(server)
    r = raw(server, demo, "PUT", f"/v2.0/address-groups/{group.id}/add_addresses",
            {"addresses": ["10.9.0.5/32", "10.20.0.1"]})
    error(r, 400, "AddressesAlreadyExist")
    r = raw(server, demo, "PUT", f"/v2.0/address-groups/{group.id}/remove_addresses",
            {"addresses": ["10.77.0.0/16"]})
    error(r, 404, "AddressesNotFound")
    for body in ({"addresses": ["not-an-ip"]}, {"addresses": "10.0.0.1"}, {"bogus": []}, []):
        error(raw(server, demo, "PUT", f"/v2.0/address-groups/{group.id}/add_addresses",
                  body), 400, "InvalidInput")
    assert state(server) == before
    error(raw(server, demo, "POST", "/v2.0/address-groups",
              {"address_group": {"addresses": ["300.1.1.1"]}}), 400, "InvalidInput")
    updated = demo.network.update_address_group(group, name="renamed", description="d")
    assert (updated.name, updated.description) == ("renamed", "d")
    error(raw(server, demo, "PUT", f"/v2.0/address-groups/{group.id}",
              {"address_group": {"addresses": []}}), 400, "InvalidInput")


def test_visibility_and_policy(server, demo, alt, admin, group):
    assert group.id in [g.id for g in demo.network.address_groups()]
    assert group.id not in [g.id for g in alt.network.address_groups()]
    assert group.id in [g.id for g in admin.network.address_groups()]
    error(raw(server, alt, "GET", f"/v2.0/address-groups/{group.id}"), 404,
          "AddressGroupNotFound")
    error(raw(server, alt, "PUT", f"/v2.0/address-groups/{group.id}/add_addresses",
              {"addresses": ["10.1.1.1"]}), 404, "AddressGroupNotFound")
    error(raw(server, alt, "DELETE", f"/v2.0/address-groups/{group.id}"), 404,
          "AddressGroupNotFound")
    # another project's rule may not name it
    sg = alt.network.create_security_group(name="ag-alt-sg")
    try:
        error(raw(server, alt, "POST", "/v2.0/security-group-rules", {"security_group_rule": {
            "security_group_id": sg.id, "direction": "ingress",
            "remote_address_group_id": group.id}}), 404, "AddressGroupNotFound")
    finally:
        alt.network.delete_security_group(sg)
    listed = [g.id for g in demo.network.address_groups(name="ag-test")]
    assert listed == [group.id]


def test_rules_name_it_and_keep_it(server, demo, group, cli):
    sg = demo.network.create_security_group(name="ag-sg")
    try:
        rule = demo.network.create_security_group_rule(
            security_group_id=sg.id, direction="ingress", protocol="tcp",
            port_range_min=22, port_range_max=22, remote_address_group_id=group.id)
        assert rule.remote_address_group_id == group.id
        assert rule.remote_ip_prefix is None and rule.remote_group_id is None
        listed = demo.network.security_group_rules(remote_address_group_id=group.id)
        assert [r.id for r in listed] == [rule.id]
        # duplicate, two remotes, missing group
        error(raw(server, demo, "POST", "/v2.0/security-group-rules", {"security_group_rule": {
            "security_group_id": sg.id, "direction": "ingress", "protocol": "tcp",
            "port_range_min": 22, "port_range_max": 22,
            "remote_address_group_id": group.id}}), 409, "SecurityGroupRuleExists")
        error(raw(server, demo, "POST", "/v2.0/security-group-rules", {"security_group_rule": {
            "security_group_id": sg.id, "direction": "ingress",
            "remote_ip_prefix": "10.0.0.0/8", "remote_address_group_id": group.id}}),
            400, "SecurityGroupMultipleRemoteEntites")
        error(raw(server, demo, "POST", "/v2.0/security-group-rules", {"security_group_rule": {
            "security_group_id": sg.id, "direction": "ingress",
            "remote_address_group_id": "6f1d3a40-0000-4000-8000-000000000000"}}),
            404, "AddressGroupNotFound")
        # in use: not deleted, until the rule goes
        error(raw(server, demo, "DELETE", f"/v2.0/address-groups/{group.id}"), 409,
              "AddressGroupInUse")
        demo.network.delete_security_group_rule(rule)
        rule = demo.network.create_security_group_rule(
            security_group_id=sg.id, direction="egress", remote_address_group_id=group.id)
        # the group's deletion takes its rules, and their uses, with it
        demo.network.delete_security_group(sg)
        sg = None
        shown = cli("address", "group", "show", group.id, cloud="devstack")
        assert shown["addresses"] == group.addresses or \
            shown["addresses"] == ", ".join(group.addresses)
        demo.network.delete_address_group(group)
        assert demo.network.find_address_group(group.id, ignore_missing=True) is None
    finally:
        if sg is not None:
            demo.network.delete_security_group(sg)


def test_cli_create_and_add(cli):
    made = cli("address", "group", "create", "--address", "192.0.2.1",
               "--address", "198.51.100.0/24", "ag-cli", cloud="devstack")
    try:
        cli("address", "group", "set", "--address", "203.0.113.9", made["id"],
            cloud="devstack", fmt=False)
        cli("address", "group", "unset", "--address", "192.0.2.1", made["id"],
            cloud="devstack", fmt=False)
        shown = cli("address", "group", "show", made["id"], cloud="devstack")
        assert set(shown["addresses"]) == {"198.51.100.0/24", "203.0.113.9/32"}
    finally:
        cli("address", "group", "delete", made["id"], cloud="devstack", fmt=False)
