"""Security groups and rules through real clients: openstacksdk, the openstack CLI, and
plain HTTP where the exact Neutron error body matters."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import openstack
import pytest

RULE_KEYS = {"id", "project_id", "tenant_id", "description", "created_at", "updated_at",
             "revision_number", "security_group_id", "direction", "ethertype", "protocol",
             "port_range_min", "port_range_max", "remote_ip_prefix", "remote_group_id",
             "remote_address_group_id", "normalized_cidr", "belongs_to_default_sg"}
GROUP_KEYS = {"id", "name", "project_id", "tenant_id", "description", "created_at",
              "updated_at", "revision_number", "tags", "stateful", "shared",
              "security_group_rules"}


@pytest.fixture
def api(server):
    """``api(conn, method, path, body)`` → (status, JSON body) over plain HTTP."""
    def call(conn, method: str, path: str, body=None):
        resp = httpx.request(method, f"{server.url}/v2.0/{path}", json=body, timeout=30,
                             headers={"X-Auth-Token": conn.auth_token})
        return resp.status_code, (resp.json() if resp.content else None)
    return call


def rule_body(group_id: str, **kw) -> dict:
    """A rule create body (ingress unless told)."""
    return {"security_group_rule": {"security_group_id": group_id, "direction": "ingress",
                                    **kw}}


def error(result) -> tuple[int, str, str]:
    """(status, NeutronError type, message) of an API answer."""
    status, body = result
    return status, body["NeutronError"]["type"], body["NeutronError"]["message"]


@pytest.fixture
def group(demo):
    """A fresh group of project demo, deleted afterwards."""
    made = demo.network.create_security_group(name=f"sg-{uuid.uuid4().hex[:8]}")
    yield made
    demo.network.delete_security_group(made.id, ignore_missing=True)


@pytest.fixture
def fresh_project(server, admin):
    """Make projects nobody has touched yet, each with a member; returns (project id,
    connect) where connect() opens a new openstacksdk connection as that member."""
    made = []

    def make():
        name = f"sgp-{uuid.uuid4().hex[:10]}"
        project = admin.identity.create_project(name=name, domain_id="default")
        user = admin.identity.create_user(name=name, password=name, domain_id="default")
        admin.identity.assign_project_role_to_user(project, user,
                                                   admin.identity.find_role("member"))
        made.append((project, user))

        def connect():
            return openstack.connect(
                auth_url=f"{server.url}/identity/v3", username=name, password=name,
                project_name=name, user_domain_name="Default", project_domain_name="Default",
                region_name=server.config.identity.region, identity_api_version="3")
        return project.id, connect
    yield make
    for project, user in made:
        for port in admin.network.ports(project_id=project.id):
            admin.network.delete_port(port)
        for net in admin.network.networks(project_id=project.id):
            admin.network.delete_network(net)
        for sg in admin.network.security_groups(project_id=project.id):
            admin.network.delete_security_group(sg)
        admin.identity.delete_user(user)
        admin.identity.delete_project(project)


def defaults_of(admin, project_id: str) -> list:
    """The project's groups named default, as the admin sees them."""
    return [g for g in admin.network.security_groups(project_id=project_id)
            if g.name == "default"]


# ---- the default group ---------------------------------------------------------------


def test_default_group_made_on_first_list_with_neutron_rules(fresh_project, api):
    project_id, connect = fresh_project()
    conn = connect()
    status, body = api(conn, "GET", "security-groups")
    assert status == 200
    [sg] = body["security_groups"]
    assert set(sg) == GROUP_KEYS
    assert (sg["name"], sg["description"], sg["project_id"]) == \
        ("default", "Default security group", project_id)
    assert sg["stateful"] is True and sg["shared"] is False
    rules = {(r["direction"], r["ethertype"], r["remote_group_id"]) for r in
             sg["security_group_rules"]}
    assert rules == {("egress", "IPv4", None), ("egress", "IPv6", None),
                     ("ingress", "IPv4", sg["id"]), ("ingress", "IPv6", sg["id"])}
    for rule in sg["security_group_rules"]:
        assert set(rule) == RULE_KEYS
        assert rule["belongs_to_default_sg"] is True and rule["protocol"] is None
        assert rule["remote_ip_prefix"] is None and rule["project_id"] == project_id
    listed = api(conn, "GET", f"security-group-rules?security_group_id={sg['id']}")[1]
    assert sorted(r["id"] for r in listed["security_group_rules"]) == \
        sorted(r["id"] for r in sg["security_group_rules"])
    assert api(conn, "GET", "security-groups")[1]["security_groups"] == [sg]


