"""The lab's own plumbing (issue 3): chassis, underlay, external network, VMs, teardown."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from plexus.lab import Lab, LabError, LabSpec, netlink
from plexus.lab import vm as vms
from plexus.lab.topology import INTERNET_HOST, UPSTREAM_ROUTER
from tests.e2e.conftest import leftovers, require_lab_host, unique_name

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def test_three_chassis_reach_each_other_and_leave_nothing(lab_factory, root_before):
    """lab up (3 chassis) → underlay pings, OVS answers, root untouched; down → nothing."""
    lab = lab_factory(chassis=3, gateways=2)
    chassis = lab.spec.chassis_list()
    assert netlink.root_snapshot() == root_before, "the lab changed the root namespace"
    for a, b in itertools.permutations(chassis, 2):
        assert lab.node(a.name).ping(b.tunnel_ip, count=2), f"{a.name} → {b.name} underlay"
    status = lab.lab.status()
    assert status["server_answers"]
    for ch, st in zip(chassis, status["chassis"]):
        assert st["ovs"] == {"ovsdb-server": True, "ovs-vswitchd": True}, ch.name
        ovs = lab.lab.ovs(ch)
        ids = {key: ovs.vsctl("get", "Open_vSwitch", ".", f"external_ids:{key}").strip().strip('"')
               for key in ("plexus-chassis-name", "plexus-tunnel-ip", "plexus-bridge-mappings",
                           "plexus-gateway")}
        assert ids == {"plexus-chassis-name": ch.name, "plexus-tunnel-ip": ch.tunnel_ip,
                       "plexus-bridge-mappings": "physnet1:br-ex",
                       "plexus-gateway": "true" if ch.index <= 2 else "false"}
        for bridge in ("br-int", "br-ul", "br-ex"):
            assert ovs.vsctl("get", "Bridge", bridge, "datapath_type").strip() == "netdev"
            ovs.ofctl("show", bridge)   # the mgmt socket answers OpenFlow
        assert lab.node(ch.name).addresses("br-ul") == [f"{ch.tunnel_ip}/24"]
    # the internet host reaches the upstream router's provider-side address (forwarding
    # inside the external namespace), and no lab range reached the root namespace
    assert lab.node("inet").ping(str(UPSTREAM_ROUTER))
    assert lab.node("ext").ping(str(INTERNET_HOST))
    pids, spec, lab_dir = lab.pids(), lab.spec, lab.lab.dir
    assert len(pids) == 1 + 3 * 3       # server; per chassis ovsdb-server, ovs-vswitchd, agent
    assert lab.lab.down() == []
    assert leftovers(spec, lab_dir, pids, root_before) == []
    assert lab.lab.down() == []   # idempotent


def test_vm_plumbing_is_what_nova_would_do(lab, root_before):
    """A booted VM: bound port, veth in br-int with iface-id/attached-mac, MAC, offload off."""
    net = lab.network("plumb", "10.20.0.0/24")
    vm = lab.vm("a", net, chassis="c2")                 # DHCP, answered by c2's agent
    port = lab.api.network.get_port(vm.port_id)
    assert vm.ip == port.fixed_ips[0]["ip_address"]
    assert (port.binding_host_id, port.device_owner) == ("c2", "compute:nova")
    assert port.device_id == vm.entry["vm_id"] and port.project_id == net.project_id
    ovs = lab.lab.ovs("c2")
    tap = vms.tap_name(port.id)
    ids = ovs.vsctl("get", "Interface", tap, "external_ids")
    assert port.id in ids and port.mac_address in ids and "iface-status=active" in ids
    link = vm.exec("ip", "-j", "link", "show", "eth0").stdout
    assert json.loads(link)[0]["address"] == port.mac_address
    assert json.loads(link)[0]["mtu"] == lab.api.network.get_network(net.id).mtu
    for node, ifname in ((vm, "eth0"), (lab.node("c2"), tap)):
        assert "tx-checksumming: off" in node.exec("ethtool", "-k", ifname).stdout
    static = lab.vm("s", net, chassis="c1", static=True)
    assert static.ip == lab.api.network.get_port(static.port_id).fixed_ips[0]["ip_address"]
    assert "default via 10.20.0.1" in static.exec("ip", "route").stdout
    assert [v["name"] for v in vms.list_vms(lab.lab)] == ["a", "s"]
    assert vms.delete(lab.lab, "a") == []
    assert lab.api.network.find_port(port.id) is None
    assert tap not in ovs.vsctl("list-ports", "br-int")
    assert not netlink.ns_exists(lab.spec.vm_ns("a"))
    assert netlink.root_snapshot() == root_before


def test_vxlan_between_chassis_carries_ping_and_tcp(lab_factory):
    """Hand-written flows over userspace VXLAN (no agents): the plumbing agents program."""
    lab = lab_factory(chassis=2, agents=False)
    net = lab.network("overlay", "10.30.0.0/24")
    a = lab.vm("a", net, chassis="c1", static=True)
    b = lab.vm("b", net, chassis="c2", static=True)
    vni = 4242
    for vm, peer in ((a, b), (b, a)):
        ovs = lab.lab.ovs(vm.chassis)
        remote = lab.spec.chassis_named(peer.chassis).tunnel_ip
        ovs.vsctl("add-port", "br-int", "vx-test", "--", "set", "Interface", "vx-test",
                  "type=vxlan", f"options:remote_ip={remote}", "options:key=flow")
        tap = vms.tap_name(vm.port_id)
        ovs.ofctl("add-flow", "br-int",
                  f"priority=10,in_port={tap},actions=set_field:{vni}->tun_id,output:vx-test")
        ovs.ofctl("add-flow", "br-int", f"priority=10,in_port=vx-test,tun_id={vni},"
                                        f"actions=output:{tap}")
    assert a.ping(b.ip) and b.ping(a.ip)
    b.tcp_server(5001)
    a.tcp_server(5002)
    for client, server, port in ((a, b, 5001), (b, a, 5002)):
        result = client.tcp_client(server.ip, port, size=8 << 20)
        assert result["ok"], result
    # the packets really went through the tunnel port (live OpenFlow port counters)
    stats = lab.lab.ovs("c1").ofctl("dump-ports", "br-int", "vx-test")
    assert int(re.search(r"tx pkts=(\d+)", stats).group(1)) > 1000, stats


def test_down_finds_processes_whose_pid_was_never_recorded(lab_factory, root_before):
    """A crash between starting a process and recording its pid: down uses the pidfile."""
    lab = lab_factory(chassis=1)
    lab.node("inet").tcp_server(7000)
    pids, spec, lab_dir = lab.pids(), lab.spec, lab.lab.dir
    for entry in lab.lab.inventory.entries("process"):
        lab.lab.inventory.update(entry["id"], pid=None, start=None)
    assert lab.lab.down() == []
    assert leftovers(spec, lab_dir, pids, root_before) == []


def test_down_never_kills_what_it_did_not_start(lab_factory):
    """A process the lab did not record keeps its namespace: reported, not killed."""
    lab = lab_factory(chassis=1)
    stray = subprocess.Popen(netlink.in_ns(lab.spec.internet_ns, ["sleep", "60"]))
    try:
        time.sleep(0.2)
        errors = lab.lab.down()
        assert len(errors) == 1 and str(stray.pid) in errors[0], errors
        assert stray.poll() is None and netlink.ns_exists(lab.spec.internet_ns)
    finally:
        stray.kill()
        stray.wait()
    assert lab.lab.down() == []
    assert not netlink.ns_exists(lab.spec.internet_ns)


def test_refuses_ranges_that_overlap_the_root_namespace(tmp_path, monkeypatch):
    """A lab range already in the root namespace → refused before anything is made."""
    require_lab_host()
    monkeypatch.setattr(netlink, "root_networks", lambda: ["198.18.0.0/15", "10.0.0.0/8"])
    lab = Lab(LabSpec(name=unique_name(), chassis=1), tmp_path)
    with pytest.raises(LabError, match="198.18.0.0/24 overlaps 198.18.0.0/15"):
        lab.up()
    assert not lab.dir.exists()
    assert not [ns for ns in netlink.ns_list() if ns.startswith(lab.spec.prefix)]


def test_failing_test_in_the_middle_of_a_lab_still_tears_it_down(tmp_path, root_before):
    """An inner pytest run that fails on purpose with a VM and a server up leaves nothing."""
    out = tmp_path / "inner.json"
    inner = tmp_path / "test_inner.py"
    inner.write_text(textwrap.dedent(f"""
        import json
        from pathlib import Path

        def test_fails_on_purpose(lab):
            net = lab.network("n", "10.40.0.0/24")
            a = lab.vm("a", net, static=True)
            a.tcp_server(5001)
            Path({str(out)!r}).write_text(json.dumps({{
                "spec": lab.spec.to_dict(), "dir": str(lab.lab.dir), "pids": lab.pids()}}))
            assert False, "failing on purpose, mid-lab"
    """))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
         "tests.e2e.conftest", "--rootdir", str(tmp_path), "-c", os.devnull,
         "--basetemp", str(tmp_path / "inner"), str(inner)],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True,
        timeout=240)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "failing on purpose" in proc.stdout
    facts = json.loads(out.read_text())
    assert len(facts["pids"]) == 1 + 3 * 2 + 1    # server, 2 × (OVS, agent), the TCP server
    spec = LabSpec.from_dict(facts["spec"])
    assert leftovers(spec, Path(facts["dir"]), facts["pids"], root_before) == []


def test_kill_9_during_up_then_down_removes_everything(tmp_path, root_before):
    """``plexus lab up`` killed with SIGKILL mid-way; ``plexus lab down`` cleans up."""
    name = unique_name()
    env = dict(os.environ, PLEXUS_LAB_ROOT=str(tmp_path), PLEXUS_LAB_NAME=name)
    plexus = str(Path(sys.executable).with_name("plexus"))
    up = subprocess.Popen([plexus, "lab", "up", "--chassis", "3"], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    inventory = tmp_path / name / "inventory.json"
    deadline = time.monotonic() + 60
    pids: list[int] = []
    while time.monotonic() < deadline and up.poll() is None:
        try:
            entries = json.loads(inventory.read_text())["entries"]
        except (OSError, ValueError):
            entries = []
        pids = [e["pid"] for e in entries if e["kind"] == "process" and e.get("pid")]
        if any(e.get("label") == "c2/ovs-vswitchd" for e in entries):
            break   # mid-way: chassis c2 is being built
        time.sleep(0.01)
    up.send_signal(signal.SIGKILL)
    up.wait()
    entries = json.loads(inventory.read_text())["entries"]
    pids = sorted({*pids, *(e["pid"] for e in entries if e.get("pid"))})
    assert [ns for ns in netlink.ns_list() if ns.startswith(f"plx-{name}-")], "made nothing?"
    down = subprocess.run([plexus, "lab", "down"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    time.sleep(0.2)
    assert leftovers(LabSpec(name=name), tmp_path / name, pids, root_before) == []
    again = subprocess.run([plexus, "lab", "down"], env=env, capture_output=True, text=True)
    assert again.returncode == 0 and "nothing to do" in again.stdout


def test_cli_round_trip(tmp_path, root_before):
    """up → status → vm boot --static → exec → vm list → down, through the command."""
    require_lab_host()
    name = unique_name()
    env = dict(os.environ, PLEXUS_LAB_ROOT=str(tmp_path), PLEXUS_LAB_NAME=name,
               COLUMNS="200")
    plexus = str(Path(sys.executable).with_name("plexus"))

    def run(*args, ok=True):
        proc = subprocess.run([plexus, "lab", *args], env=env, capture_output=True, text=True,
                              timeout=120)
        assert (proc.returncode == 0) == ok, proc.stdout + proc.stderr
        return proc.stdout

    try:
        assert "ready" in run("up", "--chassis", "1")
        status = json.loads(run("status", "--json"))
        assert status["server_answers"] and status["chassis"][0]["ovs"]["ovs-vswitchd"]
        lab = Lab.load(name, tmp_path)
        conn = lab.connect()
        net = conn.network.create_network(name="cli-net")
        conn.network.create_subnet(network_id=net.id, cidr="10.50.0.0/24", ip_version=4)
        run("vm", "boot", "v1", "--network", "cli-net")      # DHCP from c1's agent
        listing = json.loads(run("vm", "list", "--json"))
        assert listing[0]["name"] == "v1" and listing[0]["ip"].startswith("10.50.0.")
        assert listing[0]["ip"] in run("exec", "v1", "--", "ip", "-4", "addr", "show", "eth0")
        assert "br-int" in run("exec", "c1", "--", "ovs-vsctl", "list-br")
        pids = [p["pid"] for p in status["processes"] if p["pid"]]
    finally:
        run("down")
    assert leftovers(LabSpec(name=name), tmp_path / name, pids, root_before) == []
