"""The policy table against a real server, through HTTP: every authorization finding of
issue 11 is a row asserting Neutron's status code, and every refused row that the store
is exactly as before. Rows for what Neutron allows keep the policy from being too
strict.

Callers: ``admin``; ``demo`` and ``alt``, members of two projects; ``reader``, a user
with only the reader role in project demo. The world: a shared network and an external
network of the admin's, a network and a router and a floating IP of demo's, a network
of alt's, and ports of alt's on the shared network and on its own network."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
import pytest

from tests.api.helpers import state

SHARED_CIDR, EXT_CIDR, DEMO_CIDR, ALT_CIDR = ("10.161.0.0/24", "172.31.161.0/24",
                                              "10.163.0.0/24", "10.164.0.0/24")


def snapshot(server) -> list:
    """What the API has durably written, without chassis liveness (leases of other
    tests' chassis may expire meanwhile)."""
    return [kv for kv in state(server) if "/liveness/" not in kv[0]]


def call(server, token: str, method: str, path: str, body=None) -> httpx.Response:
    return httpx.request(method, server.url + path, json=body, timeout=30,
                         headers={"X-Auth-Token": token})


def _token(server, user: str, password: str, project_id: str) -> str:
    r = httpx.post(server.url + "/identity/v3/auth/tokens", json={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"id": project_id}}}})
    assert r.status_code == 201, r.text
    return r.headers["X-Subject-Token"]


@pytest.fixture(scope="module")
def world(server, admin, demo, alt):
    """The objects the rows name, and a token per caller; removed afterwards."""
    ident = admin.identity
    demo_project = ident.find_project("demo")
    reader = ident.create_user(name=f"policy-reader-{uuid.uuid4().hex[:6]}", password="pw",
                               domain_id="default", default_project_id=demo_project.id)
    ident.assign_project_role_to_user(demo_project, reader, ident.find_role("reader"))
    made: list = []           # (connection, kind, object) to delete, newest last
    try:
        shared = admin.network.create_network(name="pol-shared", shared=True)
        made.append((admin, "network", shared))
        shared_sub = admin.network.create_subnet(network_id=shared.id, cidr=SHARED_CIDR,
                                                 ip_version=4)
        ext = admin.network.create_network(name="pol-ext", is_router_external=True)
        made.append((admin, "network", ext))
        admin.network.create_subnet(network_id=ext.id, cidr=EXT_CIDR, ip_version=4)
        demo_net = demo.network.create_network(name="pol-demo")
        made.append((demo, "network", demo_net))
        demo_sub = demo.network.create_subnet(network_id=demo_net.id, cidr=DEMO_CIDR,
                                              ip_version=4)
        router = demo.network.create_router(name="pol-router",
                                            external_gateway_info={"network_id": ext.id})
        made.append((demo, "router", router))
        demo.network.add_interface_to_router(router, subnet_id=demo_sub.id)
        interface = next(demo.network.ports(device_id=router.id,
                                            device_owner="network:router_interface"))
        fip = demo.network.create_ip(floating_network_id=ext.id)
        made.append((demo, "ip", fip))
        alt_net = alt.network.create_network(name="pol-alt")
        made.append((alt, "network", alt_net))
        alt.network.create_subnet(network_id=alt_net.id, cidr=ALT_CIDR, ip_version=4)
        alt_port = alt.network.create_port(network_id=alt_net.id, name="pol-alt-port")
        made.append((alt, "port", alt_port))
        alt_shared_port = alt.network.create_port(network_id=shared.id, name="pol-alt-shared")
        made.append((alt, "port", alt_shared_port))
        demo_port = demo.network.create_port(network_id=demo_net.id, name="pol-demo-port")
        made.append((demo, "port", demo_port))
        tokens = {"admin": admin.session.get_token(), "demo": demo.session.get_token(),
                  "alt": alt.session.get_token(),
                  "reader": _token(server, reader.name, "pw", demo_project.id)}
        for name in ("demo", "alt", "reader"):     # default security groups exist already
            call(server, tokens[name], "GET", "/v2.0/security-groups")
        yield {"tokens": tokens, "shared": shared.id, "shared_sub": shared_sub.id,
               "ext": ext.id, "demo_net": demo_net.id, "demo_sub": demo_sub.id,
               "router": router.id, "interface": interface.id, "fip": fip.id,
               "alt_net": alt_net.id, "alt_port": alt_port.id,
               "alt_shared_port": alt_shared_port.id, "demo_port": demo_port.id,
               "alt_project": alt.current_project_id, "demo_project": demo_project.id}
    finally:
        for conn, kind, obj in reversed(made):
            if kind == "router":
                for port in conn.network.ports(device_id=obj.id,
                                               device_owner="network:router_interface"):
                    conn.network.remove_interface_from_router(obj, port_id=port.id)
            getattr(conn.network, f"delete_{kind}")(obj, ignore_missing=True)
        ident.delete_user(reader)


