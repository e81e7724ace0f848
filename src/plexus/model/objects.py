"""The typed logical objects agents compile from, and the one set of converters from
the southbound wire format (Neutron's, plus the hidden keys of ``keys``) to them.

Each wire object is parsed once, when its event or snapshot arrives (``parse``); an
object that cannot be used raises ``BadObject`` and is refused whole. The objects are
immutable and compare by what compilers read: a port's ``status`` and every object's
``revision`` are carried along but left out of equality, so a status report does not
look like a change to the data plane."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from plexus.model import dhcp_options, keys


class BadObject(ValueError):
    """A model object that cannot be used (missing or malformed fields)."""


@dataclass(frozen=True)
class Subnet:
    """A subnet as compilers and the DHCP responder need it."""

    id: str
    network_id: str
    cidr: str
    ip_version: int
    gateway_ip: str | None
    enable_dhcp: bool
    dns_nameservers: tuple[str, ...] = ()
    host_routes: tuple[tuple[str, str], ...] = ()   # (destination, nexthop)
    address_scope: str | None = None                # its subnet pool's address scope
    ipv6_ra_mode: str | None = None                 # slaac, dhcpv6-stateful/-stateless
    ipv6_address_mode: str | None = None            # ... (None: not set)


@dataclass(frozen=True)
class Network:
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
    qos_policy_id: str = ""                    # its ports' QoS policy when they have none


@dataclass(frozen=True)
class Port:
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
    device_id: str = ""
    security_groups: tuple[str, ...] = ()      # sorted ids
    project_id: str = ""                       # the owner (the metadata proxy's X-Tenant-ID)
    dhcp_options: tuple[tuple[int, bytes], ...] = ()   # extra_dhcp_opts (IPv4), encoded
    qos_policy_id: str = ""                    # its own QoS policy (wins over its network's)
    parent: str = ""                           # a trunk's subport: its parent port
    vlan: int = 0                              # ... and the VLAN it rides in on the parent
    trunk: str = ""                            # a trunk's parent port: the trunk
    dns_name: str = ""                         # its dns_name (dns-integration), as stored
    status: str = field(default="", compare=False)
    revision: int | None = field(default=None, compare=False)

    def addresses(self) -> list[str]:
        """The port's fixed IP addresses."""
        return [ip for _, ip in self.ips]

    def member_addresses(self) -> set[str]:
        """Addresses the port lends its security groups as a remote group: fixed IPs and
        allowed address pairs (a pair's CIDR as a network), as Neutron's member sets."""
        out = {ip for _, ip in self.ips}
        for address, _ in self.allowed_pairs:
            out.add(address[:-3] if address.endswith(("/32", "/128")) else address)
        return out


@dataclass(frozen=True)
class Chassis:
    """A hypervisor as compilers see it: its name and tunnel endpoint."""

    name: str
    tunnel_ip: str


@dataclass(frozen=True)
class Agent:
    """A registered chassis (a Neutron agent object): who it is and what it can do."""

    id: str
    host: str
    tunnel_ip: str
    gateway: bool = False

    @property
    def chassis(self) -> Chassis:
        """The chassis as compilers see it."""
        return Chassis(self.host, self.tunnel_ip)


@dataclass(frozen=True)
class Liveness:
    """A chassis' liveness key: present while its lease is held."""

    id: str
    host: str


@dataclass(frozen=True)
class Rule:
    """A security group rule, normalised: directions are from the VM's point of view."""

    id: str
    direction: str                      # "ingress" (into the VM) or "egress" (out of it)
    ethertype: str = "IPv4"             # "IPv4" or "IPv6"
    protocol: int | None = None         # IP protocol number; None = any
    port_min: int | None = None         # destination port range, or the ICMP type
    port_max: int | None = None         # ... or the ICMP code
    remote_prefix: str | None = None    # CIDR with host bits cleared; None = anywhere
    remote_group: str | None = None     # the peer must hold an address of this group
    remote_address_group: str | None = None   # ... or be in this address group's CIDRs

    @property
    def remote(self) -> str | None:
        """The remote set the peer must be in, as the ACL stages key it: a security
        group's id, or ``ADDRESS_GROUP`` + an address group's id; None for none."""
        if self.remote_group:
            return self.remote_group
        return ADDRESS_GROUP + self.remote_address_group if self.remote_address_group \
            else None


