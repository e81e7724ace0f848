"""What Nova does, for the lab: a port through the API bound to a chassis, a VM
namespace whose eth0 (the port's MAC) is a veth into that chassis' br-int with
``external_ids:iface-id`` = the port, then a real DHCP client (or ``--static``).
Also ``Node``: any lab namespace you can run commands, pings and TCP checks in."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import time
import uuid
from collections import Counter

from plexus.lab import netlink
from plexus.lab.inventory import stop_process
from plexus.lab.topology import VM_RE, tap_name

# udhcpc event script: configures the interface and routes only; never writes /etc
# (the busybox default script would rewrite the machine's resolv.conf).
DHCP_SCRIPT = r"""#!/bin/sh
case "$1" in
  deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
    if [ -n "$staticroutes" ]; then
      set -- $staticroutes
      while [ $# -ge 2 ]; do ip route replace "$1" via "$2" dev "$interface"; shift 2; done
    elif [ -n "$router" ]; then
      set -- $router
      ip route replace default via "$1" dev "$interface"
    fi
    ;;
esac
exit 0
"""
RESERVED = {"ul", "pn", "ext", "inet"}


class Node:
    """A lab namespace to run things in (a VM, the internet host, the router, a chassis)."""

    def __init__(self, lab, name: str, netns: str, group: str, env: dict | None = None):
        self.lab, self.name, self.netns, self.group, self.env = lab, name, netns, group, env

    def exec(self, *argv: str, check: bool = True, timeout: float = 60,
             input: str | None = None) -> subprocess.CompletedProcess:
        """Run a command inside the node; output captured."""
        return netlink.run(self.netns, list(argv), check=check, timeout=timeout,
                           env=self.env, input=input)

    def ping(self, ip: str, count: int = 3, deadline: float = 10) -> bool:
        """Whether ``ip`` answers ``count`` pings within ``deadline`` seconds."""
        proc = self.exec("ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", "1",
                         "-w", str(int(deadline)), str(ip), check=False, timeout=deadline + 5)
        return proc.returncode == 0

    def tcp_server(self, port: int, timeout: float = 10, kind: str = "tcp") -> int:
        """Start a TCP checker (``kind`` "udp": a UDP echo) listening on ``port``
        (recorded); returns its pid."""
        name = f"{self.name}-{kind}-{port}"
        ready = self.lab.dir / "pids" / f"{name}.ready"
        ready.unlink(missing_ok=True)
        pid = self.lab.spawn(name,
                             [sys.executable, "-m", "plexus.lab.tcp",
                              "serve" if kind == "tcp" else "udp-serve", "--port",
                              str(port), "--ready", str(ready)],
                             ns=self.netns, group=self.group,
                             log=self.lab.dir / "pids" / f"{name}.log")
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind} server on {self.name}:{port} did not start")
            time.sleep(0.02)
        return pid

    def udp_server(self, port: int, timeout: float = 10) -> int:
        """Start a UDP echo on ``port`` (recorded); returns its pid."""
        return self.tcp_server(port, timeout, kind="udp")

    def udp_client(self, ip: str, port: int, timeout: float = 5) -> bool:
        """Whether a datagram to ``ip:port`` is echoed back from that address and port."""
        proc = self.exec(sys.executable, "-m", "plexus.lab.tcp", "udp-send", str(ip),
                         str(port), "--timeout", str(timeout), check=False,
                         timeout=timeout + 10)
        return proc.returncode == 0

    def tcp_client(self, ip: str, port: int, size: int = 1 << 20,
                   timeout: float = 20) -> dict:
        """Send ``size`` bytes to a TCP checker; {"ok", "bytes", "seconds", "mbit_s"}."""
        proc = self.exec(sys.executable, "-m", "plexus.lab.tcp", "send", str(ip), str(port),
                         "--size", str(size), "--timeout", str(timeout), check=False,
                         timeout=timeout * 3 + 10)
        try:
            return json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            return {"ok": False, "error": proc.stderr.strip(), "bytes": 0}

    def addresses(self, ifname: str = "eth0") -> list[str]:
        """IPv4 addresses (with prefix) of an interface of this node."""
        return netlink.addresses(self.netns, ifname)

    def addresses6(self, ifname: str = "eth0", scope: str = "global") -> list[str]:
        """IPv6 addresses (no prefix) of an interface of this node, DAD done: ``global``
        ones or ``link`` (fe80::/10) ones."""
        found = [a.split("/")[0] for a in netlink.addresses6(self.netns, ifname)]
        link = [a for a in found if a.lower().startswith("fe8")]
        return link if scope == "link" else [a for a in found if a not in link]


class VM(Node):
    """A booted lab VM (facts from the inventory)."""

    def __init__(self, lab, entry: dict):
        super().__init__(lab, entry["name"], entry["netns"], entry["group"])
        self.entry = entry

    @property
    def port_id(self) -> str:
        """The Neutron port this VM is plugged into."""
        return self.entry.get("port_id")

    @property
    def mac(self) -> str:
        """The port's (and eth0's) MAC."""
        return self.entry.get("mac")

    @property
    def chassis(self) -> str:
        """The chassis (binding:host_id) it runs on."""
        return self.entry["chassis"]

    @property
    def ip(self) -> str | None:
        """eth0's current IPv4 address (no prefix), if any."""
        found = self.addresses() if netlink.ns_exists(self.netns) else []
        return found[0].split("/")[0] if found else None


