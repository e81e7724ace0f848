"""The provider-network reference topology (docs/provider-networks.md): a VLAN network and
a flat external network bridged to physnet1, with each chassis' View built as the agent
builds it (``relevant.build_view``'s local part, then ``l3.with_l3``). Readable ids.

    vlan-net  VLAN 100 on physnet1 (key 3000) 198.51.100.0/24, gateway .1 (upstream)
              v-vm1 (hv1, ofport 1, .11), v-vm2 (hv2, ofport 1, .12),
              v-vm3 (hv3, ofport 1, .13: hv3 has no bridge mapping), r1-v (.254)
    net-a     VXLAN (key 101) 10.1.0.0/24: a-vm1 (hv1, ofport 2, .11), a-vm2 (gw1,
              ofport 1, .12: a chassis with no port on vlan-net), r1-a (.1)
    router r1 (no gateway): interfaces r1-a and r1-v
    public    flat on physnet1, external (key 5000) 203.0.113.0/24, gateway .1
              p-vm1 (hv2, ofport 2, .50), p-vm2 (gw1, ofport 2, .51): VMs on the
              external network, one of them on r2's active gateway
    router r2 (SNAT on; gateway chassis gw1): gateway r2-gw 203.0.113.10 on public, no
              interface (programmed on its active gateway, gw1)
    every chassis: tunnel ofport 201 + n toward chassis n, patch port 50 toward br-ex
    (physnet1) except hv3
"""

from __future__ import annotations

from plexus.agent import l3
from plexus.model.objects import to_network, to_port, to_subnet
from plexus.pipeline.view import ChassisView, View

PATCH = 50
CHASSIS = ["hv1", "hv2", "hv3", "gw1"]
TUNNEL = {c: 201 + i for i, c in enumerate(CHASSIS)}
TUNNEL_IP = {c: f"192.168.60.{i + 1}" for i, c in enumerate(CHASSIS)}
MAPPED = {"hv1", "hv2", "gw1"}
UPSTREAM = {"203.0.113.1": "02:ee:00:00:00:01"}
NETWORKS = {
    "vlan-net": (3000, "vlan", "physnet1", 100, False),
    "net-a": (101, "vxlan", None, None, False),
    "public": (5000, "flat", "physnet1", None, True),
}
SUBNETS = {
    "sub-v": ("vlan-net", "198.51.100.0/24", "198.51.100.1"),
    "sub-a": ("net-a", "10.1.0.0/24", "10.1.0.1"),
    "sub-pub": ("public", "203.0.113.0/24", "203.0.113.1"),
}
# id: (key, network, mac suffix, ip, chassis, owner, device)
PORTS = {
    "v-vm1": (11, "vlan-net", "d1:01", "198.51.100.11", "hv1", "compute:nova", "vm"),
    "v-vm2": (12, "vlan-net", "d1:02", "198.51.100.12", "hv2", "compute:nova", "vm"),
    "v-vm3": (13, "vlan-net", "d1:03", "198.51.100.13", "hv3", "compute:nova", "vm"),
    "r1-v": (1, "vlan-net", "d1:fe", "198.51.100.254", "", "network:router_interface", "r1"),
    "a-vm1": (11, "net-a", "a1:01", "10.1.0.11", "hv1", "compute:nova", "vm"),
    "a-vm2": (12, "net-a", "a1:02", "10.1.0.12", "gw1", "compute:nova", "vm"),
    "r1-a": (1, "net-a", "a1:fe", "10.1.0.1", "", "network:router_interface", "r1"),
    "p-vm1": (50, "public", "e0:50", "203.0.113.50", "hv2", "compute:nova", "vm"),
    "p-vm2": (51, "public", "e0:51", "203.0.113.51", "gw1", "compute:nova", "vm"),
    "r2-gw": (1, "public", "e0:10", "203.0.113.10", "", "network:router_gateway", "r2"),
}
VIF_OFPORTS = {"hv1": {"v-vm1": 1, "a-vm1": 2}, "hv2": {"v-vm2": 1, "p-vm1": 2},
               "hv3": {"v-vm3": 1}, "gw1": {"a-vm2": 1, "p-vm2": 2}}


