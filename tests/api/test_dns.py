"""DNS integration (issue 13, ``dns-integration`` and ``dns-domain-ports``) through the
real openstacksdk, the ``openstack`` CLI and raw HTTP, against real servers: the session
server with Neutron's default ``dns_domain`` (``openstacklocal.``: ports keep no
``dns_name``) and one of this module configured with ``example.org.``.

Neutron's semantics without an external DNS service: network, port and floating IP
DNS attributes validated with neutron-lib's reasons (400, nothing written), names
lower-cased, a port's ``dns_assignment`` computed from its fixed IPs (``host-<ip>``
without a name) and kept current when they change, the ``dns_name`` filter."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from plexus.server.runner import write_clouds_yaml
from tests.api.conftest import OPENSTACK, _connect, serving
from tests.api.helpers import error, raw, state

DOMAIN = "example.org."


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    """A server whose cloud domain is example.org. (the final dot is added; ports keep
    their dns_name)."""
    tmp = tmp_path_factory.mktemp("dns")
    with serving(tmp, lambda c: setattr(c.network, "dns_domain", "example.org")) as server:
        server.clouds = write_clouds_yaml(tmp / "clouds.yaml", server.url, server.config_used)
        yield server


def _client(cloud: str):
    """A module fixture: an openstacksdk connection to the module's server as ``cloud``."""
    @pytest.fixture(scope="module")
    def connection(srv):
        return _connect(srv, cloud)
    return connection


admin_x, demo_x, alt_x = (_client(c) for c in ("devstack-admin", "devstack", "devstack-alt"))