def test_default_group_made_once_under_concurrent_first_requests(fresh_project, admin):
    project_id, connect = fresh_project()
    conns = [connect() for _ in range(8)]
    for conn in conns:
        conn.authorize()
    barrier = threading.Barrier(len(conns))

    def first(i: int) -> set[str]:
        barrier.wait()
        if i % 2:
            return {r.security_group_id for r in conns[i].network.security_group_rules()}
        return {g.id for g in conns[i].network.security_groups()}
    with ThreadPoolExecutor(len(conns)) as pool:
        seen = list(pool.map(first, range(len(conns))))
    [default] = defaults_of(admin, project_id)
    assert all(ids == {default.id} for ids in seen)
    assert len(list(admin.network.security_group_rules(project_id=project_id))) == 4


def test_concurrent_first_ports_share_one_default_group(fresh_project, admin):
    project_id, connect = fresh_project()
    conns = [connect() for _ in range(8)]
    net = conns[0].network.create_network(name="sg-ports")
    for conn in conns:
        conn.authorize()
    barrier = threading.Barrier(len(conns))

    def port(conn):
        barrier.wait()
        return conn.network.create_port(network_id=net.id).security_group_ids
    with ThreadPoolExecutor(len(conns)) as pool:
        groups = list(pool.map(port, conns))
    [default] = defaults_of(admin, project_id)
    assert groups == [[default.id]] * len(conns)


def test_default_group_cannot_be_removed_or_renamed_by_its_project(demo, admin, api,
                                                                   fresh_project):
    [default] = [g for g in demo.network.security_groups() if g.name == "default"]
    assert error(api(demo, "DELETE", f"security-groups/{default.id}")) == (
        409, "SecurityGroupCannotRemoveDefault",
        "Insufficient rights for removing default security group.")
    assert error(api(demo, "PUT", f"security-groups/{default.id}",
                     {"security_group": {"name": "renamed"}}))[:2] == \
        (409, "SecurityGroupCannotUpdateDefault")
    assert demo.network.get_security_group(default.id).name == "default"
    project_id, connect = fresh_project()
    [first] = connect().network.security_groups()
    admin.network.delete_security_group(first)
    [second] = defaults_of(admin, project_id)
    assert second.id != first.id and len(second.security_group_rules) == 4


# ---- groups --------------------------------------------------------------------------


def test_group_create_show_update_wire_format(demo, api):
    status, body = api(demo, "POST", "security-groups",
                       {"security_group": {"name": "web", "description": "d"}})
    assert status == 201
    sg = body["security_group"]
    try:
        assert set(sg) == GROUP_KEYS
        assert (sg["stateful"], sg["shared"], sg["tags"], sg["revision_number"]) == \
            (True, False, [], 1)
        assert {(r["direction"], r["ethertype"], r["belongs_to_default_sg"])
                for r in sg["security_group_rules"]} == {("egress", "IPv4", False),
                                                         ("egress", "IPv6", False)}
        assert api(demo, "GET", f"security-groups/{sg['id']}")[1]["security_group"] == sg
        updated = api(demo, "PUT", f"security-groups/{sg['id']}",
                      {"security_group": {"name": "web2", "stateful": False}})[1]
        assert updated["security_group"]["name"] == "web2"
        assert updated["security_group"]["stateful"] is False
        assert updated["security_group"]["revision_number"] == 2
        assert error(api(demo, "PUT", f"security-groups/{sg['id']}",
                         {"security_group": {"name": "Default"}}))[:2] == \
            (409, "SecurityGroupDefaultAlreadyExists")
    finally:
        api(demo, "DELETE", f"security-groups/{sg['id']}")
    assert error(api(demo, "POST", "security-groups", {"security_group": {"name": "default"}})) \
        == (409, "SecurityGroupDefaultAlreadyExists", "Default security group already exists.")
    assert error(api(demo, "GET", f"security-groups/{sg['id']}")) == (
        404, "SecurityGroupNotFound", f"Security group {sg['id']} does not exist")