def mac(pid: str) -> str:
    """A reference port's MAC."""
    return f"fa:16:3e:00:{PORTS[pid][2]}"


def ip(pid: str) -> str:
    """A reference port's fixed IP."""
    return PORTS[pid][3]


def objects() -> dict[str, dict[str, dict]]:
    """Every object as the southbound stream carries it."""
    out: dict[str, dict[str, dict]] = {c: {} for c in (
        "networks", "subnets", "ports", "routers", "floatingips", "snat_blocks", "agents")}
    for nid, (key, ntype, physnet, seg, external) in NETWORKS.items():
        out["networks"][nid] = {"id": nid, "plexus:key": key, "provider:network_type": ntype,
                                "provider:physical_network": physnet,
                                "provider:segmentation_id": seg, "router:external": external,
                                "mtu": 1450 if ntype == "vxlan" else 1500}
    for sid, (nid, cidr, gw) in SUBNETS.items():
        out["subnets"][sid] = {"id": sid, "network_id": nid, "cidr": cidr, "ip_version": 4,
                               "gateway_ip": gw, "enable_dhcp": False}
    for pid, (key, nid, suffix, addr, chassis, owner, device) in PORTS.items():
        subnet = next(s for s, (n, _, _) in SUBNETS.items() if n == nid)
        out["ports"][pid] = {"id": pid, "plexus:key": key, "network_id": nid,
                             "mac_address": mac(pid), "binding:host_id": chassis,
                             "fixed_ips": [{"subnet_id": subnet, "ip_address": addr}],
                             "device_owner": owner, "device_id": device,
                             "port_security_enabled": True,
                             "admin_state_up": True, "allowed_address_pairs": []}
    out["routers"]["r1"] = {
        "id": "r1", "admin_state_up": True, "enable_snat": True, "gw_port_id": None,
        "interface_ports": ["r1-a", "r1-v"], "plexus:gateway_chassis": [], "routes": []}
    out["routers"]["r2"] = {
        "id": "r2", "admin_state_up": True, "enable_snat": True, "gw_port_id": "r2-gw",
        "interface_ports": [], "plexus:gateway_chassis": ["gw1"], "routes": []}
    for c in CHASSIS:
        out["agents"][c] = {"id": f"agent-{c}", "host": c,
                            "configurations": {"tunnel_ip": TUNNEL_IP[c],
                                               "bridge_mappings": {"physnet1": "br-ex"}
                                               if c in MAPPED else {},
                                               "gateway": c.startswith("gw")}}
    return out


def base_view(objs: dict, chassis: str) -> View:
    """The local part of a chassis' view, as ``relevant.build_view`` builds it."""
    ports = {pid: to_port(p) for pid, p in objs["ports"].items()}
    local = [p for p in ports.values() if p.chassis == chassis]
    nets = {p.network_id for p in local}
    on = {pid: p for pid, p in ports.items() if p.network_id in nets}
    hosting = {p.chassis for p in on.values() if p.chassis} | {chassis}
    return View(chassis=chassis, tunnel_ip=TUNNEL_IP[chassis],
                networks={n: to_network(objs["networks"][n]) for n in sorted(nets)},
                subnets={s: to_subnet(o) for s, o in objs["subnets"].items()
                         if o["network_id"] in nets},
                ports=on,
                chassis_by_name={c: ChassisView(c, TUNNEL_IP[c]) for c in sorted(hosting)},
                vif_ofports=dict(VIF_OFPORTS[chassis]),
                tunnel_ofports={c: TUNNEL[c] for c in sorted(hosting) if c != chassis})


def view(chassis: str, objs: dict | None = None) -> View:
    """A chassis' whole view: local part, then the L3 part from ``l3.with_l3``."""
    objs = objs if objs is not None else objects()
    problems: list = []
    out = l3.with_l3(base_view(objs, chassis), objs, alive=CHASSIS,
                     bridge_mappings={"physnet1": "br-ex"} if chassis in MAPPED else {},
                     patch_ofports={"physnet1": PATCH} if chassis in MAPPED else {},
                     tunnel_ofports={c: TUNNEL[c] for c in CHASSIS if c != chassis},
                     external_macs=UPSTREAM if chassis in MAPPED else {},
                     problems=problems)
    assert not problems, problems
    return out