# the prefix of a remote address group's key among remote sets (``Rule.remote``)
ADDRESS_GROUP = "address-group:"


@dataclass(frozen=True)
class AddressGroup:
    """An address group: the CIDRs a rule naming it as its remote side admits."""

    id: str
    addresses: tuple[str, ...] = ()            # sorted CIDRs (host addresses as /32)


@dataclass(frozen=True)
class SecurityGroup:
    """A security group and its rules."""

    id: str
    rules: tuple[Rule, ...] = ()
    stateful: bool = True

    def remote_groups(self) -> frozenset[str]:
        """The groups its rules name as remote groups."""
        return frozenset(r.remote_group for r in self.rules if r.remote_group)

    def remote_address_groups(self) -> frozenset[str]:
        """The address groups its rules name as their remote side."""
        return frozenset(r.remote_address_group for r in self.rules
                         if r.remote_address_group)

    def __hash__(self) -> int:
        # the dataclass hash, computed once (compilers key caches by group, and a group
        # can hold hundreds of rules)
        found = self.__dict__.get("_hash")
        if found is None:
            found = hash((self.id, self.rules, self.stateful))
            object.__setattr__(self, "_hash", found)
        return found


@dataclass(frozen=True)
class Router:
    """A router as stored: its gateway port, extra routes, SNAT flag and its ordered
    gateway chassis candidates (its interfaces are the ports whose device it is)."""

    id: str
    gw_port_id: str | None = None
    routes: tuple[tuple[str, str], ...] = ()        # (destination, nexthop), sorted
    enable_snat: bool = True
    admin_up: bool = True
    gateway_chassis: tuple[str, ...] = ()
    revision: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Forwarding:
    """A port forwarding of a floating IP: (protocol, external ports) to (internal IPv4
    address, internal ports) of ``port_id``. Ranges are (first, last); an internal range
    is one port or as long as the external one."""

    id: str
    protocol: int
    external: tuple[int, int]
    port_id: str
    internal_ip: str
    internal: tuple[int, int]


@dataclass(frozen=True)
class FloatingIP:
    """A floating IP as stored; associated when ``port_id`` and ``router_id`` are set, or
    forwarding ports (``forwardings``, with ``router_id``; then never associated)."""

    id: str
    address: str
    network_id: str
    floating_port_id: str = ""
    router_id: str | None = None
    port_id: str | None = None
    fixed_ip: str | None = None
    forwardings: tuple[Forwarding, ...] = ()
    revision: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class SnatBlock:
    """A range of SNAT source ports a chassis leases on a router's gateway address."""

    id: str
    router_id: str
    chassis: str
    ip: str
    port_min: int
    port_max: int


@dataclass(frozen=True)
class VipOwner:
    """The port that last announced (gratuitous ARP) an allowed-address-pair VIP that
    several ports of a network list: id ``<network id>:<ip>``; ``chassis`` reported it."""

    id: str
    network_id: str
    ip: str
    port_id: str
    chassis: str = ""


@dataclass(frozen=True)
class Limit:
    """A bandwidth limit: rate and burst in kbit/s and kbit (burst 0: the agent's
    default)."""

    kbps: int
    burst_kbps: int = 0


@dataclass(frozen=True)
class QosPolicy:
    """A QoS policy as the data plane enforces it: the bandwidth limit of each direction
    (from the VM's point of view: egress leaves it, ingress reaches it) and the DSCP
    mark of its outgoing IP packets. Minimum-bandwidth rules are not enforced and not
    carried (a change of one is no change to the data plane)."""

    id: str
    egress: Limit | None = None
    ingress: Limit | None = None
    dscp: int | None = None
    revision: int | None = field(default=None, compare=False)


