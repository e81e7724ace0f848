"""Wire schemas of the core resources: networks, subnets, ports."""

from __future__ import annotations

from plexus.api.schemas.base import (
    REQUIRED, Attr, Invalid, Resource, any_dict, cidr, dict_of, dns_checked, ip_address,
    ip_or_cidr, list_of, one_of, standard_attrs, string, to_bool, to_int, to_uuid,
)
from plexus.ipam.macs import normalize_mac
from plexus.model import dns
from plexus.model.dhcp_options import BadOption, encode as encode_dhcp_option
from plexus.ipam import IpamError


def mac(value):
    """A unicast MAC address, normalised to lower-case colon form; ``None`` asks for a
    generated one (on update: ``port-mac-address-regenerate``)."""
    if value is None:
        return None
    try:
        return normalize_mac(value)
    except (IpamError, TypeError, AttributeError):
        raise Invalid(f"'{value}' is not a valid MAC address") from None


def _pool(value):
    return dict_of({"start": ip_address(), "end": ip_address()}, required=("start", "end"),
                   name="allocation_pool")(value)


def _route(value):
    return dict_of({"destination": cidr, "nexthop": ip_address()},
                   required=("destination", "nexthop"), name="host_route")(value)


def _fixed_ip(value):
    out = dict_of({"subnet_id": to_uuid(), "ip_address": ip_address()},
                  name="fixed_ip")(value)
    if not out:
        raise Invalid("Exactly one of subnet_id or ip_address required in a fixed_ip")
    return out


def _pair(value):
    out = dict_of({"ip_address": ip_or_cidr, "mac_address": mac}, required=("ip_address",),
                  name="allowed_address_pair")(value)
    if out["ip_address"].endswith(("/32", "/128")):
        out["ip_address"] = out["ip_address"].rsplit("/", 1)[0]
    return out


NETWORK = Resource("network", "networks", (
    *standard_attrs(),
    Attr("admin_state_up", type="boolean", convert=to_bool, default=True),
    Attr("shared", type="boolean", convert=to_bool, default=False),
    Attr("router:external", type="boolean", convert=to_bool, default=False,
         doc="external-net: a provider network routers can use as gateway"),
    Attr("mtu", type="integer", convert=to_int(0, 65535), default=None,
         doc="any non-negative MTU, as Neutron's; a subnet needs 68 (IPv4) or 1280 (IPv6)"),
    Attr("port_security_enabled", type="boolean", convert=to_bool, default=True),
    Attr("qos_policy_id", convert=to_uuid(nullable=True), default=None,
         doc="qos: the policy of the network's ports that have none of their own; "
             "default: the project's default policy (qos-default)"),
    Attr("status", post=False, put=False),
    Attr("subnets", type="array", post=False, put=False, sort=False),
    Attr("provider:network_type", convert=one_of("vxlan", "vlan", "flat"), default=None,
         put=False),
    Attr("provider:physical_network", convert=string(64, nullable=True), default=None,
         put=False),
    Attr("provider:segmentation_id", type="integer", convert=to_int(nullable=True),
         default=None, put=False),
    Attr("availability_zone_hints", type="array", convert=list_of(string(255)),
         default=lambda ctx, body: [], put=False, filter=False, sort=False),
    Attr("availability_zones", type="array", post=False, put=False, filter=False, sort=False),
    Attr("ipv4_address_scope", post=False, put=False, filter=False, sort=False),
    Attr("ipv6_address_scope", post=False, put=False, filter=False, sort=False),
    Attr("l2_adjacency", type="boolean", post=False, put=False, filter=False, sort=False),
    Attr("is_default", type="boolean", convert=to_bool, default=False,
         doc="auto-allocated-topology default external network flag (stored only)"),
    Attr("dns_domain", convert=dns_checked(dns.check_dns_domain), default="",
         doc="dns-integration: an FQDN (final dot) or ''; kept for an external DNS "
             "service, which Plexus does not have (ports are named in the server's "
             "dns_domain)"),
))

SUBNET = Resource("subnet", "subnets", (
    *standard_attrs(),
    Attr("network_id", convert=to_uuid(), default=REQUIRED, put=False),
    Attr("ip_version", type="integer", convert=to_int(4, 6), default=REQUIRED, put=False),
    Attr("cidr", convert=cidr, default=None, put=False,
         doc="required unless the subnet takes its prefix from a subnet pool"),
    Attr("gateway_ip", convert=ip_address(nullable=True), default=...),
    Attr("allocation_pools", type="array", convert=list_of(_pool), default=None,
         filter=False, sort=False),
    Attr("dns_nameservers", type="array", convert=list_of(ip_address(), unique=True),
         default=lambda ctx, body: [], filter=False, sort=False),
    Attr("host_routes", type="array", convert=list_of(_route, unique=True),
         default=lambda ctx, body: [], filter=False, sort=False),
    Attr("enable_dhcp", type="boolean", convert=to_bool, default=True),
    Attr("ipv6_ra_mode", convert=one_of("slaac", "dhcpv6-stateful", "dhcpv6-stateless",
                                        nullable=True), default=None, put=False),
    Attr("ipv6_address_mode", convert=one_of("slaac", "dhcpv6-stateful", "dhcpv6-stateless",
                                             nullable=True), default=None, put=False),
    Attr("subnetpool_id", convert=to_uuid(nullable=True), default=None, put=False,
         doc="the pool the prefix comes from (subnet_allocation)"),
    Attr("prefixlen", type="integer", convert=to_int(0, 128), default=None, put=False,
         visible=False, filter=False, sort=False,
         doc="input only: the prefix length to take from the pool (default: the pool's)"),
    Attr("use_default_subnetpool", type="boolean", convert=to_bool, default=False,
         put=False, visible=False, filter=False, sort=False,
         doc="input only: take the prefix from the default pool of ip_version"),
    Attr("segment_id", convert=one_of(None), default=None, put=False),
    Attr("service_types", type="array", convert=list_of(string(255)),
         default=lambda ctx, body: [], filter=False, sort=False),
), extra_filters=("shared",))   # the network's sharing (Neutron filters subnets by it)