def test_cross_project_isolation(demo, alt, admin, api, group):
    rule = demo.network.create_security_group_rule(
        security_group_id=group.id, direction="ingress", protocol="udp",
        port_range_min=53, port_range_max=53)
    assert group.id not in {g.id for g in alt.network.security_groups()}
    assert rule.id not in {r.id for r in alt.network.security_group_rules()}
    assert error(api(alt, "GET", f"security-groups/{group.id}"))[:2] == \
        (404, "SecurityGroupNotFound")
    assert error(api(alt, "GET", f"security-group-rules/{rule.id}"))[:2] == \
        (404, "SecurityGroupRuleNotFound")
    assert error(api(alt, "POST", "security-group-rules",
                     rule_body(group.id, protocol="tcp")))[:2] == (404, "SecurityGroupNotFound")
    assert api(alt, "DELETE", f"security-group-rules/{rule.id}")[0] == 404
    assert api(alt, "DELETE", f"security-groups/{group.id}")[0] == 404
    assert api(alt, "PUT", f"security-groups/{group.id}",
               {"security_group": {"description": "x"}})[0] == 404
    assert admin.network.get_security_group_rule(rule.id).security_group_id == group.id
    assert demo.network.get_security_group(group.id).revision_number == 2


def test_stateful_cannot_change_while_a_port_uses_the_group(demo, api, group):
    net = demo.network.create_network(name="sg-stateful")
    try:
        port = demo.network.create_port(network_id=net.id, security_group_ids=[group.id])
        assert error(api(demo, "PUT", f"security-groups/{group.id}",
                         {"security_group": {"stateful": False}}))[:2] == \
            (409, "SecurityGroupInUse")
        demo.network.delete_port(port)
        assert demo.network.update_security_group(group, stateful=False).stateful is False
    finally:
        demo.network.delete_network(net)


# ---- rules ---------------------------------------------------------------------------


def test_protocol_names_and_numbers(demo, api, group):
    def create(**kw):
        return api(demo, "POST", "security-group-rules", rule_body(group.id, **kw))
    cases = [({"protocol": "TCP", "port_range_min": 1, "port_range_max": 2}, "tcp"),
             ({"protocol": 17, "port_range_min": 3, "port_range_max": 4}, "17"),
             ({"protocol": "132", "port_range_min": 5, "port_range_max": 6}, "132"),
             ({"protocol": "gre"}, "gre"), ({"protocol": "any"}, None),
             ({"protocol": 0}, "0"), ({"protocol": "vrrp"}, "vrrp"),
             ({"protocol": "icmp", "ethertype": "ipv6"}, "ipv6-icmp"),
             ({"protocol": "1", "ethertype": "IPv6", "remote_ip_prefix": "::1"}, "58")]
    for kw, stored in cases:
        status, body = create(**kw)
        assert status == 201, (kw, body)
        assert body["security_group_rule"]["protocol"] == stored
    for bad in ("foo", 256, -1, True):
        assert error(create(protocol=bad))[:2] == (400, "SecurityGroupRuleInvalidProtocol")
    assert error(create(protocol="icmpv6")) == (
        400, "SecurityGroupEthertypeConflictWithProtocol",
        "Invalid ethertype IPv4 for protocol icmpv6.")
    assert error(create(ethertype="IPv5"))[:2] == (400, "SecurityGroupRuleInvalidEtherType")
    assert error(create(protocol="6", port_range_min=1, port_range_max=2))[:2] == \
        (409, "SecurityGroupRuleExists")


def test_port_ranges(demo, api, group):
    def create(**kw):
        return api(demo, "POST", "security-group-rules", rule_body(group.id, **kw))
    status, body = create(protocol="tcp", port_range_min="22", port_range_max=22)
    assert status == 201
    assert (body["security_group_rule"]["port_range_min"],
            body["security_group_rule"]["port_range_max"]) == (22, 22)
    whole = create(protocol="udp", port_range_min=1, port_range_max=65535)[1]
    assert whole["security_group_rule"]["port_range_min"] is None
    assert whole["security_group_rule"]["port_range_max"] is None
    assert error(create(protocol="tcp", port_range_min=80, port_range_max=79)) == (
        400, "SecurityGroupInvalidPortRange",
        "For TCP/UDP protocols, port_range_min must be <= port_range_max")
    assert error(create(protocol="sctp", port_range_min=80))[:2] == \
        (400, "SecurityGroupInvalidPortRange")
    assert error(create(protocol="tcp", port_range_min=0, port_range_max=5))[:2] == \
        (400, "SecurityGroupInvalidPortValue")
    assert error(create(protocol="tcp", port_range_min=1, port_range_max=65536)) == (
        400, "SecurityGroupInvalidPortValue", "Invalid value for port 65536")
    assert error(create(protocol="gre", port_range_min=1, port_range_max=2)) == (
        400, "SecurityGroupInvalidProtocolForPort",
        "Ports cannot be specified for protocol 47. Ports are only supported for DCCP, "
        "SCTP, TCP, UDP, UDPLITE.")
    assert error(create(port_range_min=1, port_range_max=2))[:2] == \
        (400, "SecurityGroupProtocolRequiredWithPorts")


