"""Quotas against a real server: the quotas / quota_details API and its policy, each
resource's quota at its limit and one past it, bulk creates all or nothing, usage given
back by deletes and by the cascades of other resources, the default security group
counted, concurrent clients that never pass the limit, and the real ``openstack quota``
CLI. Refused requests leave the store (quota keys included) as it was."""

from __future__ import annotations

import collections
import threading

import httpx
import pytest

from plexus.config import QuotaConfig
from tests.api.helpers import error, raw, state

DEFAULTS = QuotaConfig().model_dump()
RESOURCES = ("network", "subnet", "port", "router", "floatingip", "security_group",
             "security_group_rule")
# quota resource -> (collection, how the admin lists a project's objects)
COLLECTIONS = {"network": "networks", "subnet": "subnets", "port": "ports",
               "router": "routers", "floatingip": "floatingips",
               "security_group": "security-groups", "security_group_rule": "security-group-rules"}


def full_state(server) -> list:
    """The store as the API wrote it, quota limits and usage counters included."""
    kvs, _ = server.app.state.services.store.range("/plexus/quota/")
    return state(server) + [(kv.key, kv.value) for kv in kvs]


def over(resource: str) -> str:
    return f"Quota exceeded for resources: ['{resource}']."


def used(server, admin, project: str) -> dict[str, int]:
    r = raw(server, admin, "GET", f"/v2.0/quotas/{project}/details")
    assert r.status_code == 200, r.text
    return {k: v["used"] for k, v in r.json()["quota"].items()}


def counted(server, admin, project: str) -> dict[str, int]:
    """What the project really has, listed by the admin: usage must always equal it."""
    out = {}
    for resource, collection in COLLECTIONS.items():
        r = raw(server, admin, "GET", f"/v2.0/{collection}?project_id={project}&fields=id")
        assert r.status_code == 200, r.text
        out[resource] = len(r.json()[collection.replace("-", "_")])
    return out


def assert_exact(server, admin, project: str) -> dict[str, int]:
    listed = counted(server, admin, project)   # (listing groups may make the default one)
    now = used(server, admin, project)
    assert now == listed
    return now


@pytest.fixture
def quota(server, admin):
    """Set a project's quotas for one test; put back to the defaults afterwards."""
    touched = set()

    def set_(project: str, **limits):
        touched.add(project)
        r = raw(server, admin, "PUT", f"/v2.0/quotas/{project}", {"quota": limits})
        assert r.status_code == 200, r.text
        return r.json()["quota"]
    yield set_
    for project in touched:
        raw(server, admin, "DELETE", f"/v2.0/quotas/{project}")


@pytest.fixture
def cleanup(demo, admin):
    """Delete what a test made (in reverse order), even when it fails."""
    made: list = []
    yield made
    for conn, kind, ident in reversed(made):
        try:
            getattr(conn.network, f"delete_{kind}")(ident, ignore_missing=True)
        except Exception:   # noqa: BLE001 - one failed delete must not keep the rest
            pass


@pytest.fixture
def external(admin):
    net = admin.network.create_network(name="quota-ext", is_router_external=True)
    admin.network.create_subnet(network_id=net.id, cidr="203.0.113.0/24", ip_version=4)
    yield net
    admin.network.delete_network(net)


# ---- the API ------------------------------------------------------------------------------

def test_member_reads_own_quota_defaults_and_details(server, demo):
    project = demo.current_project_id
    r = raw(server, demo, "GET", f"/v2.0/quotas/{project}")
    assert r.status_code == 200 and r.json() == {"quota": DEFAULTS}
    r = raw(server, demo, "GET", f"/v2.0/quotas/{project}/default")
    assert r.status_code == 200 and r.json() == {"quota": DEFAULTS}
    r = raw(server, demo, "GET", f"/v2.0/quotas/{project}/details")
    assert r.status_code == 200
    details = r.json()["quota"]
    assert set(details) == set(RESOURCES)
    assert all(d["limit"] == DEFAULTS[k] and d["reserved"] == 0 and d["used"] >= 0
               for k, d in details.items())
    r = raw(server, demo, "GET", "/v2.0/quotas/project")
    assert r.json() == {"project": {"project_id": project}}
    r = raw(server, demo, "GET", "/v2.0/quotas/tenant")
    assert r.json() == {"tenant": {"tenant_id": project}}


