"""The L3 reference topology: southbound objects (the store's form) for two routers,
and each chassis' View built from them as the agent will build it (the local part as
``relevant.build_view`` does, then ``plexus.pipeline.l3.with_l3``). Ids are readable
names so the goldens read as a spec.

    external  ext-net   flat on physnet1 (key 5000)    203.0.113.0/24, gateway .1
              ext-vlan  VLAN 100 on physnet1 (key 5001) 198.51.100.0/24, gateway .1
              upstream MACs resolved by the agents: 203.0.113.1, 203.0.113.254 (a second
              upstream router), 198.51.100.1

    router r1 (project a, SNAT on; gateway chassis gw1 then gw2)
              net-a (key 101) 10.1.0.0/24  port r1-a  10.1.0.1
              net-b (key 102) 10.2.0.0/24  port r1-b  10.2.0.1
              gateway r1-gw 203.0.113.10 on ext-net
              extra routes: 192.168.50.0/24 via 10.2.0.50 (b-app), 198.18.0.0/15 via
              203.0.113.254
              SNAT blocks on 203.0.113.10: hv1 1024-1087 and 2048-2111, hv2 1088-1151,
              gw1 1152-1215 (and a stale block of hv2 on an old address)
    router r2 (project b, SNAT off; gateway chassis gw2 then gw1)
              net-c (key 201) 10.1.0.0/24 (the same CIDR as net-a)  port r2-c 10.1.0.1
              gateway r2-gw 198.51.100.10 on ext-vlan

    hv1: a-vm1 (ofport 1, 10.1.0.11, floating IP fip-a1 203.0.113.101),
         a-vm2 (2, 10.1.0.12), c-vm1 (3, 10.1.0.11, floating IP fip-c1 198.51.100.101),
         c-vm3 (4, 10.1.0.13)
    hv2: b-vm1 (1, 10.2.0.11), b-app (2, 10.2.0.50, port security off)
    hv3: c-vm2 (1, 10.1.0.12) — no bridge mapping
    gw1, gw2: gateway chassis, no VMs
    every chassis: tunnel ofport 200 + n toward chassis n (TUNNEL), patch port 50 toward
    br-ex (physnet1) except hv3
"""

from __future__ import annotations

from dataclasses import replace

from plexus.agent import l3
from plexus.model.objects import to_network, to_port, to_subnet
from plexus.pipeline.view import ChassisView, View

EXT, EXT_VLAN = "ext-net", "ext-vlan"
PATCH = 50
CHASSIS = ["hv1", "hv2", "hv3", "gw1", "gw2"]
TUNNEL = {c: 201 + i for i, c in enumerate(CHASSIS)}     # ofport toward a chassis, anywhere
TUNNEL_IP = {c: f"192.168.60.{i + 1}" for i, c in enumerate(CHASSIS)}
MAPPED = {"hv1", "hv2", "gw1", "gw2"}                       # have br-ex for physnet1
UPSTREAM = {"203.0.113.1": "02:ee:00:00:00:01", "203.0.113.254": "02:ee:00:00:00:fe",
            "198.51.100.1": "02:ee:00:00:01:01"}

NETWORKS = {
    "net-a": (101, "vxlan", None, None, False),
    "net-b": (102, "vxlan", None, None, False),
    "net-c": (201, "vxlan", None, None, False),
    EXT: (5000, "flat", "physnet1", None, True),
    EXT_VLAN: (5001, "vlan", "physnet1", 100, True),
}
SUBNETS = {
    "sub-a": ("net-a", "10.1.0.0/24", "10.1.0.1"),
    "sub-b": ("net-b", "10.2.0.0/24", "10.2.0.1"),
    "sub-c": ("net-c", "10.1.0.0/24", "10.1.0.1"),
    "sub-ext": (EXT, "203.0.113.0/24", "203.0.113.1"),
    "sub-ext-vlan": (EXT_VLAN, "198.51.100.0/24", "198.51.100.1"),
}
# id: (key, network, mac suffix, ip, chassis, owner, device)
PORTS = {
    "a-vm1": (11, "net-a", "a1:01", "10.1.0.11", "hv1", "compute:nova", "vm"),
    "a-vm2": (12, "net-a", "a1:02", "10.1.0.12", "hv1", "compute:nova", "vm"),
    "r1-a": (1, "net-a", "a1:fe", "10.1.0.1", "", "network:router_interface", "r1"),
    "b-vm1": (11, "net-b", "b1:01", "10.2.0.11", "hv2", "compute:nova", "vm"),
    "b-app": (50, "net-b", "b1:50", "10.2.0.50", "hv2", "compute:nova", "vm"),
    "r1-b": (1, "net-b", "b1:fe", "10.2.0.1", "", "network:router_interface", "r1"),
    "c-vm1": (11, "net-c", "c1:01", "10.1.0.11", "hv1", "compute:nova", "vm"),
    "c-vm2": (12, "net-c", "c1:02", "10.1.0.12", "hv3", "compute:nova", "vm"),
    "c-vm3": (13, "net-c", "c1:03", "10.1.0.13", "hv1", "compute:nova", "vm"),
    "r2-c": (1, "net-c", "c1:fe", "10.1.0.1", "", "network:router_interface", "r2"),
    "r1-gw": (1, EXT, "e0:10", "203.0.113.10", "", "network:router_gateway", "r1"),
    "fip-a1-port": (2, EXT, "e0:65", "203.0.113.101", "", "network:floatingip", "fip-a1"),
    "r2-gw": (1, EXT_VLAN, "e1:10", "198.51.100.10", "", "network:router_gateway", "r2"),
    "fip-c1-port": (2, EXT_VLAN, "e1:65", "198.51.100.101", "", "network:floatingip",
                    "fip-c1"),
}
VIF_OFPORTS = {"hv1": {"a-vm1": 1, "a-vm2": 2, "c-vm1": 3, "c-vm3": 4},
               "hv2": {"b-vm1": 1, "b-app": 2}, "hv3": {"c-vm2": 1}, "gw1": {}, "gw2": {}}
