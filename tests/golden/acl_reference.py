"""The security-group reference topology, seen from chassis hv1, and the rule kinds the
ACL goldens specify. Security comes from wire-format objects through
``plexus.pipeline.security.security_view``, as the agent will build it.

    net-1 (VNI 11) 10.1.0.0/24, DHCP on
    hv1 (here): vm (ofport 5, key 1, 10.1.0.5, pair 10.1.0.100), vm2 (ofport 6, key 2)
    hv2 (tunnel ofport 100): web1 10.1.0.21 and web2 10.1.0.22 (pair 10.1.0.128/28) in
                 sg-web, db1 10.1.0.31 in sg-db, other 10.1.0.41 in no group
    elsewhere:   far-web 10.9.0.5 on net-far (not in the view), also in sg-web
"""

from __future__ import annotations

from dataclasses import replace

from plexus.pipeline.security import security_view
from plexus.pipeline.view import ChassisView, NetworkView, PortView, SubnetView, View

HERE = "hv1"
NET = NetworkView("net-1", 11, "vxlan", 1450)
SUBNET = SubnetView("sub-1", "net-1", "10.1.0.0/24", 4, "10.1.0.1", True)
TUNNELS = {"hv2": 100}
VIF_OFPORTS = {"vm": 5, "vm2": 6}

# id: (key, ip, chassis, groups, allowed pairs)
PORTS = {
    "vm": (1, "10.1.0.5", "hv1", [], [("10.1.0.100", None)]),
    "vm2": (2, "10.1.0.6", "hv1", [], []),
    "web1": (3, "10.1.0.21", "hv2", ["sg-web"], []),
    "web2": (4, "10.1.0.22", "hv2", ["sg-web"], [("10.1.0.128/28", "fa:16:3e:00:0f:0f")]),
    "db1": (5, "10.1.0.31", "hv2", ["sg-db"], []),
    "other": (6, "10.1.0.41", "hv2", [], []),
}
FAR_WEB = {"id": "far-web", "plexus:key": 5, "network_id": "net-far",
           "mac_address": "fa:16:3e:09:00:05",
           "fixed_ips": [{"subnet_id": "sub-far", "ip_address": "10.9.0.5"}],
           "allowed_address_pairs": [], "security_groups": ["sg-web"],
           "binding:host_id": "hv3"}


def mac(pid: str) -> str:
    """The MAC of a reference port."""
    return f"fa:16:3e:00:00:{PORTS[pid][0]:02x}"


def ip(pid: str) -> str:
    """The fixed IP of a reference port."""
    return PORTS[pid][1]


def rule(rid: str, direction: str, protocol=None, low=None, high=None, prefix=None,
         remote=None, ethertype="IPv4") -> dict:
    """A security group rule in Neutron's wire format."""
    return {"id": rid, "direction": direction, "ethertype": ethertype, "protocol": protocol,
            "port_range_min": low, "port_range_max": high, "remote_ip_prefix": prefix,
            "remote_group_id": remote, "remote_address_group_id": None}


def group(gid: str, *rules: dict, stateful: bool = True) -> dict:
    """A security group in Neutron's wire format, its rules in full."""
    return {"id": gid, "name": gid, "stateful": stateful,
            "security_group_rules": [dict(r, security_group_id=gid) for r in rules]}


WEB = group("sg-web", rule("web-in-80", "ingress", "tcp", 80, 80))
DB = group("sg-db")


def wire_ports(local_groups: dict[str, list[str]]) -> dict[str, dict]:
    """Every port as the southbound stream carries it (local ports with the given groups)."""
    out = {"far-web": FAR_WEB}
    for pid, (key, addr, chassis, groups, pairs) in PORTS.items():
        out[pid] = {"id": pid, "plexus:key": key, "network_id": NET.id, "mac_address": mac(pid),
                    "fixed_ips": [{"subnet_id": SUBNET.id, "ip_address": addr}],
                    "allowed_address_pairs": [{"ip_address": a, "mac_address": m or mac(pid)}
                                              for a, m in pairs],
                    "security_groups": local_groups.get(pid, groups),
                    "binding:host_id": chassis}
    return out


