"""Port extensions of issue 13, through openstacksdk and raw HTTP against a real server:
``ip-substring-filtering``, ``port-mac-address-regenerate`` and
``tag-ports-during-bulk-creation``, each as Neutron answers it."""

from __future__ import annotations

import pytest

from tests.api.helpers import error, raw, register_chassis, state


@pytest.fixture
def net(admin, demo):
    """A demo network with one IPv4 subnet, deleted with its ports afterwards."""
    network = demo.network.create_network(name="px-ext")
    demo.network.create_subnet(network_id=network.id, cidr="10.83.0.0/24", ip_version=4)
    yield network
    for port in admin.network.ports(network_id=network.id):
        admin.network.delete_port(port)
    admin.network.delete_network(network.id)


def aliases(server, conn) -> set[str]:
    r = raw(server, conn, "GET", "/v2.0/extensions")
    assert r.status_code == 200, r.text
    return {e["alias"] for e in r.json()["extensions"]}


def test_extensions_advertised(server, demo):
    assert {"ip-substring-filtering", "port-mac-address-regenerate",
            "tag-ports-during-bulk-creation"} <= aliases(server, demo)
    r = raw(server, demo, "GET", "/v2.0/extensions/ip-substring-filtering")
    assert r.status_code == 200 and r.json()["extension"]["alias"] == "ip-substring-filtering"


def test_ip_address_substring_filter(server, demo, net):
    a = demo.network.create_port(network_id=net.id, fixed_ips=[{"ip_address": "10.83.0.17"}])
    b = demo.network.create_port(network_id=net.id, fixed_ips=[{"ip_address": "10.83.0.170"}])
    c = demo.network.create_port(network_id=net.id, fixed_ips=[{"ip_address": "10.83.0.25"}])

    def found(*filters: str) -> set[str]:
        q = "&".join(f"fixed_ips={f}" for f in filters)
        r = raw(server, demo, "GET", f"/v2.0/ports?network_id={net.id}&{q}")
        assert r.status_code == 200, r.text
        return {p["id"] for p in r.json()["ports"]}

    assert found("ip_address_substr=0.17") == {a.id, b.id}
    assert found("ip_address_substr=83.0.") == {a.id, b.id, c.id}
    assert found("ip_address_substr=.25") == {c.id}
    assert found("ip_address_substr=10.84") == set()
    # combined with an exact address: both must hold (Neutron ANDs the fixed_ips filters)
    assert found("ip_address_substr=0.17", "ip_address=10.83.0.170") == {b.id}
    # the SDK sends the same query
    assert {p.id for p in demo.network.ports(
        network_id=net.id, fixed_ips="ip_address_substr=0.17")} == {a.id, b.id}
    # without the network filter too (whole visible collection)
    r = raw(server, demo, "GET", "/v2.0/ports?fixed_ips=ip_address_substr=10.83.0.2")
    assert {p["id"] for p in r.json()["ports"]} == {c.id}
    # an unknown fixed_ips key is a 400, not a 500
    r = raw(server, demo, "GET", "/v2.0/ports?fixed_ips=ip_substr=10")
    assert r.status_code == 400, r.text


def test_mac_address_filter_ignores_case(server, demo, net):
    port = demo.network.create_port(network_id=net.id, mac_address="fa:16:3e:83:ab:cd")
    for asked in ("fa:16:3e:83:ab:cd", "FA:16:3E:83:AB:CD"):
        r = raw(server, demo, "GET", f"/v2.0/ports?mac_address={asked}")
        assert [p["id"] for p in r.json()["ports"]] == [port.id], asked
    r = raw(server, demo, "GET", "/v2.0/ports?mac_address=fa:16:3e:83:ab:ce")
    assert r.json()["ports"] == []