_fixed_ips = list_of(_fixed_ip)


def _not_empty(max_len: int, nullable: bool = False):
    """Neutron's ``not_empty_string`` (``_or_none``): not blank, at most ``max_len``."""
    inner = string(max_len, nullable)

    def check(value):
        value = inner(value)
        if value is not None and not value.strip():
            raise Invalid(f"'{value}' Blank strings are not permitted")
        return value
    return check


_dhcp_opt_keys = dict_of({"opt_name": _not_empty(64), "opt_value": _not_empty(255, True),
                          "ip_version": to_int(4, 6)},
                         required=("opt_name", "opt_value"), name="extra_dhcp_opt")


def _extra_dhcp_opt(value):
    """One of ``extra_dhcp_opts`` (Neutron's key specs, ``ip_version`` 4 or 6, default
    4); an IPv4 option must be one the DHCP responder can send (a name it knows or a
    number) with a value it can encode. IPv6 options are kept but not served (Plexus
    has no DHCPv6 server)."""
    opt = _dhcp_opt_keys(value)
    opt.setdefault("ip_version", 4)
    if opt["ip_version"] not in (4, 6):
        raise Invalid(f"{opt['ip_version']} is not in [4, 6]")
    if opt["ip_version"] == 4 and opt["opt_value"] is not None:
        try:
            encode_dhcp_option(opt["opt_name"], opt["opt_value"])
        except BadOption as exc:
            raise Invalid(str(exc)) from None
    return opt


def _extra_dhcp_opts(value):
    if value is None:
        return []
    opts = list_of(_extra_dhcp_opt)(value)
    seen = set()
    for opt in opts:
        key = (opt["opt_name"], opt["ip_version"])
        if key in seen:
            raise Invalid(f"Duplicate DHCP option {opt['opt_name']} "
                          f"(ip_version {opt['ip_version']})")
        seen.add(key)
    return opts

PORT = Resource("port", "ports", (
    *standard_attrs(),
    Attr("network_id", convert=to_uuid(), default=REQUIRED, put=False),
    Attr("admin_state_up", type="boolean", convert=to_bool, default=True),
    Attr("mac_address", convert=mac, default=None),
    Attr("fixed_ips", type="array", convert=_fixed_ips, default=None, sort=False),
    Attr("device_id", convert=string(255), default=""),
    Attr("device_owner", convert=string(255), default=""),
    Attr("status", post=False, put=False),
    Attr("security_groups", type="array", convert=list_of(to_uuid(), unique=True),
         default=None, sort=False),
    Attr("allowed_address_pairs", type="array", convert=list_of(_pair, unique=True),
         default=lambda ctx, body: [], filter=False, sort=False),
    Attr("port_security_enabled", type="boolean", convert=to_bool, default=None),
    Attr("qos_policy_id", convert=to_uuid(nullable=True), default=None,
         doc="qos: enforced on the port's chassis; wins over its network's"),
    Attr("extra_dhcp_opts", type="array", convert=_extra_dhcp_opts,
         default=lambda ctx, body: [], filter=False, sort=False),
    Attr("binding:host_id", convert=string(255), default=""),
    Attr("binding:vif_type", post=False, put=False),
    Attr("binding:vif_details", type="object", post=False, put=False,
         filter=False, sort=False),
    Attr("binding:vnic_type", convert=one_of("normal", "direct", "macvtap", "baremetal",
                                             "direct-physical", "virtio-forwarder",
                                             "smart-nic", "remote-managed"),
         default="normal"),
    Attr("binding:profile", type="object", convert=any_dict, default=lambda ctx, body: {},
         filter=False, sort=False),
    Attr("trunk_details", type="object", post=False, put=False, filter=False, sort=False,
         doc="a trunk's parent: `{trunk_id, sub_ports}` (`trunk-details`)"),
    Attr("dns_name", convert=dns_checked(dns.check_dns_name_format), default="",
         doc="dns-integration: the host name DHCP gives the port (a PQDN, or an FQDN in "
             "the server's dns_domain); not kept while that is openstacklocal."),
    Attr("dns_domain", convert=dns_checked(dns.check_dns_domain), default="",
         doc="dns-domain-ports: kept (not while the server's dns_domain is openstacklocal.) "
             "for an external DNS service, which Plexus does not have"),
    Attr("dns_assignment", type="array", post=False, put=False, filter=False, sort=False,
         doc="dns-integration, computed: {hostname, ip_address, fqdn} of each fixed IP"),
))
