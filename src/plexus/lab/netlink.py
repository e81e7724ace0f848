"""The one module that touches Linux networking for the lab: namespaces, veth pairs,
bridges, addresses and routes through pyroute2 (netlink), and commands run inside a
namespace through ``ip netns exec`` (ethtool, sysctl, daemons, user commands).

Nothing here ever creates a link, address or route in the root namespace: every
function that makes something takes the namespace it goes into, and refuses ``None``."""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import os
import socket
import subprocess
from pathlib import Path

from pyroute2 import IPRoute, netns
from pyroute2 import config as pyroute2_config
from pyroute2.netlink.exceptions import NetlinkError

# pyroute2 reaches a namespace through a forked helper. In its plain "fork" mode a
# signal (Ctrl-C, SIGTERM) landing in that helper unwinds into *our* stack and the
# copy goes on running lab code; multiprocessing's bootstrap always ends the child.
pyroute2_config.child_process_mode = "mp"
pyroute2_config.disable_mp_signal = True

NETNS_DIR = Path("/run/netns")


class NetlinkFailure(RuntimeError):
    """A namespace or link operation failed."""


def _need(ns: str | None) -> str:
    if not ns:
        raise NetlinkFailure("refusing to change the root namespace")
    return ns


@contextlib.contextmanager
def ipr(ns: str):
    """An IPRoute socket inside the existing namespace ``ns`` (never creates one)."""
    if not ns_exists(ns):
        raise NetlinkFailure(f"namespace {ns} does not exist")
    # flags=0: pyroute2's default (O_CREAT) would create a missing namespace
    with IPRoute(netns=_need(ns), flags=0) as ip:
        yield ip


def _index(ip: IPRoute, ifname: str) -> int:
    found = ip.link_lookup(ifname=ifname)
    if not found:
        raise NetlinkFailure(f"no interface {ifname}")
    return found[0]


# --- namespaces --------------------------------------------------------------------------

def ns_exists(name: str) -> bool:
    """Whether the named namespace exists."""
    return (NETNS_DIR / name).exists()


def ns_list() -> list[str]:
    """Names of every named namespace on the machine."""
    return sorted(netns.listnetns())


def ns_create(name: str) -> None:
    """Create a named namespace with its loopback up; error if it already exists."""
    if ns_exists(name):
        raise NetlinkFailure(f"namespace {name} already exists")
    netns.create(_need(name))
    with ipr(name) as ip:
        ip.link("set", index=_index(ip, "lo"), state="up")


def ns_delete(name: str) -> bool:
    """Remove a named namespace if it exists; returns whether it did."""
    if not ns_exists(name):
        return False
    netns.remove(name)
    return True


def ns_pids(name: str) -> list[int]:
    """Processes whose network namespace is ``name`` (for reports, never for killing)."""
    proc = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
    return [int(p) for p in proc.stdout.split()] if proc.returncode == 0 else []


# --- links -------------------------------------------------------------------------------

def veth(ns_a: str, name_a: str, ns_b: str, name_b: str) -> None:
    """A veth pair created inside ``ns_a`` with its peer placed directly in ``ns_b``:
    neither end ever exists in the root namespace."""
    with ipr(_need(ns_a)) as ip:
        ip.link("add", ifname=name_a, kind="veth",
                peer={"ifname": name_b, "net_ns_fd": _need(ns_b)})


def bridge(ns: str, name: str) -> None:
    """A Linux bridge (no STP, forwarding at once) inside ``ns``, up."""
    with ipr(ns) as ip:
        ip.link("add", ifname=name, kind="bridge", br_stp_state=0, br_forward_delay=0)
        ip.link("set", index=_index(ip, name), state="up")


def set_link(ns: str, ifname: str, *, up: bool = True, master: str | None = None,
             address: str | None = None, mtu: int | None = None) -> None:
    """Set a link's MAC, MTU, bridge master and state, in that order."""
    with ipr(ns) as ip:
        idx = _index(ip, ifname)
        attrs = {}
        if address:
            attrs["address"] = address
        if mtu:
            attrs["mtu"] = mtu
        if master:
            attrs["master"] = _index(ip, master)
        if attrs:
            ip.link("set", index=idx, **attrs)
        if up:
            ip.link("set", index=idx, state="up")


def link_exists(ns: str, ifname: str) -> bool:
    """Whether ``ifname`` exists in ``ns`` (False when the namespace is gone)."""
    if not ns_exists(ns):
        return False
    with ipr(ns) as ip:
        return bool(ip.link_lookup(ifname=ifname))


def link_delete(ns: str, ifname: str) -> bool:
    """Delete a link if it (and its namespace) exist; returns whether it did."""
    if not ns_exists(ns):
        return False
    with ipr(ns) as ip:
        found = ip.link_lookup(ifname=ifname)
        if not found:
            return False
        with contextlib.suppress(NetlinkError):
            ip.link("del", index=found[0])
        return True