def get(lab, name: str) -> VM:
    """The VM called ``name``; KeyError if there is none."""
    for entry in lab.inventory.entries("vm"):
        if entry["name"] == name:
            return VM(lab, entry)
    raise KeyError(f"no VM {name!r} in lab {lab.spec.name!r}")


def node(lab, name: str) -> Node:
    """A VM, a chassis (with OVS tools pointed at its instance) or ul/pn/ext/inet."""
    s = lab.spec
    fabric = {"ul": s.underlay_ns, "pn": s.provider_ns, "ext": s.external_ns,
              "inet": s.internet_ns}
    if name in fabric:
        return Node(lab, name, fabric[name], f"node:{name}")
    for ch in s.chassis_list():
        if ch.name == name:
            return Node(lab, name, ch.netns, f"node:{name}", env=lab.ovs(ch).env())
    return get(lab, name)


def list_vms(lab) -> list[dict]:
    """Every VM with its chassis, port, MAC and address."""
    out = []
    for entry in lab.inventory.entries("vm"):
        vm = VM(lab, entry)
        out.append({"name": vm.name, "chassis": vm.chassis, "port_id": vm.port_id,
                    "mac": vm.mac, "ip": vm.ip, "netns": vm.netns, "mode": entry.get("mode")})
    return out


def _pick_chassis(lab) -> str:
    load = Counter(e["chassis"] for e in lab.inventory.entries("vm"))
    return min(lab.spec.chassis_list(), key=lambda ch: (load[ch.name], ch.index)).name


def _project_id(conn, project: str) -> str:
    try:
        found = conn.identity.find_project(project, ignore_missing=True)
    except Exception:  # noqa: BLE001 - identity lookups are optional; ids work directly
        found = None
    return found.id if found else project


def boot(lab, name: str, network: str | None = None, *, chassis: str | None = None,
         project: str | None = None, static: bool = False, port: str | None = None,
         dhcp_timeout: float = 10.0, device_owner: str = "compute:nova") -> VM:
    """Boot a VM: port, namespace, veth into br-int, then DHCP (or static) addressing.

    Plumbing failures tear the VM down and raise; a DHCP client that gets no answer
    leaves the VM up without an address (check ``vm.ip``)."""
    taken = RESERVED | {c.name for c in lab.spec.chassis_list()}
    if not VM_RE.match(name) or name in taken:
        raise ValueError(f"bad VM name {name!r} (letters, digits, _.-; not {sorted(taken)})")
    if any(e["name"] == name for e in lab.inventory.entries("vm")):
        raise ValueError(f"VM {name!r} exists")
    if not (network or port):
        raise ValueError("give a network (or --port)")
    ch = lab.spec.chassis_named(chassis or _pick_chassis(lab))
    group, netns, vm_id = f"vm:{name}", lab.spec.vm_ns(name), str(uuid.uuid4())
    ident = lab.inventory.record("vm", group=group, name=name, chassis=ch.name, netns=netns,
                                 vm_id=vm_id, mode="static" if static else "dhcp")
    conn = lab.connect()
    try:
        binding = {"binding_host_id": ch.name, "device_owner": device_owner,
                   "device_id": vm_id}
        if port:
            p = conn.network.update_port(conn.network.find_port(port, ignore_missing=False),
                                         **binding)
        else:
            net = conn.network.find_network(network, ignore_missing=False)
            owner = _project_id(conn, project) if project else net.project_id
            p = conn.network.create_port(network_id=net.id, project_id=owner, name=name,
                                         **binding)
        lab.inventory.update(ident, port_id=p.id, created_port=not port, mac=p.mac_address,
                             network_id=p.network_id)
        mtu = conn.network.get_network(p.network_id).mtu or 1500
        tap = tap_name(p.id)
        lab._netns(netns, group)
        lab._veth(netns, "eth0", ch.netns, tap, group)
        netlink.set_link(ch.netns, tap, mtu=mtu)
        netlink.set_link(netns, "eth0", address=p.mac_address, mtu=mtu)
        lab.inventory.record("ovs-port", group=group, chassis=ch.name, bridge="br-int", name=tap)
        lab.ovs(ch).vsctl("--may-exist", "add-port", "br-int", tap, "--", "set", "Interface",
                          tap, f"external_ids:iface-id={p.id}",
                          f"external_ids:attached-mac={p.mac_address}",
                          "external_ids:iface-status=active", f"external_ids:vm-uuid={vm_id}")
        vm = get(lab, name)
        if static:
            _static(conn, vm, p)
        else:
            _dhcp(lab, vm, dhcp_timeout)
        return get(lab, name)
    except BaseException:
        delete(lab, name)
        raise