def test_mac_address_regenerate(server, admin, demo, net):
    port = demo.network.create_port(network_id=net.id, mac_address="fa:16:3e:83:00:01")
    # update_port:mac_address is admin only (Neutron's default policy), null included
    r = raw(server, demo, "PUT", f"/v2.0/ports/{port.id}", {"port": {"mac_address": None}})
    assert r.status_code in (403, 404), r.text
    before = state(server)
    r = raw(server, admin, "PUT", f"/v2.0/ports/{port.id}", {"port": {"mac_address": None}})
    assert r.status_code == 200, r.text
    new_mac = r.json()["port"]["mac_address"]
    assert new_mac != "fa:16:3e:83:00:01" and new_mac.startswith("fa:16:3e:")
    assert demo.network.get_port(port.id).mac_address == new_mac
    # the MAC index moved in the same transaction: the new MAC held, the old one free
    keys = {k for k, _ in state(server)}
    assert any(k.endswith(f"/mac/{net.id}/{new_mac}") for k in keys)
    assert not any(k.endswith(f"/mac/{net.id}/fa:16:3e:83:00:01") for k in keys)
    assert {k for k, _ in before} - keys == {k for k, _ in before
                                             if k.endswith("/fa:16:3e:83:00:01")}
    # so another port may take the old MAC, and nobody the new one
    other = demo.network.create_port(network_id=net.id, mac_address="fa:16:3e:83:00:01")
    assert other.mac_address == "fa:16:3e:83:00:01"
    error(raw(server, admin, "POST", "/v2.0/ports", {"port": {
        "network_id": net.id, "mac_address": new_mac}}), 409, "MacAddressInUse")
    # the openstack SDK's way of asking for it
    again = admin.network.update_port(port.id, mac_address=None)
    assert again.mac_address not in (new_mac, "fa:16:3e:83:00:01")


def test_mac_address_regenerate_refused_on_bound_port(server, admin, demo, net):
    register_chassis(server, admin, "px-ext-host", ttl=60)
    port = admin.network.create_port(network_id=net.id, binding_host_id="px-ext-host")
    r = raw(server, admin, "PUT", f"/southbound/v1/ports/{port.id}/status",
            {"host": "px-ext-host", "status": "ACTIVE"})
    assert r.status_code == 200, r.text
    before = state(server)
    error(raw(server, admin, "PUT", f"/v2.0/ports/{port.id}", {"port": {"mac_address": None}}),
          409, "PortBound")
    assert state(server) == before
    assert admin.network.get_port(port.id).mac_address == port.mac_address


def test_bad_mac_is_400_and_null_on_create_generates(server, demo, net):
    error(raw(server, demo, "POST", "/v2.0/ports", {"port": {
        "network_id": net.id, "mac_address": 17}}), 400, "InvalidInput")
    r = raw(server, demo, "POST", "/v2.0/ports", {"port": {
        "network_id": net.id, "mac_address": None}})
    assert r.status_code == 201, r.text
    assert r.json()["port"]["mac_address"].startswith("fa:16:3e:")


def test_tags_on_single_and_bulk_port_create(server, demo, net):
    one = demo.network.create_port(network_id=net.id, tags=["red", "blue"])
    assert sorted(one.tags) == ["blue", "red"]
    r = raw(server, demo, "POST", "/v2.0/ports", {"ports": [
        {"network_id": net.id, "name": "b1", "tags": ["bulk", "x"]},
        {"network_id": net.id, "name": "b2", "tags": ["bulk"]},
        {"network_id": net.id, "name": "b3"}]})
    assert r.status_code == 201, r.text
    made = {p["name"]: p for p in r.json()["ports"]}
    assert made["b1"]["tags"] == ["bulk", "x"] and made["b2"]["tags"] == ["bulk"]
    assert made["b3"]["tags"] == []
    # stored, and found by the tag filters
    assert {p.name for p in demo.network.ports(network_id=net.id, tags="bulk")} == {"b1", "b2"}
    assert {p.name for p in demo.network.ports(network_id=net.id, tags="bulk,x")} == {"b1"}
    # the SDK's bulk create carries them too
    sdk = list(demo.network.create_ports([{"network_id": net.id, "name": "s1", "tags": ["t1"]},
                                          {"network_id": net.id, "name": "s2", "tags": ["t2"]}]))
    assert {p.name: p.tags for p in sdk} == {"s1": ["t1"], "s2": ["t2"]}
    # a bad tag in one item of a bulk request writes nothing
    before = state(server)
    r = raw(server, demo, "POST", "/v2.0/ports", {"ports": [
        {"network_id": net.id, "tags": ["ok"]},
        {"network_id": net.id, "tags": ["x" * 256]}]})
    assert r.status_code == 400, r.text
    assert state(server) == before


