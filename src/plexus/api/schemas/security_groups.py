"""Wire schemas of security groups and their rules, and Neutron's rule semantics as pure
functions: protocol names and numbers, port ranges, ICMP type/code, remote prefixes and
the key that makes two rules duplicates."""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

from plexus.api import errors
from plexus.api.schemas.base import (
    REQUIRED, Attr, Invalid, Resource, ident, ip_or_cidr, list_of, one_of, standard_attrs,
    string, to_bool, to_uuid,
)
from plexus.model.keys import PROTOCOLS, protocol_number  # noqa: F401 (re-exported)

# Neutron's IP_PROTOCOL_MAP: every protocol name a rule accepts, and its number.
# One name per number (58 is ipv6-icmp, not the legacy icmpv6), for duplicate detection.
NUMBER_NAMES = {str(n): name for name, n in PROTOCOLS.items() if name != "icmpv6"}
PORT_PROTOCOLS = {"DCCP": 33, "SCTP": 132, "TCP": 6, "UDP": 17, "UDPLITE": 136}
ICMP_NUMBERS = (1, 58)
IPV6_ONLY = {"ipv6-encap", "ipv6-frag", "ipv6-icmp", "icmpv6", "ipv6-nonxt", "ipv6-opts",
             "ipv6-route", "41", "44", "58", "59", "60", "43"}
SUPPORTED = (None, "any", *PROTOCOLS)
ETHERTYPES = ("IPv4", "IPv6")
ANY_PREFIXES = ("0.0.0.0/0", "::/0")


def bad(message: str, type_name: str) -> errors.NeutronError:
    """A 400 with Neutron's own exception name and wording (no 'Invalid input' prefix)."""
    return errors.BadRequest(message, type_name=type_name)


def protocol(value: Any) -> str | None:
    """Neutron's convert_protocol: a known name (lower-cased) or a number 0-255 as a string;
    'any' means no protocol."""
    if value is None or (isinstance(value, str) and value.lower() == "any"):
        return None
    invalid = bad(f"Security group rule protocol {value} not supported. Only protocol values "
                  f"{SUPPORTED} and integer representations [0 to 255] are supported.",
                  "SecurityGroupRuleInvalidProtocol")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise invalid
    try:
        number = int(value)
    except ValueError:
        if value.lower() in PROTOCOLS:
            return value.lower()
        raise invalid from None
    if not 0 <= number <= 255:
        raise invalid
    return str(value)


def ethertype(value: Any) -> str:
    """IPv4 or IPv6, case-insensitively."""
    for name in ETHERTYPES:
        if isinstance(value, str) and value.lower() == name.lower():
            return name
    raise bad(f"Security group rule for ethertype '{value}' not supported. Allowed values "
              f"are {list(ETHERTYPES)}.", "SecurityGroupRuleInvalidEtherType")


def port_value(value: Any) -> int | None:
    """A port (or ICMP type/code) number 0-65535."""
    if value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -1
    if isinstance(value, bool) or isinstance(value, float) or not 0 <= number <= 65535:
        raise bad(f"Invalid value for port {value}", "SecurityGroupInvalidPortValue")
    return number


def remote_prefix(value: Any) -> str | None:
    """An address or prefix with its mask made explicit (host bits kept, as Neutron does)."""
    if not value:
        return None
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return str(ipaddress.ip_interface(value))
    except ValueError:
        raise bad(f"Invalid CIDR {value} given as IP prefix.", "InvalidCIDR") from None


def name_not_default(value: Any) -> str:
    """A group name other than 'default' (which only the project's own default group has)."""
    value = string(255)(value)
    if value.lower() == "default":
        raise errors.Conflict("Default security group already exists.",
                              type_name="SecurityGroupDefaultAlreadyExists")
    return value


def normalized_cidr(prefix: str | None) -> str | None:
    """The network of a remote prefix (host bits cleared), or None."""
    return str(ipaddress.ip_interface(prefix).network) if prefix else None