def test_icmp_type_and_code(demo, api, group):
    def create(**kw):
        return api(demo, "POST", "security-group-rules", rule_body(group.id, **kw))
    ok = create(protocol="icmp", port_range_min=8, port_range_max=0)[1]["security_group_rule"]
    assert (ok["port_range_min"], ok["port_range_max"]) == (8, 0)
    assert error(create(protocol="icmp", port_range_min=300)) == (
        400, "SecurityGroupInvalidIcmpValue",
        "Invalid value for ICMP type (port_range_min) 300. It must be 0 to 255.")
    assert error(create(protocol="icmp", port_range_max=3)) == (
        400, "SecurityGroupMissingIcmpType",
        "ICMP code (port-range-max) 3 is provided but ICMP type (port-range-min) is missing.")


def test_remote_prefix_normalisation(demo, api, group):
    def create(**kw):
        return api(demo, "POST", "security-group-rules", rule_body(group.id, **kw))
    rule = create(remote_ip_prefix="10.0.0.1/24")[1]["security_group_rule"]
    assert (rule["remote_ip_prefix"], rule["normalized_cidr"]) == ("10.0.0.1/24", "10.0.0.0/24")
    rule = create(remote_ip_prefix="192.168.1.5")[1]["security_group_rule"]
    assert (rule["remote_ip_prefix"], rule["normalized_cidr"]) == \
        ("192.168.1.5/32", "192.168.1.5/32")
    rule = create(ethertype="IPv6", remote_ip_prefix="2001:DB8::/32")[1]["security_group_rule"]
    assert rule["remote_ip_prefix"] == "2001:db8::/32"
    assert error(create(remote_ip_prefix="2001:db8::/64")) == (
        400, "SecurityGroupRuleParameterConflict",
        "Conflicting value ethertype IPv4 for CIDR 2001:db8::/64")
    assert error(create(remote_ip_prefix="10.0.0.300/8")) == (
        400, "InvalidCIDR", "Invalid CIDR 10.0.0.300/8 given as IP prefix.")
    assert error(create(remote_ip_prefix="10.1.0.0/16", remote_group_id=group.id))[:2] == \
        (400, "SecurityGroupMultipleRemoteEntites")
    create(direction="egress", protocol="tcp")
    assert error(create(direction="egress", protocol="tcp", remote_ip_prefix="0.0.0.0/0"))[:2] \
        == (409, "SecurityGroupRuleExists")


def test_remote_group_and_cascade_on_delete(demo, alt, api, group):
    other = demo.network.create_security_group(name="sg-remote")
    foreign = alt.network.create_security_group(name="sg-foreign")
    try:
        rule = api(demo, "POST", "security-group-rules",
                   rule_body(group.id, remote_group_id=other.id))[1]["security_group_rule"]
        assert rule["remote_group_id"] == other.id and rule["remote_ip_prefix"] is None
        assert error(api(demo, "POST", "security-group-rules",
                         rule_body(group.id, remote_group_id=foreign.id))) == (
            404, "SecurityGroupNotFound", f"Security group {foreign.id} does not exist")
        missing = str(uuid.uuid4())
        assert api(demo, "POST", "security-group-rules",
                   rule_body(group.id, remote_group_id=missing))[0] == 404
        assert error(api(demo, "POST", "security-group-rules",
                         rule_body(group.id, remote_address_group_id=missing))) == (
            404, "AddressGroupNotFound", f"Address group {missing} could not be found.")
        before = demo.network.get_security_group(group.id).revision_number
        demo.network.delete_security_group(other)
        after = demo.network.get_security_group(group.id)
        assert rule["id"] not in {r["id"] for r in after.security_group_rules}
        assert after.revision_number == before + 1
        assert api(demo, "GET", f"security-group-rules/{rule['id']}")[0] == 404
    finally:
        demo.network.delete_security_group(other, ignore_missing=True)
        alt.network.delete_security_group(foreign)


