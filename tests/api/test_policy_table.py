"""The policy table itself (no server): every resource's actions have a rule, rules only
name known checks, parent facts are read only when a rule needs them, and attribute
rules apply to what a request sets (Neutron's semantics)."""

from __future__ import annotations

import pytest

from plexus.api import errors, policy
from plexus.api.schemas.core import NETWORK, PORT
from plexus.server.identity.context import RequestContext


def ctx(project: str, *roles: str) -> RequestContext:
    return RequestContext(user_id="u", user_name="u", project_id=project, project_name=project,
                          domain_id="default", roles=frozenset(roles))


ADMIN, MEMBER, READER = ctx("p0", "admin", "member", "reader"), ctx("p1", "member", "reader"), \
    ctx("p1", "reader")
OTHER = ctx("p2", "member", "reader")


NO_API = {"create_agent",                       # agents register themselves
          "update_security_group_rule",         # rules are immutable
          "update_default_security_group_rule",  # so are default rules (Neutron has no PUT)
          # availability zones are list-only (they come from the agents' configuration)
          "create_availability_zone", "update_availability_zone", "delete_availability_zone"}


def test_every_resource_action_has_a_rule():
    from plexus.api.services import SERVICE_CLASSES
    wanted = {f"{action}_{cls.resource.name}" for cls in SERVICE_CLASSES
              for action in ("create", "get", "update", "delete")}
    assert wanted - NO_API - set(policy.RULES) == set()


def test_rules_name_known_checks_only():
    for rule in policy.RULES.values():
        assert rule.allow and set(rule.allow) <= set(policy.CHECKS), rule


def test_owner_and_admin_never_read_the_parent():
    def parent():
        raise AssertionError("the network was read")
    port = {"project_id": "p1", "network_id": "n", "device_owner": ""}
    lazy = {k: parent for k in policy.network_facts(None)}
    assert policy.check(ADMIN, "get_port", policy.Target(port, dict(lazy)))
    assert policy.check(MEMBER, "get_port", policy.Target(port, dict(lazy)))
    assert policy.check(MEMBER, "update_port", policy.Target(port, dict(lazy)))


def test_parent_is_read_once_for_others():
    reads = []

    def parent():
        reads.append(1)
        return policy.network_facts({"project_id": "p2", "shared": False})
    port = {"project_id": "p1", "network_id": "n"}
    target = policy.Target(port, {k: parent for k in policy.network_facts(None)})
    assert policy.check(OTHER, "get_port", target)            # the network's owner
    assert not policy.check(OTHER, "update_port", target)
    assert policy.check(OTHER, "delete_port", target)
    assert reads == [1]


@pytest.mark.parametrize("caller,allowed", [(MEMBER, True), (OTHER, False), (ADMIN, True),
                                            (READER, True)])
def test_network_owner_rules(caller, allowed):
    """create_port:mac_address is admin or network owner; a reader cannot create at all."""
    target = policy.Target({"project_id": caller.project_id, "network_id": "n"},
                           {k: lambda: policy.network_facts({"project_id": "p1"})
                            for k in policy.network_facts(None)})
    assert policy.check(caller, "create_port:mac_address", target) is allowed


def test_explicit_attributes_are_those_set_to_other_than_their_default():
    attrs = NETWORK.validate_create(MEMBER, {"name": "n", "shared": False})
    assert "shared" not in NETWORK.explicit(MEMBER, attrs)
    attrs = NETWORK.validate_create(MEMBER, {"name": "n", "shared": True})
    assert NETWORK.explicit(MEMBER, attrs)["shared"] is True
    attrs = PORT.validate_create(MEMBER, {"network_id": "6f8c5b5e-1f0e-4c39-9d1c-3a7a2c0e5f10",
                                          "fixed_ips": [{"ip_address": "10.0.0.5"}]})
    assert policy.attribute_rules("create", "port", PORT.explicit(MEMBER, attrs)) == [
        "create_port:fixed_ips", "create_port:fixed_ips:ip_address"]


def test_enforce_names_the_failing_attribute_rule():
    target = policy.Target({"project_id": "p1"}, {})
    with pytest.raises(errors.PolicyNotAuthorized) as exc:
        policy.enforce(MEMBER, "create_network", target, {"shared": True})
    assert "create_network:shared" in exc.value.message
    policy.enforce(ADMIN, "create_network", target, {"shared": True})
    with pytest.raises(errors.PolicyNotAuthorized):
        policy.enforce(READER, "create_network", target)


def test_device_owner_rule_reads_the_new_value():
    facts = policy.network_facts({"project_id": "p2", "shared": True})
    for owner, allowed in (("compute:nova", True), ("", True), ("network:dhcp", False)):
        target = policy.Target({"project_id": "p1", "device_owner": owner}, {})
        target.facts.update(facts)
        assert policy.check(MEMBER, "create_port:device_owner", target) is allowed


def test_reads_hidden_from_members():
    assert policy.hidden(MEMBER, "port") >= {"binding:host_id", "binding:vif_type"}
    assert policy.hidden(ADMIN, "port") == frozenset()
    assert "router:external" not in policy.hidden(MEMBER, "network")


def test_markdown_lists_every_rule():
    text = policy.render_markdown()
    for name in policy.RULES:
        assert f"`{name}`" in text