def test_extensions_are_listed(server, demo):
    aliases = {e["alias"] for e in raw(server, demo, "GET", "/v2.0/extensions").json()
               ["extensions"]}
    assert {"quotas", "quota_details", "quota-check-limit"} <= aliases


def test_admin_sets_lists_and_deletes_quotas(server, admin, demo):
    project = demo.current_project_id
    try:
        r = raw(server, admin, "PUT", f"/v2.0/quotas/{project}",
                {"quota": {"port": 7, "network": "-1"}})
        assert r.status_code == 200, r.text
        assert r.json()["quota"] == dict(DEFAULTS, port=7, network=-1)
        assert raw(server, demo, "GET", f"/v2.0/quotas/{project}").json()["quota"]["port"] == 7
        r = raw(server, admin, "PUT", f"/v2.0/quotas/{project}", {"quota": {"router": 3}})
        assert r.json()["quota"] == dict(DEFAULTS, port=7, network=-1, router=3)
        listed = raw(server, admin, "GET", "/v2.0/quotas").json()["quotas"]
        mine = [q for q in listed if q["project_id"] == project]
        assert mine == [dict(DEFAULTS, port=7, network=-1, router=3, project_id=project,
                             tenant_id=project)]
        assert raw(server, admin, "GET", f"/v2.0/quotas/{project}/default").json()["quota"] \
            == DEFAULTS
        details = raw(server, demo, "GET", f"/v2.0/quotas/{project}/details").json()["quota"]
        assert details["port"]["limit"] == 7 and details["network"]["limit"] == -1
    finally:
        assert raw(server, admin, "DELETE", f"/v2.0/quotas/{project}").status_code == 204
    assert raw(server, demo, "GET", f"/v2.0/quotas/{project}").json()["quota"] == DEFAULTS
    assert all(q["project_id"] != project
               for q in raw(server, admin, "GET", "/v2.0/quotas").json()["quotas"])
    before = full_state(server)
    error(raw(server, admin, "DELETE", f"/v2.0/quotas/{project}"), 404, "TenantQuotaNotFound",
          f"Quota for tenant {project} could not be found.")
    assert full_state(server) == before


BAD_UPDATES = [
    (None, 400, "HTTPBadRequest", "Request body is required"),
    ({}, 400, "HTTPBadRequest", "Resource body required"),
    ({"quotas": {"port": 1}}, 400, "HTTPBadRequest", "Unable to find 'quota' in request body"),
    ({"quota": {"widget": 1}}, 400, "HTTPBadRequest", "Unrecognized attribute(s) 'widget'"),
    ({"quota": {"port": -2}}, 400, "HTTPBadRequest",
     "Invalid input for port. Reason: '-2' is too small - must be at least '-1'."),
    ({"quota": {"port": 2 ** 31}}, 400, "HTTPBadRequest",
     f"Invalid input for port. Reason: '{2 ** 31}' is too large - must be no larger than "
     f"'{2 ** 31 - 1}'."),
    ({"quota": {"port": "many"}}, 400, "InvalidInput",
     "Invalid input for operation: 'many' is not an integer."),
    ({"quota": {"port": True}}, 400, "InvalidInput",
     "Invalid input for operation: 'True' is not an integer."),
    ({"quota": {"port": 1.5}}, 400, "InvalidInput",
     "Invalid input for operation: '1.5' is not an integer."),
]


@pytest.mark.parametrize("body,status,type_name,message", BAD_UPDATES)
def test_bad_quota_updates(server, admin, demo, body, status, type_name, message):
    before = full_state(server)
    r = raw(server, admin, "PUT", f"/v2.0/quotas/{demo.current_project_id}", body)
    error(r, status, type_name, message)
    assert full_state(server) == before


def test_post_is_not_implemented(server, admin):
    error(raw(server, admin, "POST", "/v2.0/quotas", {"quota": {"port": 1}}), 501,
          "HTTPNotImplemented", "POST requests are not supported on this resource.")


