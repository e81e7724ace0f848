"""QoS (qos, qos-bw-limit-direction, qos-default, qos-rule-type-details, rbac-qos)
through the real openstacksdk, the `openstack network qos` CLI and raw HTTP against a
real server: policies and their three rule types, Neutron's validations and error
bodies, qos_policy_id on networks and ports, in-use deletes, the default policy, and
Neutron's policy defaults (only admins write QoS; members read their own and shared
policies)."""

from __future__ import annotations

import pytest
from openstack import exceptions

from tests.api.helpers import error, raw, state


@pytest.fixture
def qos_policy(admin, demo):
    """A policy of project demo, made by the admin (QoS writes are admin's)."""
    p = admin.network.create_qos_policy(name="qos-test", project_id=demo.current_project_id)
    yield p
    for net in admin.network.networks(qos_policy_id=p.id):
        admin.network.update_network(net, qos_policy_id=None)
    for port in admin.network.ports(qos_policy_id=p.id):
        admin.network.update_port(port, qos_policy_id=None)
    admin.network.delete_qos_policy(p, ignore_missing=True)


def test_extensions_advertised(admin):
    aliases = {e.alias for e in admin.network.extensions()}
    assert {"qos", "qos-bw-limit-direction", "qos-default", "qos-rule-type-details",
            "qos-rule-type-filter", "rbac-qos"} <= aliases


def test_policy_and_rules_through_the_sdk(admin, qos_policy):
    net = admin.network
    egress = net.create_qos_bandwidth_limit_rule(qos_policy, max_kbps=2000,
                                                 max_burst_kbps=200)
    assert (egress.max_kbps, egress.max_burst_kbps, egress.direction) == (2000, 200, "egress")
    ingress = net.create_qos_bandwidth_limit_rule(qos_policy, max_kbps=3000,
                                                  direction="ingress")
    dscp = net.create_qos_dscp_marking_rule(qos_policy, dscp_mark=26)
    minimum = net.create_qos_minimum_bandwidth_rule(qos_policy, min_kbps=1000)
    got = net.get_qos_policy(qos_policy.id)
    assert {r["type"] for r in got.rules} == {"bandwidth_limit", "dscp_marking",
                                              "minimum_bandwidth"}
    assert len(got.rules) == 4 and got.revision_number == 4
    assert {r.id for r in net.qos_bandwidth_limit_rules(qos_policy)} \
        == {egress.id, ingress.id}
    assert net.get_qos_dscp_marking_rule(dscp, qos_policy).dscp_mark == 26
    assert net.get_qos_minimum_bandwidth_rule(minimum, qos_policy).min_kbps == 1000
    net.update_qos_bandwidth_limit_rule(egress, qos_policy, max_kbps=1500)
    assert net.get_qos_bandwidth_limit_rule(egress, qos_policy).max_kbps == 1500
    net.update_qos_dscp_marking_rule(dscp, qos_policy, dscp_mark=46)
    assert net.get_qos_dscp_marking_rule(dscp, qos_policy).dscp_mark == 46
    net.delete_qos_bandwidth_limit_rule(ingress, qos_policy)
    net.delete_qos_minimum_bandwidth_rule(minimum, qos_policy)
    assert {r["type"] for r in net.get_qos_policy(qos_policy.id).rules} \
        == {"bandwidth_limit", "dscp_marking"}
    with pytest.raises(exceptions.NotFoundException):
        net.get_qos_bandwidth_limit_rule(ingress, qos_policy)


