"""Wire schemas of the L3 resources: routers (router, ext-gw-mode, extraroute) and
floating IPs (router, fip-port-details) and their port forwardings
(floating-ip-port-forwarding)."""

from __future__ import annotations

from plexus.api.schemas.base import (
    REQUIRED, Attr, Invalid, Resource, cidr, dict_of, dns_checked, ip_address, list_of,
    one_of, standard_attrs, string, to_bool, to_int, to_uuid,
)
from plexus.model import dns


def always_true(what: str):
    """A boolean that Plexus only has one value of: true is accepted (and changes
    nothing), false is refused."""
    def check(value):
        if not to_bool(value):
            raise Invalid(f"every Plexus router is {what}; it cannot be set to False")
        return True
    return check


def _external_fixed_ip(value):
    return dict_of({"subnet_id": to_uuid(), "ip_address": ip_address()},
                   name="external_fixed_ip")(value)


def gateway_info(value):
    """``external_gateway_info``: None or {} clears the gateway; otherwise network_id is
    required, with the optional SNAT flag and requested external addresses."""
    if value is None or value == {}:
        return None
    return dict_of({"network_id": to_uuid(), "enable_snat": to_bool,
                    "external_fixed_ips": list_of(_external_fixed_ip)},
                   required=("network_id",), name="external_gateway_info")(value)


def _route(value):
    return dict_of({"destination": cidr, "nexthop": ip_address()},
                   required=("destination", "nexthop"), name="route")(value)


def routes(value):
    """Extra routes: None is the empty list; duplicates are refused as Neutron does."""
    if value is None:
        return []
    out = list_of(_route)(value)
    seen = []
    for route in out:
        if route in seen:
            raise Invalid(f"Duplicate hostroute '{route}'")
        seen.append(route)
    return out


ROUTER = Resource("router", "routers", (
    *standard_attrs(),
    Attr("admin_state_up", type="boolean", convert=to_bool, default=True),
    Attr("status", post=False, put=False,
         doc="computed: ACTIVE without a gateway; with one, DOWN when no scheduled gateway "
             "chassis is alive, else what the active one reported (BUILD until it has)"),
    Attr("external_gateway_info", type="object", convert=gateway_info, default=None,
         filter=False, sort=False,
         doc="ext-gw-mode: network_id, enable_snat (admin), external_fixed_ips (admin)"),
    Attr("routes", type="array", convert=routes, post=False, filter=False, sort=False,
         doc="extraroute: each nexthop must be on a subnet the router is attached to"),
    Attr("distributed", type="boolean", convert=always_true("distributed"), default=True,
         doc="dvr: always true (every chassis routes its own ports' traffic); admin only, "
             "as Neutron's; false is refused (400), a router cannot be centralized"),
    Attr("ha", type="boolean", convert=always_true("highly available"), default=True,
         doc="l3-ha: always true (gateway chassis fail over); admin only; false is 400"),
    Attr("flavor_id", convert=one_of(None), default=None, put=False,
         doc="router flavors are not implemented; only null is accepted"),
    Attr("availability_zone_hints", type="array", convert=list_of(string(255)),
         default=lambda ctx, body: [], put=False, filter=False, sort=False),
    Attr("availability_zones", type="array", post=False, put=False, filter=False, sort=False),
))