def test_check_limit_refuses_a_limit_below_usage(server, admin, demo, cleanup, quota):
    project = demo.current_project_id
    for i in range(2):
        cleanup.append((demo, "network", demo.network.create_network(name=f"cl{i}").id))
    now = used(server, admin, project)["network"]
    before = full_state(server)
    r = raw(server, admin, "PUT", f"/v2.0/quotas/{project}",
            {"quota": {"network": now - 1, "check_limit": True}})
    error(r, 400, "HTTPBadRequest",
          f"Quota limit {now - 1} for network must be greater than or equal to already used "
          f"{now}")
    assert full_state(server) == before
    assert quota(project, network=now, check_limit=True)["network"] == now
    assert quota(project, network=now - 1, force=True)["network"] == now - 1   # no check


# ---- policy -------------------------------------------------------------------------------

def test_policy(server, admin, demo, alt):
    mine, other = demo.current_project_id, alt.current_project_id
    before = full_state(server)
    cases = [
        (demo, "GET", f"/v2.0/quotas/{other}", None, 403, "PolicyNotAuthorized"),
        (demo, "GET", f"/v2.0/quotas/{other}/default", None, 403, "PolicyNotAuthorized"),
        (demo, "GET", f"/v2.0/quotas/{other}/details", None, 403, "AdminRequired"),
        (demo, "GET", "/v2.0/quotas", None, 403, "PolicyNotAuthorized"),
        (demo, "PUT", f"/v2.0/quotas/{mine}", {"quota": {"port": 1000}}, 403,
         "PolicyNotAuthorized"),
        (demo, "PUT", f"/v2.0/quotas/{other}", {"quota": {"port": 0}}, 403,
         "PolicyNotAuthorized"),
        (demo, "DELETE", f"/v2.0/quotas/{mine}", None, 403, "PolicyNotAuthorized"),
        (alt, "DELETE", f"/v2.0/quotas/{mine}", None, 403, "PolicyNotAuthorized"),
    ]
    for conn, method, path, body, status, type_name in cases:
        error(raw(server, conn, method, path, body), status, type_name)
    assert full_state(server) == before
    r = httpx.get(f"{server.url}/v2.0/quotas/{mine}", timeout=30)
    assert r.status_code == 401
    # the admin reads anyone's
    for path in (f"/v2.0/quotas/{other}", f"/v2.0/quotas/{other}/details",
                 f"/v2.0/quotas/{other}/default", "/v2.0/quotas"):
        assert raw(server, admin, "GET", path).status_code == 200


# ---- each resource at its limit and one past it -----------------------------------------

def _creators(server, demo, admin, external, cleanup):
    """resource -> a function creating one object in demo's project (raw response)."""
    net = demo.network.create_network(name="quota-res")
    cleanup.append((demo, "network", net.id))
    subnet = demo.network.create_subnet(network_id=net.id, cidr="10.64.0.0/24", ip_version=4)
    group = demo.network.create_security_group(name="quota-res")
    cleanup.append((demo, "security_group", group.id))
    counter = iter(range(1, 1000))
    cidrs = iter(f"10.65.{i}.0/24" for i in range(256))

    def post(collection, one, body):
        r = raw(server, demo, "POST", f"/v2.0/{collection}", {one: body})
        if r.status_code == 201:
            kind = {"security-groups": "security_group", "floatingips": "ip",
                    "security-group-rules": "security_group_rule"}.get(collection, one)
            cleanup.append((demo, kind, r.json()[one]["id"]))
        return r
    def rule():
        port = next(counter)
        return post("security-group-rules", "security_group_rule", {
            "security_group_id": group.id, "direction": "ingress", "protocol": "tcp",
            "port_range_min": port, "port_range_max": port})
    return {
        "network": lambda: post("networks", "network", {"name": "q"}),
        "subnet": lambda: post("subnets", "subnet", {"network_id": net.id, "ip_version": 4,
                                                     "cidr": next(cidrs)}),
        "port": lambda: post("ports", "port", {"network_id": net.id}),
        "router": lambda: post("routers", "router", {"name": "q"}),
        "floatingip": lambda: post("floatingips", "floatingip",
                                   {"floating_network_id": external.id}),
        "security_group": lambda: post("security-groups", "security_group", {"name": "q"}),
        "security_group_rule": rule,
    }, subnet