def test_duplicates_are_refused_with_the_existing_rule_id(demo, api, group):
    first = api(demo, "POST", "security-group-rules",
                rule_body(group.id, protocol="tcp", port_range_min=443,
                          port_range_max=443))[1]["security_group_rule"]
    assert error(api(demo, "POST", "security-group-rules",
                     rule_body(group.id, protocol="6", port_range_min=443,
                               port_range_max=443, remote_ip_prefix="0.0.0.0/0"))) == (
        409, "SecurityGroupRuleExists",
        f"Security group rule already exists. Rule id is {first['id']}.")
    one = rule_body(group.id, protocol="udp")["security_group_rule"]
    assert error(api(demo, "POST", "security-group-rules",
                     {"security_group_rules": [one, dict(one, protocol="17")]}))[:2] == \
        (409, "DuplicateSecurityGroupRuleInPost")


def test_concurrent_duplicates_make_one_rule(demo, api, group):
    body = rule_body(group.id, protocol="tcp", port_range_min=8080, port_range_max=8080)
    barrier = threading.Barrier(8)

    def create(_):
        barrier.wait()
        return api(demo, "POST", "security-group-rules", body)[0]
    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(create, range(8)))
    assert statuses == [201] + [409] * 7
    rules = [r for r in demo.network.get_security_group(group.id).security_group_rules
             if r["port_range_min"] == 8080]
    assert len(rules) == 1
    assert len([r for r in demo.network.security_group_rules(security_group_id=group.id)
                if r.port_range_min == 8080]) == 1


def test_rule_changes_bump_the_group_and_show_in_it(demo, api, group):
    assert demo.network.get_security_group(group.id).revision_number == 1
    created = api(demo, "POST", "security-group-rules", {"security_group_rules": [
        rule_body(group.id, protocol="tcp", port_range_min=80, port_range_max=80)
        ["security_group_rule"],
        rule_body(group.id, protocol="tcp", port_range_min=81, port_range_max=81)
        ["security_group_rule"]]})[1]["security_group_rules"]
    sg = demo.network.get_security_group(group.id)
    assert sg.revision_number == 2
    assert {r["id"] for r in created} <= {r["id"] for r in sg.security_group_rules}
    assert all(r["revision_number"] == 0 for r in created)
    demo.network.delete_security_group_rule(created[0]["id"])
    sg = demo.network.get_security_group(group.id)
    assert sg.revision_number == 3
    assert created[0]["id"] not in {r["id"] for r in sg.security_group_rules}
    assert error(api(demo, "PUT", f"security-group-rules/{created[1]['id']}",
                     {"security_group_rule": {"description": "x"}}))[0] == 405
    assert api(demo, "PUT", f"security-group-rules/{created[1]['id']}/tags/x")[0] == 404


def test_rejected_requests_change_nothing(demo, api, group):
    api(demo, "POST", "security-group-rules", rule_body(group.id, protocol="tcp"))
    before = api(demo, "GET", f"security-groups/{group.id}")[1]
    rules_before = api(demo, "GET", "security-group-rules")[1]
    bad = [rule_body(group.id, protocol="tcp"),
           rule_body(group.id, protocol="tcp", port_range_min=9, port_range_max=1),
           rule_body(group.id, remote_ip_prefix="::/0"),
           rule_body(group.id, remote_group_id=str(uuid.uuid4())),
           {"security_group_rules": [rule_body(group.id, protocol="udp")["security_group_rule"],
                                     rule_body(group.id, protocol="tcp")["security_group_rule"]]},
           {"security_group_rule": {"security_group_id": group.id}}]
    for body in bad:
        assert api(demo, "POST", "security-group-rules", body)[0] in (400, 404, 409)
    assert api(demo, "GET", f"security-groups/{group.id}")[1] == before
    assert api(demo, "GET", "security-group-rules")[1] == rules_before


# ---- ports ---------------------------------------------------------------------------


def test_ports_and_groups(demo, alt, api, group):
    net = demo.network.create_network(name="sg-ports")
    foreign = alt.network.create_security_group(name="sg-foreign")
    stateless = demo.network.create_security_group(name="sg-stateless", stateful=False)
    try:
        [default] = [g for g in demo.network.security_groups() if g.name == "default"]
        assert demo.network.create_port(network_id=net.id).security_group_ids == [default.id]
        port = demo.network.create_port(network_id=net.id, security_group_ids=[group.id])
        assert port.security_group_ids == [group.id]
        assert error(api(demo, "POST", "ports", {"port": {
            "network_id": net.id, "security_groups": [foreign.id]}})) == (
            404, "SecurityGroupNotFound", f"Security group {foreign.id} does not exist")
        assert error(api(demo, "POST", "ports", {"port": {
            "network_id": net.id, "security_groups": [group.id, stateless.id]}}))[:2] == \
            (409, "SecurityGroupConflict")
        assert error(api(demo, "DELETE", f"security-groups/{group.id}")) == (
            409, "SecurityGroupInUse", f"Security Group {group.id} in use.")
        assert demo.network.get_security_group(group.id).id == group.id
        demo.network.delete_port(port)
        demo.network.delete_security_group(group)
        assert api(demo, "GET", f"security-groups/{group.id}")[0] == 404
    finally:
        for p in demo.network.ports(network_id=net.id):
            demo.network.delete_port(p)
        demo.network.delete_network(net)
        alt.network.delete_security_group(foreign)
        demo.network.delete_security_group(stateless)