@dataclass(frozen=True)
class Row:
    """One request and Neutron's answer to it."""

    label: str
    caller: str
    method: str
    path: str
    body: dict | None
    status: int
    error: str | None = None        # NeutronError type on refusal

    def __str__(self) -> str:
        return self.label


def fill(value, world: dict):
    """The row's body or path with ``{name}`` replaced by the world's ids."""
    if isinstance(value, str):
        return value.format(**world)
    if isinstance(value, list):
        return [fill(v, world) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, world) for k, v in value.items()}
    return value


def port(**attrs) -> dict:
    return {"port": attrs}


DENIED = "PolicyNotAuthorized"
ROWS = [
    # ---- router hijack: a device of another project's router --------------------------
    Row("member: port as interface of another project's router", "alt", "POST",
        "/v2.0/ports", port(network_id="{alt_net}", device_owner="network:router_interface",
                            device_id="{router}"), 403, "DeviceIDNotOwnedByTenant"),
    Row("member: port as gateway of another project's router", "alt", "POST", "/v2.0/ports",
        port(network_id="{alt_net}", device_owner="network:router_gateway",
             device_id="{router}"), 403, "DeviceIDNotOwnedByTenant"),
    Row("member: own port updated into another project's router", "alt", "PUT",
        "/v2.0/ports/{alt_port}", port(device_owner="network:router_interface",
                                       device_id="{router}"), 403,
        "DeviceIDNotOwnedByTenant"),
    Row("member: port as another project's floating IP", "alt", "POST", "/v2.0/ports",
        port(network_id="{alt_net}", device_owner="network:floatingip", device_id="{fip}"),
        403, "DeviceIDNotOwnedByTenant"),
    Row("member: port as interface of its own router", "demo", "POST", "/v2.0/ports",
        port(network_id="{demo_net}", device_owner="network:router_interface",
             device_id="{router}"), 201),
    Row("admin: port as interface of any project's router", "admin", "POST", "/v2.0/ports",
        port(network_id="{alt_net}", project_id="{alt_project}",
             device_owner="network:router_interface", device_id="{router}"), 201),
    # ---- sharing ------------------------------------------------------------------------
    Row("member: create a shared network", "demo", "POST", "/v2.0/networks",
        {"network": {"name": "pol-x", "shared": True}}, 403, DENIED),
    Row("member: share its own network", "demo", "PUT", "/v2.0/networks/{demo_net}",
        {"network": {"shared": True}}, 403, DENIED),
    Row("member: create an external network", "demo", "POST", "/v2.0/networks",
        {"network": {"name": "pol-x", "router:external": True}}, 403, DENIED),
    Row("member: network with shared false (the default)", "demo", "POST", "/v2.0/networks",
        {"network": {"name": "pol-x", "shared": False}}, 201),
    Row("admin: create a shared network", "admin", "POST", "/v2.0/networks",
        {"network": {"name": "pol-x", "shared": True}}, 201),
    # ---- a non-owner on a shared network -------------------------------------------------
    Row("non-owner on shared net: mac_address", "alt", "POST", "/v2.0/ports",
        port(network_id="{shared}", mac_address="fa:16:3e:16:16:16"), 403, DENIED),
    Row("non-owner on shared net: fixed IP address", "alt", "POST", "/v2.0/ports",
        port(network_id="{shared}", fixed_ips=[{"ip_address": "10.161.0.77"}]), 403, DENIED),
    Row("non-owner on shared net: fixed IP address and subnet", "alt", "POST", "/v2.0/ports",
        port(network_id="{shared}", fixed_ips=[{"subnet_id": "{shared_sub}",
                                                "ip_address": "10.161.0.77"}]), 403, DENIED),
    Row("non-owner on shared net: device_owner network:dhcp", "alt", "POST", "/v2.0/ports",
        port(network_id="{shared}", device_owner="network:dhcp"), 403, DENIED),
    Row("non-owner on shared net: device_owner network:router_interface", "alt", "POST",
        "/v2.0/ports", port(network_id="{shared}", device_owner="network:router_interface"),
        403, DENIED),
    Row("non-owner on shared net: port_security_enabled false", "alt", "POST", "/v2.0/ports",
        port(network_id="{shared}", port_security_enabled=False), 403, DENIED),
    Row("non-owner on shared net: allowed_address_pairs 0.0.0.0/0", "alt", "POST",
        "/v2.0/ports", port(network_id="{shared}",
                            allowed_address_pairs=[{"ip_address": "0.0.0.0/0"}]), 403, DENIED),
    Row("non-owner on shared net: update mac_address", "alt", "PUT",
        "/v2.0/ports/{alt_shared_port}", port(mac_address="fa:16:3e:16:16:17"), 403, DENIED),
    Row("non-owner on shared net: update fixed IP address", "alt", "PUT",
        "/v2.0/ports/{alt_shared_port}", port(fixed_ips=[{"ip_address": "10.161.0.78"}]),
        403, DENIED),
    Row("non-owner on shared net: update device_owner network:dhcp", "alt", "PUT",
        "/v2.0/ports/{alt_shared_port}", port(device_owner="network:dhcp"), 403, DENIED),
    Row("non-owner on shared net: disable port security", "alt", "PUT",
        "/v2.0/ports/{alt_shared_port}", port(port_security_enabled=False,
                                              security_groups=[]), 403, DENIED),
    Row("non-owner on shared net: update allowed_address_pairs", "alt", "PUT",
        "/v2.0/ports/{alt_shared_port}",
        port(allowed_address_pairs=[{"ip_address": "0.0.0.0/0"}]), 403, DENIED),
    Row("non-owner on shared net: plain port", "alt", "POST", "/v2.0/ports",
        port(network_id="{shared}"), 201),
    Row("non-owner on shared net: fixed IP by subnet only", "alt", "POST", "/v2.0/ports",
        port(network_id="{shared}", fixed_ips=[{"subnet_id": "{shared_sub}"}]), 201),
    Row("non-owner on shared net: device_owner compute:nova", "alt", "POST", "/v2.0/ports",
        port(network_id="{shared}", device_owner="compute:nova"), 201),
    Row("non-owner on shared net: rename its port", "alt", "PUT",
        "/v2.0/ports/{alt_shared_port}", port(name="pol-alt-shared"), 200),
    Row("non-owner on shared net: subnet", "alt", "POST", "/v2.0/subnets",
        {"subnet": {"network_id": "{shared}", "cidr": "10.165.0.0/24", "ip_version": 4}},
        403, DENIED),
    Row("non-owner: update the shared network", "alt", "PUT", "/v2.0/networks/{shared}",
        {"network": {"name": "mine"}}, 403, DENIED),
    Row("non-owner: delete the shared network", "alt", "DELETE", "/v2.0/networks/{shared}",
        None, 403, DENIED),
    # ---- the network owner and the admin may --------------------------------------------
    Row("network owner: mac_address", "demo", "POST", "/v2.0/ports",
        port(network_id="{demo_net}", mac_address="fa:16:3e:16:16:18"), 201),
    Row("network owner: fixed IP address", "demo", "POST", "/v2.0/ports",
        port(network_id="{demo_net}", fixed_ips=[{"ip_address": "10.163.0.77"}]), 201),
    Row("network owner: device_owner network:dhcp", "demo", "POST", "/v2.0/ports",
        port(network_id="{demo_net}", device_owner="network:dhcp"), 201),
    Row("network owner: port security off", "demo", "POST", "/v2.0/ports",
        port(network_id="{demo_net}", port_security_enabled=False), 201),
    Row("network owner: allowed_address_pairs 0.0.0.0/0", "demo", "POST", "/v2.0/ports",
        port(network_id="{demo_net}", allowed_address_pairs=[{"ip_address": "0.0.0.0/0"}]),
        201),
    Row("network owner: update fixed IPs", "demo", "PUT", "/v2.0/ports/{demo_port}",
        port(fixed_ips=[{"ip_address": "10.163.0.99"}]), 200),
    Row("member: update mac_address (admin only in Neutron)", "demo", "PUT",
        "/v2.0/ports/{demo_port}", port(mac_address="fa:16:3e:16:16:19"), 403, DENIED),
    Row("admin: mac_address on the shared network for alt", "admin", "POST", "/v2.0/ports",
        port(network_id="{shared}", project_id="{alt_project}",
             mac_address="fa:16:3e:16:16:1a"), 201),
    Row("admin: update mac_address", "admin", "PUT", "/v2.0/ports/{alt_port}",
        port(mac_address="fa:16:3e:16:16:1b"), 200),
    # ---- external and private networks of other projects ---------------------------------
    Row("member: port on another project's external network", "demo", "POST", "/v2.0/ports",
        port(network_id="{ext}"), 404, "HTTPNotFound"),
    Row("member: subnet on another project's external network", "demo", "POST",
        "/v2.0/subnets", {"subnet": {"network_id": "{ext}", "cidr": "172.31.162.0/24",
                                     "ip_version": 4}}, 404, "HTTPNotFound"),
    Row("member: port on another project's private network", "alt", "POST", "/v2.0/ports",
        port(network_id="{demo_net}"), 404, "NetworkNotFound"),
    Row("member: update another project's network", "alt", "PUT",
        "/v2.0/networks/{demo_net}", {"network": {"name": "x"}}, 404, "NetworkNotFound"),
    Row("member: delete another project's port", "alt", "DELETE", "/v2.0/ports/{demo_port}",
        None, 404, "PortNotFound"),
    Row("member: update the external network", "demo", "PUT", "/v2.0/networks/{ext}",
        {"network": {"name": "x"}}, 403, DENIED),
    Row("admin: port on the external network for demo", "admin", "POST", "/v2.0/ports",
        port(network_id="{ext}", project_id="{demo_project}"), 201),
    # ---- held service ports ---------------------------------------------------------------
    Row("owner: delete a router's interface port", "demo", "DELETE",
        "/v2.0/ports/{interface}", None, 409, "ServicePortInUse"),
    Row("admin: delete a router's interface port", "admin", "DELETE",
        "/v2.0/ports/{interface}", None, 409, "ServicePortInUse"),
    # ---- admin-only attributes ---------------------------------------------------------
    Row("member: binding:host_id", "demo", "POST", "/v2.0/ports",
        port(network_id="{demo_net}", **{"binding:host_id": "h1"}), 403, DENIED),
    Row("member: provider network", "demo", "POST", "/v2.0/networks",
        {"network": {"name": "x", "provider:network_type": "vxlan"}}, 403, DENIED),
    Row("member: floating IP address", "demo", "POST", "/v2.0/floatingips",
        {"floatingip": {"floating_network_id": "{ext}",
                        "floating_ip_address": "172.31.161.200"}}, 403, DENIED),
    Row("member: router gateway without SNAT", "demo", "POST", "/v2.0/routers",
        {"router": {"name": "x", "external_gateway_info": {"network_id": "{ext}",
                                                           "enable_snat": False}}},
        403, DENIED),
    Row("member: router gateway address", "demo", "PUT", "/v2.0/routers/{router}",
        {"router": {"external_gateway_info": {
            "network_id": "{ext}", "external_fixed_ips": [{"ip_address": "172.31.161.201"}]}}},
        403, DENIED),
    Row("member: router gateway", "demo", "POST", "/v2.0/routers",
        {"router": {"name": "pol-x", "external_gateway_info": {"network_id": "{ext}"}}}, 201),
    # ---- project readers ---------------------------------------------------------------
    Row("reader: list networks", "reader", "GET", "/v2.0/networks", None, 200),
    Row("reader: show its project's router", "reader", "GET", "/v2.0/routers/{router}",
        None, 200),
    Row("reader: create a port", "reader", "POST", "/v2.0/ports",
        port(network_id="{demo_net}"), 403, DENIED),
    Row("reader: update its project's network", "reader", "PUT", "/v2.0/networks/{demo_net}",
        {"network": {"name": "x"}}, 403, DENIED),
    Row("reader: delete its project's port", "reader", "DELETE", "/v2.0/ports/{demo_port}",
        None, 403, DENIED),
    Row("reader: add a router interface", "reader", "PUT",
        "/v2.0/routers/{router}/add_router_interface", {"subnet_id": "{demo_sub}"}, 403,
        DENIED),
]


