"""The reference topology the goldens and behaviour tests compile, seen from chassis
hv1. Ids are readable names (real ones are UUIDs) so the goldens read as a spec.

    project a:  net-a1 (VNI 101) 10.0.0.0/24, DHCP on    router gateway 10.0.0.1
                net-a2 (VNI 102) 10.0.1.0/24, DHCP off
    project b:  net-b1 (VNI 201) 10.0.0.0/24, DHCP on    (same CIDR as net-a1)
                net-far (VNI 301) 10.9.0.0/24             (no port on hv1)

    hv1 (here): a1-vm1 (ofport 1), a1-vm2 (2, allowed address pairs),
                a2-vm1 (3, port security off), b1-vm1 (4, same IP as a1-vm1),
                b1-down (6, admin down), and ofport 5: the VIF of b1-lost, a port
                bound to hv2 that appeared here (it gets nothing)
    hv2:        a1-vm3, b1-vm2, b1-lost, far-vm1           tunnel ofport 100
    hv3:        a1-vm4, a2-vm2                             tunnel ofport 101
    hv4:        far-vm2 (shares nothing with hv1)          stale tunnel ofport 102
"""

from __future__ import annotations

from plexus.model.objects import Limit, QosPolicy
from plexus.pipeline.stages.metadata import METADATA_OFPORT
from plexus.pipeline.view import ChassisView, NetworkView, PortView, SubnetView, View

HERE = "hv1"
TUNNELS = {"hv2": 100, "hv3": 101, "hv4": 102}

NETWORKS = [
    NetworkView("net-a1", 101, "vxlan", 1450, qos_policy_id="qos-net"),
    NetworkView("net-a2", 102, "vxlan", 1450),
    NetworkView("net-b1", 201, "vxlan", 1450),
    NetworkView("net-far", 301, "vxlan", 1450),
]

SUBNETS = [
    SubnetView("sub-a1", "net-a1", "10.0.0.0/24", 4, "10.0.0.1", True, ("10.0.0.2",)),
    SubnetView("sub-a1-v6", "net-a1", "fd00:a1::/64", 6, "fd00:a1::1", True),
    SubnetView("sub-a2", "net-a2", "10.0.1.0/24", 4, "10.0.1.1", False),
    SubnetView("sub-b1", "net-b1", "10.0.0.0/24", 4, "10.0.0.1", True),
    SubnetView("sub-far", "net-far", "10.9.0.0/24", 4, "10.9.0.1", True),
]


def _port(pid, key, net, mac, ips, chassis, **kw) -> PortView:
    return PortView(pid, key, net, mac, tuple(ips), chassis, **kw)


PORTS = [
    _port("a1-vm1", 11, "net-a1", "fa:16:3e:a1:00:01",
          [("sub-a1", "10.0.0.11"), ("sub-a1-v6", "fd00:a1::11")], "hv1",
          qos_policy_id="qos-gold"),                   # its own policy wins over net-a1's
    _port("a1-vm2", 12, "net-a1", "fa:16:3e:a1:00:02", [("sub-a1", "10.0.0.12")], "hv1",
          allowed_pairs=(("10.0.0.100", "fa:16:3e:a1:00:02"),           # a VIP
                         ("10.0.0.128/28", "fa:16:3e:a1:0f:0f"),        # a range, own MAC
                         ("fd00:a1::100", "fa:16:3e:a1:00:02"))),        # IPv6: not yet
    _port("a1-vm3", 13, "net-a1", "fa:16:3e:a1:00:03", [("sub-a1", "10.0.0.13")], "hv2"),
    _port("a1-vm4", 14, "net-a1", "fa:16:3e:a1:00:04", [("sub-a1", "10.0.0.14")], "hv3"),
    _port("a1-router", 1, "net-a1", "fa:16:3e:a1:00:fe", [("sub-a1", "10.0.0.1")], "",
          device_owner="network:router_interface"),
    _port("a2-vm1", 21, "net-a2", "fa:16:3e:a2:00:01", [("sub-a2", "10.0.1.11")], "hv1",
          port_security=False),
    _port("a2-vm2", 22, "net-a2", "fa:16:3e:a2:00:02", [("sub-a2", "10.0.1.12")], "hv3"),
    _port("b1-vm1", 11, "net-b1", "fa:16:3e:b1:00:01", [("sub-b1", "10.0.0.11")], "hv1"),
    _port("b1-vm2", 12, "net-b1", "fa:16:3e:b1:00:02", [("sub-b1", "10.0.0.12")], "hv2"),
    _port("b1-lost", 13, "net-b1", "fa:16:3e:b1:00:03", [("sub-b1", "10.0.0.13")], "hv2"),
    _port("b1-down", 14, "net-b1", "fa:16:3e:b1:00:04", [("sub-b1", "10.0.0.14")], "hv1",
          admin_up=False),
    _port("far-vm1", 31, "net-far", "fa:16:3e:f0:00:01", [("sub-far", "10.9.0.11")], "hv2"),
    _port("far-vm2", 32, "net-far", "fa:16:3e:f0:00:02", [("sub-far", "10.9.0.12")], "hv4"),
]

VIF_OFPORTS = {"a1-vm1": 1, "a1-vm2": 2, "a2-vm1": 3, "b1-vm1": 4, "b1-lost": 5,
               "b1-down": 6}

# QoS: net-a1's policy limits its ports' egress (a1-vm2 takes it); a1-vm1's own limits
# both directions and marks DSCP 26
QOS = [QosPolicy("qos-net", egress=Limit(1000)),
       QosPolicy("qos-gold", egress=Limit(2000, 500), ingress=Limit(5000), dscp=26)]

CHASSIS = [ChassisView("hv1", "192.168.50.1"), ChassisView("hv2", "192.168.50.2"),
           ChassisView("hv3", "192.168.50.3"), ChassisView("hv4", "192.168.50.4")]


def reference_view() -> View:
    """The reference topology as hv1's compiler input."""
    return View(chassis=HERE, tunnel_ip="192.168.50.1",
                networks={n.id: n for n in NETWORKS},
                subnets={s.id: s for s in SUBNETS},
                ports={p.id: p for p in PORTS},
                chassis_by_name={c.name: c for c in CHASSIS},
                vif_ofports=dict(VIF_OFPORTS), tunnel_ofports=dict(TUNNELS),
                metadata_ofport=METADATA_OFPORT, qos={q.id: q for q in QOS})
