"""What compilers see: a typed, immutable snapshot of the logical objects relevant to
one chassis, plus that chassis' local facts (its name, tunnel IP, the OpenFlow port
numbers of its VIFs and tunnels). Compilers are pure functions of a ``View``.

The agent builds a View from the southbound stream (server objects in Neutron's wire
format plus the hidden keys the server allocates: ``plexus:key`` on networks and
ports) and from OVSDB (ofports)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Mapping

from plexus.model.lbaas import LoadBalancer
from plexus.model.dns import DEFAULT_DOMAIN
from plexus.model.objects import Chassis, Network, Port, QosPolicy, Rule, SecurityGroup, Subnet


# The value types are the model's typed objects (``plexus.model.objects``), under the
# names compilers have always used for them.
SubnetView = Subnet
NetworkView = Network
PortView = Port
ChassisView = Chassis
RuleView = Rule
SecurityGroupView = SecurityGroup


@dataclass(frozen=True)
class SecurityView:
    """What the ACL stages need: the groups of the ports bound here, each such port's
    groups, and the addresses of every remote set their rules name (``Rule.remote``): a
    remote group's, all its member ports' fixed IPs and allowed-address-pair addresses,
    wherever they are bound; an address group's (keyed ``address-group:<id>``), its
    CIDRs."""

    groups: Mapping[str, SecurityGroupView] = field(default_factory=dict)
    port_groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    members: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @functools.cached_property
    def shapes(self) -> Mapping[str, "GroupShape"]:
        """Per group, what a port holding it needs apart from the group's own rules (see
        ``GroupShape``): derived from ``groups``, so a compiler that reads only this is
        not recompiled when a rule of a group changes and its shape does not."""
        return {g: group_shape(group) for g, group in self.groups.items()}


@dataclass(frozen=True)
class GroupShape:
    """A security group as the ports holding it see it: whether it is stateful, the
    directions in which it has rules of its own (no remote group or address group; IPv4 or
    IPv6), and its rules with a remote group or address group."""

    stateful: bool
    own: frozenset[str]                 # directions with rules of its own
    remote: tuple[RuleView, ...]        # rules with a remote set, in order


@functools.lru_cache(maxsize=1 << 12)
def group_shape(group: SecurityGroupView) -> GroupShape:
    """The shape of a group (built once per group value)."""
    rules = group.rules
    return GroupShape(group.stateful,
                      frozenset(r.direction for r in rules if r.remote is None),
                      tuple(r for r in rules if r.remote is not None))


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
class ForwardingView:
    """A port forwarding of a floating IP (that has no port association): TCP or UDP
    ``external`` ports of ``address`` to ``internal`` ports of ``internal_ip`` on port
    ``port_id``, bound to ``chassis``. Ranges are (first, last)."""

    id: str
    fip_id: str
    address: str
    mac: str                                        # the floating IP's own port's MAC
    network_id: str                                 # the external network
    router_id: str
    port_id: str
    chassis: str
    internal_ip: str
    protocol: int
    external: tuple[int, int]
    internal: tuple[int, int]


@dataclass(frozen=True)
class View:
    """Everything one chassis compiles from. While ``security`` is None (until the agent
    supplies security groups) the ACL stages let everything through.

    The L3 fields come from ``plexus.pipeline.l3.with_l3`` (routers relevant here, the
    floating IPs of local ports, and the routed networks' ports in ``ports``) and from
    the agent's local facts: its bridge mappings and the patch ports toward them, the
    MACs it resolved on external networks, the active gateway chassis of each router,
    the SNAT port blocks of every chassis for those routers, and the learned owners of the
routed networks' shared VIPs."""

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
    # port forwardings of the routers' floating IPs NATed here or steered from here
    port_forwardings: Mapping[str, ForwardingView] = field(default_factory=dict)
    bridge_mappings: Mapping[str, str] = field(default_factory=dict)  # physnet -> bridge
    patch_ofports: Mapping[str, int] = field(default_factory=dict)    # physnet -> ofport
    external_macs: Mapping[str, str] = field(default_factory=dict)    # external IP -> MAC
    active_gateway: Mapping[str, str] = field(default_factory=dict)   # router -> chassis
    # router -> (chassis, first port, last port) of every chassis' SNAT port blocks
    snat_blocks: Mapping[str, tuple[tuple[str, int, int], ...]] = field(default_factory=dict)
    # (network id, VIP) -> the port learned to hold it (from its gratuitous ARP), for the
    # routed networks' VIPs that several ports list (keepalived style)
    vip_owners: Mapping[tuple[str, str], str] = field(default_factory=dict)
    # the OpenFlow port of this chassis' metadata namespace (0: it serves no metadata)
    metadata_ofport: int = 0
    # the QoS policies the ports bound here enforce (theirs or their networks'), by id
    qos: Mapping[str, QosPolicy] = field(default_factory=dict)
    # the load balancers whose VIP network this view holds (``plexus.model.lbaas``), by id
    lbs: Mapping[str, LoadBalancer] = field(default_factory=dict)
    # the cloud's DNS domain (the server's network.dns_domain, learnt at registration):
    # what the host DHCP names the ports in (no compiler reads it)
    dns_domain: str = DEFAULT_DOMAIN

    # derived indexes, cached per view (a field's value is immutable; the cache is keyed
    # by the identity of the fields it was built from, so it is never stale)
    _cache: dict = field(default_factory=dict, init=False, compare=False, repr=False)

    def _cached(self, name: str, inputs: tuple, build):
        hit = self._cache.get(name)
        if hit is not None and len(hit[0]) == len(inputs) and all(
                a is b for a, b in zip(hit[0], inputs)):
            return hit[1]
        value = build()
        self._cache[name] = (inputs, value)
        return value

    def bound_ports(self) -> list[PortView]:
        """Ports bound here (``binding:host_id`` is this chassis), plugged or not, sorted
        by id. Everything of theirs that does not name an OpenFlow port number is compiled
        from these: a port's flows are in before its VIF is plugged (reading no
        ``vif_ofports``, they are not recompiled when it is)."""
        ports, me = self.ports, self.chassis
        return list(self._cached("bound", (ports, me), lambda: sorted(
            (p for p in ports.values() if p.chassis == me), key=lambda p: p.id)))

    def local_ports(self) -> list[PortView]:
        """Ports bound here whose VIF is plugged (has an ofport), sorted by id: the
        flows that name the ofport (classify's in_port, output's VIF, the conntrack
        zone) are compiled from these only."""
        vifs = self.vif_ofports
        return [p for p in self.bound_ports() if p.id in vifs]

    def _by_network(self) -> dict[str, list[PortView]]:
        ports = self.ports

        def build():
            out: dict[str, list[PortView]] = {}
            for port in sorted(ports.values(), key=lambda p: p.id):
                out.setdefault(port.network_id, []).append(port)
            return out
        return self._cached("by_network", (ports,), build)

    def ports_on(self, network_id: str) -> list[PortView]:
        """All ports of a network, sorted by id."""
        return list(self._by_network().get(network_id, ()))

    def local_networks(self) -> list[NetworkView]:
        """Networks with at least one port bound here (plugged or not), sorted by id."""
        ids = {p.network_id for p in self.bound_ports()}
        return [self.networks[i] for i in sorted(ids) if i in self.networks]

    def remote_chassis_of(self, network_id: str) -> list[str]:
        """Other chassis hosting ports of a network, sorted."""
        known = self.chassis_by_name
        return sorted({p.chassis for p in self._by_network().get(network_id, ())
                       if p.chassis and p.chassis != self.chassis and p.chassis in known})