@pytest.mark.parametrize("row", ROWS, ids=str)
def test_policy_row(server, world, row: Row):
    token = world["tokens"][row.caller]
    body = fill(row.body, world)
    before = snapshot(server)
    r = call(server, token, row.method, fill(row.path, world), body)
    assert r.status_code == row.status, f"{row.label}: {r.status_code} {r.text}"
    if row.status >= 400:
        assert r.json()["NeutronError"]["type"] == row.error, r.text
        assert snapshot(server) == before, "a refused request changed the store"
    elif row.method == "POST":
        (kind, obj), = r.json().items()
        gone = call(server, world["tokens"]["admin"], "DELETE",
                    f"/v2.0/{kind}s/{obj['id']}")
        assert gone.status_code == 204, gone.text


# ---- stale service ports: nothing behind them --------------------------------------------

STALE = [("network:router_interface", "demo"), ("network:router_interface", "admin"),
         ("network:router_gateway", "demo"), ("network:floatingip", "demo"),
         ("network:floatingip", "admin")]


@pytest.mark.parametrize("owner,deleter", STALE, ids=[f"{o}-by-{d}" for o, d in STALE])
def test_stale_service_port_can_be_deleted(server, world, owner, deleter):
    """A port that claims a router or floating IP that does not exist (or that does not
    hold it) is deleted by its owner or an admin: 204, as Neutron does."""
    tokens = world["tokens"]
    r = call(server, tokens["demo"], "POST", "/v2.0/ports",
             port(network_id=world["demo_net"], device_owner=owner,
                  device_id=str(uuid.uuid4())))
    assert r.status_code == 201, r.text
    ident = r.json()["port"]["id"]
    r = call(server, tokens[deleter], "DELETE", f"/v2.0/ports/{ident}")
    assert r.status_code == 204, r.text
    assert call(server, tokens["admin"], "GET", f"/v2.0/ports/{ident}").status_code == 404