# --- wire → model ----------------------------------------------------------------------

def _get(obj: Mapping, name: str, kind: type):
    value = obj.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise BadObject(f"{name}={value!r} is not {kind.__name__}")
    return value


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _revision(obj: Mapping) -> int | None:
    return _int_or_none(obj.get("revision_number"))


def to_network(obj: Mapping) -> Network:
    """A network with its provider fields and external flag."""
    key = _get(obj, keys.KEY, int)
    if not 0 < key < 2 ** 24:
        raise BadObject(f"{keys.KEY}={key} is not a valid datapath key")
    mtu = _int_or_none(obj.get("mtu"))
    return Network(id=_get(obj, "id", str), key=key,
                   network_type=obj.get("provider:network_type") or "vxlan",
                   mtu=mtu if mtu is not None else 1450,
                   port_security_enabled=obj.get("port_security_enabled") is not False,
                   physical_network=obj.get("provider:physical_network") or None,
                   segmentation_id=_int_or_none(obj.get("provider:segmentation_id")),
                   external=bool(obj.get("router:external")),
                   qos_policy_id=str(obj.get("qos_policy_id") or ""))


def to_subnet(obj: Mapping) -> Subnet:
    """A subnet as the compiler and the DHCP responder see it."""
    cidr = _get(obj, "cidr", str)
    try:
        net = ipaddress.ip_network(cidr)
        gateway = obj.get("gateway_ip")
        gateway = str(ipaddress.ip_address(gateway)) if gateway else None
        dns = tuple(str(ipaddress.ip_address(d)) for d in obj.get("dns_nameservers") or ())
        routes = tuple((str(ipaddress.ip_network(r["destination"])),
                        str(ipaddress.ip_address(r["nexthop"])))
                       for r in obj.get("host_routes") or ())
    except (ValueError, TypeError, KeyError) as exc:
        raise BadObject(str(exc)) from None
    return Subnet(id=_get(obj, "id", str), network_id=_get(obj, "network_id", str),
                  cidr=str(net), ip_version=net.version, gateway_ip=gateway,
                  enable_dhcp=obj.get("enable_dhcp") is not False,
                  dns_nameservers=dns, host_routes=routes,
                  address_scope=obj.get(keys.ADDRESS_SCOPE_KEY) or None,
                  ipv6_ra_mode=_mode(obj.get("ipv6_ra_mode")) if net.version == 6 else None,
                  ipv6_address_mode=(_mode(obj.get("ipv6_address_mode"))
                                     if net.version == 6 else None))


IPV6_MODES = ("slaac", "dhcpv6-stateful", "dhcpv6-stateless")


def _mode(value) -> str | None:
    """An IPv6 RA or address mode Neutron knows, else None (not set)."""
    return value if value in IPV6_MODES else None


def _pair(pair: Mapping, port_mac: str) -> tuple[str, str]:
    """An allowed address pair as (address or CIDR, MAC); the MAC defaults to the port's."""
    address = str(pair["ip_address"])
    address = (str(ipaddress.ip_network(address, strict=False)) if "/" in address
               else str(ipaddress.ip_address(address)))
    return address, str(pair.get("mac_address") or port_mac).lower()


def _dhcp_options(opts) -> tuple[tuple[int, bytes], ...]:
    """A port's IPv4 ``extra_dhcp_opts`` as (option number, bytes), in option order; one
    the API would not have accepted is left out (it cannot make the port unusable)."""
    out = {}
    for opt in opts if isinstance(opts, (list, tuple)) else ():
        try:
            if int(opt.get("ip_version") or 4) != 4 or opt.get("opt_value") is None:
                continue
            code, data = dhcp_options.encode(str(opt["opt_name"]), str(opt["opt_value"]))
        except (dhcp_options.BadOption, KeyError, TypeError, ValueError, AttributeError):
            continue
        out[code] = data
    return tuple(sorted(out.items()))


