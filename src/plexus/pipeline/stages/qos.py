"""egress_qos: what leaves a VM is rate-limited and marked before anything else looks
at it. A port's QoS policy is its own ``qos_policy_id`` or, when it has none, its
network's (Neutron's precedence). For a bound port whose policy limits egress (VM →
network), every packet from it passes the port's egress meter; IPv4 and IPv6 packets
from it get the policy's DSCP mark (the IP header's DS field, ECN bits kept). Ports
without a policy go straight on (to lb_probe, then port_security).

The ingress limit (network → VM) is the port's ingress meter on ``output``'s flow to
its VIF (``ingress_meters``): whatever reaches the VM, from a local port or a tunnel,
is metered once, where it leaves br-int.

A meter is an OpenFlow meter of the chassis' br-int (``flows.Meter``: id, rate, burst),
one per port and direction. Its id is a hash of the port and the direction, so it is
the same whatever else the chassis hosts (a pure function of the port: no allocation
state, and a port's meter never moves when another comes or goes). The burst is the
rule's ``max_burst_kbps``, or 80% of the rate when that is 0 (Neutron's OVS agent),
never less than one full-size frame."""

from __future__ import annotations

import functools
import hashlib

from plexus.model.objects import Limit, QosPolicy
from plexus.pipeline.flows import Flow, Meter, SetField
from plexus.pipeline.stages.common import bound_ports
from plexus.pipeline.view import PortView, View

STAGE = "egress_qos"
NEXT = "lb_probe"           # then port_security
PRIO_DSCP = 20              # IP from the port: marked (and metered)
PRIO_PORT = 10              # anything else from the port: metered
ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
MIN_BURST_KBIT = 16         # one 1514-byte frame is 12.1 kbit: a smaller bucket drops all
DEFAULT_BURST_RATE = 0.8    # burst 0: 80% of the rate, as Neutron's OVS agent
METER_ID_BITS = 30


def compile_egress_qos(view: View) -> list[Flow]:
    """The stage's default and the flows of every bound port with a policy."""
    return compile_egress_qos_chassis(view) + compile_egress_qos_network(view)


def compile_egress_qos_chassis(view: View) -> list[Flow]:
    """Packets of ports without a policy go on unchanged."""
    return [Flow.make(STAGE, 0, goto=NEXT, cookie="pipeline:egress_qos",
                      note="no QoS policy")]


def compile_egress_qos_network(view: View) -> list[Flow]:
    """Per bound port with a policy: its meter and DSCP mark (per network)."""
    flows = []
    for port in bound_ports(view):
        qos = policy_of(view, port)
        if qos is None:
            continue
        net = view.networks[port.network_id]
        flows += port_flows(net.key, port.key, port.id, qos)
    return flows


@functools.lru_cache(maxsize=1 << 14)
def port_flows(net: int, key: int, port_id: str, qos: QosPolicy) -> tuple[Flow, ...]:
    """One port's egress flows (by value: a policy change recompiles the ports holding
    it, and each port's flows are built once per policy value)."""
    meter = [meter_of(port_id, "egress", qos.egress)] if qos.egress else []
    match = {"net": net, "inport": key}
    cookie = f"port:{port_id}"
    flows = []
    if qos.dscp is not None:
        # OpenFlow's ip_dscp is the six DSCP bits; the two ECN bits are left as they are
        for eth in (ETH_IPV4, ETH_IPV6):
            flows.append(Flow.make(STAGE, PRIO_DSCP, {**match, "eth_type": eth},
                                   [*meter, SetField("ip_dscp", qos.dscp)],
                                   goto=NEXT, cookie=cookie,
                                   note=f"policy {qos.id}: DSCP {qos.dscp}"))
    if meter:
        flows.append(Flow.make(STAGE, PRIO_PORT, match, meter, goto=NEXT,
                               cookie=cookie, note=f"policy {qos.id}: egress limit"))
    return tuple(flows)


def policy_id(port: PortView, network) -> str:
    """The id of the QoS policy a port enforces: its own, else its network's (``network``
    may be None) unless it is a network device (a router's or DHCP port: Neutron applies
    a network's policy to the other ports only); "" for none."""
    if port.qos_policy_id:
        return port.qos_policy_id
    if network is None or port.device_owner.startswith("network:"):
        return ""
    return network.qos_policy_id


def policy_of(view: View, port: PortView) -> QosPolicy | None:
    """The QoS policy enforced on a port, if the view has it (None: none)."""
    pid = policy_id(port, view.networks.get(port.network_id))
    return view.qos.get(pid) if pid else None


def ingress_meters(view: View, port: PortView) -> list[Meter]:
    """The meter of what reaches the port's VIF (``output``), if its policy limits
    ingress."""
    qos = policy_of(view, port)
    if qos is None or qos.ingress is None:
        return []
    return [meter_of(port.id, "ingress", qos.ingress)]


@functools.lru_cache(maxsize=1 << 14)
def meter_of(port_id: str, direction: str, limit: Limit) -> Meter:
    """A port's meter of one direction."""
    burst = limit.burst_kbps or int(limit.kbps * DEFAULT_BURST_RATE)
    return Meter(meter_id(port_id, direction), limit.kbps, max(burst, MIN_BURST_KBIT))


def meter_id(port_id: str, direction: str) -> int:
    """A port's meter id for one direction (1 .. 2^30: OpenFlow's meter ids end at
    0xffff0000): a hash, so the same on every compile."""
    digest = hashlib.blake2b(f"meter/{port_id}/{direction}".encode(), digest_size=4).digest()
    return (int.from_bytes(digest, "big") & ((1 << METER_ID_BITS) - 1)) or 1


def used_policies(view: View, ports) -> set[str]:
    """The policies that the given bound ports enforce."""
    return {pid for p in ports if (pid := policy_id(p, view.networks.get(p.network_id)))}
