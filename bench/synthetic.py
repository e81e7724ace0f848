"""A synthetic cloud for the scale benchmark (``bench/scale.py``): southbound wire objects
as the server stores them (Neutron's fields plus the hidden ``plexus:key`` and
``plexus:gateway_chassis``), for any number of ports over 1,000 chassis. Pure: stdlib only.

Shape (defaults):

- ``chassis`` chassis ``c0000`` … ``c0999``, each a registered agent with a tunnel IP and
  a liveness key; the last ``GATEWAYS`` are gateway-capable.
- one external flat network ``ext`` (physnet1) with a /16 subnet.
- the *measured* chassis ``c0000`` belongs to project 0: 9 networks of 50 VM ports each
  spread over 5 chassis (10 on ``c0000``, 10 on each of 4 others, so ``c0000`` hosts 90
  ports and shares networks with 36 chassis), a router with an interface on each network
  and its gateway on ``ext`` (two gateway candidates), and the project's default-like
  security group (egress anywhere, ingress from its own members — a remote-group rule —
  and TCP 22 from anywhere) on every VM port; its first network holds the QoS policy
  ``QOS`` (an egress limit) that its ports enforce (10 of them on ``c0000``).
- filler projects of the same shape with 3 networks each (the last may have fewer),
  their 5 chassis per network picked among the others, up to ``ports`` ports in all
  (VM, router interface and gateway ports counted).

Every port bound to a chassis is ACTIVE (its VIF is plugged). ``Cloud`` also keeps what
the benchmark needs to make events: free keys, addresses and MACs per network."""

from __future__ import annotations

import ipaddress
import random
import uuid
from dataclasses import dataclass, field

CHASSIS = 1000
GATEWAYS = 10
PORTS_PER_NETWORK = 50
CHASSIS_PER_NETWORK = 5
MEASURED_NETWORKS = 9
FILLER_NETWORKS = 3
HERE = "c0000"
EXTERNAL = "ext"
STAMP = "2026-12-01T00:00:00Z"
QOS = "qos-bench"


def chassis_name(i: int) -> str:
    """The name of chassis number ``i``."""
    return f"c{i:04d}"


def _uuid(kind: int, n: int) -> str:
    return str(uuid.UUID(int=(kind << 96) | n))


@dataclass
class Cloud:
    """The wire objects (collection → id → object) and the bookkeeping to extend them."""

    objects: dict[str, dict[str, dict]]
    here: str
    project_networks: dict[str, list[str]] = field(default_factory=dict)  # project → nets
    network_chassis: dict[str, list[str]] = field(default_factory=dict)
    network_project: dict[str, str] = field(default_factory=dict)
    group_of: dict[str, str] = field(default_factory=dict)          # project → group id
    router_of: dict[str, str] = field(default_factory=dict)         # project → router id
    next_key: dict[str, int] = field(default_factory=dict)          # network → next key
    next_host: dict[str, int] = field(default_factory=dict)         # network → next .N
    subnet_of: dict[str, str] = field(default_factory=dict)         # network → subnet id
    counter: int = 0

    @property
    def measured_project(self) -> str:
        """The project of the measured chassis."""
        return "p0000"

    def local_networks(self) -> list[str]:
        """The networks with ports on the measured chassis."""
        return self.project_networks[self.measured_project]

    def far_networks(self) -> list[str]:
        """Networks of other projects (nothing there concerns the measured chassis)."""
        return [n for p, nets in self.project_networks.items()
                if p != self.measured_project for n in nets]

    def ports_on(self, chassis: str) -> list[dict]:
        """The ports bound to ``chassis``."""
        return [p for p in self.objects["ports"].values() if p["binding:host_id"] == chassis]

    def new_port(self, network: str, host: str, *, status: str = "ACTIVE",
                 owner: str = "compute:nova", device: str | None = None,
                 groups: list[str] | None = None, ip: str | None = None) -> dict:
        """A new port object on ``network`` (not added to ``objects``)."""
        self.counter += 1
        n = self.counter
        key = self.next_key[network]
        self.next_key[network] = key + 1
        if ip is None:
            base = ipaddress.ip_network(self.objects["subnets"][self.subnet_of[network]]["cidr"])
            ip = str(base.network_address + self.next_host[network])
            self.next_host[network] += 1
        project = self.network_project[network]
        if groups is None:
            groups = [self.group_of[project]] if owner.startswith("compute:") else []
        return {
            "network_id": network, "project_id": project, "tenant_id": project,
            "device_owner": owner, "device_id": device or _uuid(7, n), "name": "",
            "description": "", "tags": [], "admin_state_up": True,
            "mac_address": f"fa:16:3e:{n >> 16 & 0xff:02x}:{n >> 8 & 0xff:02x}:{n & 0xff:02x}",
            "fixed_ips": [{"subnet_id": self.subnet_of[network], "ip_address": ip}],
            "security_groups": groups, "allowed_address_pairs": [],
            "port_security_enabled": True, "binding:host_id": host,
            "binding:vnic_type": "normal", "binding:profile": {}, "id": _uuid(3, n),
            "created_at": STAMP, "updated_at": STAMP, "revision_number": 0,
            "plexus:key": key, "binding:vif_type": "ovs" if host else "unbound",
            "binding:vif_details": {"port_filter": True, "connectivity": "l2",
                                    "bridge_name": "br-int", "datapath_type": "netdev",
                                    "ovs_hybrid_plug": False} if host else {},
            "status": status if host else "DOWN"}

    def add(self, collection: str, obj: dict) -> dict:
        """Put ``obj`` in ``objects``; returns it."""
        self.objects[collection][obj["id"]] = obj
        return obj

    def rule(self, group: str, project: str, direction: str, ethertype: str = "IPv4",
             protocol: str | None = None, port: int | None = None,
             prefix: str | None = None, remote: str | None = None) -> dict:
        """A security group rule in the server's form."""
        self.counter += 1
        return {"id": _uuid(9, self.counter), "project_id": project, "tenant_id": project,
                "description": "", "created_at": STAMP, "updated_at": STAMP,
                "revision_number": 0, "security_group_id": group, "direction": direction,
                "ethertype": ethertype, "protocol": protocol, "port_range_min": port,
                "port_range_max": port, "remote_ip_prefix": prefix,
                "remote_group_id": remote, "remote_address_group_id": None,
                "normalized_cidr": prefix, "belongs_to_default_sg": True}