def view(groups: list[dict], local_groups: dict[str, list[str]], *,
         unsecured: tuple[str, ...] = (), extra_members: dict[str, list[str]] | None = None,
         security: bool = True) -> View:
    """hv1's compiler input with these groups (plus sg-web and sg-db) and these groups on
    its local ports; ``unsecured`` ports have port security off; ``extra_members`` puts
    more ports (by id) into groups."""
    wire = wire_ports(local_groups)
    for gid, pids in (extra_members or {}).items():
        for pid in pids:
            wire[pid] = dict(wire[pid], security_groups=wire[pid]["security_groups"] + [gid])
    objects = {"ports": wire,
               "security-groups": {g["id"]: g for g in [WEB, DB, *groups]}}
    ports = {}
    for pid, (key, addr, chassis, _, pairs) in PORTS.items():
        ports[pid] = PortView(pid, key, NET.id, mac(pid), ((SUBNET.id, addr),), chassis,
                              allowed_pairs=tuple((a, m or mac(pid)) for a, m in pairs),
                              port_security=pid not in unsecured)
    base = View(HERE, "192.168.50.1", {NET.id: NET}, {SUBNET.id: SUBNET}, ports,
                {c: ChassisView(c, f"192.168.50.{i + 1}") for i, c in enumerate(["hv1", "hv2"])},
                dict(VIF_OFPORTS), dict(TUNNELS))
    if not security:
        return base
    return replace(base, security=security_view(objects, list(VIF_OFPORTS)))


# Each rule kind: the groups, and which of them port vm has (vm2, unless given groups,
# has port security off, so that each golden shows the kind alone).
KINDS = {
    "tcp_range": ([group("sg-a", rule("tcp-8000-8080", "ingress", "tcp", 8000, 8080))],
                  {"vm": ["sg-a"]}),
    "udp_port": ([group("sg-a", rule("udp-53", "ingress", "udp", 53, 53),
                        rule("udp-out-123", "egress", "17", 123, 123))], {"vm": ["sg-a"]}),
    "icmp_type_code": ([group("sg-a", rule("echo", "ingress", "icmp", 8, 0),
                              rule("unreachable", "ingress", "icmp", 3),
                              rule("icmp-out", "egress", "icmp"))], {"vm": ["sg-a"]}),
    "any_protocol": ([group("sg-a", rule("all-in", "ingress"),
                            rule("gre-out", "egress", "47"))], {"vm": ["sg-a"]}),
    "remote_prefix": ([group("sg-a", rule("ssh-from-lan", "ingress", "tcp", 22, 22,
                                          prefix="192.168.0.0/16"),
                             rule("out-to-dns", "egress", "udp", 53, 53,
                                  prefix="10.1.0.2/32"))], {"vm": ["sg-a"]}),
    "remote_group": ([group("sg-a", rule("pg-from-web", "ingress", "tcp", 5432, 5432,
                                         remote="sg-web"),
                            rule("x11-from-web", "ingress", "tcp", 6000, 6001, remote="sg-web"),
                            rule("dns-to-db", "egress", "udp", 53, 53, remote="sg-db"))],
                     {"vm": ["sg-a"], "vm2": ["sg-a"]}),
    "default_group": ([group("default", rule("d-out4", "egress"),
                             rule("d-out6", "egress", ethertype="IPv6"),
                             rule("d-in4", "ingress", remote="default"),
                             rule("d-in6", "ingress", ethertype="IPv6", remote="default"))],
                      {"vm": ["default"], "vm2": ["default"]}),
    "no_groups": ([], {"vm": []}),
    "port_security_off": ([], {"vm": []}),
    "stateless": ([group("sg-a", rule("ssh-in", "ingress", "tcp", 22, 22),
                         rule("ssh-replies-out", "egress", "tcp"), stateful=False)],
                  {"vm": ["sg-a"]}),
}


def kind_view(kind: str) -> View:
    """hv1's view for one rule kind."""
    groups, local = KINDS[kind]
    unsecured = (("vm",) if kind == "port_security_off" else ()) + \
        (() if "vm2" in local else ("vm2",))
    return view(groups, local, unsecured=unsecured)