def test_port_claiming_own_router_it_is_not_part_of_can_be_deleted(server, world):
    """A port naming the caller's router as device, but which the router does not hold,
    is stale too (Plexus reads the router's own list of ports)."""
    tokens = world["tokens"]
    r = call(server, tokens["demo"], "POST", "/v2.0/ports",
             port(network_id=world["demo_net"], device_owner="network:router_interface",
                  device_id=world["router"]))
    assert r.status_code == 201, r.text
    r = call(server, tokens["demo"], "DELETE", f"/v2.0/ports/{r.json()['port']['id']}")
    assert r.status_code == 204, r.text


def test_stale_service_ports_do_not_block_network_delete(server, world):
    tokens = world["tokens"]
    r = call(server, tokens["demo"], "POST", "/v2.0/networks", {"network": {"name": "pol-d"}})
    assert r.status_code == 201, r.text
    net = r.json()["network"]["id"]
    r = call(server, tokens["demo"], "POST", "/v2.0/subnets", {"subnet": {
        "network_id": net, "cidr": "10.166.0.0/24", "ip_version": 4}})
    assert r.status_code == 201, r.text
    ports = []
    for owner in ("network:router_interface", "network:router_gateway", "network:floatingip",
                  "network:dhcp"):
        r = call(server, tokens["demo"], "POST", "/v2.0/ports",
                 port(network_id=net, device_owner=owner, device_id=str(uuid.uuid4())))
        assert r.status_code == 201, r.text
        ports.append(r.json()["port"]["id"])
    r = call(server, tokens["demo"], "DELETE", f"/v2.0/networks/{net}")
    assert r.status_code == 204, r.text
    for ident in ports:
        assert call(server, tokens["admin"], "GET", f"/v2.0/ports/{ident}").status_code == 404
    assert not [kv for kv in snapshot(server) if net in kv[0]]


