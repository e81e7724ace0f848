"""Wire schema of the Octavia v2 load-balancing API subset clients use (load balancers,
listeners, pools, members, health monitors), as Octavia's ``octavia.api.v2.types``:
attribute names, defaults and ranges. Only L4 (TCP, UDP) is implemented; other
protocols and algorithms are refused the way Octavia refuses an option its provider
lacks (501 ``ProviderUnsupportedOptionError``), in the service."""

from __future__ import annotations

from plexus.api.schemas.base import (
    REQUIRED, Attr, Invalid, Resource, dict_of, ip_address, list_of, one_of, project_id, string,
    to_bool, to_int, to_uuid,
)

PROVIDER = "plexus"
LISTENER_PROTOCOLS = ("TCP", "UDP", "HTTP", "HTTPS", "TERMINATED_HTTPS", "SCTP", "PROMETHEUS")
POOL_PROTOCOLS = ("TCP", "UDP", "HTTP", "HTTPS", "PROXY", "PROXYV2", "SCTP")
ALGORITHMS = ("ROUND_ROBIN", "LEAST_CONNECTIONS", "SOURCE_IP", "SOURCE_IP_PORT")
PERSISTENCE = ("SOURCE_IP", "HTTP_COOKIE", "APP_COOKIE")
MONITOR_TYPES = ("PING", "TCP", "HTTP", "HTTPS", "TLS-HELLO", "UDP-CONNECT", "SCTP")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "OPTIONS", "PATCH",
                "CONNECT")

# what the data plane implements (the rest is refused with 501)
L4_PROTOCOLS = ("TCP", "UDP")
SUPPORTED_ALGORITHMS = ("ROUND_ROBIN", "SOURCE_IP", "SOURCE_IP_PORT")
# the monitors the chassis probe (agent.lbhealth): those of Octavia's OVN provider,
# which refuses HTTP, HTTPS, PING, TLS-HELLO and SCTP ones (UnsupportedOptionError: 501)
SUPPORTED_MONITORS = ("TCP", "UDP-CONNECT")