def _static(conn, vm: VM, port) -> None:
    fixed = port.fixed_ips[0]
    subnet = conn.network.get_subnet(fixed["subnet_id"])
    prefix = ipaddress.ip_network(subnet.cidr).prefixlen
    netlink.add_address(vm.netns, "eth0", f"{fixed['ip_address']}/{prefix}")
    if subnet.gateway_ip:
        netlink.add_route(vm.netns, "default", subnet.gateway_ip)


def _dhcp(lab, vm: VM, timeout: float) -> bool:
    pidfile = lab.dir / "pids" / f"{vm.name}-udhcpc.pid"
    pidfile.parent.mkdir(exist_ok=True)
    ident = lab.inventory.record("process", group=vm.group, label=f"{vm.name}-udhcpc",
                                 pidfile=str(pidfile), ns=vm.netns)
    tries = max(1, int(timeout))
    proc = vm.exec("busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", str(tries),
                   "-T", "1", "-A", "1", "-s", str(lab.dir / "udhcpc.sh"), "-p", str(pidfile),
                   check=False, timeout=timeout + 15)
    lab.inventory.forget(ident)  # udhcpc -q has exited: nothing left to stop
    return proc.returncode == 0


def delete(lab, name: str) -> list[str]:
    """Unplug and remove a VM and its port (or unbind a port it was given)."""
    return lab.inventory.teardown(teardown_handlers(lab, full=False), group=f"vm:{name}",
                                  batches=teardown_batches(lab, full=False))


def teardown_handlers(lab, full: bool) -> dict:
    """Inventory handlers for VM parts; ``full`` (lab down) skips API calls."""
    def vm(entry):
        if full or not entry.get("port_id"):
            return
        try:
            conn = lab.connect()
            if entry.get("created_port"):
                conn.network.delete_port(entry["port_id"], ignore_missing=True)
            else:
                conn.network.update_port(entry["port_id"], binding_host_id="",
                                         device_id="", device_owner="")
        except Exception:  # noqa: BLE001 - the server may be gone; the VM still goes
            pass

    def ovs_port(entry):
        ovs = lab.ovs(entry["chassis"])
        if (ovs.rundir / "db.sock").exists():
            try:
                ovs.vsctl("--if-exists", "del-port", entry["bridge"], entry["name"], timeout=5)
            except (RuntimeError, subprocess.TimeoutExpired):
                pass  # ovsdb-server gone: nothing left to unplug from

    return {"vm": vm, "ovs-port": ovs_port, "process": stop_process}


def teardown_batches(lab, full: bool = False) -> dict:
    """Inventory batch handlers for VM parts: every OVS port of a chassis unplugged in
    one OVSDB transaction (one ``ovs-vsctl`` per chassis, not one per VM); ``full``
    (lab down): none at all, the OVS instances, their databases and the taps all go."""
    def ovs_ports(entries):
        if full:
            return {}
        by_chassis: dict[str, list[dict]] = {}
        for entry in entries:
            by_chassis.setdefault(entry["chassis"], []).append(entry)
        for chassis, ports in by_chassis.items():
            ovs = lab.ovs(chassis)
            if not (ovs.rundir / "db.sock").exists():
                continue      # ovsdb-server gone: nothing left to unplug from
            args = [a for e in ports
                    for a in ("--", "--if-exists", "del-port", e["bridge"], e["name"])]
            try:
                ovs.vsctl(*args, timeout=30)
            except (RuntimeError, subprocess.TimeoutExpired):
                pass  # ovsdb-server not answering: the namespace goes anyway
        return {}

    return {"ovs-port": ovs_ports}