@pytest.mark.parametrize("resource", RESOURCES)
def test_each_quota_at_limit_and_one_past(server, admin, demo, external, cleanup, quota,
                                          resource):
    project = demo.current_project_id
    creators, _ = _creators(server, demo, admin, external, cleanup)
    create = creators[resource]
    start = assert_exact(server, admin, project)[resource]
    quota(project, **{resource: start + 2})
    for _ in range(2):
        r = create()
        assert r.status_code == 201, r.text
    assert used(server, admin, project)[resource] == start + 2
    for _ in range(2):                          # one past, and again: still refused
        before = full_state(server)
        error(create(), 409, "OverQuota", over(resource))
        assert full_state(server) == before
    quota(project, **{resource: -1})            # unlimited
    assert create().status_code == 201
    quota(project, **{resource: 0})
    error(create(), 409, "OverQuota", over(resource))
    assert_exact(server, admin, project)


def test_bulk_create_over_quota_is_all_or_nothing(server, admin, demo, cleanup, quota):
    project = demo.current_project_id
    net = demo.network.create_network(name="bulk")
    cleanup.append((demo, "network", net.id))
    demo.network.create_subnet(network_id=net.id, cidr="10.66.0.0/24", ip_version=4)
    list(demo.network.security_groups())       # the default group exists beforehand
    start = assert_exact(server, admin, project)["port"]
    quota(project, port=start + 3)
    before = full_state(server)
    r = raw(server, demo, "POST", "/v2.0/ports",
            {"ports": [{"network_id": net.id} for _ in range(4)]})
    error(r, 409, "OverQuota", over("port"))
    assert full_state(server) == before
    r = raw(server, demo, "POST", "/v2.0/ports",
            {"ports": [{"network_id": net.id} for _ in range(3)]})
    assert r.status_code == 201, r.text
    for port in r.json()["ports"]:
        cleanup.append((demo, "port", port["id"]))
    assert used(server, admin, project)["port"] == start + 3
    before = full_state(server)
    error(raw(server, demo, "POST", "/v2.0/ports", {"ports": [{"network_id": net.id}]}), 409,
          "OverQuota", over("port"))
    r = raw(server, demo, "POST", "/v2.0/networks", {"networks": [{"name": "a"}, {"name": "b"}]})
    assert r.status_code == 201      # another resource is not affected
    for n in r.json()["networks"]:
        cleanup.append((demo, "network", n["id"]))
    # bulk rules: the rule service's own transaction counts every rule
    group = demo.network.create_security_group(name="bulk-rules")
    cleanup.append((demo, "security_group", group.id))
    rules = used(server, admin, project)["security_group_rule"]
    quota(project, security_group_rule=rules + 2)
    before = full_state(server)
    body = {"security_group_rules": [
        {"security_group_id": group.id, "direction": "ingress", "protocol": "tcp",
         "port_range_min": p, "port_range_max": p} for p in (22, 80, 443)]}
    error(raw(server, demo, "POST", "/v2.0/security-group-rules", body), 409, "OverQuota",
          over("security_group_rule"))
    assert full_state(server) == before
    body["security_group_rules"].pop()
    assert raw(server, demo, "POST", "/v2.0/security-group-rules", body).status_code == 201
    assert_exact(server, admin, project)


# ---- usage follows deletes and cascades -------------------------------------------------