def _network(ident: str, name: str, project: str, key: int, *, external=False) -> dict:
    return {"name": name, "project_id": project, "tenant_id": project, "description": "",
            "tags": [], "admin_state_up": True, "shared": False, "router:external": external,
            "mtu": 1500 if external else 1450, "port_security_enabled": True,
            "provider:network_type": "flat" if external else "vxlan",
            "provider:physical_network": "physnet1" if external else None,
            "provider:segmentation_id": None if external else key,
            "availability_zone_hints": [], "is_default": False, "id": ident,
            "created_at": STAMP, "updated_at": STAMP, "revision_number": 1,
            "plexus:key": key, "status": "ACTIVE", "subnets": [],
            "availability_zones": [], "ipv4_address_scope": None,
            "ipv6_address_scope": None, "l2_adjacency": True}


def _subnet(ident: str, network: str, project: str, cidr: str) -> dict:
    net = ipaddress.ip_network(cidr)
    return {"id": ident, "name": "", "network_id": network, "project_id": project,
            "tenant_id": project, "ip_version": 4, "cidr": cidr,
            "gateway_ip": str(net.network_address + 1), "enable_dhcp": True,
            "dns_nameservers": [], "host_routes": [], "description": "", "tags": [],
            "allocation_pools": [{"start": str(net.network_address + 2),
                                  "end": str(net.broadcast_address - 1)}],
            "ipv6_ra_mode": None, "ipv6_address_mode": None, "subnetpool_id": None,
            "service_types": [], "created_at": STAMP, "updated_at": STAMP,
            "revision_number": 0}