def to_port(obj: Mapping) -> Port:
    """A port as the compiler sees it (binding:host_id → chassis)."""
    key = _get(obj, keys.KEY, int)
    if not 0 < key < 0xFFFF:
        raise BadObject(f"{keys.KEY}={key} is not a valid port key")
    mac = _get(obj, "mac_address", str).lower()
    try:
        ips = tuple((str(ip["subnet_id"]), str(ipaddress.ip_address(ip["ip_address"])))
                    for ip in obj.get("fixed_ips") or ())
        pairs = tuple(_pair(p, mac) for p in obj.get("allowed_address_pairs") or ())
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise BadObject(f"bad address: {exc}") from None
    groups = obj.get("security_groups")
    groups = tuple(sorted({str(g) for g in groups})) if isinstance(groups, (list, tuple)) \
        else ()
    return Port(id=_get(obj, "id", str), key=key, network_id=_get(obj, "network_id", str),
                mac=mac, ips=ips, chassis=obj.get("binding:host_id") or "",
                device_owner=obj.get("device_owner") or "",
                port_security=obj.get("port_security_enabled") is not False,
                allowed_pairs=pairs, admin_up=obj.get("admin_state_up") is not False,
                device_id=str(obj.get("device_id") or ""), security_groups=groups,
                project_id=str(obj.get("project_id") or obj.get("tenant_id") or ""),
                dhcp_options=_dhcp_options(obj.get("extra_dhcp_opts")),
                qos_policy_id=str(obj.get("qos_policy_id") or ""),
                dns_name=str(obj.get("dns_name") or ""),
                **_trunking(obj),
                status=str(obj.get("status") or ""), revision=_revision(obj))


def _trunking(obj: Mapping) -> dict:
    """A port's part in a trunk: the parent and VLAN of a subport, the trunk of a parent."""
    out: dict = {}
    sub = obj.get(keys.SUBPORT_KEY)
    if sub:
        vlan = _get(sub, "vlan", int)
        if not 1 <= vlan <= 4094:
            raise BadObject(f"subport VLAN {vlan} is not in 1..4094")
        out.update(parent=_get(sub, "parent", str), vlan=vlan)
    if obj.get(keys.TRUNK_KEY):
        out["trunk"] = str(obj[keys.TRUNK_KEY])
    return out


def to_agent(obj: Mapping) -> Agent:
    """A registered chassis (a Neutron agent object)."""
    config = obj.get("configurations")
    if not isinstance(config, Mapping):
        raise BadObject("configurations is not an object")
    try:
        tunnel_ip = str(ipaddress.ip_address(config.get("tunnel_ip")))
    except ValueError:
        raise BadObject(f"tunnel_ip={config.get('tunnel_ip')!r} is not an address") from None
    return Agent(id=str(obj.get("id") or ""), host=_get(obj, "host", str), tunnel_ip=tunnel_ip,
                 gateway=config.get("gateway") is True)


def to_liveness(obj: Mapping) -> Liveness:
    """A liveness key (``host``)."""
    return Liveness(id=str(obj.get("id") or ""), host=_get(obj, "host", str))


def to_rule(obj: Mapping) -> Rule:
    """A wire rule as the compiler sees it."""
    direction, ethertype = obj["direction"], obj.get("ethertype") or "IPv4"
    if direction not in ("ingress", "egress") or ethertype not in ("IPv4", "IPv6"):
        raise ValueError(f"direction {direction!r} / ethertype {ethertype!r}")
    proto = obj.get("protocol")
    number = keys.protocol_number(str(proto).lower()) if proto not in (None, "any") else None
    if proto not in (None, "any") and number is None:
        raise ValueError(f"protocol {proto!r}")
    if ethertype == "IPv6" and number == 1:            # Neutron: icmp on IPv6 is ipv6-icmp
        number = 58
    prefix = obj.get("remote_ip_prefix")
    if prefix:
        net = ipaddress.ip_network(prefix, strict=False)
        prefix = None if net.prefixlen == 0 else str(net)
    low, high = obj.get("port_range_min"), obj.get("port_range_max")
    return Rule(id=str(obj["id"]), direction=direction, ethertype=ethertype,
                protocol=number, port_min=None if low is None else int(low),
                port_max=None if high is None else int(high), remote_prefix=prefix,
                remote_group=obj.get("remote_group_id") or None,
                remote_address_group=obj.get("remote_address_group_id") or None)


