"""Request limits against a real server: the body size limit (413), Neutron's list
limits (tags, allowed address pairs, fixed IPs, host routes, DNS servers) at N and N+1
on every path that can grow a list, and Neutron's CIDR rules for subnets. Every refused
request leaves the store as it was."""

from __future__ import annotations

import httpx
import pytest

from plexus.config import LimitsConfig
from tests.api.helpers import error, raw, state

LIMITS = LimitsConfig()
MAX_BODY = LIMITS.max_body_bytes


def _body_of_size(size: int) -> bytes:
    """A valid network create body of exactly ``size`` bytes (padding in the description
    is refused by the schema, not the size limit, so use the name's JSON whitespace)."""
    head, tail = b'{"network": {"name": "sized"}', b"}"
    return head + b" " * (size - len(head) - len(tail)) + tail


@pytest.fixture
def network(demo):
    list(demo.network.security_groups())   # the project's default group exists beforehand
    net = demo.network.create_network(name="limits")
    subnet = demo.network.create_subnet(network_id=net.id, cidr="10.61.0.0/24", ip_version=4)
    yield net, subnet
    for port in demo.network.ports(network_id=net.id):
        demo.network.delete_port(port)
    demo.network.delete_network(net)


# ---- body size ---------------------------------------------------------------------------

def test_body_at_the_limit_is_read(server, demo):
    r = raw(server, demo, "POST", "/v2.0/networks", content=_body_of_size(MAX_BODY))
    assert r.status_code == 201, r.text
    demo.network.delete_network(r.json()["network"]["id"])


@pytest.mark.parametrize("size", [MAX_BODY + 1, 100 * 1024 * 1024])
def test_body_above_the_limit_is_413(server, demo, size):
    before = state(server)
    r = raw(server, demo, "POST", "/v2.0/networks", content=_body_of_size(size))
    error(r, 413, "HTTPRequestEntityTooLarge")
    assert r.headers["connection"] == "close"
    assert state(server) == before


