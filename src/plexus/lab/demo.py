"""The demo topology, as data, and a reachability matrix measured with real packets.

Two projects; project demo has two networks on three chassis joined by a router whose
gateway is on the lab's external network ("public": flat on physnet1, 203.0.113.0/24,
the upstream router ``ext`` at .1, the internet host ``inet`` behind it); web1 has a
floating IP, the other demo VMs reach the internet through SNAT; project alt_demo
reuses demo's CIDR on a network of its own, with no router. Every VM gets its address
by DHCP from the agent of its own chassis; demo's default security group lets ping in
from anywhere. The matrix says, for every pair of VMs, from every VM to ``inet``, and
from ``inet`` to the floating IP and to each VM's fixed address, whether a ping got
through and whether it should have."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from plexus.lab import vm as vms

# (name, project, cidr)
NETWORKS = [
    ("demo-net", "demo", "10.0.0.0/24"),
    ("demo-db", "demo", "10.1.0.0/24"),
    ("alt-net", "alt_demo", "10.0.0.0/24"),      # the same CIDR as demo-net: isolated
]
PUBLIC = ("public", "physnet1", "203.0.113.0/24", "203.0.113.1",
          ("203.0.113.100", "203.0.113.199"))
ROUTER = ("demo-router", "demo", ("demo-net", "demo-db"))
FIP_OF = "web1"
INET = ("inet", "198.19.0.10")
# (name, network, chassis)
VMS = [
    ("web1", "demo-net", "c1"),
    ("web2", "demo-net", "c2"),
    ("db1", "demo-db", "c3"),
    ("alt1", "alt-net", "c2"),
    ("alt2", "alt-net", "c3"),
]


@dataclass(frozen=True)
class Reach:
    """One cell of the matrix."""

    src: str
    dst: str
    dst_ip: str
    reached: bool
    expected: bool

    @property
    def ok(self) -> bool:
        """Whether reality matched the expectation."""
        return self.reached == self.expected


def build(lab, progress=lambda msg: None) -> dict[str, vms.VM]:
    """Create the networks through the API and boot the VMs; returns them by name."""
    conn = lab.connect()
    for name, project, cidr in NETWORKS:
        progress(f"network {name} ({cidr}) for project {project}")
        owner = conn.identity.find_project(project, ignore_missing=False).id
        net = conn.network.create_network(name=name, project_id=owner)
        conn.network.create_subnet(network_id=net.id, cidr=cidr, ip_version=4,
                                   name=f"{name}-subnet", project_id=owner,
                                   dns_nameservers=["10.0.0.53"] if name != "demo-db" else [])
    public = _public(conn, progress)
    router = _router(conn, public, progress)
    booted = {}
    for name, network, chassis in VMS:
        progress(f"VM {name} on {chassis} in {network} (DHCP)")
        booted[name] = vms.boot(lab, name, network, chassis=chassis)
    demo = conn.identity.find_project("demo", ignore_missing=False).id
    group = next(g for g in conn.network.security_groups(name="default")
                 if g.project_id == demo)
    progress("security group rule: ping in from anywhere (demo's default group)")
    conn.network.create_security_group_rule(security_group_id=group.id, direction="ingress",
                                            ethertype="IPv4", protocol="icmp",
                                            remote_ip_prefix="0.0.0.0/0", project_id=demo)
    fip = conn.network.create_ip(floating_network_id=public.id, project_id=demo,
                                 port_id=booted[FIP_OF].port_id)
    progress(f"floating IP {fip.floating_ip_address} → {FIP_OF} (router {router.name})")
    return booted


def _public(conn, progress):
    name, physnet, cidr, gateway, (first, last) = PUBLIC
    progress(f"external network {name} (flat {physnet}, {cidr}, gateway {gateway})")
    net = conn.network.create_network(name=name, provider_network_type="flat",
                                      provider_physical_network=physnet,
                                      is_router_external=True)
    conn.network.create_subnet(network_id=net.id, cidr=cidr, ip_version=4, gateway_ip=gateway,
                               is_dhcp_enabled=False, name=f"{name}-subnet",
                               allocation_pools=[{"start": first, "end": last}])
    return net


def _router(conn, public, progress):
    name, project, networks = ROUTER
    owner = conn.identity.find_project(project, ignore_missing=False).id
    router = conn.network.create_router(name=name, project_id=owner,
                                        external_gateway_info={"network_id": public.id})
    for network in networks:
        net = conn.network.find_network(network, project_id=owner, ignore_missing=False)
        conn.network.add_interface_to_router(router, subnet_id=net.subnet_ids[0])
    progress(f"router {name}: {', '.join(networks)}, gateway on {public.name}")
    return router


def picture(lab) -> list:
    """Draw the lab's topology (``plexus topology``) into its directory; the files."""
    from plexus.tools import topology
    from plexus.tools.client import Api
    return topology.render(topology.from_api(Api(lab.connect()).get), lab.dir / "topology.svg")


def floating_ip(lab) -> str | None:
    """The floating IP of web1, if any."""
    conn = lab.connect()
    port = vms.get(lab, FIP_OF).port_id
    return next((f.floating_ip_address for f in conn.network.ips(port_id=port)), None)


def expected(src: str, dst: str) -> bool:
    """Whether the design says ``src`` reaches ``dst``: VMs on one network or behind one
    router reach each other and (routed) ``inet``; ``inet`` reaches the floating IP
    ("web1-fip") and no fixed address."""
    net = {name: network for name, network, _ in VMS}
    routed = set(ROUTER[2])
    if src == INET[0]:
        return dst == f"{FIP_OF}-fip"
    if dst == INET[0]:
        return net[src] in routed
    return net[src] == net[dst] or (net[src] in routed and net[dst] in routed)


def matrix(lab, names: list[str] | None = None) -> list[Reach]:
    """Ping every ordered pair of VMs (in parallel) and record what got through."""
    names = names or [name for name, _, _ in VMS]
    nodes = {n: vms.get(lab, n) for n in names}
    nodes[INET[0]] = vms.node(lab, INET[0])
    address = {n: nodes[n].ip for n in names}
    address[INET[0]] = INET[1]
    address[f"{FIP_OF}-fip"] = floating_ip(lab)
    pairs = [(a, b) for a in names for b in names if a != b]
    pairs += [(a, INET[0]) for a in names]
    pairs += [(INET[0], b) for b in [f"{FIP_OF}-fip", *names]]

    def probe(pair: tuple[str, str]) -> Reach:
        a, b = pair
        ip = address[b]
        reached = bool(ip) and nodes[a].ping(ip, count=2, deadline=4)
        return Reach(a, b, ip or "-", reached, expected(a, b))
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(probe, pairs))
