"""The L3 reference topology (tests/golden/l3_reference.py) made dual-stack, for the IPv6
services and routing goldens and behaviour tests:

    net-a   2001:db8:a::/64   ipv6_ra_mode = ipv6_address_mode = slaac, DNS 2001:db8::53
            a-vm1, a-vm2: their EUI-64 addresses; r1-a 2001:db8:a::1
    net-b   2001:db8:b::/64   dhcpv6-stateful (both modes)
            b-vm1 2001:db8:b::11, b-app 2001:db8:b::50; r1-b 2001:db8:b::1
    net-c   2001:db8:c::/64   dhcpv6-stateless (both modes), on router r2 (no IPv6
            gateway): c-vm1, c-vm3, c-vm2 EUI-64
    ext-net 2001:db8:ee::/64  gateway (the upstream router) 2001:db8:ee::1, resolved by
            the agents to 02:ee:00:00:00:06; r1-gw 2001:db8:ee::10
    router r1: an IPv6 extra route 2001:db8:50::/48 via b-app (2001:db8:b::50)
"""

from __future__ import annotations

import copy

from plexus.pipeline.stages.router import eui64
from tests.golden import l3_reference as ref

UPSTREAM6 = {"2001:db8:ee::1": "02:ee:00:00:00:06"}
SUBNETS6 = {
    "sub-a6": ("net-a", "2001:db8:a::/64", "2001:db8:a::1", "slaac", ["2001:db8::53"]),
    "sub-b6": ("net-b", "2001:db8:b::/64", "2001:db8:b::1", "dhcpv6-stateful",
               ["2001:db8::53"]),
    "sub-c6": ("net-c", "2001:db8:c::/64", "2001:db8:c::1", "dhcpv6-stateless", []),
    "sub-ext6": (ref.EXT, "2001:db8:ee::/64", "2001:db8:ee::1", None, []),
}
FIXED6 = {"r1-a": "2001:db8:a::1", "b-vm1": "2001:db8:b::11", "b-app": "2001:db8:b::50",
          "r1-b": "2001:db8:b::1", "r2-c": "2001:db8:c::1", "r1-gw": "2001:db8:ee::10"}
CHASSIS = ["hv1", "hv2", "gw1"]


def ip6(pid: str) -> str:
    """A reference port's IPv6 address (EUI-64 on the auto-addressed subnets)."""
    if pid in FIXED6:
        return FIXED6[pid]
    net = ref.PORTS[pid][1]
    sid = next(s for s, v in SUBNETS6.items() if v[0] == net)
    return eui64(SUBNETS6[sid][1], ref.mac(pid))


def objects() -> dict:
    """The L3 reference objects with the IPv6 subnets and addresses."""
    objs = copy.deepcopy(ref.objects())
    for sid, (nid, cidr, gw, mode, dns) in SUBNETS6.items():
        objs["subnets"][sid] = {"id": sid, "network_id": nid, "cidr": cidr, "ip_version": 6,
                                "gateway_ip": gw, "enable_dhcp": mode is not None,
                                "ipv6_ra_mode": mode, "ipv6_address_mode": mode,
                                "dns_nameservers": dns}
    for pid, port in objs["ports"].items():
        net = port["network_id"]
        sid = next((s for s, v in SUBNETS6.items() if v[0] == net), None)
        if sid is None or pid.startswith("fip-") or pid == "r2-gw":
            continue
        port["fixed_ips"].append({"subnet_id": sid, "ip_address": ip6(pid)})
    objs["routers"]["r1"]["routes"].append({"destination": "2001:db8:50::/48",
                                            "nexthop": "2001:db8:b::50"})
    return objs


def view(chassis: str, objs: dict | None = None):
    """A chassis' whole dual-stack view (the upstream router's IPv6 MAC resolved)."""
    return ref.view(chassis, objs if objs is not None else objects(),
                    external_macs={**ref.UPSTREAM, **UPSTREAM6})
