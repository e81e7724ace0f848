"""What compilers see: a typed, immutable snapshot of the logical objects relevant to
one chassis, plus that chassis' local facts (its name, tunnel IP, the OpenFlow port
numbers of its VIFs and tunnels). Compilers are pure functions of a ``View``.

The agent builds a View from the southbound stream (server objects in Neutron's wire
format plus the hidden keys the server allocates: ``plexus:key`` on networks and
ports) and from OVSDB (ofports)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True)
class SubnetView:
    """A subnet as compilers and the DHCP responder need it."""

    id: str
    network_id: str
    cidr: str
    ip_version: int
    gateway_ip: str | None
    enable_dhcp: bool
    dns_nameservers: tuple[str, ...] = ()
    host_routes: tuple[tuple[str, str], ...] = ()   # (destination, nexthop)


@dataclass(frozen=True)
class NetworkView:
    """A logical network: its datapath key (the VNI for VXLAN; flat and VLAN networks
    have one of their own for tunnelling between chassis) and MTU; for a provider
    network its physical network name and VLAN id; whether it is external."""

    id: str
    key: int
    network_type: str
    mtu: int
    port_security_enabled: bool = True
    physical_network: str | None = None
    segmentation_id: int | None = None
    external: bool = False


@dataclass(frozen=True)
class PortView:
    """A logical port and where it is bound."""

    id: str
    key: int                                   # unique within its network (1..65535)
    network_id: str
    mac: str
    ips: tuple[tuple[str, str], ...]           # (subnet_id, ip)
    chassis: str                               # binding:host_id ("" = unbound)
    device_owner: str = ""
    port_security: bool = True
    allowed_pairs: tuple[tuple[str, str], ...] = ()   # (ip or cidr, mac)
    admin_up: bool = True

    def addresses(self) -> list[str]:
        """The port's fixed IP addresses."""
        return [ip for _, ip in self.ips]


@dataclass(frozen=True)
class ChassisView:
    """Another (or this) hypervisor: its name and tunnel endpoint."""

    name: str
    tunnel_ip: str


@dataclass(frozen=True)
class RuleView:
    """A security group rule, normalised: directions are from the VM's point of view."""

    id: str
    direction: str                      # "ingress" (into the VM) or "egress" (out of it)
    ethertype: str = "IPv4"             # "IPv4" or "IPv6"
    protocol: int | None = None         # IP protocol number; None = any
    port_min: int | None = None         # destination port range, or the ICMP type
    port_max: int | None = None         # ... or the ICMP code
    remote_prefix: str | None = None    # CIDR with host bits cleared; None = anywhere
    remote_group: str | None = None     # the peer must hold an address of this group


@dataclass(frozen=True)
class SecurityGroupView:
    """A security group and its rules."""

    id: str
    rules: tuple[RuleView, ...] = ()
    stateful: bool = True


@dataclass(frozen=True)
class SecurityView:
    """What the ACL stages need: the groups of the ports bound here, each such port's
    groups, and the addresses of every group used as a remote group (all its member
    ports' fixed IPs and allowed-address-pair addresses, wherever they are bound)."""

    groups: Mapping[str, SecurityGroupView] = field(default_factory=dict)
    port_groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    members: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class RouterView:
    """A router: its interface ports and gateway port (ids of ports in ``View.ports``),
    extra routes, and whether it SNATs ports without a floating IP."""

    id: str
    interfaces: tuple[str, ...] = ()
    gateway: str | None = None                      # its port on an external network
    routes: tuple[tuple[str, str], ...] = ()        # extra routes: (destination, nexthop)
    enable_snat: bool = True
    admin_up: bool = True
    gateway_chassis: tuple[str, ...] = ()           # candidates, in order (the first alive
                                                    # one is the active gateway)


@dataclass(frozen=True)
class FloatingIPView:
    """An associated floating IP: its address and its own port's MAC (the MAC that
    identifies it on the external network), the port and fixed IP it stands for."""

    id: str
    address: str
    mac: str
    network_id: str                                 # the external network
    router_id: str
    port_id: str
    fixed_ip: str


@dataclass(frozen=True)
class View:
    """Everything one chassis compiles from. While ``security`` is None (until the agent
    supplies security groups) the ACL stages let everything through.

    The L3 fields come from ``plexus.pipeline.l3.with_l3`` (routers relevant here, the
    floating IPs of local ports, and the routed networks' ports in ``ports``) and from
    the agent's local facts: its bridge mappings and the patch ports toward them, the
    MACs it resolved on external networks, the active gateway chassis of each router,
    and the SNAT port blocks of every chassis for those routers."""

    chassis: str                                    # this chassis' name
    tunnel_ip: str
    networks: Mapping[str, NetworkView] = field(default_factory=dict)
    subnets: Mapping[str, SubnetView] = field(default_factory=dict)
    ports: Mapping[str, PortView] = field(default_factory=dict)
    chassis_by_name: Mapping[str, ChassisView] = field(default_factory=dict)
    vif_ofports: Mapping[str, int] = field(default_factory=dict)     # port id -> ofport
    tunnel_ofports: Mapping[str, int] = field(default_factory=dict)  # chassis -> ofport
    security: SecurityView | None = None
    routers: Mapping[str, RouterView] = field(default_factory=dict)
    floating_ips: Mapping[str, FloatingIPView] = field(default_factory=dict)
    bridge_mappings: Mapping[str, str] = field(default_factory=dict)  # physnet -> bridge
    patch_ofports: Mapping[str, int] = field(default_factory=dict)    # physnet -> ofport
    external_macs: Mapping[str, str] = field(default_factory=dict)    # external IP -> MAC
    active_gateway: Mapping[str, str] = field(default_factory=dict)   # router -> chassis
    # router -> (chassis, first port, last port) of every chassis' SNAT port blocks
    snat_blocks: Mapping[str, tuple[tuple[str, int, int], ...]] = field(default_factory=dict)

    def local_ports(self) -> list[PortView]:
        """Ports bound here whose VIF is plugged (has an ofport), sorted by id."""
        return sorted((p for p in self.ports.values()
                       if p.chassis == self.chassis and p.id in self.vif_ofports),
                      key=lambda p: p.id)

    def ports_on(self, network_id: str) -> list[PortView]:
        """All ports of a network, sorted by id."""
        return sorted((p for p in self.ports.values() if p.network_id == network_id),
                      key=lambda p: p.id)

    def local_networks(self) -> list[NetworkView]:
        """Networks with at least one local port, sorted by id."""
        ids = {p.network_id for p in self.local_ports()}
        return [self.networks[i] for i in sorted(ids) if i in self.networks]

    def remote_chassis_of(self, network_id: str) -> list[str]:
        """Other chassis hosting ports of a network, sorted."""
        return sorted({p.chassis for p in self.ports_on(network_id)
                       if p.chassis and p.chassis != self.chassis
                       and p.chassis in self.chassis_by_name})