def headers(value):
    """``insert_headers``: a dict (None: empty)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Invalid(f"'{value}' is not a dictionary")
    return value


def expected_codes(value):
    """``200``, ``200,202`` or ``200-204`` (Octavia's pattern)."""
    text = string(64)(value)
    parts = text.replace("-", ",").split(",")
    if not parts or not all(p.isdigit() and 100 <= int(p) <= 599 for p in parts) or \
            text.count("-") > 1 or ("-" in text and "," in text):
        raise Invalid("Value should match the pattern ^(\\d{3}(\\s*,\\s*\\d{3})*)$|"
                      "^(\\d{3}-\\d{3})$")
    return text


def url_path(value):
    """An absolute path (Octavia: must start with '/')."""
    text = string(2048)(value)
    if not text.startswith("/"):
        raise Invalid("URL path must start with '/'")
    return text


SESSION_PERSISTENCE = dict_of({"type": one_of(*PERSISTENCE), "cookie_name": string(255, True),
                               "persistence_timeout": to_int(0, nullable=True),
                               "persistence_granularity": ip_address(nullable=True)},
                              required=("type",), name="session_persistence")


def _persistence(value):
    return None if value is None else SESSION_PERSISTENCE(value)


def common(name_default="") -> tuple[Attr, ...]:
    """What every Octavia object has."""
    return (
        Attr("id", post=False, put=False, convert=to_uuid()),
        Attr("name", convert=string(255, nullable=True), default=name_default),
        Attr("description", convert=string(255, nullable=True), default=""),
        Attr("project_id", put=False, convert=project_id,
             default=lambda ctx, body: ctx.project_id),
        Attr("provisioning_status", post=False, put=False,
             doc="`ACTIVE` once written (the store is the provider's acceptance)"),
        Attr("operating_status", post=False, put=False,
             doc="computed when read from the health reports of the agents"),
        Attr("admin_state_up", type="boolean", convert=to_bool, default=True),
        Attr("created_at", post=False, put=False),
        Attr("updated_at", post=False, put=False),
        Attr("tags", type="array", convert=list_of(string(255), unique=True),
             default=lambda ctx, body: [], filter=False, sort=False),
    )


LOADBALANCER = Resource("loadbalancer", "loadbalancers", (
    *common(),
    Attr("vip_address", convert=ip_address(nullable=True), put=False),
    Attr("vip_port_id", convert=to_uuid(nullable=True), put=False,
         doc="a Neutron port (device_owner `Octavia`) made with the load balancer"),
    Attr("vip_subnet_id", convert=to_uuid(nullable=True), put=False),
    Attr("vip_network_id", convert=to_uuid(nullable=True), put=False),
    Attr("vip_qos_policy_id", convert=to_uuid(nullable=True), put=False),
    Attr("provider", convert=string(64, nullable=True), put=False, default=PROVIDER),
    Attr("flavor_id", convert=to_uuid(nullable=True), put=False),
    Attr("availability_zone", convert=string(255, nullable=True), put=False),
    Attr("listeners", post=False, put=False, filter=False, sort=False),
    Attr("pools", post=False, put=False, filter=False, sort=False),
    Attr("additional_vips", post=False, put=False, filter=False, sort=False),
))

LISTENER = Resource("listener", "listeners", (
    *common(),
    Attr("protocol", convert=one_of(*LISTENER_PROTOCOLS), default=REQUIRED, put=False),
    Attr("protocol_port", type="integer", convert=to_int(1, 65535), default=REQUIRED,
         put=False),
    Attr("loadbalancer_id", convert=to_uuid(), default=REQUIRED, put=False, visible=False),
    Attr("loadbalancers", post=False, put=False, filter=False, sort=False),
    Attr("default_pool_id", convert=to_uuid(nullable=True)),
    Attr("connection_limit", type="integer", convert=to_int(-1, 1000000), default=-1),
    Attr("timeout_client_data", type="integer", convert=to_int(0, 31536000, True),
         default=50000),
    Attr("timeout_member_connect", type="integer", convert=to_int(0, 31536000, True),
         default=5000),
    Attr("timeout_member_data", type="integer", convert=to_int(0, 31536000, True),
         default=50000),
    Attr("timeout_tcp_inspect", type="integer", convert=to_int(0, 31536000, True), default=0),
    Attr("allowed_cidrs", convert=lambda v: v if v is None else list_of(string(64))(v)),
    Attr("insert_headers", convert=headers, default=lambda ctx, body: {}, filter=False,
         sort=False),
    Attr("l7policies", post=False, put=False, filter=False, sort=False),
))

POOL = Resource("pool", "pools", (
    *common(),
    Attr("protocol", convert=one_of(*POOL_PROTOCOLS), default=REQUIRED, put=False),
    Attr("lb_algorithm", convert=one_of(*ALGORITHMS), default=REQUIRED),
    Attr("loadbalancer_id", convert=to_uuid(nullable=True), put=False, visible=False),
    Attr("listener_id", convert=to_uuid(nullable=True), put=False, visible=False),
    Attr("loadbalancers", post=False, put=False, filter=False, sort=False),
    Attr("listeners", post=False, put=False, filter=False, sort=False),
    Attr("members", post=False, put=False, filter=False, sort=False),
    Attr("healthmonitor_id", post=False, put=False),
    Attr("session_persistence", convert=_persistence, filter=False, sort=False),
    Attr("tls_enabled", type="boolean", convert=to_bool, default=False),
))

MEMBER = Resource("member", "members", (
    *common(),
    Attr("address", convert=ip_address(), default=REQUIRED, put=False),
    Attr("protocol_port", type="integer", convert=to_int(1, 65535), default=REQUIRED,
         put=False),
    Attr("weight", type="integer", convert=to_int(0, 256), default=1),
    Attr("subnet_id", convert=to_uuid(nullable=True), put=False),
    Attr("backup", type="boolean", convert=to_bool, default=False),
    Attr("monitor_address", convert=ip_address(nullable=True)),
    Attr("monitor_port", type="integer", convert=to_int(1, 65535, nullable=True)),
    Attr("pool_id", post=False, put=False, visible=False),
))

HEALTHMONITOR = Resource("healthmonitor", "healthmonitors", (
    *common(),
    Attr("pool_id", convert=to_uuid(), default=REQUIRED, put=False, visible=False),
    Attr("pools", post=False, put=False, filter=False, sort=False),
    Attr("type", convert=one_of(*MONITOR_TYPES), default=REQUIRED, put=False),
    Attr("delay", type="integer", convert=to_int(0, 2147483647), default=REQUIRED),
    Attr("timeout", type="integer", convert=to_int(0, 2147483647), default=REQUIRED),
    Attr("max_retries", type="integer", convert=to_int(1, 10), default=REQUIRED),
    Attr("max_retries_down", type="integer", convert=to_int(1, 10), default=3),
    Attr("http_method", convert=one_of(*HTTP_METHODS, nullable=True)),
    Attr("url_path", convert=lambda v: v if v is None else url_path(v)),
    Attr("expected_codes", convert=lambda v: v if v is None else expected_codes(v)),
    Attr("http_version", convert=one_of(1.0, 1.1, nullable=True)),
    Attr("domain_name", convert=string(255, nullable=True)),
))

RESOURCES = {r.collection: r for r in (LOADBALANCER, LISTENER, POOL, MEMBER, HEALTHMONITOR)}