def test_deletes_and_cascades_give_usage_back(server, admin, demo, external, cleanup):
    project = demo.current_project_id
    start = assert_exact(server, admin, project)

    def delta() -> dict[str, int]:
        now = assert_exact(server, admin, project)
        return {k: now[k] - start[k] for k in now if now[k] != start[k]}

    net = demo.network.create_network(name="cascade")
    cleanup.append((demo, "network", net.id))
    sub = demo.network.create_subnet(network_id=net.id, cidr="10.67.0.0/24", ip_version=4)
    sub2 = demo.network.create_subnet(network_id=net.id, cidr="10.67.1.0/24", ip_version=4)
    assert delta() == {"network": 1, "subnet": 2}
    # router with a gateway (a port), an interface (a port), a floating IP (a port)
    router = demo.network.create_router(name="cascade",
                                        external_gateway_info={"network_id": external.id})
    cleanup.append((demo, "router", router.id))
    demo.network.add_interface_to_router(router, subnet_id=sub.id)
    port = demo.network.create_port(network_id=net.id, fixed_ips=[{"subnet_id": sub.id}])
    cleanup.append((demo, "port", port.id))
    fip = demo.network.create_ip(floating_network_id=external.id, port_id=port.id)
    cleanup.append((demo, "ip", fip.id))
    assert delta() == {"network": 1, "subnet": 2, "router": 1, "floatingip": 1, "port": 4}
    demo.network.delete_ip(fip)                               # its port goes with it
    assert delta() == {"network": 1, "subnet": 2, "router": 1, "port": 3}
    demo.network.remove_interface_from_router(router, subnet_id=sub.id)
    assert delta() == {"network": 1, "subnet": 2, "router": 1, "port": 2}
    demo.network.delete_router(router)                        # the gateway port too
    assert delta() == {"network": 1, "subnet": 2, "port": 1}
    demo.network.delete_port(port)
    assert delta() == {"network": 1, "subnet": 2}
    demo.network.delete_subnet(sub2)
    assert delta() == {"network": 1, "subnet": 1}
    demo.network.delete_network(net)                          # its subnets with it
    assert delta() == {}
    # a group's rules go with it; so do other groups' rules that name it as remote
    group = demo.network.create_security_group(name="cascade")
    cleanup.append((demo, "security_group", group.id))
    other = demo.network.create_security_group(name="cascade-remote")
    cleanup.append((demo, "security_group", other.id))
    demo.network.create_security_group_rule(security_group_id=group.id, direction="ingress",
                                            protocol="tcp", port_range_min=22,
                                            port_range_max=22)
    demo.network.create_security_group_rule(security_group_id=other.id, direction="ingress",
                                            remote_group_id=group.id)
    assert delta() == {"security_group": 2, "security_group_rule": 2 + 2 + 2}
    demo.network.delete_security_group(group)
    assert delta() == {"security_group": 1, "security_group_rule": 2}
    demo.network.delete_security_group(other)
    assert delta() == {}


def test_default_security_group_counts(server, admin, cleanup):
    """A project's default group (and its four rules) is counted like any other, made
    when the project first lists groups, and given back when the admin deletes it."""
    project = admin.identity.create_project(name="quota-default-sg", domain_id="default")
    try:
        before = used(server, admin, project.id)
        assert before == dict.fromkeys(RESOURCES, 0)
        r = raw(server, admin, "GET", f"/v2.0/security-groups?project_id={project.id}")
        groups = r.json()["security_groups"]
        assert [g["name"] for g in groups] == ["default"]
        now = assert_exact(server, admin, project.id)
        assert now["security_group"] == 1 and now["security_group_rule"] == 4
        r = raw(server, admin, "PUT", f"/v2.0/quotas/{project.id}",
                {"quota": {"security_group": 1}})
        assert r.status_code == 200
        state_before = full_state(server)
        r = raw(server, admin, "POST", "/v2.0/security-groups",
                {"security_group": {"name": "second", "project_id": project.id}})
        error(r, 409, "OverQuota", over("security_group"))
        assert full_state(server) == state_before
        assert raw(server, admin, "DELETE",
                   f"/v2.0/security-groups/{groups[0]['id']}").status_code == 204
        assert used(server, admin, project.id) == dict.fromkeys(RESOURCES, 0)
        # listing the project's groups makes its default group again (and counts it)
        now = assert_exact(server, admin, project.id)
        assert now["security_group"] == 1 and now["security_group_rule"] == 4
    finally:
        raw(server, admin, "DELETE", f"/v2.0/quotas/{project.id}")
        admin.identity.delete_project(project)


def test_admin_creates_count_for_the_target_project(server, admin, demo, cleanup, quota):
    project = demo.current_project_id
    start = assert_exact(server, admin, project)["network"]
    quota(project, network=start + 1)
    r = raw(server, admin, "POST", "/v2.0/networks",
            {"network": {"name": "for-demo", "project_id": project}})
    assert r.status_code == 201, r.text
    cleanup.append((admin, "network", r.json()["network"]["id"]))
    before = full_state(server)
    error(raw(server, admin, "POST", "/v2.0/networks",
              {"network": {"name": "for-demo", "project_id": project}}), 409, "OverQuota",
          over("network"))
    assert full_state(server) == before


# ---- concurrency --------------------------------------------------------------------------

