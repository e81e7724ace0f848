"""security-groups-default-rules through the real openstacksdk and CLI: Neutron's seeded
templates, admin-only writes, the templates new groups start with."""

from __future__ import annotations

from tests.api.helpers import error, raw, state


def shape(rule) -> tuple:
    return (rule["direction"], rule["ethertype"], rule["protocol"], rule["port_range_min"],
            rule["remote_group_id"])


def test_seeded_templates_and_what_groups_start_with(server, admin, demo):
    seeded = {(r.direction, r.ether_type, r.remote_group_id, r.used_in_default_sg,
               r.used_in_non_default_sg) for r in demo.network.default_security_group_rules()}
    assert seeded == {("egress", "IPv4", None, True, True), ("egress", "IPv6", None, True, True),
                      ("ingress", "IPv4", "PARENT", True, False),
                      ("ingress", "IPv6", "PARENT", True, False)}
    sg = demo.network.create_security_group(name="dsg-plain")
    try:
        assert {shape(r) for r in sg.security_group_rules} == {
            ("egress", "IPv4", None, None, None), ("egress", "IPv6", None, None, None)}
    finally:
        demo.network.delete_security_group(sg)


def test_admin_templates_apply_to_new_groups(server, admin, demo, alt, cli):
    before = state(server)
    body = {"default_security_group_rule": {
        "direction": "ingress", "protocol": "tcp", "port_range_min": 8080,
        "port_range_max": 8080, "used_in_default_sg": False, "used_in_non_default_sg": True}}
    error(raw(server, demo, "POST", "/v2.0/default-security-group-rules", body), 403,
          "PolicyNotAuthorized")
    for bad, kind in (({"direction": "ingress"}, "InvalidInput"),      # used_in_* required
                      ({"direction": "up", "used_in_default_sg": True,
                        "used_in_non_default_sg": True}, "InvalidInput"),
                      ({"direction": "ingress", "remote_group_id": "x",
                        "used_in_default_sg": True, "used_in_non_default_sg": True},
                       "InvalidInput"),
                      ({"direction": "ingress", "protocol": "tcp", "port_range_min": 9,
                        "port_range_max": 1, "used_in_default_sg": True,
                        "used_in_non_default_sg": True}, "SecurityGroupInvalidPortRange")):
        error(raw(server, admin, "POST", "/v2.0/default-security-group-rules",
                  {"default_security_group_rule": bad}), 400, kind)
    assert state(server) == before
    made = admin.network.create_default_security_group_rule(
        **body["default_security_group_rule"])
    try:
        assert made.used_in_non_default_sg and not made.used_in_default_sg
        error(raw(server, admin, "POST", "/v2.0/default-security-group-rules", body), 409,
              "DefaultSecurityGroupRuleExists")
        assert demo.network.get_default_security_group_rule(made.id).port_range_min == 8080
        error(raw(server, demo, "DELETE", f"/v2.0/default-security-group-rules/{made.id}"),
              403, "PolicyNotAuthorized")
        error(raw(server, admin, "PUT", f"/v2.0/default-security-group-rules/{made.id}",
                  {"default_security_group_rule": {"description": "x"}}), 405,
              "HTTPMethodNotAllowed")
        sg = alt.network.create_security_group(name="dsg-templated")
        try:
            assert ("ingress", "IPv4", "tcp", 8080, None) in {
                shape(r) for r in sg.security_group_rules}
        finally:
            alt.network.delete_security_group(sg)
        listed = cli("default", "security", "group", "rule", "list")
        assert made.id in [r["ID"] for r in listed]
    finally:
        admin.network.delete_default_security_group_rule(made)
    error(raw(server, admin, "GET", f"/v2.0/default-security-group-rules/{made.id}"), 404,
          "DefaultSecurityGroupRuleNotFound")
    sg = alt.network.create_security_group(name="dsg-after")
    try:
        assert ("ingress", "IPv4", "tcp", 8080, None) not in {
            shape(r) for r in sg.security_group_rules}
    finally:
        alt.network.delete_security_group(sg)
