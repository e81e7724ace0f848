"""Wire schemas of QoS (``qos``, ``qos-bw-limit-direction``, ``qos-default``,
``qos-rule-type-details``): policies and their bandwidth-limit, DSCP-marking and
minimum-bandwidth rules, as Neutron's API definitions (``neutron_lib.api.definitions.qos``
and friends)."""

from __future__ import annotations

from plexus.api.schemas.base import (
    REQUIRED, Attr, Invalid, Resource, standard_attrs, to_bool, to_int, to_uuid,
)

# neutron_lib.constants.VALID_DSCP_MARKS
VALID_DSCP_MARKS = (0, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34, 36, 38, 40,
                    44, 46, 48, 56)
MAX_KBPS = 2 ** 31 - 1                  # neutron_lib's db_const.DB_INTEGER_MAX_VALUE
DIRECTIONS = ("egress", "ingress")


def dscp_mark(value):
    """One of Neutron's valid DSCP marks."""
    number = to_int()(value)
    if number not in VALID_DSCP_MARKS:
        raise Invalid(f"{number} is not in valid_values")
    return number


def direction(value):
    """``egress`` (from the VM) or ``ingress`` (to the VM)."""
    if value not in DIRECTIONS:
        raise Invalid(f"{value} is not in {list(DIRECTIONS)}")
    return value


POLICY = Resource("policy", "qos-policies", (
    *standard_attrs(),
    Attr("shared", type="boolean", convert=to_bool, default=False,
         doc="the `*` access_as_shared RBAC policy (object type `qos_policy`)"),
    Attr("is_default", type="boolean", convert=to_bool, default=False,
         doc="qos-default: the policy a new network of its project takes; one per project"),
    Attr("rules", type="array", post=False, put=False, filter=False, sort=False,
         doc="every rule of the policy, with its `type`"),
), path="qos/policies")


def _rule(name: str, kind: str, attrs: tuple[Attr, ...]) -> Resource:
    return Resource(name, f"{kind}_rules", (
        Attr("id", post=False, put=False, convert=to_uuid()),
        Attr("qos_policy_id", post=False, put=False),
        *attrs,
    ))


BANDWIDTH_LIMIT_RULE = _rule("bandwidth_limit_rule", "bandwidth_limit", (
    Attr("max_kbps", type="integer", convert=to_int(0, MAX_KBPS), default=REQUIRED,
         doc="enforced on the VM's chassis by an OpenFlow meter (docs/operations.md)"),
    Attr("max_burst_kbps", type="integer", convert=to_int(0, MAX_KBPS), default=0,
         doc="the meter's burst (kbit); 0: 80% of max_kbps, as Neutron's OVS agent"),
    Attr("direction", convert=direction, default="egress",
         doc="qos-bw-limit-direction: egress (from the VM) or ingress (to the VM); "
             "one rule per direction"),
))

DSCP_MARKING_RULE = _rule("dscp_marking_rule", "dscp_marking", (
    Attr("dscp_mark", type="integer", convert=dscp_mark, default=REQUIRED,
         doc="set on the VM's outgoing IPv4 and IPv6 packets; one rule per policy"),
))

MINIMUM_BANDWIDTH_RULE = _rule("minimum_bandwidth_rule", "minimum_bandwidth", (
    Attr("min_kbps", type="integer", convert=to_int(0, MAX_KBPS), default=REQUIRED,
         doc="accepted and reported, not enforced (no shared physical link to divide "
             "on one host; docs/operations.md)"),
    Attr("direction", convert=direction, default="egress"),
))

# rule type → its resource, in the order Neutron lists them
RULE_TYPES = {
    "bandwidth_limit": BANDWIDTH_LIMIT_RULE,
    "dscp_marking": DSCP_MARKING_RULE,
    "minimum_bandwidth": MINIMUM_BANDWIDTH_RULE,
}

RULE_TYPE = Resource("rule_type", "rule-types", (
    Attr("type", post=False, put=False),
    Attr("drivers", type="array", post=False, put=False, filter=False, sort=False),
), path="qos/rule-types")
