"""The lab's topology as data: names, address ranges and per-chassis facts, all derived
from a small spec. Pure: no I/O, so it is easy to test and to print."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass

# The lab's own ranges (RFC 2544 benchmarking and RFC 5737 documentation space). None of
# them may overlap an address or a route of the root namespace (see ``overlaps``).
UNDERLAY = ipaddress.ip_network("198.18.0.0/24")
PROVIDER = ipaddress.ip_network("203.0.113.0/24")
INTERNET = ipaddress.ip_network("198.19.0.0/24")
# a VLAN on the provider segment (physnet1), with the upstream router on it (an access
# port of a small OVS switch in its namespace: the kernel here has no 802.1Q module),
# for VLAN provider networks to reach; built when the spec asks for ``vlan_upstream``
PROVIDER_VLAN = 100
PROVIDER_VLAN_NET = ipaddress.ip_network("198.51.100.0/24")
PROVIDER_VLAN_ROUTER = ipaddress.ip_address("198.51.100.1")
UPSTREAM_ROUTER = ipaddress.ip_address("203.0.113.1")
INTERNET_ROUTER = ipaddress.ip_address("198.19.0.1")
INTERNET_HOST = ipaddress.ip_address("198.19.0.10")
# IPv6 (documentation prefixes, never in the root namespace): the provider segment's
# upstream router and the internet host behind it, routed without NAT
PROVIDER6 = ipaddress.ip_network("2001:db8:cb00::/64")
INTERNET6 = ipaddress.ip_network("2001:db8:c613::/64")
UPSTREAM_ROUTER6 = ipaddress.ip_address("2001:db8:cb00::1")
INTERNET_ROUTER6 = ipaddress.ip_address("2001:db8:c613::1")
INTERNET_HOST6 = ipaddress.ip_address("2001:db8:c613::10")
PHYSNET = "physnet1"
UNMAPPED_PHYSNET = "physnet2"   # the server knows it (flat); no chassis has a mapping for it
MAX_CHASSIS = 200
NAME_RE = re.compile(r"^[a-z0-9]{1,12}$")   # no "-": one lab's prefix never starts another's
VM_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,31}$")


class TopologyError(ValueError):
    """A lab spec that cannot be built."""


@dataclass(frozen=True)
class Chassis:
    """One simulated hypervisor."""

    name: str           # binding:host_id of the ports bound here, e.g. "c1"
    index: int          # 1-based
    netns: str
    tunnel_ip: str      # on br-ul, the OVS bridge holding the underlay port
    gateway: bool       # may host HA SNAT gateways
    underlay_port: str = "ul0"      # veth end in the chassis, a port of br-ul
    external_port: str = "ex0"      # veth end in the chassis, a port of br-ex

    @property
    def bridge_mappings(self) -> str:
        """The chassis' physical network → bridge mapping, OVN style."""
        return f"{PHYSNET}:br-ex"


@dataclass(frozen=True)
class LabSpec:
    """What ``lab up`` builds; everything else is derived from it."""

    name: str = "lab"
    chassis: int = 3
    gateways: int = 1
    store: str = "sqlite"
    agents: bool = True     # start a plexus-agent per chassis (False: plumbing only)
    vlan_upstream: bool = False     # the upstream router also on VLAN 100 of physnet1
    snat_idle: float | None = None  # the agents' --snat-idle (None: their default)
    # Nova's API URL (e.g. a stand-in's http://127.0.0.1:PORT/v2.1): the server's [nova]
    # section points at it, logged in as the lab's admin through the server's own identity
    nova_url: str | None = None
    # serve 169.254.169.254: a metadata namespace per chassis plugged into br-int, the
    # agents' proxies, and the lab's metadata backend (plexus.lab.metadata) behind them
    metadata: bool = False
    # the server's network.dns_domain (None: its default, openstacklocal.)
    dns_domain: str | None = None

    def validate(self) -> "LabSpec":
        """Raise ``TopologyError`` unless the spec can be built."""
        if not NAME_RE.match(self.name):
            raise TopologyError(
                f"lab name {self.name!r}: use 1-12 of a-z and 0-9")
        if not 1 <= self.chassis <= MAX_CHASSIS:
            raise TopologyError(f"--chassis must be between 1 and {MAX_CHASSIS}")
        if not 0 <= self.gateways <= self.chassis:
            raise TopologyError("--gateways must be between 0 and the number of chassis")
        if self.store not in ("sqlite", "etcd"):
            raise TopologyError(f"unknown store {self.store!r} (sqlite or etcd)")
        return self

    def to_dict(self) -> dict:
        """The spec as JSON-ready data (stored in the inventory)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "LabSpec":
        """Inverse of ``to_dict``."""
        return cls(**data)

    # --- names -----------------------------------------------------------------------
    @property
    def prefix(self) -> str:
        """Every namespace of this lab starts with this."""
        return f"plx-{self.name}-"

    def netns(self, role: str) -> str:
        """The namespace name of a role: ul, pn, ext, inet, c1…, vm-NAME."""
        return self.prefix + role

    @property
    def underlay_ns(self) -> str:
        """The namespace holding the underlay Linux bridge."""
        return self.netns("ul")

    @property
    def provider_ns(self) -> str:
        """The namespace holding the provider network's L2 segment (physnet1)."""
        return self.netns("pn")

    @property
    def external_ns(self) -> str:
        """The upstream router of the provider network."""
        return self.netns("ext")

    @property
    def internet_ns(self) -> str:
        """A host "on the internet" behind the upstream router."""
        return self.netns("inet")

    def vm_ns(self, vm: str) -> str:
        """The namespace of a VM."""
        return self.netns(f"vm-{vm}")

    def chassis_list(self) -> list[Chassis]:
        """Every chassis, with its derived names and addresses."""
        return [self.chassis_at(i) for i in range(1, self.chassis + 1)]

    def chassis_at(self, index: int) -> Chassis:
        """Chassis number ``index`` (1-based)."""
        name = f"c{index}"
        return Chassis(name=name, index=index, netns=self.netns(name),
                       tunnel_ip=str(UNDERLAY.network_address + 10 + index),
                       gateway=index <= self.gateways)

    def chassis_named(self, name: str) -> Chassis:
        """The chassis called ``name``; ``TopologyError`` if there is none."""
        for ch in self.chassis_list():
            if ch.name == name:
                return ch
        raise TopologyError(f"no chassis {name!r} in lab {self.name!r}")

    def ranges(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """Every address range the lab uses."""
        return [UNDERLAY, PROVIDER, INTERNET, PROVIDER6, INTERNET6] + (
            [PROVIDER_VLAN_NET] if self.vlan_upstream else [])


def tap_name(port_id: str) -> str:
    """The chassis-side interface name of a VM port, as Nova names it (14 chars)."""
    return ("tap" + port_id)[:14]


def overlaps(lab_ranges, root_networks) -> list[tuple[str, str]]:
    """Pairs (lab range, root network) that overlap; default routes are ignored."""
    found = []
    for net in root_networks:
        net = ipaddress.ip_network(net, strict=False)
        if net.prefixlen == 0:
            continue
        for rng in lab_ranges:
            if net.version == rng.version and net.overlaps(rng):
                found.append((str(rng), str(net)))
    return found
