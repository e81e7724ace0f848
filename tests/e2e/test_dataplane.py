"""The data plane end to end (issue 4): a 3-chassis lab with a plexus-agent per chassis,
VMs that get their addresses from the agents' DHCP with a real client, and traffic
between them — ping and TCP across chassis, isolation of networks and of projects with
the same CIDR, anti-spoofing, ARP answered on the local chassis, a ping that survives an
agent restart, flows that go with their port, and bad input that disturbs nothing.

One lab serves the whole module (it takes a while to build); each test makes its own
networks and VMs and the lab's inventory tears everything down, failed or not."""

from __future__ import annotations

import re
import time
import uuid

import pytest

from plexus.lab.inventory import alive, resolve_pid, stop_process
from plexus.lower.openflow import cookie_of
from tests.e2e.conftest import LabFixture, capture, running_lab, wait_for

pytestmark = pytest.mark.e2e


# --- the lab ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A 3-chassis lab whose agents are up and registered."""
    with running_lab(tmp_path_factory.mktemp("dataplane"), chassis=3, gateways=1) as fixture:
        yield fixture



def agent_entry(lab: LabFixture, chassis: str) -> dict:
    """The inventory record of the running agent of ``chassis``."""
    found = [e for e in lab.lab.inventory.entries("process")
             if e["label"].startswith(f"{chassis}/agent") and resolve_pid(e) is not None]
    assert len(found) == 1, found
    return found[0]


def agent_log(lab: LabFixture, chassis: str) -> str:
    return (lab.lab.dir / chassis / "agent.log").read_text()


def dump_flows(lab: LabFixture, chassis: str, match: str = "") -> list[str]:
    """br-int's flows (``ovs-ofctl dump-flows``), optionally filtered."""
    out = lab.lab.ovs(chassis).ofctl("dump-flows", "br-int", *([match] if match else []))
    return [line for line in out.splitlines() if "cookie=" in line]


def port_flows(lab: LabFixture, chassis: str, port_id: str) -> list[str]:
    return dump_flows(lab, chassis, f"cookie={cookie_of(f'port:{port_id}'):#x}/-1")


def fixed_ip(lab: LabFixture, vm) -> str:
    return lab.api.network.get_port(vm.port_id).fixed_ips[0]["ip_address"]


# --- the tests ---------------------------------------------------------------------------------

def test_dhcp_ping_and_tcp_between_chassis(lab):
    net = lab.network("blue", "10.61.0.0/24", dns_nameservers=["10.61.0.2"])
    a = lab.vm("blue-a", net, chassis="c1")
    b = lab.vm("blue-b", net, chassis="c2")
    c = lab.vm("blue-c", net, chassis="c3")
    for vm in (a, b, c):                                     # real DHCP: the port's address
        assert vm.ip == fixed_ip(lab, vm)
        assert "default via 10.61.0.1" in vm.exec("ip", "route").stdout
        wait_for(lambda vm=vm: lab.api.network.get_port(vm.port_id).status == "ACTIVE", 10,
                 f"port of {vm.name} ACTIVE")
    assert a.ping(b.ip) and b.ping(c.ip) and c.ping(a.ip)
    b.tcp_server(5001)
    result = a.tcp_client(b.ip, 5001, size=4 << 20)
    assert result["ok"] and result["bytes"] == 4 << 20, result
    agents = {x.host: x for x in lab.api.network.agents()}
    assert {"c1", "c2", "c3"} <= set(agents) and all(agents[h].is_alive for h in
                                                      ("c1", "c2", "c3"))


def test_two_networks_are_isolated(lab):
    one = lab.network("iso-1", "10.62.0.0/24")
    two = lab.network("iso-2", "10.62.0.0/24")               # same range, other network
    ports = {}
    for name, net, ip in (("i1a", one, "10.62.0.10"), ("i1b", one, "10.62.0.11"),
                          ("i2a", two, "10.62.0.12")):
        ports[name] = lab.api.network.create_port(network_id=net.id,
                                                  fixed_ips=[{"ip_address": ip}])
    i1a = lab.vm("i1a", one, chassis="c1", port=ports["i1a"].id)
    lab.vm("i1b", one, chassis="c2", port=ports["i1b"].id)
    lab.vm("i2a", two, chassis="c2", port=ports["i2a"].id)
    assert i1a.ping("10.62.0.11")
    assert not i1a.ping("10.62.0.12", count=2, deadline=3)
    assert not lab.vm("i2a").ping("10.62.0.10", count=2, deadline=3)