def race_creates(urls: list[str], token: str, body: dict, clients: int = 8,
                 collection: str = "ports") -> tuple[list[str], collections.Counter, list]:
    """``clients`` threads (spread over ``urls``) create as fast as they can — pairs in
    one bulk request, then singles — until the quota refuses them. Returns the ids
    created, the statuses, and any answer that is neither 201 nor OverQuota."""
    one = collection[:-1]
    created, statuses, odd = [], collections.Counter(), []
    lock = threading.Lock()
    go = threading.Barrier(clients)

    def client(i: int) -> None:
        with httpx.Client(base_url=urls[i % len(urls)], headers={"X-Auth-Token": token},
                          timeout=120) as http:
            go.wait()
            bulk = True
            while True:
                payload = {collection: [body, body]} if bulk else {one: body}
                r = http.post(f"/v2.0/{collection}", json=payload)
                with lock:
                    statuses[r.status_code] += 1
                    if r.status_code == 201:
                        got = r.json()
                        created.extend(o["id"] for o in (got[collection] if bulk else [got[one]]))
                        continue
                    if r.json()["NeutronError"]["type"] != "OverQuota":
                        odd.append(r.text)
                        return
                if not bulk:
                    return
                bulk = False
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return created, statuses, odd


def test_concurrent_clients_never_pass_the_quota(server, admin, alt, quota):
    project = alt.current_project_id
    net = alt.network.create_network(name="race")
    alt.network.create_subnet(network_id=net.id, cidr="10.68.0.0/22", ip_version=4)
    list(alt.network.security_groups())
    created: list[str] = []
    try:
        start = assert_exact(server, admin, project)["port"]
        limit = start + 41                      # odd: the last slot needs a single create
        quota(project, port=limit)
        created, statuses, odd = race_creates([server.url], alt.session.get_token(),
                                              {"network_id": net.id})
        assert not odd, odd[:3]
        assert len(created) == len(set(created)) == limit - start
        assert statuses[409] >= 8                # every client was refused at the end
        assert assert_exact(server, admin, project)["port"] == limit
        # networks too, raced by singles only
        nets = used(server, admin, project)["network"]
        quota(project, network=nets + 5)
        more, _, odd = race_creates([server.url], alt.session.get_token(), {"name": "r"},
                                    collection="networks")
        assert not odd, odd[:3]
        assert len(more) == 5
        created_networks = more
        assert assert_exact(server, admin, project)["network"] == nets + 5
        for ident in created_networks:
            alt.network.delete_network(ident)
    finally:
        with httpx.Client(base_url=server.url, timeout=60,
                          headers={"X-Auth-Token": alt.session.get_token()}) as http:
            for ident in created:
                http.delete(f"/v2.0/ports/{ident}")
        alt.network.delete_network(net)
    assert used(server, admin, project)["port"] == start


def test_usage_stays_exact_under_concurrent_creates_and_deletes(server, admin, alt, quota):
    """8 clients creating and deleting ports and networks at once, under quotas below
    the number of clients (so creates race deletes for the last slots): the usage never
    passes the quota and ends equal to what exists."""
    project = alt.current_project_id
    net = alt.network.create_network(name="churn")
    alt.network.create_subnet(network_id=net.id, cidr="10.71.0.0/24", ip_version=4)
    list(alt.network.security_groups())
    start = assert_exact(server, admin, project)
    quota(project, port=start["port"] + 2, network=start["network"] + 2)
    token = alt.session.get_token()
    odd: list = []
    peak = {"port": 0, "network": 0}
    lock = threading.Lock()

    def client(i: int) -> None:
        with httpx.Client(base_url=server.url, headers={"X-Auth-Token": token},
                          timeout=120) as http:
            for _ in range(12):
                if i % 2:
                    r = http.post("/v2.0/ports", json={"port": {"network_id": net.id}})
                    kind, path = "port", "ports"
                else:
                    r = http.post("/v2.0/networks", json={"network": {"name": "c"}})
                    kind, path = "network", "networks"
                if r.status_code == 201:
                    now = used(server, admin, project)
                    with lock:
                        peak[kind] = max(peak[kind], now[kind] - start[kind])
                    ident = r.json()[kind]["id"]
                    if http.delete(f"/v2.0/{path}/{ident}").status_code != 204:
                        odd.append(f"delete {kind} {ident}")
                elif r.json()["NeutronError"]["type"] != "OverQuota":
                    odd.append(r.text)
    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not odd, odd[:3]
        assert 0 < peak["port"] <= 2 and 0 < peak["network"] <= 2
        assert assert_exact(server, admin, project) == start
    finally:
        alt.network.delete_network(net)