def test_user_port_still_blocks_network_delete(server, world):
    """Stale service ports go with their network; a user port still keeps it (409)."""
    tokens = world["tokens"]
    r = call(server, tokens["demo"], "POST", "/v2.0/networks", {"network": {"name": "pol-e"}})
    net = r.json()["network"]["id"]
    try:
        stale = call(server, tokens["demo"], "POST", "/v2.0/ports",
                     port(network_id=net, device_owner="network:router_interface"))
        user = call(server, tokens["demo"], "POST", "/v2.0/ports", port(network_id=net))
        assert stale.status_code == user.status_code == 201
        before = snapshot(server)
        r = call(server, tokens["demo"], "DELETE", f"/v2.0/networks/{net}")
        assert r.status_code == 409 and r.json()["NeutronError"]["type"] == "NetworkInUse"
        assert snapshot(server) == before
        assert call(server, tokens["demo"], "DELETE",
                    f"/v2.0/ports/{user.json()['port']['id']}").status_code == 204
    finally:
        assert call(server, tokens["demo"], "DELETE",
                    f"/v2.0/networks/{net}").status_code == 204


# ---- what callers see ---------------------------------------------------------------------


def test_admin_only_attributes_are_hidden_from_members(server, world):
    tokens = world["tokens"]
    for caller in ("demo", "reader"):
        body = call(server, tokens[caller], "GET",
                    f"/v2.0/ports/{world['demo_port']}").json()["port"]
        assert not {"binding:host_id", "binding:profile", "binding:vif_type",
                    "binding:vif_details"} & set(body)
        body = call(server, tokens[caller], "GET",
                    f"/v2.0/networks/{world['demo_net']}").json()["network"]
        assert not {k for k in body if k.startswith("provider:")}
        assert body["router:external"] is False and "is_default" in body
    body = call(server, tokens["admin"], "GET",
                f"/v2.0/ports/{world['demo_port']}").json()["port"]
    assert {"binding:host_id", "binding:profile", "binding:vif_type"} <= set(body)
    body = call(server, tokens["admin"], "GET",
                f"/v2.0/networks/{world['demo_net']}").json()["network"]
    assert body["provider:network_type"] == "vxlan"


