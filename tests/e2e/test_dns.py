"""DNS integration end to end (issue 13, ``dns-integration``): in a 1-chassis lab whose
server's ``dns_domain`` is ``example.org.``, a VM's own ISC ``dhclient`` is told by the
agent's DHCP the hostname of its port's ``dns_assignment`` (option 12: the port's
``dns_name``, or ``host-<address>`` without one) and the cloud's domain (option 15); a
rename through the API is what the client hears next; ``dhclient -6`` gets the domain
as its DHCPv6 domain search list. The client scripts only note what they were told:
they configure nothing and never write /etc."""

from __future__ import annotations

import shutil

import pytest

from tests.e2e.conftest import running_lab, wait_for

pytestmark = pytest.mark.e2e

DOMAIN = "example.org."

SCRIPT = """#!/bin/sh
# dhclient script for lab VMs: note the names it was told in SEEN, nothing else
case "$reason" in
  BOUND|RENEW|REBIND|REBOOT)
    echo "ip=$new_ip_address host=$new_host_name domain=$new_domain_name" >> SEEN ;;
  BOUND6|RENEW6|REBIND6|REBOOT6)
    echo "search=$new_dhcp6_domain_search" >> SEEN ;;
esac
exit 0
"""

CONF = """request subnet-mask, broadcast-address, routers, host-name, domain-name,
        domain-name-servers, interface-mtu;
also request dhcp6.domain-search, dhcp6.name-servers;
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A 1-chassis lab whose server names ports in example.org."""
    if not shutil.which("dhclient"):
        pytest.fail("dhclient (isc-dhcp-client) missing: run scripts/bootstrap.sh")
    with running_lab(tmp_path_factory.mktemp("dns"), chassis=1, dns_domain=DOMAIN) as fixture:
        yield fixture


def dhclient(lab, vm, run: str, *extra: str) -> str:
    """One run of the VM's ``dhclient`` (``-1``, then stopped with ``-x``: no release);
    what its script noted."""
    seen = lab.lab.dir / f"{vm.name}-{run}.seen"
    script = lab.lab.dir / f"{vm.name}-{run}.sh"
    script.write_text(SCRIPT.replace("SEEN", str(seen)))
    script.chmod(0o755)
    conf = lab.lab.dir / "dhclient-dns.conf"
    conf.write_text(CONF)
    pidfile = lab.lab.dir / "pids" / f"{vm.name}-{run}-dhclient.pid"
    lab.lab.inventory.record("process", group=vm.group, label=f"{vm.name}-{run}-dhclient",
                             pidfile=str(pidfile), ns=vm.netns)
    common = [*extra, "-pf", str(pidfile), "-lf", str(lab.lab.dir / f"{vm.name}-{run}.leases"),
              "-sf", str(script), "-cf", str(conf)]
    proc = vm.exec("dhclient", "-1", "-v", *common, "eth0", check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    vm.exec("dhclient", "-x", *common, "eth0", check=False, timeout=30)
    return seen.read_text() if seen.exists() else ""


def test_dhclient_gets_the_ports_hostname_and_the_cloud_domain(lab):
    api = lab.api.network
    net = lab.network("dns-net", "10.87.0.0/24")
    api.update_network(net.id, dns_domain="net.example.org.")   # kept, not used by DHCP
    port = api.create_port(network_id=net.id, name="dns-web", dns_name="Web-1")
    assert port.dns_name == "web-1"
    ip = port.fixed_ips[0]["ip_address"]
    assert port.dns_assignment == [{"hostname": "web-1", "ip_address": ip,
                                    "fqdn": "web-1.example.org."}]
    web = lab.vm("dns-web", net, port=port.id, chassis="c1")
    assert web.ip == ip
    seen = dhclient(lab, web, "first")
    assert f"ip={ip} host=web-1 domain=example.org" in seen, seen

    # renamed through the API: the client hears the new name next time
    api.update_port(port.id, dns_name="web-2.example.org.")
    seen = dhclient(lab, lab.vm("dns-web"), "renamed")
    assert f"ip={ip} host=web-2 domain=example.org" in seen, seen

    # a port without a name is named after its address
    plain = lab.vm("dns-plain", net, chassis="c1")
    host = "host-" + plain.ip.replace(".", "-")
    assert api.get_port(plain.port_id).dns_assignment[0]["fqdn"] == f"{host}.{DOMAIN}"
    seen = dhclient(lab, plain, "plain")
    assert f"ip={plain.ip} host={host} domain=example.org" in seen, seen


def test_dhcpv6_domain_search_is_the_cloud_domain(lab):
    api = lab.api.network
    net = lab.network("dns-net6", "10.87.1.0/24")
    api.create_subnet(network_id=net.id, cidr="2001:db8:87::/64", ip_version=6,
                      ipv6_ra_mode="dhcpv6-stateful", ipv6_address_mode="dhcpv6-stateful")
    vm = lab.vm("dns-v6", net, chassis="c1")
    wait_for(lambda: lab.vm("dns-v6").addresses6(scope="link"), 10, "a link-local address")
    seen = dhclient(lab, vm, "v6", "-6", "-S")          # information-request only
    assert "search=example.org." in seen, seen