def links_delete(ns: str, ifnames: list[str]) -> int:
    """Delete those of ``ifnames`` that exist in ``ns`` (one netlink socket); returns
    how many it deleted (0 when the namespace is gone)."""
    if not ns_exists(ns):
        return 0
    deleted = 0
    with ipr(ns) as ip:
        for ifname in ifnames:
            found = ip.link_lookup(ifname=ifname)
            if found:
                with contextlib.suppress(NetlinkError):
                    ip.link("del", index=found[0])
                    deleted += 1
    return deleted


def add_address(ns: str, ifname: str, cidr: str) -> None:
    """Add ``cidr`` (address/prefix) to ``ifname`` in ``ns``."""
    iface = ipaddress.ip_interface(cidr)
    with ipr(ns) as ip:
        try:
            ip.addr("add", index=_index(ip, ifname), address=str(iface.ip),
                    prefixlen=iface.network.prefixlen)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise


def add_route(ns: str, dst: str, gateway: str) -> None:
    """Add a route (``default`` or a prefix) via ``gateway`` (IPv4 or IPv6) in ``ns``."""
    with ipr(ns) as ip:
        if ":" in gateway:
            ip.route("replace", family=socket.AF_INET6,
                     dst="::/0" if dst == "default" else dst, gateway=gateway)
        else:
            ip.route("replace", dst=dst, gateway=gateway)


def addresses6(ns: str, ifname: str) -> list[str]:
    """The IPv6 addresses (with prefix) of ``ifname`` in ``ns`` that are not tentative,
    link-local ones included."""
    with ipr(ns) as ip:
        return [f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}"
                for a in ip.get_addr(family=10, index=_index(ip, ifname))
                if not (a.get("IFA_FLAGS") or a["flags"]) & 0x40]     # IFA_F_TENTATIVE


def addresses(ns: str, ifname: str) -> list[str]:
    """The IPv4 addresses (with prefix) of ``ifname`` in ``ns``."""
    with ipr(ns) as ip:
        return [f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}"
                for a in ip.get_addr(family=2, index=_index(ip, ifname))]


# --- commands inside a namespace --------------------------------------------------------

def in_ns(ns: str | None, argv: list[str]) -> list[str]:
    """``argv`` prefixed to run inside ``ns`` (``None``: as is, in the root namespace)."""
    return ["ip", "netns", "exec", ns, *argv] if ns else list(argv)


def run(ns: str | None, argv: list[str], *, check: bool = True, timeout: float = 30,
        env: dict | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    """Run a command (in ``ns``), capture its output; raise on failure when ``check``."""
    proc = subprocess.run(in_ns(ns, argv), capture_output=True, text=True, timeout=timeout,
                          env=env, input=input)
    if check and proc.returncode != 0:
        where = f" in {ns}" if ns else ""
        raise NetlinkFailure(f"{' '.join(argv)}{where} failed ({proc.returncode}): "
                             f"{(proc.stderr or proc.stdout).strip()}")
    return proc


def tx_off(ns: str, *ifnames: str) -> None:
    """Turn TX checksum offload off: the userspace datapath does not fill checksums in."""
    script = "; ".join(f"ethtool -K {name} tx off >/dev/null" for name in ifnames)
    run(_need(ns), ["sh", "-ec", script])


def sysctl(ns: str, key: str, value: str) -> None:
    """Set a sysctl inside ``ns`` only (net.* keys are per namespace)."""
    run(_need(ns), ["sysctl", "-qw", f"{key}={value}"])


# --- the root namespace, read only ------------------------------------------------------

def root_networks() -> list[str]:
    """Every IPv4/IPv6 prefix the root namespace has as an address or a route."""
    with contextlib.suppress(OSError):   # pid 1 may be unreadable in a sandbox
        if os.readlink("/proc/self/ns/net") != os.readlink("/proc/1/ns/net"):
            raise NetlinkFailure("run the lab from the root network namespace")
    nets = []
    with IPRoute() as ip:
        for a in ip.get_addr():
            nets.append(f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}")
        for family in (2, 10):
            for r in ip.route("dump", family=family):   # every table
                dst = r.get("RTA_DST")
                if dst:
                    nets.append(f"{dst}/{r['dst_len']}")
    return nets


def root_snapshot() -> dict:
    """Links, addresses, routes and forwarding of the root namespace (before/after checks)."""
    def ip_json(*args):
        return json.loads(subprocess.run(["ip", "-j", *args], capture_output=True, text=True,
                                         check=True).stdout or "[]")

    def routes(*family):
        return sorted(" ".join(str(r.get(k, "")) for k in ("dst", "gateway", "dev", "table"))
                      for r in ip_json(*family, "route", "show", "table", "all"))
    links = ip_json("addr")
    return {
        "links": sorted(f"{a['ifname']} {a.get('link_type')}" for a in links),
        "addresses": sorted(f"{a['ifname']} {i['local']}/{i['prefixlen']}"
                            for a in links for i in a.get("addr_info", [])),
        "routes": routes("-4"),
        "routes6": routes("-6"),
        "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text().strip(),
    }
