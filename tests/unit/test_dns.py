"""DNS integration, the pure parts (``plexus.model.dns``) and what the host DHCP says
with them: neutron-lib's validation reasons, a port's ``dns_assignment``, the names
DHCPv4 (options 12 and 15) and DHCPv6 (domain search list) hand a port, the parsed
port's ``dns_name`` and the catalog's index of it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from plexus.agent import dhcp6
from plexus.api.query import parse_query
from plexus.api.schemas.core import PORT
from plexus.model import dns
from plexus.model.catalog import Catalog
from plexus.model.objects import to_port
from tests.golden import ipv6_reference as ref6
from tests.unit.test_dhcp import DISCOVER, INFORM, REQUEST, answer, client_frame, ip, make_view
from tests.unit.test_dhcp import PORT as DHCP_PORT
from tests.unit.test_ipv6_services import CLIENT_DUID, dhcp6_frame, opt, parse_reply

EX = "example.org."


# ---- validation --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "vm1", "web-1", "a.b", "a" * 63, "vm1.example.org.",
                                  "x.y.example.org.", "1host", "VM1"])
def test_good_dns_names(name):
    assert dns.check_dns_name(name, EX) == name.lower()


@pytest.mark.parametrize("name,reason", [
    ("vm_1", "Name 'vm_1' must be 1-63 characters long"),
    ("-a", "Name '-a' must not start or end with a hyphen"),
    ("a-", "Name 'a-' must not start or end with a hyphen"),
    ("a..b", "Encountered an empty component"),
    (".a", "Encountered an empty component"),
    ("a.123", "TLD '123' must not be all numeric"),
    ("a" * 64, "must be 1-63 characters long"),
    ("a" * 256, "exceeds the 255 character FQDN limit"),
])
def test_bad_dns_name_formats(name, reason):
    with pytest.raises(dns.BadName) as exc:
        dns.check_dns_name(name, EX)
    assert str(exc.value).startswith(f"'{name}' not a valid PQDN or FQDN. Reason: ")
    assert reason in str(exc.value)
    # the format is checked whatever the cloud's domain, as Neutron's validator does
    with pytest.raises(dns.BadName):
        dns.check_dns_name(name, dns.DEFAULT_DOMAIN)


def test_dns_name_against_the_cloud_domain():
    for outside in ("vm.other.org.", "example.org.", "vmexample.org."):
        with pytest.raises(dns.BadName, match="The dns_name passed is a FQDN"):
            dns.check_dns_name(outside, EX)
    long_pqdn = ".".join(["a" * 60] * 4)          # 243 + ".example.org." > 255
    with pytest.raises(dns.BadName, match="The dns_name passed is a PQDN and its size is "
                                          "'243'"):
        dns.check_dns_name(long_pqdn, EX)
    # with the default (or no) domain only the format counts: names are not kept anyway
    assert dns.check_dns_name("vm.other.org.", dns.DEFAULT_DOMAIN) == "vm.other.org."
    assert dns.check_dns_name(long_pqdn, "") == long_pqdn


def test_non_strings_are_refused():
    for check in (dns.check_dns_name_format, dns.check_dns_domain, dns.check_fip_dns_name):
        with pytest.raises(dns.BadName, match="Input value 5 must be string type"):
            check(5)
        with pytest.raises(dns.BadName, match="Input value None must be string type"):
            check(None)


def test_dns_domains():
    assert dns.check_dns_domain("") == ""
    assert dns.check_dns_domain("Corp.Example.") == "corp.example."
    with pytest.raises(dns.BadName, match="'corp.example' is not a FQDN"):
        dns.check_dns_domain("corp.example")
    with pytest.raises(dns.BadName, match="Adding a sub-domain"):
        dns.check_dns_domain(("a" * 63 + ".") * 4)
    with pytest.raises(dns.BadName, match="not a valid PQDN or FQDN"):
        dns.check_dns_domain("a_b.example.")


def test_floating_ip_dns_names():
    assert dns.check_fip_dns_name("Www") == "www"
    with pytest.raises(dns.BadName, match="is a FQDN. It should be a relative domain name"):
        dns.check_fip_dns_name("www.example.")
    with pytest.raises(dns.BadName, match="Adding a domain name"):
        dns.check_fip_dns_name(".".join(["a" * 63] * 4))


def test_domain_setting_and_when_names_are_kept():
    assert dns.domain_setting("example.org") == dns.domain_setting("example.org.") == EX
    assert dns.domain_setting("") == dns.domain_setting(None) == ""
    assert not dns.names_kept("openstacklocal") and not dns.names_kept("openstacklocal.")
    assert not dns.names_kept("") and dns.names_kept("example.org")


def test_port_schema_lowers_and_checks_the_format():
    from plexus.api.errors import InvalidInput
    attrs = PORT.validate_update(None, {"dns_name": "VM1", "dns_domain": "A.Example."})
    assert attrs == {"dns_name": "vm1", "dns_domain": "a.example."}
    with pytest.raises(InvalidInput):
        PORT.validate_update(None, {"dns_name": "vm_1"})
    with pytest.raises(InvalidInput):
        PORT.validate_update(None, {"dns_assignment": []})       # read-only


def test_dns_name_filters_are_lowered():
    q = parse_query(PORT, [("dns_name", "VM1"), ("name", "VM1")])
    assert q.filters == {"dns_name": ["vm1"], "name": ["VM1"]}


# ---- assignment and DHCP names ---------------------------------------------------------


def test_assignment_names_each_fixed_ip():
    assert dns.assignment("vm1", ["10.0.0.5", "2001:db8::5"], "example.org") == [
        {"hostname": "vm1", "ip_address": "10.0.0.5", "fqdn": "vm1.example.org."},
        {"hostname": "vm1", "ip_address": "2001:db8::5", "fqdn": "vm1.example.org."}]
    assert dns.assignment("", ["10.0.0.5", "2001:db8::5"], EX) == [
        {"hostname": "host-10-0-0-5", "ip_address": "10.0.0.5",
         "fqdn": "host-10-0-0-5.example.org."},
        {"hostname": "host-2001-db8--5", "ip_address": "2001:db8::5",
         "fqdn": "host-2001-db8--5.example.org."}]
    assert dns.assignment("vm1.example.org.", ["10.0.0.5"], EX) == [
        {"hostname": "vm1.example.org.", "ip_address": "10.0.0.5", "fqdn": "vm1.example.org."}]
    # the default domain: names (even stored ones) are not used
    assert dns.assignment("vm1", ["10.0.0.5"], dns.DEFAULT_DOMAIN) == [
        {"hostname": "host-10-0-0-5", "ip_address": "10.0.0.5",
         "fqdn": "host-10-0-0-5.openstacklocal."}]
    # no domain at all: the hostname is the fqdn
    assert dns.assignment("", ["10.0.0.5"], "") == [
        {"hostname": "host-10-0-0-5", "ip_address": "10.0.0.5", "fqdn": "host-10-0-0-5"}]
    assert dns.assignment("vm1", [], EX) == []


@pytest.mark.parametrize("dns_name,domain,want", [
    ("", dns.DEFAULT_DOMAIN, ("host-10-0-0-5", "openstacklocal")),
    ("vm1", dns.DEFAULT_DOMAIN, ("host-10-0-0-5", "openstacklocal")),
    ("vm1", EX, ("vm1", "example.org")),
    ("vm1.example.org.", EX, ("vm1", "example.org")),
    ("a.b", EX, ("a.b", "example.org")),
    ("vm1.other.org.", EX, ("vm1.other.org", "example.org")),     # from a former domain
    ("", "", ("host-10-0-0-5", "")),
])
def test_dhcp_names(dns_name, domain, want):
    assert dns.dhcp_names(dns_name, "10.0.0.5", domain) == want


# ---- the host DHCP -------------------------------------------------------------------


@pytest.mark.parametrize("kind", [DISCOVER, REQUEST])
def test_dhcpv4_sends_the_ports_hostname_and_the_cloud_domain(kind):
    port = replace(DHCP_PORT, dns_name="web-1")
    view = replace(make_view(ports=(port,)), dns_domain=EX)
    options = [(50, ip("10.0.0.5")), (54, ip("10.0.0.1"))] if kind == REQUEST else []
    _, _, _, _, opts = answer(client_frame(kind, options=options), view=view, port=port)
    assert opts[12] == b"web-1" and opts[15] == b"example.org"
    # an FQDN dns_name: the host part only
    port = replace(port, dns_name="web-1.example.org.")
    view = replace(make_view(ports=(port,)), dns_domain=EX)
    _, _, _, _, opts = answer(client_frame(kind, options=options), view=view, port=port)
    assert opts[12] == b"web-1" and opts[15] == b"example.org"


def test_dhcpv4_without_a_name_or_domain():
    port = replace(DHCP_PORT, dns_name="web-1")
    view = replace(make_view(ports=(port,)), dns_domain="openstacklocal.")
    _, _, _, _, opts = answer(client_frame(DISCOVER), view=view, port=port)
    assert opts[12] == b"host-10-0-0-5" and opts[15] == b"openstacklocal"
    view = replace(view, dns_domain="")
    _, _, _, _, opts = answer(client_frame(DISCOVER), view=view, port=port)
    assert opts[12] == b"host-10-0-0-5" and 15 not in opts


def test_dhcpv4_extra_options_win_and_inform_gets_the_domain():
    port = replace(DHCP_PORT, dns_name="web-1", dhcp_options=((12, b"pxe"), (15, b"corp.x")))
    view = replace(make_view(ports=(port,)), dns_domain=EX)
    _, _, _, _, opts = answer(client_frame(DISCOVER), view=view, port=port)
    assert opts[12] == b"pxe" and opts[15] == b"corp.x"
    port = replace(port, dhcp_options=())
    view = replace(view, ports={port.id: port})
    _, _, _, d, opts = answer(client_frame(INFORM, ciaddr="10.0.0.5", src="10.0.0.5"),
                              view=view, port=port)
    assert d.yiaddr == "0.0.0.0" and 12 not in opts and opts[15] == b"example.org"


def test_dhcpv6_search_list_is_the_cloud_domain():
    view = replace(ref6.view("hv1"), dns_domain=EX)
    port = view.ports["c-vm1"]
    frame = dhcp6_frame(port.mac, dhcp6.INFORMATION_REQUEST, opt(1, CLIENT_DUID))
    _, _, opts = parse_reply(dhcp6.respond(frame, port, view), port.mac)
    assert opts[24] == [b"\x07example\x03org\x00"]
    _, _, opts = parse_reply(dhcp6.respond(frame, port, replace(view, dns_domain="")), port.mac)
    assert 24 not in opts
    # the responder's own domain, when given, wins (a tool answering for another cloud)
    _, _, opts = parse_reply(dhcp6.Responder("corp.example.")(frame, port, view), port.mac)
    assert opts[24] == [b"\x04corp\x07example\x00"]


# ---- the model: parsed once, indexed ---------------------------------------------------


def wire_port(ident: str, dns_name: str | None) -> dict:
    out = {"id": ident, "plexus:key": 7, "network_id": "n1", "mac_address": "fa:16:3e:00:00:07",
           "fixed_ips": [{"subnet_id": "s1", "ip_address": "10.0.0.7"}]}
    if dns_name is not None:
        out["dns_name"] = dns_name
    return out


def test_parsed_port_carries_its_dns_name():
    assert to_port(wire_port("p1", "web-1")).dns_name == "web-1"
    assert to_port(wire_port("p1", None)).dns_name == ""          # stored before the field
    assert to_port(wire_port("p1", "web-1")) != to_port(wire_port("p1", "web-2"))


def test_catalog_indexes_ports_by_dns_name():
    catalog = Catalog()
    catalog.apply_wire("ports", "p1", wire_port("p1", "web-1"))
    catalog.apply_wire("ports", "p2", wire_port("p2", "web-1"))
    catalog.apply_wire("ports", "p3", wire_port("p3", ""))
    assert catalog.ports_by_dns_name.of("web-1") == {"p1", "p2"}
    assert "" not in catalog.ports_by_dns_name
    catalog.apply_wire("ports", "p1", wire_port("p1", "web-2"))
    assert catalog.ports_by_dns_name.of("web-1") == {"p2"}
    assert catalog.ports_by_dns_name.of("web-2") == {"p1"}
    catalog.apply_wire("ports", "p2", None)
    assert "web-1" not in catalog.ports_by_dns_name


# ---- the agent learns the cloud's domain from the server ------------------------------


def test_southbound_client_keeps_the_domain_the_server_says():
    import asyncio

    import httpx

    from plexus.agent.southbound import Southbound
    said = {"dns_domain": "example.org."}

    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/identity/v3/auth/tokens":
            return httpx.Response(201, headers={"X-Subject-Token": "t"}, json={})
        if request.url.path.endswith("/heartbeat"):
            return httpx.Response(200, json={"ttl": 10, **said})
        return httpx.Response(200, json={"agent": {}, "lease": 7, "ttl": 10, **said})

    sb = Southbound(["http://s:9696"], transport=httpx.MockTransport(server))
    assert sb.dns_domain is None

    async def go():
        assert await sb.register("c1", "198.18.0.1", {}, False, 10) == (7, 10.0)
        assert sb.dns_domain == "example.org."
        said["dns_domain"] = "other.example."          # a server restarted with another
        await sb.heartbeat("c1", 7)
        assert sb.dns_domain == "other.example."
        said.clear()                                   # an older server: kept as it was
        await sb.heartbeat("c1", 7)
        assert sb.dns_domain == "other.example."
    asyncio.run(go())


def test_agent_view_carries_the_learnt_domain():
    from plexus.agent.view import build
    catalog = Catalog()
    plain = build(catalog, "hv1", "192.0.2.1", vif_ofports={}, tunnel_ofports={})
    assert plain.dns_domain == dns.DEFAULT_DOMAIN
    view = build(catalog, "hv1", "192.0.2.1", vif_ofports={}, tunnel_ofports={},
                 dns_domain=EX)
    assert view.dns_domain == EX