def osc(srv, *args, cloud="devstack"):
    """The real ``openstack`` CLI against the module's server (JSON output parsed)."""
    env = dict(os.environ, OS_CLIENT_CONFIG_FILE=str(srv.clouds), OS_CLOUD=cloud)
    proc = subprocess.run([OPENSTACK, *args, "-f", "json"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout) if proc.stdout.strip() else None


def _cleanup(admin, network_id):
    for port in admin.network.ports(network_id=network_id):
        admin.network.delete_port(port)
    admin.network.delete_network(network_id)


@pytest.fixture
def net_x(admin_x, demo_x):
    """A demo network on the example.org. server, with an IPv4 subnet."""
    network = demo_x.network.create_network(name="dns-net", dns_domain="Net.Example.ORG.")
    subnet = demo_x.network.create_subnet(network_id=network.id, cidr="10.84.0.0/24",
                                          ip_version=4)
    network.subnet = subnet
    yield network
    _cleanup(admin_x, network.id)


@pytest.fixture
def net(admin, demo):
    """A demo network on the session server (default dns_domain)."""
    network = demo.network.create_network(name="dns-default")
    demo.network.create_subnet(network_id=network.id, cidr="10.85.0.0/24", ip_version=4)
    yield network
    _cleanup(admin, network.id)


def entry(ip: str, hostname: str, fqdn: str) -> dict:
    return {"ip_address": ip, "hostname": hostname, "fqdn": fqdn}


def test_extensions_advertised(demo, demo_x):
    for conn in (demo, demo_x):
        aliases = {e.alias for e in conn.network.extensions()}
        assert {"dns-integration", "dns-domain-ports"} <= aliases
    ext = demo.network.find_extension("dns-integration")
    assert ext.name == "DNS Integration"


# ---- the default domain (openstacklocal.): names from addresses ---------------------


def test_default_domain_names_ports_after_their_addresses(server, demo, net):
    port = demo.network.create_port(network_id=net.id, dns_name="vm1",
                                    dns_domain="ports.example.org.")
    ip = port.fixed_ips[0]["ip_address"]
    host = "host-" + ip.replace(".", "-")
    # Neutron keeps no dns_name (nor port dns_domain) while dns_domain is openstacklocal.
    assert port.dns_name == "" and port.dns_domain == ""
    assert port.dns_assignment == [entry(ip, host, f"{host}.openstacklocal.")]
    shown = demo.network.get_port(port.id)
    assert shown.dns_assignment == port.dns_assignment and shown.dns_name == ""
    # an update naming it changes nothing either; a bad name is still a 400
    assert demo.network.update_port(port.id, dns_name="vm2").dns_name == ""
    r = raw(server, demo, "PUT", f"/v2.0/ports/{port.id}", {"port": {"dns_name": "-vm"}})
    error(r, 400, "InvalidInput")
    # the network's dns_domain is kept whatever the cloud's domain
    assert demo.network.update_network(net.id, dns_domain="corp.example.").dns_domain == \
        "corp.example."
    assert demo.network.get_network(net.id).dns_domain == "corp.example."


def test_default_domain_in_the_cli(cli, net):
    port = cli("port", "create", "--network", net.id, "--dns-name", "cli-vm", "dns-cli",
               cloud="devstack")
    assert port["dns_name"] == ""
    (assigned,) = port["dns_assignment"]
    assert assigned["fqdn"] == f"{assigned['hostname']}.openstacklocal."
    assert assigned["hostname"] == "host-" + assigned["ip_address"].replace(".", "-")


# ---- a cloud domain of its own (example.org.) ----------------------------------------


def test_port_dns_name_and_assignment(srv, demo_x, net_x):
    port = demo_x.network.create_port(network_id=net_x.id, dns_name="Web-1",
                                      dns_domain="Ports.Example.org.")
    ip = port.fixed_ips[0]["ip_address"]
    assert port.dns_name == "web-1"                        # case-insensitive: lowered
    assert port.dns_domain == "ports.example.org."
    assert port.dns_assignment == [entry(ip, "web-1", f"web-1.{DOMAIN}")]
    assert demo_x.network.get_network(net_x.id).dns_domain == "net.example.org."
    # raw wire form: the attributes are there, dns_assignment a list of dicts
    r = raw(srv, demo_x, "GET", f"/v2.0/ports/{port.id}")
    body = r.json()["port"]
    assert body["dns_assignment"] == [entry(ip, "web-1", "web-1.example.org.")]
    # ?fields= selects them like any attribute
    r = raw(srv, demo_x, "GET", f"/v2.0/ports/{port.id}?fields=dns_assignment&fields=id")
    assert r.json()["port"] == {"id": port.id, "dns_assignment": body["dns_assignment"]}
    # an FQDN inside the cloud's domain is its own fqdn
    fq = demo_x.network.update_port(port.id, dns_name="web-1.example.org.")
    assert fq.dns_assignment == [entry(ip, "web-1.example.org.", "web-1.example.org.")]
    # no name: host-<address>
    bare = demo_x.network.update_port(port.id, dns_name="")
    host = "host-" + ip.replace(".", "-")
    assert bare.dns_name == "" and bare.dns_assignment == [entry(ip, host, f"{host}.{DOMAIN}")]
    assert bare.dns_domain == "ports.example.org."          # untouched by the update
    assert demo_x.network.update_port(port.id, dns_domain="").dns_domain == ""


def test_dns_assignment_follows_the_fixed_ips(demo_x, net_x):
    port = demo_x.network.create_port(network_id=net_x.id, dns_name="db",
                                      fixed_ips=[{"ip_address": "10.84.0.20"}])
    assert port.dns_assignment == [entry("10.84.0.20", "db", f"db.{DOMAIN}")]
    moved = demo_x.network.update_port(port.id, fixed_ips=[{"ip_address": "10.84.0.21"},
                                                          {"ip_address": "10.84.0.22"}])
    assert moved.dns_assignment == [entry("10.84.0.21", "db", f"db.{DOMAIN}"),
                                    entry("10.84.0.22", "db", f"db.{DOMAIN}")]
    assert demo_x.network.get_port(port.id).dns_assignment == moved.dns_assignment
    # a SLAAC subnet added to the network gives the port an address: it is named too
    sub6 = demo_x.network.create_subnet(network_id=net_x.id, cidr="2001:db8:84::/64",
                                        ip_version=6, ipv6_ra_mode="slaac",
                                        ipv6_address_mode="slaac")
    after = demo_x.network.get_port(port.id)
    v6 = [ip["ip_address"] for ip in after.fixed_ips if ip["subnet_id"] == sub6.id]
    assert len(v6) == 1
    assert entry(v6[0], "db", f"db.{DOMAIN}") in after.dns_assignment
    assert len(after.dns_assignment) == 3
    # no address, no assignment
    empty = demo_x.network.update_port(port.id, fixed_ips=[])
    assert empty.dns_assignment == []


@pytest.mark.parametrize("name,reason", [
    ("vm_1", "'vm_1' not a valid PQDN or FQDN. Reason: Name 'vm_1' must be 1-63 characters "
             "long, each of which can only be alphanumeric or a hyphen"),
    ("-vm", "'-vm' not a valid PQDN or FQDN. Reason: Name '-vm' must not start or end with "
            "a hyphen"),
    ("vm..a", "'vm..a' not a valid PQDN or FQDN. Reason: Encountered an empty component"),
    ("vm.123", "'vm.123' not a valid PQDN or FQDN. Reason: TLD '123' must not be all "
               "numeric"),
    ("a" * 64, f"'{'a' * 64}' not a valid PQDN or FQDN. Reason: Name '{'a' * 64}' must be "
               f"1-63 characters long, each of which can only be alphanumeric or a hyphen"),
    ("vm.other.org.", "The dns_name passed is a FQDN. Its higher level labels must be equal "
                      "to the dns_domain option in neutron.conf, that has been set to "
                      "'example.org.'. It must also include one or more valid DNS labels to "
                      "the left of 'example.org.'"),
    ("example.org.", None),
    (".".join(["a" * 60] * 4), None),                  # a PQDN too long with the domain
    (5, "Input value 5 must be string type"),
    (None, "Input value None must be string type"),
])
def test_bad_dns_name_is_400_and_writes_nothing(srv, demo_x, net_x, name, reason):
    before = state(srv)
    r = raw(srv, demo_x, "POST", "/v2.0/ports",
            {"port": {"network_id": net_x.id, "dns_name": name}})
    error(r, 400, "InvalidInput", f"Invalid input for operation: {reason}." if reason else None)
    assert state(srv) == before
    port = demo_x.network.create_port(network_id=net_x.id, dns_name="ok")
    before = state(srv)
    r = raw(srv, demo_x, "PUT", f"/v2.0/ports/{port.id}", {"port": {"dns_name": name}})
    error(r, 400, "InvalidInput", f"Invalid input for operation: {reason}." if reason else None)
    assert state(srv) == before
    assert demo_x.network.get_port(port.id).dns_name == "ok"


@pytest.mark.parametrize("resource,domain,reason", [
    ("network", "no-dot", "'no-dot' is not a FQDN"),
    ("port", "no-dot", "'no-dot' is not a FQDN"),
    ("network", "bad_label.org.", "'bad_label.org.' not a valid PQDN or FQDN. Reason: Name "
                                  "'bad_label' must be 1-63 characters long, each of which "
                                  "can only be alphanumeric or a hyphen"),
    ("network", "a.1.", "'a.1.' not a valid PQDN or FQDN. Reason: TLD '1' must not be all "
                        "numeric"),
    ("port", ("a" * 63 + ".") * 4, None),             # no room left for a sub-domain
    ("network", 7, "Input value 7 must be string type"),
])
def test_bad_dns_domain_is_400_and_writes_nothing(srv, demo_x, net_x, resource, domain,
                                                  reason):
    before = state(srv)
    body = {"network": {"name": "x", "dns_domain": domain}} if resource == "network" else \
        {"port": {"network_id": net_x.id, "dns_domain": domain}}
    r = raw(srv, demo_x, "POST", f"/v2.0/{resource}s", body)
    error(r, 400, "InvalidInput", f"Invalid input for operation: {reason}." if reason else None)
    assert state(srv) == before
    path = f"/v2.0/networks/{net_x.id}" if resource == "network" else None
    if path:
        r = raw(srv, demo_x, "PUT", path, {"network": {"dns_domain": domain}})
        error(r, 400, "InvalidInput")
        assert state(srv) == before


def test_dns_name_filter(srv, demo_x, alt_x, net_x):
    a = demo_x.network.create_port(network_id=net_x.id, dns_name="alpha")
    b = demo_x.network.create_port(network_id=net_x.id, dns_name="beta")
    c = demo_x.network.create_port(network_id=net_x.id)

    def found(conn, query):
        r = raw(srv, conn, "GET", f"/v2.0/ports?network_id={net_x.id}&{query}")
        assert r.status_code == 200, r.text
        return {p["id"] for p in r.json()["ports"]}
    hub = srv.app.state.hub
    lookups = hub.stats["lookups"]
    r = raw(srv, demo_x, "GET", "/v2.0/ports?dns_name=alpha")
    assert [p["id"] for p in r.json()["ports"]] == [a.id]
    assert hub.stats["lookups"] > lookups                 # the index answered
    assert found(demo_x, "dns_name=ALPHA") == {a.id}      # filters are lowered too
    assert found(demo_x, "dns_name=alpha&dns_name=beta") == {a.id, b.id}
    assert found(demo_x, "dns_name=") == {c.id}            # the ports without a name
    assert found(demo_x, "dns_name=gamma") == set()
    r = raw(srv, alt_x, "GET", "/v2.0/ports?dns_name=alpha")
    assert r.json()["ports"] == []                         # not alt's to see
    demo_x.network.update_port(a.id, dns_name="gamma")
    assert found(demo_x, "dns_name=alpha") == set()
    assert found(demo_x, "dns_name=gamma") == {a.id}
    # dns_assignment is not a filter (a list of dicts), as Neutron's
    r = raw(srv, demo_x, "GET", "/v2.0/ports?dns_assignment=x")
    assert r.status_code == 400, r.text


def test_another_project_cannot_name_a_port(srv, demo_x, alt_x, net_x):
    port = demo_x.network.create_port(network_id=net_x.id, dns_name="mine")
    r = raw(srv, alt_x, "PUT", f"/v2.0/ports/{port.id}", {"port": {"dns_name": "yours"}})
    error(r, 404, "PortNotFound")
    r = raw(srv, alt_x, "PUT", f"/v2.0/networks/{net_x.id}",
            {"network": {"dns_domain": "alt.example."}})
    error(r, 404, "NetworkNotFound")
    assert demo_x.network.get_port(port.id).dns_name == "mine"


def test_cli_port_and_network(srv, admin_x, net_x):
    net = osc(srv, "network", "create", "--dns-domain", "cli.example.org.", "dns-cli-net")
    try:
        assert net["dns_domain"] == "cli.example.org."
        osc(srv, "subnet", "create", "--network", net["id"], "--subnet-range",
            "10.86.0.0/24", "dns-cli-sub")
        port = osc(srv, "port", "create", "--network", net["id"], "--dns-name", "cli-vm",
                   "--dns-domain", "vm.example.org.", "dns-cli-port")
        ip = port["fixed_ips"][0]["ip_address"]
        assert port["dns_name"] == "cli-vm" and port["dns_domain"] == "vm.example.org."
        assert port["dns_assignment"] == [entry(ip, "cli-vm", "cli-vm.example.org.")]
        env = dict(os.environ, OS_CLIENT_CONFIG_FILE=str(srv.clouds), OS_CLOUD="devstack")
        proc = subprocess.run([OPENSTACK, "port", "set", "--dns-name", "renamed", port["id"]],
                              env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        shown = osc(srv, "port", "show", port["id"])
        assert shown["dns_assignment"] == [entry(ip, "renamed", "renamed.example.org.")]
        proc = subprocess.run([OPENSTACK, "network", "set", "--dns-domain", "bad", net["id"]],
                              env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0 and "is not a FQDN" in proc.stderr, proc.stderr
    finally:
        _cleanup(admin_x, net["id"])


@pytest.fixture
def external(admin_x):
    """An external network with a subnet (floating IPs come from it)."""
    ext = admin_x.network.create_network(name="dns-ext", is_router_external=True)
    admin_x.network.create_subnet(network_id=ext.id, cidr="203.0.113.0/24", ip_version=4)
    yield ext
    for fip in admin_x.network.ips(floating_network_id=ext.id):
        admin_x.network.delete_ip(fip)
    _cleanup(admin_x, ext.id)


def test_floating_ip_dns_name_and_domain(srv, demo_x, external):
    fip = demo_x.network.create_ip(floating_network_id=external.id, dns_name="Www",
                                   dns_domain="Pub.Example.org.")
    assert (fip.dns_name, fip.dns_domain) == ("www", "pub.example.org.")
    shown = demo_x.network.get_ip(fip.id)
    assert (shown.dns_name, shown.dns_domain) == ("www", "pub.example.org.")
    plain = demo_x.network.create_ip(floating_network_id=external.id)
    assert (plain.dns_name, plain.dns_domain) == ("", "")
    before = state(srv)
    for body, status, kind, message in (
            ({"dns_name": "www"}, 400, "BadRequest",
             "Bad floatingip request: dns_name cannot be specified without a dns_domain."),
            ({"dns_domain": "pub.example.org."}, 400, "BadRequest",
             "Bad floatingip request: dns_domain cannot be specified without a dns_name."),
            ({"dns_name": "www.example.org.", "dns_domain": "example.org."}, 400,
             "InvalidInput", "Invalid input for operation: 'www.example.org.' is a FQDN. It "
                             "should be a relative domain name."),
            ({"dns_name": "www", "dns_domain": "example.org"}, 400, "InvalidInput",
             "Invalid input for operation: 'example.org' is not a FQDN.")):
        r = raw(srv, demo_x, "POST", "/v2.0/floatingips",
                {"floatingip": {"floating_network_id": external.id, **body}})
        error(r, status, kind, message)
    # set on create only (allow_put False, as Neutron's)
    r = raw(srv, demo_x, "PUT", f"/v2.0/floatingips/{fip.id}",
            {"floatingip": {"dns_name": "other"}})
    error(r, 400, "InvalidInput")
    assert state(srv) == before
    # the CLI's create options
    made = osc(srv, "floating", "ip", "create", "--dns-name", "cli-fip", "--dns-domain",
               "pub.example.org.", external.id)
    assert (made["dns_name"], made["dns_domain"]) == ("cli-fip", "pub.example.org.")


def test_southbound_registration_says_the_cloud_domain(srv, admin_x):
    r = raw(srv, admin_x, "PUT", "/southbound/v1/chassis/dns-c1",
            {"tunnel_ip": "198.18.0.61", "ttl": 5})
    assert r.status_code == 200, r.text
    assert r.json()["dns_domain"] == DOMAIN
    r = raw(srv, admin_x, "DELETE", f"/southbound/v1/chassis/dns-c1?lease={r.json()['lease']}")
    assert r.status_code == 204, r.text