def test_rule_validations(server, admin, qos_policy):
    path = f"/v2.0/qos/policies/{qos_policy.id}"
    before = state(server)
    r = raw(server, admin, "POST", f"{path}/dscp_marking_rules",
            {"dscp_marking_rule": {"dscp_mark": 7}})
    error(r, 400, "InvalidInput")
    r = raw(server, admin, "POST", f"{path}/bandwidth_limit_rules",
            {"bandwidth_limit_rule": {"max_kbps": 100, "direction": "sideways"}})
    error(r, 400, "InvalidInput")
    r = raw(server, admin, "POST", f"{path}/bandwidth_limit_rules",
            {"bandwidth_limit_rule": {"max_kbps": -1}})
    error(r, 400, "InvalidInput")
    r = raw(server, admin, "POST", f"{path}/bandwidth_limit_rules",
            {"bandwidth_limit_rule": {}})
    error(r, 400, "InvalidInput")
    assert state(server) == before                    # nothing half-written
    ok = raw(server, admin, "POST", f"{path}/bandwidth_limit_rules",
             {"bandwidth_limit_rule": {"max_kbps": 100}})
    assert ok.status_code == 201, ok.text
    # one bandwidth limit per direction: a second egress one is a conflict
    r = raw(server, admin, "POST", f"{path}/bandwidth_limit_rules",
            {"bandwidth_limit_rule": {"max_kbps": 200, "direction": "egress"}})
    error(r, 409, "NeutronDbObjectDuplicateEntry")
    r = raw(server, admin, "POST", f"{path}/bandwidth_limit_rules",
            {"bandwidth_limit_rule": {"max_kbps": 200, "direction": "ingress"}})
    assert r.status_code == 201, r.text
    # one DSCP rule per policy
    assert raw(server, admin, "POST", f"{path}/dscp_marking_rules",
               {"dscp_marking_rule": {"dscp_mark": 10}}).status_code == 201
    error(raw(server, admin, "POST", f"{path}/dscp_marking_rules",
              {"dscp_marking_rule": {"dscp_mark": 12}}), 409, "NeutronDbObjectDuplicateEntry")
    # a minimum above the same direction's limit
    error(raw(server, admin, "POST", f"{path}/minimum_bandwidth_rules",
              {"minimum_bandwidth_rule": {"min_kbps": 5000}}), 409,
          "QoSRuleParameterConflict")
    # unknown rule, unknown policy
    error(raw(server, admin, "GET", f"{path}/dscp_marking_rules/"
              "6f1d0f4e-0000-4000-8000-000000000000"), 404, "QosRuleNotFound")
    error(raw(server, admin, "GET", "/v2.0/qos/policies/6f1d0f4e-0000-4000-8000-000000000000"
              "/bandwidth_limit_rules"), 404, "QosPolicyNotFound")


def test_rule_types(server, admin, demo):
    assert {t.type for t in admin.network.qos_rule_types()} == {
        "bandwidth_limit", "dscp_marking", "minimum_bandwidth"}
    details = admin.network.get_qos_rule_type("bandwidth_limit")
    params = {p["parameter_name"] for p in details.drivers[0]["supported_parameters"]}
    assert params == {"max_kbps", "max_burst_kbps", "direction"}
    assert {t.type for t in demo.network.qos_rule_types()}      # role:reader reads them
    assert {t.type for t in admin.network.qos_rule_types(all_rules=True)} >= {
        "packet_rate_limit", "minimum_packet_rate", "bandwidth_limit"}
    assert {t.type for t in admin.network.qos_rule_types(all_supported=True)} == {
        "bandwidth_limit", "dscp_marking", "minimum_bandwidth"}
    with pytest.raises(exceptions.NotFoundException):
        admin.network.get_qos_rule_type("packet_rate_limit")
    error(raw(server, admin, "GET", "/v2.0/qos/rule-types?all_rules=true&all_supported=true"),
          400, "HTTPBadRequest")
    error(raw(server, admin, "GET", "/v2.0/qos/rule-types?all_rules=maybe"), 400,
          "InvalidInput")


def test_ports_and_networks_hold_policies(server, admin, demo, qos_policy):
    net = demo.network.create_network(name="qos-net")
    demo.network.update_network(net, qos_policy_id=qos_policy.id)   # its project's policy
    assert admin.network.get_network(net.id).qos_policy_id == qos_policy.id
    port = admin.network.create_port(network_id=net.id, qos_policy_id=qos_policy.id)
    assert port.qos_policy_id == qos_policy.id
    assert [p.id for p in admin.network.ports(qos_policy_id=qos_policy.id)] == [port.id]
    # in use by the port (and the network): 409 QosPolicyInUse
    r = raw(server, admin, "DELETE", f"/v2.0/qos/policies/{qos_policy.id}")
    error(r, 409, "QosPolicyInUse")
    admin.network.delete_port(port)
    error(raw(server, admin, "DELETE", f"/v2.0/qos/policies/{qos_policy.id}"), 409,
          "QosPolicyInUse")
    admin.network.update_network(net, qos_policy_id=None)
    # a policy that does not exist
    r = raw(server, admin, "PUT", f"/v2.0/networks/{net.id}",
            {"network": {"qos_policy_id": "6f1d0f4e-0000-4000-8000-000000000000"}})
    error(r, 404, "QosPolicyNotFound")
    admin.network.delete_network(net)


