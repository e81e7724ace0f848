"""Extra DHCP options end to end (issue 13, ``extra_dhcp_opt``): options set on a VM's
port through the API reach the VM's own DHCP client (busybox udhcpc, asking for them
with ``-O``) from the agent's DHCP responder — a name (domain-name), a number (42,
ntp-server) and one replacing the network's own value (mtu) — and an update through
the API changes what the client sees next time."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import running_lab, wait_for

pytestmark = pytest.mark.e2e

# records the options udhcpc hands its script on "bound"; configures nothing
DUMP_SCRIPT = """#!/bin/sh
[ "$1" = bound ] && echo "ip=${ip:-} domain=${domain:-} ntpsrv=${ntpsrv:-} mtu=${mtu:-}" \
    >> "{out}"
exit 0
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A 1-chassis lab whose agent is up and registered."""
    with running_lab(tmp_path_factory.mktemp("dhcpopts"), chassis=1) as fixture:
        yield fixture


def ask(lab, vm) -> str:
    """One DHCP exchange by the VM's own client (one-shot, exits); what it was told."""
    out = lab.lab.dir / f"{vm.name}-opts.txt"
    out.unlink(missing_ok=True)
    script = lab.lab.dir / f"{vm.name}-opts.sh"
    script.write_text(DUMP_SCRIPT.replace("{out}", str(out)))
    script.chmod(0o755)
    vm.exec("busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "3", "-T", "1",
            "-A", "1", "-O", "domain", "-O", "ntpsrv", "-O", "mtu", "-s", str(script),
            check=False, timeout=20)
    return out.read_text().strip() if out.exists() else ""


def test_extra_dhcp_opts_reach_the_vms_dhcp_client(lab):
    net = lab.network("xo80", "10.80.0.0/24")
    vm = lab.vm("xo80", net, chassis="c1")
    before = ask(lab, vm)
    # without extra options: the cloud's domain (dns-integration), no NTP servers, the
    # network's own MTU
    network_mtu = lab.api.network.get_network(net.id).mtu
    assert before == f"ip={vm.ip} domain=openstacklocal ntpsrv= mtu={network_mtu}", before
    assert network_mtu != 1400

    lab.api.network.update_port(vm.port_id, extra_dhcp_opts=[
        {"opt_name": "domain-name", "opt_value": "corp.example"},
        {"opt_name": "42", "opt_value": "10.80.0.7,10.80.0.8"},
        {"opt_name": "mtu", "opt_value": "1400"}])
    want = f"ip={vm.ip} domain=corp.example ntpsrv=10.80.0.7 10.80.0.8 mtu=1400"
    wait_for(lambda: ask(lab, vm) == want, 30, "the client sees the port's extra options")

    # a change through the API: one option changed, one removed (null), one kept
    lab.api.network.update_port(vm.port_id, extra_dhcp_opts=[
        {"opt_name": "domain-name", "opt_value": "other.example"},
        {"opt_name": "42", "opt_value": None}])
    want = f"ip={vm.ip} domain=other.example ntpsrv= mtu=1400"
    wait_for(lambda: ask(lab, vm) == want, 30, "the client sees the changed options")