def check_rule(rule: dict) -> None:
    """Canonicalise a converted rule in place and apply Neutron's checks (400 on failure)."""
    v6 = rule["ethertype"] == "IPv6"
    if v6 and rule["protocol"] in ("icmp", "icmpv6"):
        rule["protocol"] = "ipv6-icmp"
    elif v6 and rule["protocol"] == "1":
        rule["protocol"] = "58"
    if (rule["port_range_min"], rule["port_range_max"]) == (1, 65535):
        rule["port_range_min"] = rule["port_range_max"] = None
    _check_ports(rule)
    prefix = rule["remote_ip_prefix"]
    if prefix and rule["ethertype"] != f"IPv{ipaddress.ip_interface(prefix).version}":
        raise bad(f"Conflicting value ethertype {rule['ethertype']} for CIDR {prefix}",
                  "SecurityGroupRuleParameterConflict")
    if rule["protocol"] in IPV6_ONLY and not v6:
        raise bad(f"Invalid ethertype {rule['ethertype']} for protocol {rule['protocol']}.",
                  "SecurityGroupEthertypeConflictWithProtocol")
    remotes = [k for k in ("remote_ip_prefix", "remote_group_id", "remote_address_group_id")
               if rule.get(k)]
    if len(remotes) > 1:
        raise bad("Only one of remote_ip_prefix or remote_group_id or remote_address_group_id "
                  "may be provided.", "SecurityGroupMultipleRemoteEntites")


def _check_ports(rule: dict) -> None:
    low, high = rule["port_range_min"], rule["port_range_max"]
    if low is None and high is None:
        return
    if not rule["protocol"]:
        raise bad("Must also specify protocol if port range is given.",
                  "SecurityGroupProtocolRequiredWithPorts")
    number = protocol_number(rule["protocol"])
    if number in PORT_PROTOCOLS.values():
        if low == 0 or high == 0:
            raise bad("Invalid value for port 0", "SecurityGroupInvalidPortValue")
        if low is None or high is None or low > high:
            raise bad("For TCP/UDP protocols, port_range_min must be <= port_range_max",
                      "SecurityGroupInvalidPortRange")
    elif number in ICMP_NUMBERS:
        for attr, field, value in (("port_range_min", "type", low),
                                   ("port_range_max", "code", high)):
            if value is not None and not 0 <= value <= 255:
                raise bad(f"Invalid value for ICMP {field} ({attr}) {value}. It must be 0 to "
                          f"255.", "SecurityGroupInvalidIcmpValue")
        if low is None:
            raise bad(f"ICMP code (port-range-max) {high} is provided but ICMP type "
                      f"(port-range-min) is missing.", "SecurityGroupMissingIcmpType")
    else:
        raise bad(f"Ports cannot be specified for protocol {number}. Ports are only supported "
                  f"for {', '.join(sorted(PORT_PROTOCOLS))}.",
                  "SecurityGroupInvalidProtocolForPort")


def rule_key(rule: dict) -> str:
    """Neutron's _rule_to_key: equal keys mean duplicate rules (tcp equals 6, 0.0.0.0/0
    equals no prefix)."""
    def part(key: str) -> str:
        value = rule.get(key)
        if key == "remote_ip_prefix" and value in ANY_PREFIXES:
            return "+"
        if value is None:
            return "+"
        if key == "protocol":
            name = str(value)
            if rule.get("ethertype") == "IPv6" and name in ("icmp", "icmpv6"):
                name = "ipv6-icmp"
            elif rule.get("ethertype") == "IPv6" and name == "1":
                name = "58"
            if name in PROTOCOLS:
                return f"{name}/{PROTOCOLS[name]}"
            return f"{NUMBER_NAMES.get(name, name)}/{name}"
        return str(value)
    return "_".join(part(k) for k in ("direction", "ethertype", "port_range_max",
                                      "port_range_min", "protocol", "remote_group_id",
                                      "remote_address_group_id", "remote_ip_prefix",
                                      "security_group_id"))