def test_two_projects_with_the_same_cidr_are_isolated_and_both_work(lab):
    projects = {p.name: p.id for p in lab.api.identity.projects()}
    vms = {}
    for project, chassis, ips in (("demo", ("c1", "c2"), ("10.63.0.10", "10.63.0.11")),
                                  ("alt_demo", ("c2", "c3"), ("10.63.0.10", "10.63.0.12"))):
        pid = projects[project]
        net = lab.api.network.create_network(name=f"{project}-net", project_id=pid)
        lab.api.network.create_subnet(network_id=net.id, cidr="10.63.0.0/24", ip_version=4,
                                      project_id=pid)
        for i, (ch, ip) in enumerate(zip(chassis, ips)):
            port = lab.api.network.create_port(network_id=net.id, project_id=pid,
                                               fixed_ips=[{"ip_address": ip}])
            vms[(project, i)] = lab.vm(f"{project[:3]}{i}", net, chassis=ch, port=port.id)
    assert vms[("demo", 0)].ping("10.63.0.11")               # demo works
    assert vms[("alt_demo", 0)].ping("10.63.0.12")           # alt_demo works, same CIDR
    assert not vms[("demo", 0)].ping("10.63.0.12", count=2, deadline=3)
    assert not vms[("alt_demo", 1)].ping("10.63.0.11", count=2, deadline=3)


def test_spoofed_ip_or_mac_reaches_nobody(lab):
    net = lab.network("spoof", "10.64.0.0/24")
    s = lab.vm("spoofer", net, chassis="c1")
    t = lab.vm("target", net, chassis="c2")
    u = lab.vm("bystander", net, chassis="c1")
    assert s.ping(t.ip) and s.ping(u.ip)
    # a spoofed source IP: nobody sees a packet from it
    s.exec("ip", "addr", "add", "10.64.0.250/24", "dev", "eth0")
    seen = [capture(lab, vm.name, f"spoof-ip-{vm.name}", "host 10.64.0.250", 6)
            for vm in (t, u)]
    for dst in (t.ip, u.ip):
        s.exec("ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", "-I", "10.64.0.250", dst,
               check=False)
    for cap in seen:
        assert cap.lines() == [], "a spoofed-IP packet got through"
    s.exec("ip", "addr", "del", "10.64.0.250/24", "dev", "eth0")
    # a spoofed MAC: nothing gets through, and the real MAC works again afterwards
    real = s.mac
    seen = [capture(lab, vm.name, f"spoof-mac-{vm.name}", "ether src 02:00:00:66:66:66", 6)
            for vm in (t, u)]
    s.exec("ip", "link", "set", "eth0", "address", "02:00:00:66:66:66")
    s.exec("ip", "neigh", "flush", "dev", "eth0")
    assert not s.ping(t.ip, count=3, deadline=3)
    assert not s.ping(u.ip, count=3, deadline=3)
    for cap in seen:
        assert cap.lines() == [], "a spoofed-MAC frame got through"
    s.exec("ip", "link", "set", "eth0", "address", real)
    assert s.ping(t.ip) and s.ping(u.ip)