def test_policy_defaults(server, admin, demo, alt, qos_policy):
    # members cannot write QoS (Neutron: admin only), readers of the project see it
    r = raw(server, demo, "POST", "/v2.0/qos/policies", {"policy": {"name": "mine"}})
    error(r, 403, "PolicyNotAuthorized")
    r = raw(server, demo, "POST", f"/v2.0/qos/policies/{qos_policy.id}/bandwidth_limit_rules",
            {"bandwidth_limit_rule": {"max_kbps": 10}})
    error(r, 403, "PolicyNotAuthorized")
    assert demo.network.get_qos_policy(qos_policy.id).name == "qos-test"
    # alt_demo sees it only once it is shared
    with pytest.raises(exceptions.NotFoundException):
        alt.network.get_qos_policy(qos_policy.id)
    admin.network.update_qos_policy(qos_policy, shared=True)
    assert alt.network.get_qos_policy(qos_policy.id).is_shared is True
    assert [x.object_type for x in admin.network.rbac_policies(object_id=qos_policy.id)] \
        == ["qos_policy"]
    # alt_demo's network uses it: it stays shared (409) until that network lets it go
    net = alt.network.create_network(name="alt-qos", qos_policy_id=qos_policy.id)
    error(raw(server, admin, "PUT", f"/v2.0/qos/policies/{qos_policy.id}",
              {"policy": {"shared": False}}), 409, "RbacPolicyInUse")
    alt.network.delete_network(net)
    admin.network.update_qos_policy(qos_policy, shared=False)
    with pytest.raises(exceptions.NotFoundException):
        alt.network.get_qos_policy(qos_policy.id)
    # an RBAC policy shares it with alt_demo alone
    rbac = admin.network.create_rbac_policy(object_type="qos_policy", object_id=qos_policy.id,
                                            action="access_as_shared",
                                            target_tenant=alt.current_project_id)
    assert alt.network.get_qos_policy(qos_policy.id).is_shared is True
    admin.network.delete_rbac_policy(rbac)


def test_default_policy(server, admin, demo):
    project = demo.current_project_id
    p = admin.network.create_qos_policy(name="default-qos", project_id=project,
                                        is_default=True)
    try:
        r = raw(server, admin, "POST", "/v2.0/qos/policies", {"policy": {
            "name": "second", "project_id": project, "is_default": True}})
        error(r, 409, "QoSPolicyDefaultAlreadyExists")
        net = demo.network.create_network(name="takes-default")
        assert net.qos_policy_id == p.id
        demo.network.delete_network(net)
    finally:
        admin.network.delete_qos_policy(p)
    net = demo.network.create_network(name="no-default")
    assert net.qos_policy_id is None
    demo.network.delete_network(net)


def test_openstack_cli(cli, demo):
    p = cli("network", "qos", "policy", "create", "cli-qos")
    try:
        rule = cli("network", "qos", "rule", "create", "--type", "bandwidth-limit",
                   "--max-kbps", "3000", "--max-burst-kbits", "300", "--ingress", "cli-qos")
        assert (rule["max_kbps"], rule["direction"]) == (3000, "ingress")
        cli("network", "qos", "rule", "create", "--type", "dscp-marking", "--dscp-mark",
            "18", "cli-qos")
        rules = cli("network", "qos", "rule", "list", "cli-qos")
        assert sorted(r["Type"] for r in rules) == ["bandwidth_limit", "dscp_marking"]
        shown = cli("network", "qos", "policy", "show", "cli-qos")
        assert len(shown["rules"]) == 2
        types = cli("network", "qos", "rule", "type", "list")
        assert {t["Type"] for t in types} >= {"bandwidth_limit", "dscp_marking"}
        cli("network", "qos", "rule", "type", "show", "dscp_marking")
        net = cli("network", "create", "--qos-policy", "cli-qos", "cli-qos-net")
        assert net["qos_policy_id"] == p["id"]
        cli("network", "set", "--no-qos-policy", "cli-qos-net", fmt=False)
        cli("network", "delete", "cli-qos-net", fmt=False)
    finally:
        cli("network", "qos", "policy", "delete", "cli-qos", fmt=False, check=False)


def test_policy_tags(admin, qos_policy):
    admin.network.set_tags(qos_policy, ["blue"])
    assert admin.network.get_qos_policy(qos_policy.id).tags == ["blue"]
    assert [p.id for p in admin.network.qos_policies(tags="blue")] == [qos_policy.id]
    admin.network.set_tags(qos_policy, [])
    assert admin.network.get_qos_policy(qos_policy.id).tags == []