def to_address_group(obj: Mapping) -> AddressGroup:
    """An address group (``addresses``: CIDRs)."""
    try:
        addresses = tuple(sorted({str(ipaddress.ip_network(a, strict=False))
                                  for a in obj.get("addresses") or ()}))
    except (TypeError, ValueError) as exc:
        raise BadObject(f"bad address: {exc}") from None
    return AddressGroup(id=_get(obj, "id", str), addresses=addresses)


def to_security_group(obj: Mapping) -> SecurityGroup:
    """A security group with its rules (``BadObject`` for a rule that cannot be
    enforced, so a bad group is refused when its event arrives)."""
    try:
        rules = [to_rule(r) for r in obj.get("security_group_rules") or ()]
        return SecurityGroup(id=str(obj["id"]),
                             rules=tuple(sorted((r for r in rules if r), key=lambda r: r.id)),
                             stateful=obj.get("stateful") is not False)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BadObject(f"unusable rule: {exc}") from None


def to_router(obj: Mapping) -> Router:
    """A router as stored (routes sorted, gateway candidates in order)."""
    try:
        routes = tuple(sorted((str(ipaddress.ip_network(r["destination"])),
                               str(ipaddress.ip_address(r["nexthop"])))
                              for r in obj.get("routes") or ()))
    except (KeyError, TypeError, ValueError) as exc:
        raise BadObject(f"bad route: {exc}") from None
    candidates = obj.get(keys.GATEWAY_CHASSIS) or ()
    if not isinstance(candidates, (list, tuple)):
        raise BadObject(f"{keys.GATEWAY_CHASSIS} is not a list")
    gw = obj.get("gw_port_id")
    return Router(id=_get(obj, "id", str), gw_port_id=gw if isinstance(gw, str) and gw else None,
                  routes=routes, enable_snat=obj.get("enable_snat") is not False,
                  admin_up=obj.get("admin_state_up") is not False,
                  gateway_chassis=tuple(str(c) for c in candidates), revision=_revision(obj))


def _forwarding(obj: Mapping) -> Forwarding:
    elo, ehi = (int(p) for p in obj["external"])
    ilo, ihi = (int(p) for p in obj["internal"])
    if not (0 < elo <= ehi <= 0xFFFF and 0 < ilo <= ihi <= 0xFFFF) or \
            (ihi > ilo and ihi - ilo != ehi - elo):
        raise ValueError(f"ports {elo}-{ehi} to {ilo}-{ihi}")
    number = keys.protocol_number(str(obj["protocol"]))
    if number is None:
        raise ValueError(f"protocol {obj['protocol']!r}")
    return Forwarding(id=str(obj["id"]), protocol=number, external=(elo, ehi),
                      port_id=str(obj["internal_port_id"]),
                      internal_ip=str(ipaddress.IPv4Address(obj["internal_ip_address"])),
                      internal=(ilo, ihi))


def to_floating_ip(obj: Mapping) -> FloatingIP:
    """A floating IP as stored (IPv4 addresses), with its port forwardings (by id)."""
    try:
        address = str(ipaddress.IPv4Address(obj["floating_ip_address"]))
        fixed = obj.get("fixed_ip_address")
        fixed = str(ipaddress.IPv4Address(fixed)) if fixed else None
        forwardings = tuple(sorted((_forwarding(f) for f in
                                    obj.get(keys.PORT_FORWARDINGS) or ()),
                                   key=lambda f: f.id))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BadObject(f"unusable: {exc}") from None
    return FloatingIP(id=_get(obj, "id", str), address=address,
                      network_id=str(obj.get("floating_network_id") or ""),
                      floating_port_id=str(obj.get("floating_port_id") or ""),
                      router_id=obj.get("router_id") or None,
                      port_id=obj.get("port_id") or None, fixed_ip=fixed,
                      forwardings=forwardings, revision=_revision(obj))