def test_arp_for_a_remote_vm_is_answered_on_the_local_chassis(lab):
    net = lab.network("arp", "10.65.0.0/24")
    a = lab.vm("arp-a", net, chassis="c1")
    b = lab.vm("arp-b", net, chassis="c3")
    assert a.ping(b.ip)
    a.exec("ip", "neigh", "flush", "all")
    # VXLAN on the underlay: inner ethertype sits 8 (UDP) + 8 (VXLAN) + 12 bytes in
    # (the underlay's own ARP for tunnel endpoints is not VM traffic)
    arp = capture(lab, "ul", "ul-arp", "(arp and not net 198.18.0.0/16) or "
                  "(udp port 4789 and udp[28:2] = 0x0806)", 6, ifname="any")
    icmp = capture(lab, "ul", "ul-icmp", "udp port 4789 and udp[28:2] = 0x0800", 6,
                   ifname="any")
    assert a.ping(b.ip, count=3)
    neigh = a.exec("ip", "neigh", "show", b.ip).stdout
    assert b.mac in neigh                                    # the ARP was answered…
    assert icmp.lines(), "the capture saw no tunnelled traffic at all"
    assert arp.lines() == [], "ARP crossed the underlay"     # …without crossing the underlay


def test_a_running_ping_loses_nothing_while_agents_restart(lab):
    net = lab.network("restart", "10.66.0.0/24")
    a = lab.vm("rs-a", net, chassis="c1")
    b = lab.vm("rs-b", net, chassis="c2")
    assert a.ping(b.ip)
    log = lab.lab.dir / "pids" / "restart-ping.txt"
    ping = lab.lab.spawn("restart-ping", ["sh", "-c", 'ping -n -i 0.05 -c 100 -W 1 "$1" > "$0"',
                                          str(log), b.ip], ns=a.netns)
    time.sleep(0.5)
    for chassis in ("c1", "c2"):
        entry = agent_entry(lab, chassis)
        before = agent_log(lab, chassis)
        assert stop_process(entry)                           # by pid, from the inventory
        start_agent(lab, chassis)
        wait_for(lambda ch=chassis, n=len(before): "OpenFlow channel up" in
                 agent_log(lab, ch)[n:], 15, f"{chassis} agent back")
        time.sleep(0.5)
        restarted = agent_log(lab, chassis)[len(before):]
        assert "flows -" not in restarted, f"the restarted agent changed flows:\n{restarted}"
    wait_for(lambda: not alive(ping), 20, "the ping to finish")
    text = log.read_text()
    assert re.search(r"100 packets transmitted, 100 received", text), text


def test_port_delete_removes_its_flows(lab):
    net = lab.network("gone", "10.67.0.0/24")
    keep = lab.vm("gone-keep", net, chassis="c1")
    doomed = lab.vm("gone-doomed", net, chassis="c2")
    assert keep.ping(doomed.ip)
    port_id = doomed.port_id
    for chassis in ("c1", "c2"):
        assert port_flows(lab, chassis, port_id), f"no flows for the port on {chassis}"
    from plexus.lab import vm as vms
    assert vms.delete(lab.lab, "gone-doomed") == []
    for chassis in ("c1", "c2", "c3"):
        wait_for(lambda ch=chassis: not port_flows(lab, ch, port_id), 10,
                 f"flows of the deleted port gone from {chassis}")
    assert port_flows(lab, "c1", keep.port_id)


STATS = re.compile(r"(duration|n_packets|n_bytes|idle_age|hard_age)=[^,]*, ")


def table(lab: LabFixture, chassis: str) -> set[str]:
    """br-int's flows without their counters."""
    return {STATS.sub("", line).strip() for line in dump_flows(lab, chassis)}


