"""Random bodies and queries never produce a 5xx: every refusal is a Neutron error."""

from __future__ import annotations

import httpx
from hypothesis import HealthCheck, given, settings, strategies as st

COLLECTIONS = ["networks", "subnets", "ports", "routers", "floatingips", "security-groups",
               "security-group-rules"]
SINGULAR = {"networks": "network", "subnets": "subnet", "ports": "port", "routers": "router",
            "floatingips": "floatingip", "security-groups": "security_group",
            "security-group-rules": "security_group_rule"}
ATTRS = ["name", "network_id", "cidr", "ip_version", "fixed_ips", "mac_address",
         "gateway_ip", "allocation_pools", "admin_state_up", "external_gateway_info",
         "port_id", "floating_network_id", "protocol", "port_range_min", "direction",
         "remote_ip_prefix", "security_groups", "allowed_address_pairs", "mtu", "tags",
         "binding:profile", "routes", "host_routes", "ethertype", "shared"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 70000) | st.text(max_size=20)
    | st.sampled_from(["10.0.0.0/24", "10.0.0.5", "fa:16:3e:00:00:01", "tcp", "ingress",
                       "00000000-0000-0000-0000-000000000000"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(ATTRS + ["ip_address", "subnet_id", "start", "end"]), inner,
        max_size=3),
    max_leaves=8)


def check(r: httpx.Response) -> None:
    assert r.status_code < 500, r.text
    if r.status_code >= 400 and r.status_code != 404 or r.status_code == 404 and r.content:
        assert "NeutronError" in r.json(), r.text


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(collection=st.sampled_from(COLLECTIONS),
       body=st.dictionaries(st.sampled_from(ATTRS), json_values, max_size=4),
       wrap=st.booleans())
def test_random_create_bodies(server, admin, collection, body, wrap):
    payload = {SINGULAR[collection]: body} if wrap else body
    r = httpx.post(f"{server.url}/v2.0/{collection}", json=payload,
                   headers={"X-Auth-Token": admin.session.get_token()})
    check(r)
    if r.status_code == 201:   # clean up what a random body happened to create
        obj = r.json()[SINGULAR[collection]]
        httpx.delete(f"{server.url}/v2.0/{collection}/{obj['id']}",
                     headers={"X-Auth-Token": admin.session.get_token()})


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(collection=st.sampled_from(COLLECTIONS),
       params=st.lists(st.tuples(st.sampled_from(ATTRS + ["fields", "sort_key", "sort_dir",
                                                          "limit", "marker", "page_reverse",
                                                          "tags", "not-tags-any"]),
                                 st.text(max_size=12)), max_size=4))
def test_random_queries(server, admin, collection, params):
    r = httpx.get(f"{server.url}/v2.0/{collection}", params=params,
                  headers={"X-Auth-Token": admin.session.get_token()})
    check(r)