SECURITY_GROUP = Resource("security_group", "security-groups", (
    *(dataclasses.replace(a, convert=name_not_default) if a.name == "name" else a
      for a in standard_attrs()),
    Attr("stateful", type="boolean", convert=to_bool, default=True,
         doc="stateful-security-group: conntrack-based (true) or stateless"),
    Attr("shared", type="boolean", post=False, put=False,
         doc="rbac-security-groups: true when shared with the caller's project "
             "(an `access_as_shared` RBAC policy)"),
    Attr("security_group_rules", type="array", post=False, put=False, filter=False,
         sort=False, doc="the group's rules in full"),
))

_RULE_STANDARD = tuple(dataclasses.replace(a, put=False)
                       for a in standard_attrs(with_name=False) if a.name != "tags")

# what a rule matches (rules and default rule templates alike; none can be updated)
_RULE_MATCH = (
    Attr("direction", convert=one_of("ingress", "egress"), default=REQUIRED, put=False),
    Attr("ethertype", convert=ethertype, default="IPv4", put=False),
    Attr("protocol", convert=protocol, default=None, put=False),
    Attr("port_range_min", type="integer", convert=port_value, default=None, put=False),
    Attr("port_range_max", type="integer", convert=port_value, default=None, put=False),
    Attr("remote_ip_prefix", convert=remote_prefix, default=None, put=False),
)

SECURITY_GROUP_RULE = Resource("security_group_rule", "security-group-rules", (
    *_RULE_STANDARD,
    Attr("security_group_id", convert=to_uuid(), default=REQUIRED, put=False),
    *_RULE_MATCH,
    Attr("remote_group_id", convert=ident(nullable=True), default=None, put=False,
         doc="any id, as Neutron's (unvalidated): one naming no visible group is a 404"),
    Attr("remote_address_group_id", convert=to_uuid(nullable=True), default=None, put=False,
         doc="security-groups-remote-address-group: the peer must be in one of the "
             "address group's CIDRs (enforced by the ACL stages, IPv4)"),
    Attr("normalized_cidr", post=False, put=False,
         doc="security-groups-normalized-cidr: remote_ip_prefix with host bits cleared"),
    Attr("belongs_to_default_sg", type="boolean", post=False, put=False, sort=False,
         doc="whether the rule is in its project's default group"),
))


def addresses(value: Any) -> list[str]:
    """Neutron's list of IPs or subnets (null: none), each as network/prefixlen (host bits
    cleared, a host as /32 or /128), without duplicates, sorted."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise Invalid(f"'{value}' is not a list")
    return sorted(set(list_of(ip_or_cidr)(value)),
                  key=lambda a: (":" in a, ipaddress.ip_network(a).network_address.packed,
                                 a))


ADDRESS_GROUP = Resource("address_group", "address-groups", (
    *(a for a in standard_attrs() if a.name != "tags"),
    Attr("addresses", type="array", convert=addresses, default=lambda ctx, body: [],
         put=False, sort=False,
         doc="CIDRs (a host as /32 or /128); changed by `add_addresses` / "
             "`remove_addresses`"),
))

PARENT = "PARENT"        # a template's remote group: the group being created


def template_remote_group(value: Any) -> str | None:
    """A template's ``remote_group_id``: none, or ``PARENT`` (the new group itself)."""
    if value is None:
        return None
    if value != PARENT:
        raise Invalid(f"'{value}' is not a valid remote group of a default rule: only "
                      f"'{PARENT}' (the group being created) is")
    return value


DEFAULT_SG_RULE = Resource("default_security_group_rule", "default-security-group-rules", (
    Attr("id", post=False, put=False, convert=to_uuid()),
    Attr("description", convert=string(255), default="", put=False),
    *_RULE_MATCH,
    Attr("remote_group_id", convert=template_remote_group, default=None, put=False,
         doc="`PARENT`: the group being created (its own members)"),
    Attr("remote_address_group_id", convert=to_uuid(nullable=True), default=None,
         put=False),
    Attr("used_in_default_sg", type="boolean", convert=to_bool, default=REQUIRED,
         put=False, doc="copied into each project's default group when it is made"),
    Attr("used_in_non_default_sg", type="boolean", convert=to_bool, default=REQUIRED,
         put=False, doc="copied into every other new group"),
))