# ---- the real CLI --------------------------------------------------------------------------

def test_openstack_quota_cli(server, admin, demo, cli):
    project = demo.current_project_id
    try:
        shown = cli("quota", "show", "--network", project)
        rows = {row["Resource"]: row["Limit"] for row in shown}
        assert rows["ports"] == DEFAULTS["port"] and rows["networks"] == DEFAULTS["network"]
        assert rows["security_group_rules"] == DEFAULTS["security_group_rule"]
        assert rows["floating_ips"] == DEFAULTS["floatingip"]
        cli("quota", "set", "--ports", "7", "--routers", "3", project, fmt=False)
        rows = {row["Resource"]: row["Limit"] for row in cli("quota", "show", "--network",
                                                               project)}
        assert rows["ports"] == 7 and rows["routers"] == 3
        usage = cli("quota", "show", "--network", "--usage", project)
        ports = [row for row in usage if row["Resource"] == "ports"][0]
        assert ports["Limit"] == 7 and ports["In Use"] == used(server, admin, project)["port"]
        listed = cli("quota", "list", "--network")
        assert [row["Ports"] for row in listed if row["Project ID"] == project] == [7]
        mine = cli("quota", "show", "--network", cloud="devstack")   # a member, own project
        assert {row["Resource"]: row["Limit"] for row in mine}["ports"] == 7
        before = full_state(server)
        refused = cli("quota", "set", "--ports", "1000", project, cloud="devstack",
                      check=False, fmt=False)
        assert refused.returncode != 0 and "403" in refused.stderr, refused.stderr
        assert full_state(server) == before
        cli("quota", "delete", "--network", project, fmt=False)
        rows = {row["Resource"]: row["Limit"] for row in cli("quota", "show", "--network",
                                                               project)}
        assert rows["ports"] == DEFAULTS["port"]
    finally:
        raw(server, admin, "DELETE", f"/v2.0/quotas/{project}")


# ---- a store written before quotas were kept ------------------------------------------------

def test_usage_is_counted_once_on_a_store_without_counters(tmp_path):
    """A store from before quotas (objects, no counters, no marker): the first server to
    need the counters counts every project's objects once, then keeps them exact."""
    from plexus.config import Config
    from plexus.server.runner import ThreadedServer
    from plexus.store import Delete
    from tests.ha.conftest import admin_token

    config = Config()
    config.server.port = 0
    config.store.url = f"sqlite:///{tmp_path}/plexus.db"
    with ThreadedServer(config) as srv:
        headers = {"X-Auth-Token": admin_token(srv.url)}
        with httpx.Client(base_url=srv.url, headers=headers, timeout=30) as http:
            project = http.get("/v2.0/quotas/project").json()["project"]["project_id"]
            nets = [http.post("/v2.0/networks", json={"network": {"name": f"old{i}"}})
                    .json()["network"] for i in range(3)]
            http.post("/v2.0/subnets", json={"subnet": {
                "network_id": nets[0]["id"], "cidr": "10.70.0.0/24", "ip_version": 4}})
            http.post("/v2.0/ports", json={"port": {"network_id": nets[0]["id"]}})
            expected = {k: v["used"] for k, v in
                        http.get(f"/v2.0/quotas/{project}/details").json()["quota"].items()}
            assert expected["network"] == 3 and expected["port"] == 1
            assert expected["security_group"] == 1 and expected["security_group_rule"] == 4
            store = srv.app.state.services.store
            kvs, _ = store.range("/plexus/quota/")
            store.txn([], [Delete(kv.key) for kv in kvs])      # as if written before quotas
    with ThreadedServer(config) as srv:
        headers = {"X-Auth-Token": admin_token(srv.url)}
        with httpx.Client(base_url=srv.url, headers=headers, timeout=30) as http:
            got = {k: v["used"] for k, v in
                   http.get(f"/v2.0/quotas/{project}/details").json()["quota"].items()}
            assert got == expected
            assert http.delete(f"/v2.0/networks/{nets[2]['id']}").status_code == 204
            got = http.get(f"/v2.0/quotas/{project}/details").json()["quota"]
            assert got["network"]["used"] == 2