def test_identity_login_body_above_the_limit_is_413(server):
    """Logins are unauthenticated, so their bodies are capped too (Keystone's error form)."""
    before = state(server)
    pad = b" " * (MAX_BODY + 1)
    r = httpx.post(server.url + "/identity/v3/auth/tokens", timeout=30,
                   content=b'{"auth": {}' + pad + b"}",
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == 413
    assert state(server) == before


def test_chunked_body_is_capped_while_read(server, demo):
    sent = []

    def chunks():                        # no Content-Length: the server counts as it reads
        for _ in range(100):
            sent.append(1)
            yield b" " * (64 * 1024)
    before = state(server)
    r = httpx.post(server.url + "/v2.0/networks", content=chunks(), timeout=30,
                   headers={"X-Auth-Token": demo.session.get_token(),
                            "Content-Type": "application/json"})
    error(r, 413, "HTTPRequestEntityTooLarge")
    assert state(server) == before


def test_body_just_below_the_limit_on_update_and_tags(server, demo, network):
    net, _ = network
    body = b'{"network": {"name": "below"}' + b" " * (MAX_BODY - 100) + b"}"
    assert raw(server, demo, "PUT", f"/v2.0/networks/{net.id}", content=body).status_code == 200
    over = b'{"tags": []' + b" " * MAX_BODY + b"}"
    before = state(server)
    error(raw(server, demo, "PUT", f"/v2.0/networks/{net.id}/tags", content=over), 413,
           "HTTPRequestEntityTooLarge")
    assert state(server) == before


# ---- list limits ---------------------------------------------------------------------

def _refused(server, r, status, type_name, message, before):
    error(r, status, type_name, message)
    assert state(server) == before


def test_tags_limit_on_create_update_and_sub_resource(server, demo, network):
    n = LIMITS.max_tags
    tags = [f"t{i}" for i in range(n + 1)]
    message = f"Invalid input for operation: The number of tags exceeds the limit {n}."
    before = state(server)
    r = raw(server, demo, "POST", "/v2.0/ports",
            {"port": {"network_id": network[0].id, "tags": tags}})
    _refused(server, r, 400, "InvalidInput", message, before)
    r = raw(server, demo, "POST", "/v2.0/networks", {"networks": [
        {"name": "ok"}, {"name": "over", "tags": tags}]})
    _refused(server, r, 400, "InvalidInput", message, before)

    net = network[0]
    path = f"/v2.0/networks/{net.id}/tags"
    r = raw(server, demo, "PUT", path, {"tags": tags})
    _refused(server, r, 400, "InvalidInput", message, before)
    r = raw(server, demo, "PUT", path, {"tags": tags[:n]})
    assert r.status_code == 200 and len(r.json()["tags"]) == n
    full = state(server)
    r = raw(server, demo, "PUT", f"{path}/{tags[n]}")                # the 51st, one by one
    _refused(server, r, 400, "InvalidInput", message, full)
    r = raw(server, demo, "POST", path, {"tags": [tags[n]]})         # added in a batch
    _refused(server, r, 400, "InvalidInput", message, full)
    assert raw(server, demo, "PUT", f"{path}/{tags[0]}").status_code == 201  # already there
    assert raw(server, demo, "DELETE", f"{path}/{tags[0]}").status_code == 204
    assert raw(server, demo, "PUT", f"{path}/{tags[n]}").status_code == 201  # room again
    assert len(demo.network.get_network(net.id).tags) == n


def test_allowed_address_pairs_limit(server, demo, network):
    n = LIMITS.max_allowed_address_pairs
    pairs = [{"ip_address": f"10.62.0.{i + 1}"} for i in range(n + 1)]
    message = f"The number of allowed address pair exceeds the maximum {n}."
    before = state(server)
    r = raw(server, demo, "POST", "/v2.0/ports",
            {"port": {"network_id": network[0].id, "allowed_address_pairs": pairs}})
    _refused(server, r, 400, "AllowedAddressPairExhausted", message, before)
    r = raw(server, demo, "POST", "/v2.0/ports",
            {"port": {"network_id": network[0].id, "allowed_address_pairs": pairs[:n]}})
    assert r.status_code == 201, r.text
    port = r.json()["port"]
    assert len(port["allowed_address_pairs"]) == n
    before = state(server)
    r = raw(server, demo, "PUT", f"/v2.0/ports/{port['id']}",
            {"port": {"allowed_address_pairs": pairs}})
    _refused(server, r, 400, "AllowedAddressPairExhausted", message, before)


def test_fixed_ips_per_port_limit(server, demo, network):
    n = LIMITS.max_fixed_ips_per_port
    net, subnet = network
    ips = [{"subnet_id": subnet.id} for _ in range(n + 1)]
    message = "Invalid input for operation: Exceeded maximum amount of fixed ips per port."
    before = state(server)
    r = raw(server, demo, "POST", "/v2.0/ports", {"port": {"network_id": net.id, "fixed_ips": ips}})
    _refused(server, r, 400, "InvalidInput", message, before)
    r = raw(server, demo, "POST", "/v2.0/ports",
            {"port": {"network_id": net.id, "fixed_ips": ips[:n]}})
    assert r.status_code == 201, r.text
    port = r.json()["port"]
    assert len(port["fixed_ips"]) == n
    before = state(server)
    r = raw(server, demo, "PUT", f"/v2.0/ports/{port['id']}",
            {"port": {"fixed_ips": port["fixed_ips"] + [{"subnet_id": subnet.id}]}})
    _refused(server, r, 400, "InvalidInput", message, before)


def test_host_routes_and_dns_limits(server, demo, network):
    net, _ = network
    routes = [{"destination": f"10.{70 + i}.0.0/16", "nexthop": "10.60.0.254"}
              for i in range(LIMITS.max_subnet_host_routes + 1)]
    dns = [f"192.0.2.{i + 1}" for i in range(LIMITS.max_dns_nameservers + 1)]
    cases = [("host_routes", routes, "HostRoutesExhausted",
              "The number of host routes exceeds the limit %d." % LIMITS.max_subnet_host_routes),
             ("dns_nameservers", dns, "DNSNameServersExhausted",
              "The number of DNS nameservers exceeds the limit %d." % LIMITS.max_dns_nameservers)]
    for attr, items, type_name, tail in cases:
        before = state(server)
        body = {"network_id": net.id, "cidr": "10.60.0.0/24", "ip_version": 4, attr: items}
        r = raw(server, demo, "POST", "/v2.0/subnets", {"subnet": body})
        _refused(server, r, 400, type_name, f"Unable to complete operation for new subnet. {tail}",
                 before)
        r = raw(server, demo, "POST", "/v2.0/subnets", {"subnet": dict(body, **{attr: items[:-1]})})
        assert r.status_code == 201, r.text
        subnet = r.json()["subnet"]
        assert len(subnet[attr]) == len(items) - 1
        before = state(server)
        r = raw(server, demo, "PUT", f"/v2.0/subnets/{subnet['id']}", {"subnet": {attr: items}})
        _refused(server, r, 400, type_name,
                 f"Unable to complete operation for {subnet['id']}. {tail}", before)
        assert raw(server, demo, "PUT", f"/v2.0/subnets/{subnet['id']}",
                   {"subnet": {attr: items[1:]}}).status_code == 200
        demo.network.delete_subnet(subnet["id"])


def test_limits_follow_the_configuration(tmp_path, monkeypatch):
    """Limits come from ``config.limits`` of the server, not from constants."""
    from plexus.config import Config
    from plexus.server.runner import ThreadedServer
    from tests.ha.conftest import admin_token

    config = Config()
    config.server.port = 0
    config.store.url = f"sqlite:///{tmp_path}/plexus.db"
    config.limits.max_body_bytes = 2048
    config.limits.max_tags = 2
    with ThreadedServer(config) as srv:
        client = httpx.Client(base_url=srv.url, timeout=30,
                              headers={"X-Auth-Token": admin_token(srv.url)})
        with client:
            r = client.post("/v2.0/networks", content=_body_of_size(2049),
                            headers={"Content-Type": "application/json"})
            assert r.status_code == 413, r.text
            r = client.post("/v2.0/networks", json={"network": {"tags": ["a", "b", "c"]}})
            error(r, 400, "InvalidInput",
                   "Invalid input for operation: The number of tags exceeds the limit 2.")
            r = client.post("/v2.0/networks", json={"network": {"tags": ["a", "b"]}})
            assert r.status_code == 201, r.text


# ---- CIDR rules ---------------------------------------------------------------------------

DHCP_PREFIX = "Subnet has a prefix length that is incompatible with DHCP service enabled"
CIDR_ROWS = [
    # cidr, ip_version, enable_dhcp, Neutron's message (None: accepted)
    ("0.0.0.0/0", 4, True, "First IP '0.0.0.0' of network is not supported if enable_dhcp "
                           "is True."),
    ("0.0.0.0/0", 4, False, "0 is not allowed as CIDR prefix length"),
    ("::/0", 6, False, "0 is not allowed as CIDR prefix length"),
    ("::/0", 6, True, "0 is not allowed as CIDR prefix length"),
    ("0.0.0.0/24", 4, True, "First IP '0.0.0.0' of network is not supported if enable_dhcp "
                            "is True."),
    ("10.63.0.1/32", 4, True, DHCP_PREFIX),
    ("10.63.0.0/31", 4, True, DHCP_PREFIX),
    ("10.63.0.0/30", 4, True, None),
    ("10.63.0.8/31", 4, False, None),
    ("fd63::1/128", 6, True, DHCP_PREFIX),
    ("fd63::/127", 6, True, DHCP_PREFIX),
    ("fd63::/126", 6, True, None),
    ("::1/128", 6, True, DHCP_PREFIX),
    ("224.0.0.0/24", 4, True, "Multicast IP subnet is not supported if enable_dhcp is True"),
    ("ff02::/16", 6, True, "Multicast IP subnet is not supported if enable_dhcp is True"),
    ("ff05::/64", 6, True, "Multicast IP subnet is not supported if enable_dhcp is True"),
    ("127.0.0.0/8", 4, True, "Loopback IP subnet is not supported if enable_dhcp is True"),
    ("127.1.0.0/24", 4, True, "Loopback IP subnet is not supported if enable_dhcp is True"),
    ("10.63.1.0/24", 6, True, "cidr '10.63.1.0/24' does not match the ip_version '6'"),
    ("fd63:1::/64", 4, False, "cidr 'fd63:1::/64' does not match the ip_version '4'"),
]


@pytest.mark.parametrize("cidr,version,dhcp,message", CIDR_ROWS)
def test_subnet_cidr_rules(server, demo, network, cidr, version, dhcp, message):
    net, _ = network
    before = state(server)
    r = raw(server, demo, "POST", "/v2.0/subnets", {"subnet": {
        "network_id": net.id, "cidr": cidr, "ip_version": version, "enable_dhcp": dhcp}})
    if message is None:
        assert r.status_code == 201, r.text
        demo.network.delete_subnet(r.json()["subnet"]["id"])
        return
    error(r, 400, "InvalidInput", f"Invalid input for operation: {message}.")
    assert state(server) == before


def test_enabling_dhcp_applies_the_cidr_rules(server, demo, network):
    net, _ = network
    subnet = demo.network.create_subnet(network_id=net.id, cidr="10.63.2.0/31", ip_version=4,
                                        is_dhcp_enabled=False)
    try:
        before = state(server)
        r = raw(server, demo, "PUT", f"/v2.0/subnets/{subnet.id}",
                {"subnet": {"enable_dhcp": True}})
        error(r, 400, "InvalidInput", f"Invalid input for operation: {DHCP_PREFIX}.")
        assert state(server) == before
    finally:
        demo.network.delete_subnet(subnet)
