"""Port-up benchmark: bursts of ports on a 3-chassis lab, timed two ways — from VIF plug
and from API create — to each VM's first echo reply from a peer on another chassis and
to the port showing ACTIVE in the API. Prints one table.

Every measured VM is plumbed first, as a hypervisor has it ready: a namespace with its
MAC and address, and a veth in its chassis' br-int without ``iface-id``. Ports go in
networks of ``--per-network``; each network spans two chassis (the pairs rotate): a peer
VM on one, the measured VMs on the other.

- **from VIF plug**: the burst's ports are created and bound through the API first and
  the agents are left to settle; then every VIF of the burst gets
  ``external_ids:iface-id`` at once (one OVSDB transaction per chassis, sent by this
  process over the chassis' OVSDB socket: no ``ovs-vsctl`` start-up in the timing);
  the clock starts when the transaction is sent.
- **from API create**: per port, the clock starts, the port is created through the API
  (``binding:host_id`` = the chassis), and its VIF gets ``iface-id`` as soon as the
  create returns; the burst's ports are created back to back.

Probing: each measured VM has an echo request toward its peer queued from before the
clock starts (a raw ICMP socket in the VM's namespace, re-sent every 20 ms until
answered); the VM's kernel retries ARP every ``--probe-ms`` (what a VM's ping does,
faster), so the first reply comes at most one probe interval after the path works. The
reply's time is the kernel's receive timestamp. ACTIVE is polled through the API every
``--poll-ms``. Agent CPU is utime + stime of the three agents (``/proc/<pid>/stat``)
from just before the burst until its flows have settled, per port of the burst.
After each burst its VMs and ports are removed, so every burst starts from the same
cloud (the peers).

    sudo .venv/bin/python bench/portup.py --bursts 20,100,300 [--name pubench]

``--queue N`` caps what a measured VM queues for an unresolved neighbour (the kernel's
``unres_qlen``, 101 by default: the prober's every-20-ms echoes pile up and leave
together once the ARP is answered). ``--capture`` (plug bursts) watches every measured
VM's and peer's eth0 (packet sockets, kernel timestamps) and reports when each step of
the first exchange happened: the VM's ARP answered, its echo out, at the peer, the
peer's ARP for the VM and its answer, the peer's reply out, the reply at the VM.

``--backend ovn`` runs the same benchmark with OVN as the control plane on the same lab
(no plexus-agent; NB/SB ovsdb-server, ovn-northd and an ovn-controller per chassis,
started and stopped with the lab: ``bench/ovn.py``); "ACTIVE" is then the port's ``up``
column in the NB.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import ipaddress
import json
import os
import re
import select
import socket
import struct
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))   # bench/table.py, bench/api.py
from api import pct, token  # noqa: E402
from table import machine, print_table  # noqa: E402

from plexus.lab import Lab, LabSpec, netlink  # noqa: E402
from plexus.lab import vm as vms  # noqa: E402
from plexus.lab.inventory import Inventory, resolve_pid  # noqa: E402
from plexus.agent.netns import in_netns  # noqa: E402
from plexus.lab.lab import lab_root  # noqa: E402

PAIRS = (("c1", "c2"), ("c2", "c3"), ("c3", "c1"))      # (peer's chassis, measured chassis)
CHASSIS = ("c1", "c2", "c3")
SO_TIMESTAMPNS = 35
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
RESEND = 0.02                     # seconds between echo requests of a VM not answered yet
DEADLINE = 60.0                   # seconds a burst may take before it is called failed


# --- namespaces ------------------------------------------------------------------------

def fast_arp(netns: str, probe_ms: int, queue: int | None = None) -> None:
    """ARP retried every ``probe_ms`` in a VM (the kernel default is one second); with
    ``queue``, at most that many packets wait for an unresolved neighbour (the kernel
    default, 101, lets the prober's every-20-ms echoes pile up and leave together)."""
    values = {"retrans_time_ms": str(probe_ms), "mcast_solicit": "255",
              "ucast_solicit": "255"}
    if queue is not None:
        values["unres_qlen"] = str(queue)
    with in_netns(netns):
        for key, value in values.items():
            Path(f"/proc/sys/net/ipv4/neigh/eth0/{key}").write_text(value)


def icmp_socket(netns: str) -> socket.socket:
    """A raw ICMP socket living in ``netns`` with kernel receive timestamps."""
    with in_netns(netns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    return sock


def packet_socket(netns: str, ifname: str = "eth0") -> socket.socket:
    """An AF_PACKET socket on ``ifname`` in ``netns`` seeing every frame in and out,
    with kernel timestamps."""
    with in_netns(netns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        sock.bind((ifname, ETH_P_ALL))
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    return sock


def kernel_stamp(anc) -> float:
    """The SO_TIMESTAMPNS receive time in a message's ancillary data (else now)."""
    for level, typ, value in anc:
        if level == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS:
            sec, nsec = struct.unpack("qq", value[:16])
            return sec + nsec / 1e9
    return time.time()


def frame_events(frame: bytes, outgoing: bool) -> list[tuple[str, str]]:
    """What a frame seen on a VM's or a peer's eth0 tells the timeline: (event, the
    address it concerns) pairs — ARP requests/replies and ICMP echo requests/replies,
    named from the side that sees them (``arp_request_out``, ``echo_reply_in``, ...)."""
    if len(frame) < 42:
        return []
    kind = struct.unpack("!H", frame[12:14])[0]
    side = "out" if outgoing else "in"
    if kind == 0x0806:
        op = struct.unpack("!H", frame[20:22])[0]
        sender, target = socket.inet_ntoa(frame[28:32]), socket.inet_ntoa(frame[38:42])
        if op == 1:
            return [(f"arp_request_{side}", target)]
        return [(f"arp_reply_{side}", sender)]
    if kind == 0x0800 and frame[23] == 1:
        ihl = (frame[14] & 0x0F) * 4
        icmp = frame[14 + ihl] if len(frame) > 14 + ihl else None
        src, dst = socket.inet_ntoa(frame[26:30]), socket.inet_ntoa(frame[30:34])
        if icmp in (0, 8):
            name = "echo_request" if icmp == 8 else "echo_reply"
            seq = struct.unpack("!H", frame[14 + ihl + 6:14 + ihl + 8])[0]
            return [(f"{name}_{side}", dst if outgoing else src),
                    (f"{name}_{side}_seq{seq}", dst if outgoing else src)]
    return []


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int) -> bytes:
    body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"plexus-portup"
    return body[:2] + struct.pack("!H", checksum(body)) + body[4:]


class Prober:
    """Echo requests from every measured VM toward its peer; the first reply's kernel
    timestamp per VM. With ``capture``, every measured VM's and peer's eth0 is also
    watched (AF_PACKET, kernel timestamps) for the first time of each step of the
    first exchange (``events``: VM name → step → time; ``STEPS``)."""

    def __init__(self, vms_: list[dict], capture: bool = False):
        self.vms = vms_
        self.replies: dict[str, float] = {}
        self.events: dict[str, dict[str, float]] = {vm["name"]: {} for vm in vms_}
        self._poll = select.epoll()
        self._by_fd = {}
        self._taps: dict[int, tuple[socket.socket, str, dict]] = {}
        for i, vm in enumerate(vms_):
            vm["sock"] = icmp_socket(vm["netns"])
            vm["ident"] = (os.getpid() + i) & 0xFFFF
            self._by_fd[vm["sock"].fileno()] = vm
            self._poll.register(vm["sock"].fileno(), select.EPOLLIN)
            if capture:
                tap = packet_socket(vm["netns"])
                self._taps[tap.fileno()] = (tap, "vm", {vm["peer_ip"]: vm["name"]})
        if capture:
            by_ip = {vm["ip"]: vm["name"] for vm in vms_}
            for peer in sorted({vm["peer_netns"] for vm in vms_}):
                tap = packet_socket(peer)
                self._taps[tap.fileno()] = (tap, "peer", by_ip)
        for fd in self._taps:
            self._poll.register(fd, select.EPOLLIN)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "Prober":
        self._thread.start()
        return self

    def _send(self, vm: dict, seq: int) -> None:
        with contextlib.suppress(OSError):     # EHOSTUNREACH after a failed resolution
            vm["sock"].sendto(echo_request(vm["ident"], seq), (vm["peer_ip"], 0))

    def _run(self) -> None:
        seq, next_send = 0, 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_send:
                seq += 1
                for vm in self.vms:
                    if vm["name"] not in self.replies:
                        self._send(vm, seq)
                next_send = now + RESEND
            for fd, _ in self._poll.poll(max(0.0, next_send - time.monotonic())):
                if fd in self._taps:
                    self._capture(*self._taps[fd])
                    continue
                vm = self._by_fd[fd]
                while True:
                    try:
                        data, anc, _, addr = vm["sock"].recvmsg(2048, 64)
                    except (BlockingIOError, InterruptedError):
                        break
                    if addr[0] != vm["peer_ip"] or len(data) < 28:
                        continue
                    ihl = (data[0] & 0x0F) * 4
                    kind, _, _, ident = struct.unpack("!BBHH", data[ihl:ihl + 6])
                    if kind != 0 or ident != vm["ident"] or vm["name"] in self.replies:
                        continue
                    self.replies[vm["name"]] = kernel_stamp(anc)

    def _capture(self, sock: socket.socket, side: str, names: dict[str, str]) -> None:
        """Record the first time of each step a frame on a watched eth0 shows."""
        while True:
            try:
                frame, anc, _, addr = sock.recvmsg(128, 64)
            except (BlockingIOError, InterruptedError):
                return
            for event, address in frame_events(frame, addr[2] == PACKET_OUTGOING):
                name = names.get(address)
                if name is None:
                    continue
                steps = self.events[name]
                if side == "vm" and (event == "arp_request_out" or (
                        event.startswith("echo_request_out")
                        and "vm_arp_reply_in" not in steps)):
                    continue            # the VM's steady retries before the plug
                steps.setdefault(f"{side}_{event}", kernel_stamp(anc))

    def done(self) -> bool:
        return len(self.replies) == len(self.vms)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._poll.close()
        for vm in self.vms:
            vm["sock"].close()
        for sock, _, _ in self._taps.values():
            sock.close()


# --- OVSDB, spoken directly ------------------------------------------------------------

class Ovsdb:
    """A bare JSON-RPC client of an ovsdb-server (one chassis' Open_vSwitch, or OVN's
    northbound database), one transaction at a time."""

    def __init__(self, path: Path, database: str = "Open_vSwitch"):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self.buf, self.ids, self.database = "", 0, database

    def send_transact(self, ops: list) -> int:
        self.ids += 1
        self.sock.sendall(json.dumps({"method": "transact", "id": self.ids,
                                      "params": [self.database, *ops]}).encode())
        return self.ids

    def transact(self, ops: list, timeout: float = 30) -> list:
        """Send ``ops`` as one transaction; its results."""
        return self.wait(self.send_transact(ops), timeout)

    def wait(self, ident: int, timeout: float = 30) -> list:
        decoder = json.JSONDecoder()
        self.sock.settimeout(timeout)
        while True:
            self.buf = self.buf.lstrip()
            try:
                msg, end = decoder.raw_decode(self.buf)
            except json.JSONDecodeError:
                self.buf += self.sock.recv(65536).decode()
                continue
            self.buf = self.buf[end:]
            if msg.get("method") == "echo":
                self.sock.sendall(json.dumps({"result": msg["params"], "error": None,
                                              "id": msg["id"]}).encode())
            elif msg.get("id") == ident:
                if msg.get("error"):
                    raise RuntimeError(f"OVSDB: {msg['error']}")
                bad = [r for r in msg["result"] if "error" in r]
                if bad:
                    raise RuntimeError(f"OVSDB transaction: {bad}")
                return msg["result"]

    def close(self) -> None:
        self.sock.close()


def plug_ops(vms_: list[dict]) -> list:
    """OVSDB operations giving each VM's VIF its iface-id (Nova's plug)."""
    return [{"op": "mutate", "table": "Interface", "where": [["name", "==", vm["tap"]]],
             "mutations": [["external_ids", "insert", ["map", [
                 ["iface-id", vm["port_id"]], ["attached-mac", vm["mac"]]]]]]}
            for vm in vms_]


# --- the lab ---------------------------------------------------------------------------

def flows(lab: Lab, chassis: str) -> int:
    """Number of OpenFlow flows on a chassis' br-int."""
    out = lab.ovs(chassis).ofctl("dump-flows", "br-int")
    return sum(1 for line in out.splitlines() if "cookie=" in line)


def all_flows(lab: Lab) -> dict[str, int]:
    return {ch: flows(lab, ch) for ch in CHASSIS}


def settle(lab: Lab, quiet: float = 1.0, timeout: float = 120) -> dict[str, int]:
    """Wait until no chassis' flow count changed for ``quiet`` seconds; the counts."""
    deadline = time.monotonic() + timeout
    last, since = all_flows(lab), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = all_flows(lab)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return now
    return last


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def lab_pids(lab: Lab, what: str) -> dict[str, int]:
    """Label → pid of the lab's running processes whose label is ``<chassis>/<what>``
    (``what`` = "agent", "ovs-vswitchd", "ovn-controller") or, for ``what`` = "", is
    one of the central processes (no chassis): the API server, OVN's databases and
    northd (from the lab's inventory)."""
    out = {}
    for entry in lab.inventory.entries("process"):
        chassis, _, name = entry["label"].partition("/")
        central = entry["label"] == "server" or chassis == "ovn"
        if (name == what and chassis != "ovn") if what else central:
            pid = resolve_pid(entry)
            if pid is not None:
                out[entry["label"]] = pid
    return out


def agents_cpu(pids: dict[str, int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids.values())


LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def agent_timeline(lab: Lab, began: dict[str, float], until: float) -> dict[str, str]:
    """Per chassis, from its agent's log: ms from the plug transaction being sent to the
    agent seeing the VIFs in OVSDB, to its first and its last flow bundle applied before
    ``until``, and the first bundle's own breakdown (its log line)."""
    out = {}
    for ch, t0 in began.items():
        seen = first = last = None
        detail = ""
        try:
            lines = (lab.dir / ch / "agent.log").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            m = LOG_TIME.match(line)
            if not m:
                continue
            t = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if t < t0 - 0.002 or t > until:
                continue
            if seen is None and "OVSDB: VIFs +" in line:
                seen = t
            elif seen is not None and "flows -" in line:
                if first is None:
                    first = t
                    detail = line.split(" flows ", 1)[1].strip()
                last = t
        if seen is not None:
            ms = lambda t: "n/a" if t is None else f"{(t - t0) * 1e3:.0f}"  # noqa: E731
            out[ch] = f"seen {ms(seen)}, first bundle {ms(first)}, last {ms(last)} ({detail})"
    return out


def prepare(lab: Lab, vms_: list[dict], probe_ms: int, queue: int | None = None) -> None:
    """Plumb VMs whose VIFs name no port yet (recorded for teardown); the taps go into
    br-int in one ovs-vsctl call per chassis. ``queue``: see ``fast_arp``."""
    for vm in vms_:
        group = f"vm:{vm['name']}"
        ch = lab.spec.chassis_named(vm["chassis"])
        lab._netns(vm["netns"], group)
        lab._veth(vm["netns"], "eth0", ch.netns, vm["tap"], group)
        netlink.set_link(ch.netns, vm["tap"], mtu=1450)
        netlink.set_link(vm["netns"], "eth0", address=vm["mac"], mtu=1450)
        netlink.add_address(vm["netns"], "eth0", f"{vm['ip']}/{vm['prefix']}")
        fast_arp(vm["netns"], probe_ms, queue)
        lab.inventory.record("ovs-port", group=group, chassis=vm["chassis"],
                             bridge="br-int", name=vm["tap"])
    for ch in CHASSIS:
        argv = []
        for vm in (v for v in vms_ if v["chassis"] == ch):
            argv += ["--", "add-port", "br-int", vm["tap"]]
        if argv:
            lab.ovs(ch).vsctl(*argv[1:], timeout=120)


def unplug(lab: Lab, backend, vms_: list[dict]) -> None:
    """Remove a burst's ports, VIFs and VMs."""
    backend.delete_ports([vm for vm in vms_ if vm.get("port_id")])
    for ch in CHASSIS:
        argv = []
        for vm in (v for v in vms_ if v["chassis"] == ch):
            argv += ["--", "--if-exists", "del-port", "br-int", vm["tap"]]
        if argv:
            lab.ovs(ch).vsctl(*argv[1:], timeout=120)
    handlers = {**vms.teardown_handlers(lab, full=True), "ovs-port": lambda entry: None}
    for vm in vms_:
        errors = lab.inventory.teardown(handlers, group=f"vm:{vm['name']}")
        if errors:
            print(f"  removing {vm['name']}: {errors}", file=sys.stderr)


class UpWatch:
    """Polls for the ports that are up (``active``: the names up now, per backend);
    the first time each was seen."""

    def __init__(self, poll: float):
        self.poll, self.seen = poll, {}
        self.wanted: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def active(self) -> list[str]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def start(self, wanted: set[str]) -> "UpWatch":
        """Watch the ports named ``wanted`` (they need not exist yet)."""
        self.wanted = frozenset(wanted)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set() and not self.wanted <= set(self.seen):
            names = self.active()
            now = time.time()
            for name in names:
                if name in self.wanted:
                    self.seen.setdefault(name, now)
            self._stop.wait(self.poll)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.close()


class ActiveWatch(UpWatch):
    """Polls the API for the ports that became ACTIVE."""

    def __init__(self, url: str, tok: str, poll: float):
        super().__init__(poll)
        self.api = httpx.Client(base_url=url, headers={"X-Auth-Token": tok}, timeout=60)

    def active(self) -> list[str]:
        """Names of the ports the API shows ACTIVE now."""
        r = self.api.get("/v2.0/ports", params=[("fields", "name"), ("fields", "status"),
                                                ("status", "ACTIVE")])
        return [port["name"] for port in r.json()["ports"]] if r.status_code == 200 else []

    def close(self) -> None:
        self.api.close()


class PlexusBackend:
    """Plexus: networks and ports through the Neutron API, a plexus-agent per chassis
    (the lab's own)."""

    name = "Plexus"
    control = "agent"                   # the per-chassis control process
    central = "API server"              # the central one(s)
    central_prefix = "server"           # their labels in the lab's inventory
    active = "ACTIVE in API"
    agents = True                       # the lab starts its agents

    def __init__(self, lab: Lab, args):
        self.lab, self.args = lab, args

    def start(self) -> None:
        deadline = time.monotonic() + 30
        while len(lab_pids(self.lab, "agent")) < 3:
            if time.monotonic() > deadline:
                raise SystemExit("the lab's agents did not start")
            time.sleep(0.2)
        self.tok = token(self.lab.url)
        self.api = httpx.Client(base_url=self.lab.url, headers={"X-Auth-Token": self.tok},
                                timeout=60)

    def network(self, k: int, cidr: str, peer_chassis: str) -> dict:
        """Network ``pu<k>`` with a subnet and a peer VM on ``peer_chassis``."""
        net = self.api.post("/v2.0/networks", json={"network": {"name": f"pu{k}"}}
                            ).json()["network"]
        base = cidr.rsplit(".", 1)[0]                  # peers below .20, measured VMs above
        self.api.post("/v2.0/subnets", json={"subnet": {
            "network_id": net["id"], "cidr": cidr, "ip_version": 4,
            "allocation_pools": [{"start": f"{base}.2", "end": f"{base}.19"}]}}
        ).raise_for_status()
        peer = vms.boot(self.lab, f"peer{k}", net["id"], chassis=peer_chassis, static=True)
        fast_arp(peer.netns, self.args.probe_ms)
        return {"id": net["id"], "peer_ip": peer.ip, "peer_netns": peer.netns}

    def create_port(self, vm: dict) -> str:
        r = self.api.post("/v2.0/ports", json={"port": {
            "network_id": vm["network_id"], "mac_address": vm["mac"], "name": vm["name"],
            "fixed_ips": [{"ip_address": vm["ip"]}], "binding:host_id": vm["chassis"],
            "device_owner": "compute:nova", "device_id": vm["name"]}})
        r.raise_for_status()
        return r.json()["port"]["id"]

    def delete_ports(self, vms_: list[dict]) -> None:
        for vm in vms_:
            self.api.delete(f"/v2.0/ports/{vm['port_id']}")

    def watch(self) -> ActiveWatch:
        return ActiveWatch(self.lab.url, self.tok, self.args.poll_ms / 1000)

    def timeline(self, began: dict[str, float], until: float) -> dict[str, str]:
        return agent_timeline(self.lab, began, until)

    def logs(self) -> dict[str, Path]:
        return {f"{ch}-agent.log": self.lab.dir / ch / "agent.log" for ch in CHASSIS}

    def close(self) -> None:
        self.api.close()


# --- one burst -------------------------------------------------------------------------

def wait_burst(prober: Prober, watch) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if prober.done() and watch.wanted <= set(watch.seen):
            return
        time.sleep(0.01)
    missing = [vm["name"] for vm in prober.vms if vm["name"] not in prober.replies]
    print(f"  burst not complete after {DEADLINE:.0f} s: {len(missing)} VMs never got a "
          f"reply, {len(watch.wanted - set(watch.seen))} ports never up",
          file=sys.stderr)


class Cpu:
    """CPU seconds of the per-chassis control processes (agents or ovn-controllers),
    of the central ones (API server, or OVN's databases and northd) and of the three
    ovs-vswitchd, from ``start`` on."""

    def __init__(self, lab: Lab, backend):
        self.groups = {"control": lab_pids(lab, backend.control),
                       "central": {label: pid for label, pid in lab_pids(lab, "").items()
                                   if label.startswith(backend.central_prefix)},
                       "vswitchd": lab_pids(lab, "ovs-vswitchd")}
        self.start()

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.base = self._now()

    def _now(self) -> dict[str, float]:
        return {group: agents_cpu(pids) for group, pids in self.groups.items()}

    def since(self) -> tuple[dict[str, float], float]:
        """CPU seconds per group since ``start``, and the wall-clock seconds."""
        now = self._now()
        return {g: now[g] - self.base[g] for g in now}, time.monotonic() - self.t0


def burst_plug(lab: Lab, backend, vms_: list[dict], args) -> dict:
    for vm in vms_:
        vm["port_id"] = backend.create_port(vm)
    settle(lab)
    dbs = {ch: Ovsdb(lab.ovs(ch).rundir / "db.sock") for ch in CHASSIS}
    prober = Prober(vms_, capture=args.capture).start()
    watch = backend.watch()
    time.sleep(0.3)                   # every VM is ARPing for its peer, unanswered
    cpu = Cpu(lab, backend)
    began, sent = {}, {}
    try:
        for ch in CHASSIS:
            mine = [vm for vm in vms_ if vm["chassis"] == ch]
            if mine:
                began[ch] = time.time()
                sent[ch] = dbs[ch].send_transact(plug_ops(mine))
        watch.start({vm["name"] for vm in vms_})
        for ch, ident in sent.items():
            dbs[ch].wait(ident)
            if os.environ.get("PORTUP_DEBUG"):          # when each plug committed
                print(f"  plug {ch}: sent {began[ch]:.6f}, committed by "
                      f"{time.time():.6f}", file=sys.stderr)
        wait_burst(prober, watch)
        during = cpu.since()
        done = time.time()
    finally:
        prober.stop()
        watch.stop()
        for db in dbs.values():
            db.close()
    counts = settle(lab)
    res = result(vms_, {vm["name"]: began[vm["chassis"]] for vm in vms_}, prober, watch,
                 counts, cpu.since()[0])
    res["during"] = during
    res["timeline"] = backend.timeline(began, done)
    if args.capture:
        res["steps"] = steps(vms_, began, prober)
    if args.keep_logs:
        keep = Path(args.keep_logs) / f"{backend.name.lower()}-plug{len(vms_)}"
        keep.mkdir(parents=True, exist_ok=True)
        for name, path in backend.logs().items():
            (keep / name).write_bytes(path.read_bytes())
        (keep / "began.json").write_text(json.dumps(began))
    return res


def burst_create(lab: Lab, backend, vms_: list[dict], args) -> dict:
    settle(lab)
    dbs = {ch: Ovsdb(lab.ovs(ch).rundir / "db.sock") for ch in CHASSIS}
    prober = Prober(vms_).start()
    watch = backend.watch()
    time.sleep(0.3)
    cpu = Cpu(lab, backend)
    began = {}
    try:
        watch.start({vm["name"] for vm in vms_})
        for vm in vms_:
            began[vm["name"]] = time.time()
            vm["port_id"] = backend.create_port(vm)
            db = dbs[vm["chassis"]]
            db.wait(db.send_transact(plug_ops([vm])))
        wait_burst(prober, watch)
        during = cpu.since()
    finally:
        prober.stop()
        watch.stop()
        for db in dbs.values():
            db.close()
    counts = settle(lab)
    res = result(vms_, began, prober, watch, counts, cpu.since()[0])
    res["during"] = during
    return res


def result(vms_, began, prober, watch, counts, cpu: dict[str, float]) -> dict:
    """Latencies in ms; CPU in ms per port of the burst, per group, until settled."""
    reply = [(prober.replies[vm["name"]] - began[vm["name"]]) * 1e3 for vm in vms_
             if vm["name"] in prober.replies]
    active = [(watch.seen[vm["name"]] - began[vm["name"]]) * 1e3 for vm in vms_
              if vm["name"] in watch.seen]
    return {"n": len(vms_), "reply": reply, "active": active, "flows": counts,
            "cpu": {g: v * 1e3 / len(vms_) for g, v in cpu.items()}}


STEPS = (("vm_arp_reply_in", "VM's ARP answered"),
         ("vm_echo_request_out", "its echo out"),
         ("peer_echo_request_in", "at the peer"),
         ("peer_arp_request_out", "peer ARPs for the VM"),
         ("peer_arp_reply_in", "peer's ARP answered"),
         ("peer_echo_reply_out", "peer's reply out"),
         ("vm_echo_reply_in", "reply at the VM"))


def steps(vms_: list[dict], began: dict[str, float], prober: Prober) -> str:
    """p50 ms from the plug to each step of the first exchange (``Prober`` capture)."""
    out = []
    for key, label in STEPS:
        ms = [(prober.events[vm["name"]][key] - began[vm["chassis"]]) * 1e3 for vm in vms_
              if key in prober.events[vm["name"]]]
        out.append(f"{label} {pct(ms, 50):.0f}" if ms else f"{label} -")
    return ", ".join(out)


def stats(values: list[float], n: int) -> str:
    if not values:
        return "none"
    text = f"{pct(values, 50):.0f} / {pct(values, 95):.0f} / {max(values):.0f}"
    return text if len(values) == n else f"{text} ({n - len(values)} of {n} missing)"


# --- the run ---------------------------------------------------------------------------

def run(args, lab: Lab, backend) -> list[tuple[str, str]]:
    bursts = [int(b) for b in args.bursts.split(",")]
    nets = (max(bursts) + args.per_network - 1) // args.per_network
    networks = []
    for k in range(nets):
        cidr = f"10.{100 + k // 200}.{k % 200}.0/24"
        net = backend.network(k, cidr, PAIRS[k % 3][0])
        networks.append({**net, "cidr": cidr, "chassis": PAIRS[k % 3][1], "hosts": 20})
        print(f"  network pu{k}: peer {net['peer_ip']} on {PAIRS[k % 3][0]}",
              file=sys.stderr)
    baseline = settle(lab)
    results, serial = {}, 0
    for mode in args.modes.split(","):
        for n in bursts:
            used = (n + args.per_network - 1) // args.per_network
            burst = []
            for i in range(n):
                net = networks[i % used]
                host = ipaddress.ip_network(net["cidr"]).network_address + net["hosts"]
                net["hosts"] += 1
                if net["hosts"] > 254:
                    raise SystemExit("out of addresses: fewer or smaller bursts")
                name = f"m{serial}"
                burst.append({"name": name, "chassis": net["chassis"],
                              "netns": lab.spec.vm_ns(name), "tap": f"tb{name}"[:14],
                              "mac": f"fa:16:3e:{(serial >> 16) & 0xff:02x}:"
                                     f"{(serial >> 8) & 0xff:02x}:{serial & 0xff:02x}",
                              "ip": str(host), "prefix": 24, "network_id": net["id"],
                              "peer_ip": net["peer_ip"], "peer_netns": net["peer_netns"]})
                serial += 1
            print(f"{mode} burst of {n}: plumbing VMs", file=sys.stderr)
            prepare(lab, burst, args.probe_ms, args.queue)
            try:
                fn = burst_plug if mode == "plug" else burst_create
                res = fn(lab, backend, burst, args)
            finally:
                unplug(lab, backend, burst)
            results[(mode, n)] = res
            print(f"  {mode} {n}: reply {stats(res['reply'], n)} ms, {backend.active} "
                  f"{stats(res['active'], n)} ms, flows {res['flows']}, {backend.control} "
                  f"CPU {res['cpu']['control']:.1f} ms/port", file=sys.stderr)
            for ch, line in res.get("timeline", {}).items():
                print(f"    {ch}: {line}", file=sys.stderr)
            if "steps" in res:
                print(f"    first exchange: {res['steps']}", file=sys.stderr)
            settle(lab)
    label = {"plug": "from VIF plug", "create": "from API create"}
    rows = [("control plane", backend.name),
            ("lab", f"3 chassis, {nets} networks (≤ {args.per_network} measured ports each "
                    f"+ 1 peer VM), probe every {args.probe_ms} ms"
                    + (f", {args.queue} packet(s) queued per unresolved neighbour"
                       if args.queue is not None else "")
                    + f", {backend.active} polled every {args.poll_ms} ms"),
            ("flows per chassis before the bursts c1 / c2 / c3",
             " / ".join(str(baseline[c]) for c in CHASSIS))]
    for (mode, n), res in results.items():
        rows.append((f"{label[mode]}, burst {n}: first reply p50 / p95 / max (ms)",
                     stats(res["reply"], n)))
        rows.append((f"{label[mode]}, burst {n}: {backend.active} p50 / p95 / max (ms)",
                     stats(res["active"], n)))
        rows.append((f"{label[mode]}, burst {n}: flows c1 / c2 / c3, {backend.control} CPU "
                     "ms per port",
                     " / ".join(str(res["flows"][c]) for c in CHASSIS)
                     + f", {res['cpu']['control']:.1f}"))
        rows.append((f"{label[mode]}, burst {n}: {backend.central} CPU ms per port",
                     f"{res['cpu']['central']:.1f}"))
        cpu, wall = res["during"]
        rows.append((f"{label[mode]}, burst {n}: ovs-vswitchd CPU (3) until the last reply",
                     f"{cpu['vswitchd']:.2f} s in {wall:.2f} s "
                     f"({100 * cpu['vswitchd'] / wall:.0f}% of a core)"))
        for ch, line in res.get("timeline", {}).items():
            rows.append((f"{label[mode]}, burst {n}: {ch} agent after plug (ms)", line))
        if "steps" in res:
            rows.append((f"{label[mode]}, burst {n}: first exchange, p50 ms after plug",
                         res["steps"]))
    rows.append(("machine", machine()))
    return rows


def main() -> None:
    """Lab up, run, print the table, lab down (also on failure)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("plexus", "ovn"), default="plexus",
                        help="the control plane: Plexus (server + agents) or OVN "
                             "(NB/SB ovsdb-server, ovn-northd, an ovn-controller per "
                             "chassis) on the same lab")
    parser.add_argument("--bursts", default="20,100,300")
    parser.add_argument("--modes", default="plug,create",
                        help="plug (from VIF plug), create (from API create), or both")
    parser.add_argument("--per-network", type=int, default=10)
    parser.add_argument("--probe-ms", type=int, default=5, help="VM ARP retry interval")
    parser.add_argument("--poll-ms", type=int, default=20,
                        help="ACTIVE (OVN: LSP up) poll interval")
    parser.add_argument("--ovn-encap", choices=("geneve", "vxlan"), default="geneve",
                        help="OVN's tunnels (Plexus uses VXLAN)")
    parser.add_argument("--queue", type=int, default=None,
                        help="packets a measured VM queues for an unresolved neighbour "
                             "(unres_qlen; default: the kernel's, 101)")
    parser.add_argument("--capture", action="store_true",
                        help="watch every VM's and peer's eth0 (plug bursts) and report "
                             "when each step of the first exchange happened")
    parser.add_argument("--name", default="pubench", help="the lab's name")
    parser.add_argument("--keep-logs", default=None,
                        help="copy the agents' (or ovn-controllers') logs of each plug "
                             "burst into this directory")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the lab needs root")
    if args.backend == "ovn":
        sys.modules.setdefault("portup", sys.modules[__name__])   # ovn.py imports us
        from ovn import OvnBackend, check_installed
        check_installed()
        backend_cls = OvnBackend
    else:
        backend_cls = PlexusBackend
    if Inventory(lab_root() / args.name).exists():      # left by a run that was killed
        print(f"removing the leftover lab {args.name}", file=sys.stderr)
        Lab.load(args.name).down()
    lab = Lab(LabSpec(name=args.name, chassis=3, agents=backend_cls.agents))
    lab.up(progress=lambda msg: print(f"lab: {msg}", file=sys.stderr))
    backend = backend_cls(lab, args)
    try:
        backend.start()
        rows = run(args, lab, backend)
        backend.close()
    finally:
        errors = lab.down()
        if errors:
            print(f"lab down: {errors}", file=sys.stderr)
    print_table(rows)


if __name__ == "__main__":
    main()