def test_group_delete_racing_port_creates_leaves_no_dangling_port(demo, api):
    net = demo.network.create_network(name="sg-race")
    try:
        for _ in range(3):
            sg = demo.network.create_security_group(name="sg-race")
            barrier = threading.Barrier(9)

            def act(i: int) -> int:
                barrier.wait()
                if i == 8:
                    return api(demo, "DELETE", f"security-groups/{sg.id}")[0]
                return api(demo, "POST", "ports", {"port": {
                    "network_id": net.id, "security_groups": [sg.id]}})[0]
            with ThreadPoolExecutor(9) as pool:
                statuses = list(pool.map(act, range(9)))
            assert set(statuses[:8]) <= {201, 404, 409} and statuses[8] in (204, 409)
            users = [p for p in demo.network.ports(network_id=net.id)
                     if sg.id in p.security_group_ids]
            gone = api(demo, "GET", f"security-groups/{sg.id}")[0] == 404
            assert (statuses[8] == 204) == gone
            assert not (gone and users)
            assert len(users) == statuses[:8].count(201)
            for port in users:
                demo.network.delete_port(port)
            demo.network.delete_security_group(sg.id, ignore_missing=True)
    finally:
        demo.network.delete_network(net)


# ---- the openstack CLI ---------------------------------------------------------------


def test_cli_security_group_lifecycle(cli):
    name = f"cli-{uuid.uuid4().hex[:8]}"
    sg = cli("security", "group", "create", name, "--description", "from the cli")
    try:
        assert sg["name"] == name and len(sg["rules"]) == 2
        assert name in {g["Name"] for g in cli("security", "group", "list")}
        ssh = cli("security", "group", "rule", "create", "--protocol", "tcp", "--dst-port",
                  "22", "--remote-ip", "0.0.0.0/0", name)
        assert (ssh["protocol"], ssh["port_range_min"], ssh["port_range_max"],
                ssh["remote_ip_prefix"]) == ("tcp", 22, 22, "0.0.0.0/0")
        ping = cli("security", "group", "rule", "create", "--protocol", "icmp",
                   "--icmp-type", "8", name)
        assert (ping["protocol"], ping["port_range_min"], ping["port_range_max"]) == \
            ("icmp", 8, None)
        peers = cli("security", "group", "rule", "create", "--remote-group", name, name)
        assert peers["remote_group_id"] == sg["id"]
        dup = cli("security", "group", "rule", "create", "--protocol", "tcp", "--dst-port",
                  "22", name, check=False)
        assert dup.returncode != 0 and f"Rule id is {ssh['id']}" in dup.stderr
        listed = {r["ID"] for r in cli("security", "group", "rule", "list", name)}
        assert {ssh["id"], ping["id"], peers["id"]} <= listed and len(listed) == 5
        cli("security", "group", "rule", "delete", ping["id"], fmt=False)
        assert ping["id"] not in {r["ID"] for r in cli("security", "group", "rule", "list",
                                                       name)}
        cli("security", "group", "set", "--name", name + "-2", name, fmt=False)
        shown = cli("security", "group", "show", name + "-2")
        assert shown["id"] == sg["id"] and shown["revision_number"] == 6
    finally:
        cli("security", "group", "delete", sg["id"], fmt=False)
    assert sg["id"] not in {g["ID"] for g in cli("security", "group", "list")}


def test_extensions_advertised(admin):
    aliases = {e.alias for e in admin.network.extensions()}
    assert {"security-group", "stateful-security-group", "security-groups-normalized-cidr",
            "security-groups-rules-belongs-to-default-sg"} <= aliases
    # implemented end to end since (tests/api/test_address_groups.py, test_default_sg_rules.py)
    assert {"address-group", "security-groups-remote-address-group",
            "security-groups-default-rules"} <= aliases