def test_filtering_on_a_hidden_attribute_finds_nothing(server, world):
    r = call(server, world["tokens"]["demo"], "GET",
             "/v2.0/networks?provider:network_type=vxlan")
    assert r.status_code == 200 and r.json()["networks"] == []


def test_ports_are_visible_to_their_project_and_their_network_owner(server, world):
    """get_port: admin, the port's project, or the project owning the port's network."""
    tokens = world["tokens"]
    r = call(server, tokens["admin"], "POST", "/v2.0/ports",
             port(network_id=world["demo_net"], project_id=world["alt_project"]))
    assert r.status_code == 201, r.text
    ident = r.json()["port"]["id"]
    try:
        for caller in ("alt", "demo", "reader"):
            r = call(server, tokens[caller], "GET", f"/v2.0/ports?network_id={world['demo_net']}")
            assert ident in {p["id"] for p in r.json()["ports"]}, caller
        r = call(server, tokens["alt"], "GET", f"/v2.0/ports/{world['alt_shared_port']}")
        assert r.status_code == 200
        r = call(server, tokens["demo"], "GET", f"/v2.0/ports/{world['alt_shared_port']}")
        assert r.status_code == 404 and r.json()["NeutronError"]["type"] == "PortNotFound"
        # nor make another project's port an interface of its router
        before = snapshot(server)
        r = call(server, tokens["demo"], "PUT",
                 f"/v2.0/routers/{world['router']}/add_router_interface", {"port_id": ident})
        assert r.status_code == 403, r.text
        assert r.json()["NeutronError"]["type"] == "DeviceIDNotOwnedByTenant"
        assert snapshot(server) == before
        # the network owner may not change the port, but may delete it (Neutron's
        # update_port and delete_port)
        before = snapshot(server)
        r = call(server, tokens["demo"], "PUT", f"/v2.0/ports/{ident}", port(name="x"))
        assert r.status_code == 403 and snapshot(server) == before
        r = call(server, tokens["demo"], "DELETE", f"/v2.0/ports/{ident}")
        assert r.status_code == 204, r.text
    finally:
        call(server, tokens["admin"], "DELETE", f"/v2.0/ports/{ident}")
