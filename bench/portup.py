"""Port-up benchmark: time from a port create (with binding) to its VM pinging a peer on
another chassis, over N ports on a 3-chassis lab; OpenFlow flows per chassis as ports
are added; the agents' CPU seconds. Prints one table.

Each measured VM is plumbed before its port exists, as a hypervisor would have it
ready: a namespace with its MAC, address and route, and a veth in its chassis' br-int.
Then, per port: a ping (every 10 ms) toward the peer starts in the VM, the clock starts,
the port is created through the API (binding:host_id = the chassis, the VM's MAC and
address), the VIF gets ``external_ids:iface-id`` (what Nova's plug does), and the clock
stops at the first echo reply. ARP on the way is answered by the agents' responders
(the VMs retry ARP every 10 ms instead of every second).

Ports go in networks of ``--per-network``; each network spans two chassis (the pairs
rotate): a peer VM (booted with DHCP) on one, the measured VMs on the other — so each
chassis shares only some networks, and its flows follow its own ports and their peers.

    sudo .venv/bin/python bench/portup.py [--ports 200] [--per-network 10] [--batch 25]
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from api import pct, token  # noqa: E402

from plexus.lab import Lab, LabSpec, netlink  # noqa: E402
from plexus.lab import vm as vms  # noqa: E402
from plexus.lab.inventory import resolve_pid  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parent))   # bench/table.py
from table import machine, print_table  # noqa: E402

FAST_ARP = {"retrans_time_ms": "10", "mcast_solicit": "100", "ucast_solicit": "100"}
PAIRS = (("c1", "c2"), ("c2", "c3"), ("c3", "c1"))      # (peer's chassis, measured chassis)


def fast_arp(netns: str) -> None:
    """ARP retries every 10 ms in a VM (the kernel default is one second)."""
    for key, value in FAST_ARP.items():
        netlink.sysctl(netns, f"net.ipv4.neigh.eth0.{key}", value)


def prepare(lab: Lab, name: str, chassis: str, mac: str, cidr: str, ip: str) -> dict:
    """A plumbed VM whose VIF does not name a port yet (recorded for teardown)."""
    group, netns = f"vm:{name}", lab.spec.vm_ns(name)
    ch = lab.spec.chassis_named(chassis)
    tap = ("tb" + name)[:14]
    lab._netns(netns, group)
    lab._veth(netns, "eth0", ch.netns, tap, group)
    netlink.set_link(ch.netns, tap, mtu=1450)
    netlink.set_link(netns, "eth0", address=mac, mtu=1450)
    netlink.add_address(netns, "eth0", f"{ip}/{ipaddress.ip_network(cidr).prefixlen}")
    fast_arp(netns)
    lab.inventory.record("ovs-port", group=group, chassis=chassis, bridge="br-int", name=tap)
    lab.ovs(ch).vsctl("add-port", "br-int", tap)
    return {"name": name, "chassis": chassis, "netns": netns, "tap": tap, "mac": mac, "ip": ip}


def measure(lab: Lab, api: httpx.Client, vm: dict, network_id: str, peer_ip: str) -> float:
    """Seconds from the port create to the VM's first echo reply from ``peer_ip``."""
    probe = subprocess.Popen(netlink.in_ns(vm["netns"], [
        "ping", "-D", "-n", "-i", "0.01", "-c", "1", "-w", "10", peer_ip]),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(0.02)                                   # the probe is up and pinging
    began = time.time()
    r = api.post("/v2.0/ports", json={"port": {
        "network_id": network_id, "mac_address": vm["mac"], "name": vm["name"],
        "fixed_ips": [{"ip_address": vm["ip"]}], "binding:host_id": vm["chassis"],
        "device_owner": "compute:nova", "device_id": vm["name"]}})
    r.raise_for_status()
    port_id = r.json()["port"]["id"]
    lab.ovs(vm["chassis"]).vsctl("set", "Interface", vm["tap"],
                                 f"external_ids:iface-id={port_id}",
                                 f"external_ids:attached-mac={vm['mac']}")
    out, _ = probe.communicate(timeout=20)
    stamps = re.findall(r"^\[(\d+\.\d+)\] \d+ bytes from", out, re.M)
    if not stamps:
        raise SystemExit(f"{vm['name']} on {vm['chassis']} never reached {peer_ip}:\n{out}")
    return float(stamps[0]) - began


def flows(lab: Lab, chassis: str) -> int:
    """Number of OpenFlow flows on a chassis' br-int."""
    out = lab.ovs(chassis).ofctl("dump-flows", "br-int")
    return sum(1 for line in out.splitlines() if "cookie=" in line)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def agent_pids(lab: Lab) -> dict[str, int]:
    """Chassis → pid of its running agent (from the lab's inventory)."""
    out = {}
    for entry in lab.inventory.entries("process"):
        chassis, _, what = entry["label"].partition("/")
        if what.startswith("agent") and resolve_pid(entry) is not None:
            out[chassis] = resolve_pid(entry)
    return out


def relevant_ports(api: httpx.Client) -> dict:
    """Chassis → (ports bound to it, ports elsewhere on the networks it shares); and
    "cloud" → every port."""
    ports = api.get("/v2.0/ports").json()["ports"]
    out = {"cloud": len(ports)}
    for ch in ("c1", "c2", "c3"):
        local = [p for p in ports if p["binding:host_id"] == ch]
        nets = {p["network_id"] for p in local}
        peers = [p for p in ports if p["network_id"] in nets and p["binding:host_id"] != ch]
        out[ch] = (len(local), len(peers))
    return out


def run(args, lab: Lab) -> list[tuple[str, str]]:
    """Build the networks and peers, measure every port; returns the table rows."""
    tok = token(lab.url)
    api = httpx.Client(base_url=lab.url, headers={"X-Auth-Token": tok}, timeout=60)
    nets = (args.ports + args.per_network - 1) // args.per_network
    plan = []                                           # (network index, measured chassis)
    for i in range(args.ports):
        plan.append((i // args.per_network, PAIRS[(i // args.per_network) % 3][1]))
    networks = []
    for k in range(nets):
        cidr = f"10.{100 + k // 200}.{k % 200}.0/24"
        net = api.post("/v2.0/networks", json={"network": {"name": f"pu{k}"}}).json()["network"]
        base = cidr.rsplit(".", 1)[0]                  # DHCP below .100, measured VMs above
        api.post("/v2.0/subnets", json={"subnet": {
            "network_id": net["id"], "cidr": cidr, "ip_version": 4,
            "allocation_pools": [{"start": f"{base}.2", "end": f"{base}.99"}]}}
        ).raise_for_status()
        peer = vms.boot(lab, f"peer{k}", net["id"], chassis=PAIRS[k % 3][0])
        if not peer.ip:
            raise SystemExit(f"peer{k} got no DHCP answer")
        fast_arp(peer.netns)
        networks.append((net["id"], cidr, peer.ip))
    cpu0 = {ch: cpu_seconds(pid) for ch, pid in agent_pids(lab).items()}
    times, growth, done = [], [], 0
    for start in range(0, args.ports, args.batch):
        batch = []
        for i in range(start, min(start + args.batch, args.ports)):
            k, chassis = plan[i]
            cidr = networks[k][1]
            host = ipaddress.ip_network(cidr).network_address + 100 + i % args.per_network
            mac = f"fa:16:3e:{(i >> 16) & 0xff:02x}:{(i >> 8) & 0xff:02x}:{i & 0xff:02x}"
            batch.append((k, prepare(lab, f"m{i}", chassis, mac, cidr, str(host))))
        for k, vm in batch:
            times.append(measure(lab, api, vm, networks[k][0], networks[k][2]))
        done += len(batch)
        rel = relevant_ports(api)
        growth.append((done, {ch: (flows(lab, ch), sum(rel[ch])) for ch in ("c1", "c2", "c3")},
                       rel["cloud"]))
        print(f"  {done} ports: p50 {pct(times, 50) * 1e3:.0f} ms, "
              f"flows (relevant ports) {growth[-1][1]}", file=sys.stderr)
    cpu = {ch: cpu_seconds(pid) - cpu0.get(ch, 0.0) for ch, pid in agent_pids(lab).items()}
    cpu_total = {ch: cpu_seconds(pid) for ch, pid in agent_pids(lab).items()}
    rel = relevant_ports(api)
    rows = [("ports measured", f"{len(times)} on 3 chassis, {nets} networks of "
                               f"{args.per_network} (+1 peer VM each)"),
            ("port create → VM pings peer, p50 / p95 / max (ms)",
             f"{pct(times, 50) * 1e3:.0f} / {pct(times, 95) * 1e3:.0f} / "
             f"{max(times) * 1e3:.0f}")]
    for done_, counts, cloud in growth:
        rows.append((f"after {done_:3d} ports ({cloud} in the cloud): flows (relevant ports)",
                     " / ".join(f"{counts[c][0]} ({counts[c][1]})" for c in ("c1", "c2", "c3"))))
    for ch in ("c1", "c2", "c3"):
        local, peers = rel[ch]
        last = growth[-1][1][ch][0]
        rows.append((f"{ch}: local / peer ports, flows, flows per relevant port",
                     f"{local} / {peers}, {last}, {last / max(1, local + peers):.1f}"))
    rows.append(("agent CPU s, measured phase (since start) c1 / c2 / c3",
                 " / ".join(f"{cpu.get(c, 0):.1f} ({cpu_total.get(c, 0):.1f})"
                            for c in ("c1", "c2", "c3"))))
    rows.append(("machine", machine()))
    api.close()
    return rows


def main() -> None:
    """Lab up, run, print the table, lab down."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=200)
    parser.add_argument("--per-network", type=int, default=10)
    parser.add_argument("--batch", type=int, default=25)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the lab needs root")
    with tempfile.TemporaryDirectory(prefix="plexus-bench-portup-") as tmp:
        lab = Lab(LabSpec(name="pu" + secrets.token_hex(2), chassis=3), tmp)
        lab.up(progress=lambda msg: print(f"lab: {msg}", file=sys.stderr))
        try:
            deadline = time.monotonic() + 30
            while len(agent_pids(lab)) < 3:
                if time.monotonic() > deadline:
                    raise SystemExit("the lab's agents did not start")
                time.sleep(0.2)
            rows = run(args, lab)
        finally:
            errors = lab.down()
            if errors:
                print(f"lab down: {errors}", file=sys.stderr)
    print_table(rows)


if __name__ == "__main__":
    main()