BLOCKS = {"hv1": [(1024, 1087), (2048, 2111)], "hv2": [(1088, 1151)], "gw1": [(1152, 1215)]}


def mac(pid: str) -> str:
    """A reference port's MAC."""
    return f"fa:16:3e:00:{PORTS[pid][2]}"


def ip(pid: str) -> str:
    """A reference port's fixed IP."""
    return PORTS[pid][3]


def subnet_of(network: str) -> str:
    """The subnet of a reference network."""
    return next(s for s, (n, _, _) in SUBNETS.items() if n == network)


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
                               "gateway_ip": gw, "enable_dhcp": nid in ("net-a", "net-b")}
    for pid, (key, nid, suffix, addr, chassis, owner, device) in PORTS.items():
        out["ports"][pid] = {"id": pid, "plexus:key": key, "network_id": nid,
                             "mac_address": mac(pid), "binding:host_id": chassis,
                             "fixed_ips": [{"subnet_id": subnet_of(nid), "ip_address": addr}],
                             "device_owner": owner, "device_id": device,
                             "port_security_enabled": pid != "b-app",
                             "admin_state_up": True, "allowed_address_pairs": []}
    out["routers"]["r1"] = {
        "id": "r1", "admin_state_up": True, "enable_snat": True, "gw_port_id": "r1-gw",
        "interface_ports": ["r1-a", "r1-b"], "plexus:gateway_chassis": ["gw1", "gw2"],
        "routes": [{"destination": "192.168.50.0/24", "nexthop": "10.2.0.50"},
                   {"destination": "198.18.0.0/15", "nexthop": "203.0.113.254"}]}
    out["routers"]["r2"] = {
        "id": "r2", "admin_state_up": True, "enable_snat": False, "gw_port_id": "r2-gw",
        "interface_ports": ["r2-c"], "plexus:gateway_chassis": ["gw2", "gw1"], "routes": []}
    for fid, addr, port, fixed, net, router in (
            ("fip-a1", "203.0.113.101", "a-vm1", "10.1.0.11", EXT, "r1"),
            ("fip-c1", "198.51.100.101", "c-vm1", "10.1.0.11", EXT_VLAN, "r2")):
        out["floatingips"][fid] = {"id": fid, "floating_ip_address": addr,
                                   "floating_network_id": net, "floating_port_id": f"{fid}-port",
                                   "port_id": port, "fixed_ip_address": fixed,
                                   "router_id": router, "status": "ACTIVE"}
    for chassis, blocks in BLOCKS.items():
        for lo, hi in blocks:
            out["snat_blocks"][f"r1:{lo}"] = {"id": f"r1:{lo}", "router_id": "r1",
                                             "chassis": chassis, "ip": "203.0.113.10",
                                             "port_min": lo, "port_max": hi}
    out["snat_blocks"]["r1:4096"] = {"id": "r1:4096", "router_id": "r1", "chassis": "hv2",
                                     "ip": "203.0.113.99", "port_min": 4096, "port_max": 4159}
    for c in CHASSIS:
        out["agents"][c] = {"id": f"agent-{c}", "host": c,
                            "configurations": {"tunnel_ip": TUNNEL_IP[c],
                                               "bridge_mappings": {"physnet1": "br-ex"}
                                               if c in MAPPED else {},
                                               "gateway": c.startswith("gw")}}
    return out


def base_view(objs: dict, chassis: str) -> View:
    """The local part of a chassis' view, as ``relevant.build_view`` builds it (without
    security groups: the ACL stages let everything through)."""
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


def view(chassis: str, objs: dict | None = None, alive=None, external_macs=None) -> View:
    """A chassis' whole view: local part, then the L3 part from ``l3.with_l3``."""
    objs = objs if objs is not None else objects()
    problems: list = []
    out = l3.with_l3(base_view(objs, chassis), objs,
                     alive=CHASSIS if alive is None else alive,
                     bridge_mappings={"physnet1": "br-ex"} if chassis in MAPPED else {},
                     patch_ofports={"physnet1": PATCH} if chassis in MAPPED else {},
                     tunnel_ofports={c: TUNNEL[c] for c in CHASSIS if c != chassis},
                     external_macs=(UPSTREAM if external_macs is None else external_macs)
                     if chassis in MAPPED else {},
                     problems=problems)
    assert not problems, problems
    return out


def without(objs: dict, collection: str, ident: str) -> dict:
    """A copy of the objects without one of them."""
    return {**objs, collection: {k: v for k, v in objs[collection].items() if k != ident}}


def changed(objs: dict, collection: str, ident: str, **fields) -> dict:
    """A copy of the objects with some fields of one of them changed."""
    return {**objs, collection: {**objs[collection],
                                 ident: {**objs[collection][ident], **fields}}}


def replace_view(v: View, **kw) -> View:
    """``dataclasses.replace`` for views (re-exported for the tests)."""
    return replace(v, **kw)