def to_snat_block(obj: Mapping) -> SnatBlock:
    """A SNAT port block (``router_id``, ``chassis``, ``ip``, ``port_min``, ``port_max``)."""
    try:
        block = SnatBlock(id=str(obj.get("id") or ""), router_id=str(obj["router_id"]),
                          chassis=str(obj["chassis"]), ip=str(obj["ip"]),
                          port_min=int(obj["port_min"]), port_max=int(obj["port_max"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise BadObject(f"unusable: {exc}") from None
    if not 0 < block.port_min <= block.port_max <= 0xFFFF:
        raise BadObject(f"ports {block.port_min}-{block.port_max}")
    return block


def to_vip_owner(obj: Mapping) -> VipOwner:
    """A learned VIP owner (``network_id``, ``ip``, ``port_id``, ``chassis``)."""
    try:
        ip = str(ipaddress.IPv4Address(obj["ip"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise BadObject(f"unusable: {exc}") from None
    network_id = _get(obj, "network_id", str)
    return VipOwner(id=str(obj.get("id") or f"{network_id}:{ip}"), network_id=network_id,
                    ip=ip, port_id=_get(obj, "port_id", str),
                    chassis=str(obj.get("chassis") or ""))


def to_qos_policy(obj: Mapping) -> QosPolicy:
    """A QoS policy's enforced rules (a rule the API would not have accepted is refused
    with the policy)."""
    limits: dict[str, Limit] = {}
    dscp = None
    for rule in obj.get("rules") or ():
        kind = rule.get("type")
        if kind == "bandwidth_limit":
            direction = rule.get("direction") or "egress"
            if direction not in ("egress", "ingress"):
                raise BadObject(f"bad direction {direction!r}")
            kbps = _get(rule, "max_kbps", int)
            if kbps > 0:                # 0: no limit (a meter of rate 0 is refused)
                limits[direction] = Limit(kbps, _int_or_none(rule.get("max_burst_kbps")) or 0)
        elif kind == "dscp_marking":
            dscp = _get(rule, "dscp_mark", int)
            if not 0 <= dscp < 64:
                raise BadObject(f"bad DSCP mark {dscp}")
    return QosPolicy(id=_get(obj, "id", str), egress=limits.get("egress"),
                     ingress=limits.get("ingress"), dscp=dscp, revision=_revision(obj))


CONVERTERS: dict[str, Callable[[Mapping], Any]] = {
    keys.NETWORKS: to_network, keys.SUBNETS: to_subnet, keys.PORTS: to_port,
    keys.AGENTS: to_agent, keys.LIVENESS: to_liveness, keys.GROUPS: to_security_group,
    keys.ROUTERS: to_router, keys.FLOATINGIPS: to_floating_ip,
    keys.SNAT_BLOCKS: to_snat_block, keys.VIP_OWNERS: to_vip_owner,
    keys.ADDRESS_GROUPS: to_address_group, keys.QOS: to_qos_policy,
    keys.LOADBALANCERS: lambda obj: to_loadbalancer(obj)}


def to_loadbalancer(obj: Mapping):
    """A stored load balancer tree in the data plane's form (``model.lbaas``)."""
    from plexus.model.lbaas import to_loadbalancer as convert
    return convert(obj)


def parse(collection: str, obj: Any):
    """The typed object of a wire object of ``collection`` (``BadObject`` if unusable)."""
    if not isinstance(obj, Mapping):
        raise BadObject("not an object")
    convert = CONVERTERS.get(collection)
    if convert is None:
        raise BadObject(f"unknown collection {collection!r}")
    try:
        return convert(obj)
    except BadObject:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BadObject(str(exc)) from None
