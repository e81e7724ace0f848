"""DHCP end to end (issue 12, item 7): a VM whose DHCP client (busybox udhcpc, left
running as a daemon) holds a lease; the port's fixed IP is changed through the API; the
client renews (SIGUSR1) for the old address, which the port no longer holds. The agent
must answer that renewal with a DHCPNAK — the renewal comes from the old source address,
which port security otherwise drops — so the client re-discovers at once and ends with
the new address, and can talk with it. Without the NAK it keeps a blocked address until
its lease is lost (a day). A RELEASE reaches the agent and is logged (DECLINE: unit tests)."""

from __future__ import annotations

import os
import signal

import pytest

from plexus.lab import vm as vms
from tests.e2e.conftest import LabFixture, running_lab, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A 2-chassis lab whose agents are up and registered (one for the module)."""
    with running_lab(tmp_path_factory.mktemp("dhcp"), chassis=2, gateways=1) as fixture:
        yield fixture

# each event of the client is appended to a file, then the lab's script configures eth0
EVENT_SCRIPT = """#!/bin/sh
echo "$1 ${ip:-}" >> "{events}"
exec "{lab_script}" "$@"
"""


def start_client(lab: LabFixture, vm: vms.VM) -> tuple[int, object]:
    """A udhcpc daemon in ``vm`` (recorded, stopped with the lab); its pid and events file."""
    d = lab.lab.dir
    events = d / f"{vm.name}-dhcp.events"
    script = d / f"{vm.name}-dhcp-events.sh"
    script.write_text(EVENT_SCRIPT.replace("{events}", str(events))
                      .replace("{lab_script}", str(d / "udhcpc.sh")))
    script.chmod(0o755)
    # -T 1 -A 1: retry quickly; -t 0: never give up discovering
    pid = lab.lab.spawn(f"{vm.name}-udhcpc-daemon",
                        ["busybox", "udhcpc", "-i", "eth0", "-f", "-t", "0", "-T", "1",
                         "-A", "1", "-s", str(script)],
                        ns=vm.netns, group=vm.group, log=d / f"{vm.name}-udhcpc.log")
    return pid, events


def events_of(path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def agent_log(lab: LabFixture, chassis: str) -> str:
    return (lab.lab.dir / chassis / "agent.log").read_text()


def network(lab: LabFixture, name: str, cidr: str, routed: bool):
    """A network and its subnet id; ``routed``: its gateway is a router interface (then
    the router answers ARP for the DHCP server id, the gateway; without a router the
    ARP responder answers for it with the DHCP server's MAC)."""
    net = lab.network(name, cidr)
    subnet_id = lab.api.network.get_network(net.id).subnet_ids[0]
    if routed:
        router = lab.api.network.create_router(name=f"{name}-r")
        lab.api.network.add_interface_to_router(router, subnet_id=subnet_id)
    return net, subnet_id


@pytest.mark.parametrize("routed", [True, False], ids=["unicast-renew", "broadcast-rebind"])
def test_renewal_for_a_changed_fixed_ip_gets_a_nak_and_the_client_takes_the_new_one(
        lab, routed):
    third = 63 + routed
    net, subnet_id = network(lab, f"dn{third}", f"10.{third}.0.0/24", routed)
    peer = lab.vm(f"peer{third}", net, chassis="c2")
    vm = lab.vm(f"v{third}", net, chassis="c1")
    old = vm.ip
    assert old and vm.ping(peer.ip)
    if routed:   # the client knows the server's (the gateway's) MAC, as after any use
        wait_for(lambda: vm.ping(f"10.{third}.0.1", count=1, deadline=2), 30,
                 "the VM reaches its gateway")
    pid, events = start_client(lab, vm)
    wait_for(lambda: any(e.startswith("bound") for e in events_of(events)), 20,
             "the daemon client bound a lease")
    # the event is recorded just before the script configures eth0: wait for that
    wait_for(lambda: vm.ip == old, 10, f"the VM configured {old} again")

    new = f"10.{third}.0.200"
    lab.api.network.update_port(vm.port_id,
                                fixed_ips=[{"subnet_id": subnet_id, "ip_address": new}])
    # the old address is now blocked by port security: wait until it is
    wait_for(lambda: not vm.ping(peer.ip, count=1, deadline=2), 30,
             "the old address blocked by port security")

    os.kill(pid, signal.SIGUSR1)       # renew now (as at T1)
    wait_for(lambda: vm.ip == new, 30, f"the VM moved to {new}")
    seen = events_of(events)
    assert [e.split()[0] for e in seen].count("nak") == 1, seen   # told, not timed out
    assert seen[-1] == f"bound {new}", seen
    assert vm.ping(peer.ip), "the new address works"
    assert f"DHCPNAK to port {vm.port_id} for {old}" in agent_log(lab, "c1")


def test_release_reaches_the_agent_and_is_logged(lab):
    net, _ = network(lab, "dn70", "10.70.0.0/24", routed=True)
    vm = lab.vm("v70", net, chassis="c1")
    address = vm.ip
    pid, events = start_client(lab, vm)
    wait_for(lambda: any(e.startswith("bound") for e in events_of(events)), 20,
             "the daemon client bound a lease")
    os.kill(pid, signal.SIGUSR2)       # udhcpc: release the lease (unicast to the server)
    wait_for(lambda: f"DHCPRELEASE of {address} from port {vm.port_id}"
             in agent_log(lab, "c1"), 20, "the agent logged the release")


def test_on_a_routerless_subnet_unicast_renewal_and_release_reach_the_agent(lab):
    """No router interface holds the server identifier (the gateway address): the ARP
    responder answers for it with the DHCP server's MAC, so the client's unicast renewal
    is answered (no fallback to broadcast rebinding) and its unicast RELEASE is not lost
    in an unanswered ARP."""
    net, _ = network(lab, "dn71", "10.71.0.0/24", routed=False)
    vm = lab.vm("v71", net, chassis="c1")
    address = vm.ip
    pid, events = start_client(lab, vm)
    wait_for(lambda: any(e.startswith("bound") for e in events_of(events)), 20,
             "the daemon client bound a lease")
    log = lab.lab.dir / f"{vm.name}-udhcpc.log"
    renewed = [e for e in events_of(events) if e.startswith("renew")]
    assert not renewed, events_of(events)

    os.kill(pid, signal.SIGUSR1)       # renew now (as at T1): unicast to the server id
    wait_for(lambda: any(e.startswith("renew") for e in events_of(events)), 30,
             "the renewal was acknowledged (lease extended)")
    text = log.read_text()
    assert "sending renew to server 10.71.0.1" in text, text
    # answered unicast: no fallback to rebinding (broadcast) after an unanswered ARP
    assert "broadcasting renew" not in text, text
    assert events_of(events)[-1] == f"renew {address}", events_of(events)

    os.kill(pid, signal.SIGUSR2)       # release: unicast to the server
    wait_for(lambda: f"DHCPRELEASE of {address} from port {vm.port_id}"
             in agent_log(lab, "c1"), 20, "the agent logged the release")