# ---- extra_dhcp_opt --------------------------------------------------------------------

def opts_of(port) -> set[tuple]:
    return {(o["opt_name"], o["opt_value"], o["ip_version"]) for o in port["extra_dhcp_opts"]}


def test_extra_dhcp_opts_create_update_and_show(server, demo, net):
    assert "extra_dhcp_opt" in aliases(server, demo)
    r = raw(server, demo, "POST", "/v2.0/ports", {"port": {
        "network_id": net.id, "extra_dhcp_opts": [
            {"opt_name": "domain-name", "opt_value": "corp.example"},
            {"opt_name": "42", "opt_value": "10.83.0.7", "ip_version": 4},
            {"opt_name": "dns-server", "opt_value": "[fd00::1]", "ip_version": 6},
            {"opt_name": "mtu", "opt_value": None}]}})          # null on create: not added
    assert r.status_code == 201, r.text
    port = r.json()["port"]
    assert opts_of(port) == {("domain-name", "corp.example", 4), ("42", "10.83.0.7", 4),
                             ("dns-server", "[fd00::1]", 6)}
    # update: named options change or (null) go, the others stay
    r = raw(server, demo, "PUT", f"/v2.0/ports/{port['id']}", {"port": {"extra_dhcp_opts": [
        {"opt_name": "domain-name", "opt_value": "other.example"},
        {"opt_name": "42", "opt_value": None},
        {"opt_name": "mtu", "opt_value": "1400"}]}})
    assert r.status_code == 200, r.text
    want = {("domain-name", "other.example", 4), ("mtu", "1400", 4),
            ("dns-server", "[fd00::1]", 6)}
    assert opts_of(r.json()["port"]) == want
    # as the SDK and the CLI read it back
    sdk = demo.network.get_port(port["id"])
    assert {(o["opt_name"], o["opt_value"], o["ip_version"])
            for o in sdk.extra_dhcp_opts} == want
    plain = demo.network.create_port(network_id=net.id)
    assert plain.extra_dhcp_opts == []


@pytest.mark.parametrize("opts", [
    [{"opt_name": "no-such-option", "opt_value": "x"}],
    [{"opt_name": "mtu", "opt_value": "big"}],
    [{"opt_name": "ntp-server", "opt_value": "ntp.example"}],
    [{"opt_name": "53", "opt_value": "1"}],
    [{"opt_name": "", "opt_value": "x"}],
    [{"opt_name": "   ", "opt_value": "x"}],
    [{"opt_name": "domain-name", "opt_value": ""}],
    [{"opt_name": "domain-name"}],
    [{"opt_value": "x"}],
    [{"opt_name": "domain-name", "opt_value": "x", "ip_version": 5}],
    [{"opt_name": "domain-name", "opt_value": "x", "colour": "red"}],
    [{"opt_name": "domain-name", "opt_value": "a"}, {"opt_name": "domain-name",
                                                    "opt_value": "b", "ip_version": 4}],
    ["domain-name"],
    {"opt_name": "domain-name", "opt_value": "x"},
])
def test_bad_extra_dhcp_opts_are_400_and_write_nothing(server, demo, net, opts):
    port = demo.network.create_port(network_id=net.id)
    before = state(server)
    error(raw(server, demo, "POST", "/v2.0/ports", {"port": {
        "network_id": net.id, "extra_dhcp_opts": opts}}), 400, "InvalidInput")
    error(raw(server, demo, "PUT", f"/v2.0/ports/{port.id}", {"port": {
        "extra_dhcp_opts": opts}}), 400, "InvalidInput")
    assert state(server) == before