def test_a_bound_port_is_programmed_before_its_vif_and_the_plug_adds_only_vif_flows(lab):
    """Nova binds a port to a host, then plugs its VIF. Everything of the port that does
    not name its ofport is on the host from the binding; the plug adds only flows that
    name the new ofport (its classify and output flows, its network's floods, its
    conntrack step) and changes nothing on the other chassis; then the port works."""
    from plexus.lab import vm as vms
    net = lab.network("bindfirst", "10.69.0.0/24")
    peer = lab.vm("bind-peer", net, chassis="c1")
    port = lab.api.network.create_port(network_id=net.id, binding_host_id="c2",
                                       device_owner="compute:nova")
    # its port security, ARP answer, DHCP punt and security group rules, before any VIF
    wait_for(lambda: any("table=10," in f for f in port_flows(lab, "c2", port.id))
             and any("table=30," in f for f in port_flows(lab, "c2", port.id))
             and port_flows(lab, "c1", port.id), 10,
             "the bound port's own flows on c2, and its L2 and output flows on c1")
    before = {ch: table(lab, ch) for ch in ("c1", "c2")}
    vm = vms.boot(lab.lab, "bind-vm", chassis="c2", port=port.id)
    assert vm.ip and vm.ping(peer.ip)
    wait_for(lambda: lab.api.network.get_port(port.id).status == "ACTIVE", 10,
             "the port ACTIVE")
    ofport = lab.lab.ovs("c2").vsctl("get", "Interface", vms.tap_name(port.id),
                                     "ofport").strip()
    names = re.compile(rf"(in_port={ofport}\b|output:{ofport}\b|zone={ofport}\b)")
    after = table(lab, "c2")
    added, gone = after - before["c2"], before["c2"] - after
    assert added and all(names.search(f) for f in added), sorted(added)
    # what went is only what was rewritten to add the VIF: the network's floods
    floods = f"cookie={cookie_of(f'network:{net.id}'):#x}"
    assert all(f.startswith(floods) and "reg7=0xffff" in f for f in gone), sorted(gone)
    assert table(lab, "c1") == before["c1"]


def test_stray_vif_and_unknown_chassis_are_logged_and_disturb_nothing(lab):
    net = lab.network("stray", "10.68.0.0/24")
    a = lab.vm("stray-a", net, chassis="c1")
    b = lab.vm("stray-b", net, chassis="c2")
    assert a.ping(b.ip)
    flows_before = {ch: len(dump_flows(lab, ch)) for ch in ("c1", "c2")}
    # a VIF naming no port at all, plugged into c1's br-int
    ghost = str(uuid.uuid4())
    lab.lab.inventory.record("ovs-port", group="vm:stray-a", chassis="c1", bridge="br-int",
                             name="ghost0")
    lab.lab.ovs("c1").vsctl("add-port", "br-int", "ghost0", "--", "set", "Interface",
                            "ghost0", "type=internal", f"external_ids:iface-id={ghost}")
    # a port bound to a chassis that never registered, on the same network
    lost = lab.api.network.create_port(network_id=net.id, binding_host_id="c99")
    assert lost.binding_vif_type == "binding_failed"
    wait_for(lambda: f"iface-id {ghost}) names no known port" in agent_log(lab, "c1"), 10,
             "the stray VIF logged on c1")
    for ch in ("c1", "c2"):
        wait_for(lambda ch=ch: "bound to chassis 'c99', which is not registered"
                 in agent_log(lab, ch), 10, f"the unknown chassis logged on {ch}")
    ofport = lab.lab.ovs("c1").vsctl("get", "Interface", "ghost0", "ofport").strip()
    assert not dump_flows(lab, "c1", f"in_port={ofport}")
    assert a.ping(b.ip) and b.ping(a.ip)
    # the unknown port adds its L2/ARP/ND entries (it is a port of the network; the ND
    # responder answers for its link-local address) and, being in the default group, its
    # address to the group's members (the default group admits ingress from its
    # members); nothing else
    lost_ip, (default,) = lost.fixed_ips[0]["ip_address"], lost.security_group_ids
    member = f"cookie={cookie_of(f'sg:{default}:members'):#x}/-1,ip,nw_src={lost_ip}"
    for ch in ("c1", "c2"):
        flows = port_flows(lab, ch, lost.id)
        assert len(flows) == 3 and sum("icmpv6_type" in f for f in flows) == 1, flows
        assert len(dump_flows(lab, ch, member)) == 1
        assert len(dump_flows(lab, ch)) == flows_before[ch] + 4
    assert agent_log(lab, "c1").count(f"iface-id {ghost}) names no known port") == 1
    lab.api.network.delete_port(lost)


def start_agent(lab: LabFixture, chassis: str) -> int:
    """Start the agent of ``chassis`` again, as ``lab up`` does."""
    from plexus.lab.lab import agent_argv
    return lab.lab.spawn(f"{chassis}/agent-{time.monotonic_ns()}",
                         agent_argv(lab.lab, lab.spec.chassis_named(chassis)),
                         log=lab.lab.dir / chassis / "agent.log")