FLOATINGIP = Resource("floatingip", "floatingips", (
    *standard_attrs(with_name=False),
    Attr("floating_network_id", convert=to_uuid(), default=REQUIRED, put=False),
    Attr("floating_ip_address", convert=ip_address(nullable=True), default=None, put=False,
         doc="a specific address may be requested by admins only"),
    Attr("subnet_id", convert=to_uuid(nullable=True), default=None, put=False, visible=False,
         filter=False, sort=False, doc="input only: the external subnet to allocate from"),
    Attr("port_id", convert=to_uuid(nullable=True), default=None, sort=False),
    Attr("fixed_ip_address", convert=ip_address(nullable=True), default=None),
    Attr("router_id", post=False, put=False),
    Attr("status", post=False, put=False,
         doc="computed: ACTIVE once the chassis hosting the associated port (with port "
             "forwardings: their owner) reported it programmed; DOWN before, while that "
             "chassis is dead, and when it neither is associated nor forwards"),
    Attr("port_details", type="object", post=False, put=False, filter=False, sort=False,
         doc="fip-port-details: a summary of the associated port"),
    Attr("port_forwardings", type="array", post=False, put=False, filter=False, sort=False,
         doc="expose-port-forwarding-in-fip (with floating-ip-port-forwarding-detail): "
             "id, protocol, internal and external port, internal IP and port id of each"),
    Attr("dns_name", convert=dns_checked(dns.check_fip_dns_name), default="", put=False,
         doc="dns-integration: a relative name, given with dns_domain; stored, published "
             "nowhere (no external DNS service)"),
    Attr("dns_domain", convert=dns_checked(dns.check_dns_domain), default="", put=False,
         doc="dns-integration: an FQDN, given with dns_name"),
))


# floating-ip-port-forwarding (with -description and -port-ranges): a sub-resource of a
# floating IP. Neutron's protocol values: the keys of IPTABLES_PROTOCOL_MAP.
PF_PROTOCOLS = ("dccp", "icmp", "ipv6-icmp", "sctp", "tcp", "udp")


def pf_protocol(value):
    """Neutron's ``convert_to_protocol`` then ``type:values``: a name of the list."""
    if value not in PF_PROTOCOLS:
        raise Invalid(f"{value} is not in valid_values")
    return value


def port_range(value):
    """``type:port_range``: ``"N"`` or ``"N:M"`` (N <= M), ports 1..65535; None allowed
    (the single-port attribute is used instead). Returned as ``"N:M"``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise Invalid(f"Invalid port: {value}")
    parts = str(value).split(":")
    if len(parts) > 2 or any(not p for p in parts):
        raise Invalid("Port range must be two integers separated by a colon")
    for p in parts:
        if not p.isdigit() or not 1 <= int(p) <= 65535:
            raise Invalid(f"Invalid port: {p}")
    lo, hi = int(parts[0]), int(parts[-1])
    if lo > hi:
        raise Invalid("First port in a port range must be lower than the second port")
    return f"{lo}:{hi}"


PORT_FORWARDING = Resource("port_forwarding", "port_forwardings", (
    Attr("id", post=False, put=False, convert=to_uuid()),
    Attr("project_id", convert=string(255), visible=False, put=False, filter=False,
         sort=False, doc="input only: the floating IP's project owns its forwardings"),
    Attr("tenant_id", convert=string(255), visible=False, put=False, filter=False,
         sort=False),
    Attr("external_port", type="integer", convert=to_int(1, 65535, nullable=True),
         doc="one of external_port / external_port_range"),
    Attr("internal_port", type="integer", convert=to_int(1, 65535, nullable=True),
         doc="one of internal_port / internal_port_range; not a filter (400, as Neutron)"),
    Attr("external_port_range", convert=port_range,
         doc="floating-ip-port-forwarding-port-ranges: \"N:M\""),
    Attr("internal_port_range", convert=port_range, filter=False, sort=False,
         doc="the same length as the external range, or one port (N-N or N-1)"),
    Attr("internal_ip_address", convert=ip_address(), default=REQUIRED,
         doc="a fixed IPv4 address of internal_port_id; not a filter (400, as Neutron)"),
    Attr("protocol", convert=pf_protocol, default=REQUIRED,
         doc="tcp, udp (forwarded); sctp, dccp, icmp, ipv6-icmp (accepted as Neutron, not "
             "forwarded)"),
    Attr("internal_port_id", convert=to_uuid(), default=REQUIRED),
    Attr("description", convert=string(1024), default="", sort=False,
         doc="floating-ip-port-forwarding-description"),
), path="floatingips/{floatingip_id}/port_forwardings")
