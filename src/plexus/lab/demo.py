"""The demo topology, as data, and a reachability matrix measured with real packets.

Two projects; project demo has two networks on three chassis, project alt_demo reuses
demo's CIDR on a network of its own. Every VM gets its address by DHCP from the agent
of its own chassis. The matrix says, for every pair of VMs, whether a ping got through
and whether it should have."""

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
    booted = {}
    for name, network, chassis in VMS:
        progress(f"VM {name} on {chassis} in {network} (DHCP)")
        booted[name] = vms.boot(lab, name, network, chassis=chassis)
    return booted


def expected(src: str, dst: str) -> bool:
    """Whether the design says ``src`` reaches ``dst`` (same network only, for now)."""
    net = {name: network for name, network, _ in VMS}
    return net[src] == net[dst]


def matrix(lab, names: list[str] | None = None) -> list[Reach]:
    """Ping every ordered pair of VMs (in parallel) and record what got through."""
    names = names or [name for name, _, _ in VMS]
    nodes = {n: vms.get(lab, n) for n in names}
    pairs = [(a, b) for a in names for b in names if a != b]

    def probe(pair: tuple[str, str]) -> Reach:
        a, b = pair
        ip = nodes[b].ip
        reached = bool(ip) and nodes[a].ping(ip, count=2, deadline=4)
        return Reach(a, b, ip or "-", reached, expected(a, b))
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(probe, pairs))