def generate(ports: int = 1000, chassis: int = CHASSIS, seed: int = 1) -> Cloud:
    """A cloud of about ``ports`` ports (at least the measured project's 460) over
    ``chassis`` chassis; see the module doc."""
    if chassis < 1 + 4 * MEASURED_NETWORKS + GATEWAYS:
        raise ValueError(f"at least {1 + 4 * MEASURED_NETWORKS + GATEWAYS} chassis")
    rnd = random.Random(seed)
    objects: dict[str, dict[str, dict]] = {c: {} for c in (
        "networks", "subnets", "ports", "agents", "liveness", "security-groups",
        "security-group-rules", "routers", "floatingips", "snat_blocks", "qos-policies")}
    cloud = Cloud(objects, HERE)
    names = [chassis_name(i) for i in range(chassis)]
    gateways = names[-GATEWAYS:]
    for i, host in enumerate(names):
        agent_id = _uuid(1, i)
        cloud.add("agents", {
            "id": agent_id, "agent_type": "Plexus agent", "binary": "plexus-agent",
            "topic": "N/A", "host": host, "admin_state_up": True, "availability_zone": None,
            "configurations": {"tunnel_ip": str(ipaddress.ip_address("172.16.0.1") + i),
                               "bridge_mappings": {"physnet1": "br-ex"},
                               "gateway": host in gateways},
            "created_at": STAMP, "started_at": STAMP, "description": "",
            "resources_synced": None, "revision_number": 0, "updated_at": STAMP})
        objects["liveness"][agent_id] = {"host": host, "since": STAMP}

    admin = "admin"
    ext_sub = _uuid(4, 0)
    cloud.add("networks", _network(EXTERNAL, "public", admin, 5000, external=True))
    cloud.add("subnets", _subnet(ext_sub, EXTERNAL, admin, "100.64.0.0/10"))
    objects["networks"][EXTERNAL]["subnets"] = [ext_sub]
    cloud.subnet_of[EXTERNAL] = ext_sub
    cloud.next_key[EXTERNAL], cloud.next_host[EXTERNAL] = 1, 2
    cloud.network_project[EXTERNAL] = admin

    others = names[1:chassis - GATEWAYS]       # filler chassis (gateways host no VMs)
    n_net = 0
    project = 0
    while project == 0 or len(objects["ports"]) < ports:
        pid = f"p{project:04d}"
        count = MEASURED_NETWORKS if project == 0 else FILLER_NETWORKS
        left = ports - len(objects["ports"]) - 1        # the router's gateway port
        if project and left < count * (PORTS_PER_NETWORK + 1):
            count = max(1, -(-left // (PORTS_PER_NETWORK + 1)))
        group = _uuid(5, project)
        cloud.group_of[pid] = group
        rules = [cloud.rule(group, pid, "egress"), cloud.rule(group, pid, "egress", "IPv6"),
                 cloud.rule(group, pid, "ingress", remote=group),
                 cloud.rule(group, pid, "ingress", "IPv6", remote=group),
                 cloud.rule(group, pid, "ingress", protocol="tcp", port=22,
                            prefix="0.0.0.0/0")]
        for r in rules:
            cloud.add("security-group-rules", r)
        cloud.add("security-groups", {
            "id": group, "name": "default", "project_id": pid, "tenant_id": pid,
            "description": "Default security group", "created_at": STAMP,
            "updated_at": STAMP, "revision_number": 1, "tags": [], "stateful": True,
            "is_default": True, "shared": False, "security_group_rules": rules})
        router = _uuid(6, project)
        cloud.router_of[pid] = router
        cloud.project_networks[pid] = []
        interfaces = []
        for j in range(count):
            net = _uuid(2, n_net)
            sub = _uuid(4, n_net + 1)
            cloud.add("networks", _network(net, f"{pid}-net{j}", pid, 100 + n_net))
            if project == 0 and j == 0:
                objects["networks"][net]["qos_policy_id"] = QOS
                cloud.add("qos-policies", qos_policy(pid, 1000))
            objects["networks"][net]["subnets"] = [sub]
            cloud.add("subnets", _subnet(sub, net, pid,
                                         f"10.{n_net // 256}.{n_net % 256}.0/24"))
            cloud.subnet_of[net], cloud.next_key[net], cloud.next_host[net] = sub, 1, 1
            cloud.network_project[net] = pid
            cloud.project_networks[pid].append(net)
            if project == 0:
                hosts = [HERE] + [names[1 + 4 * j + k] for k in range(4)]
            else:
                hosts = rnd.sample(others, CHASSIS_PER_NETWORK)
            cloud.network_chassis[net] = hosts
            iface = cloud.add("ports", cloud.new_port(net, "", owner="network:router_interface",
                                                      device=router))
            interfaces.append(iface["id"])
            cloud.next_host[net] = 2
            for k in range(PORTS_PER_NETWORK):
                cloud.add("ports", cloud.new_port(net, hosts[k % len(hosts)]))
            n_net += 1
        gw = cloud.add("ports", cloud.new_port(EXTERNAL, "", owner="network:router_gateway",
                                               device=router))
        first = project % (GATEWAYS - 1)
        cloud.add("routers", {
            "name": f"{pid}-router", "project_id": pid, "tenant_id": pid, "description": "",
            "tags": [], "admin_state_up": True, "flavor_id": None,
            "availability_zone_hints": [], "id": router, "created_at": STAMP,
            "updated_at": STAMP, "revision_number": 1, "routes": [], "distributed": False,
            "ha": False, "availability_zones": [], "gw_port_id": gw["id"],
            "enable_snat": True, "interface_ports": interfaces,
            "plexus:gateway_chassis": [gateways[first], gateways[first + 1]],
            "plexus:gateway_pinned": [], "plexus:gateway_excluded": []})
        project += 1
    return cloud


def qos_policy(project: str, max_kbps: int) -> dict:
    """The measured project's QoS policy with an egress limit of ``max_kbps``."""
    return {"id": QOS, "name": "bench", "project_id": project, "tenant_id": project,
            "description": "", "shared": False, "is_default": False, "tags": [],
            "created_at": STAMP, "updated_at": STAMP, "revision_number": 1,
            "rules": [{"id": QOS + "-egress", "qos_policy_id": QOS, "type": "bandwidth_limit",
                       "direction": "egress", "max_kbps": max_kbps, "max_burst_kbps": 0}]}


def snapshot_lists(objects: dict[str, dict[str, dict]]) -> dict[str, list[dict]]:
    """The objects as ``GET /southbound/v1/snapshot`` lists them (collection → list)."""
    return {c: list(v.values()) for c, v in objects.items() if v}
