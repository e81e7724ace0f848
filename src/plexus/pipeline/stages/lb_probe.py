"""lb_probe: the replies to this chassis' load balancer health probes go to the agent.

The agent of the chassis hosting a member's port checks it (``agent.lbhealth``, as
ovn-controller's service monitors do): it writes the probe straight out of the
member's VIF, from the load balancer's VIP (its address and its VIP port's MAC) and
a source port of ``PROBE_PORTS``. The member answers the VIP: from its VIF, its
address (or ``monitor_address``) and probed port, to the VIP and the probe's source
port; that reply goes to the agent here, before port security and conntrack (it is
no connection of the member's: conntrack and its security group never see it):

- TCP monitors: a TCP segment from the probed port to a port of the range (SYN-ACK:
  up; RST: down);
- UDP-CONNECT monitors: a UDP datagram from the probed port to a port of the range
  (an answer: up), and an ICMP destination unreachable from the member's address to
  the VIP (the agent reads the quoted datagram: port unreachable is down).

Everything else goes on to port_security. Flows per chassis: 2 per probed member
(port and monitor) hosted here, compiled from the load balancers on the networks of
the local ports: proportional to what this chassis hosts."""

from __future__ import annotations

from plexus.pipeline.flows import Controller, Flow
from plexus.pipeline.stages.common import default_flow
from plexus.pipeline.view import View

STAGE = "lb_probe"
NEXT = "port_security"
USERDATA = "lb:probe"
PRIO = 100
ETH_IP = 0x0800
# the source ports of health probes: 16 ports, one masked match
PROBE_PORT_MIN = 0xFFF0
PROBE_PORT_MASK = 0xFFF0
PROBE_PORT_COUNT = 16
ICMP_DEST_UNREACH = 3
TCP, UDP, ICMP = 6, 17, 1


def probed(view: View) -> list[tuple]:
    """What this chassis probes: (load balancer, monitor, probe, the local port holding
    the probed address) for each enabled monitor of a load balancer on a network with
    local ports, each member whose probed address is a fixed IP of a port bound and
    plugged here on the VIP's network (a trunk's subport, tagged on its parent's VIF,
    is left out). Cost: the local ports, plus the monitored members of the load
    balancers on their networks."""
    local: dict[str, dict[str, object]] = {}
    for port in view.local_ports():
        if not port.parent:
            for ip in port.addresses():
                local.setdefault(port.network_id, {})[ip] = port
    out = []
    for lb in sorted(view.lbs.values(), key=lambda lb: lb.id):
        here = local.get(lb.vip_network_id)
        if not here or not lb.monitors:
            continue
        for monitor in lb.monitors:
            for probe in monitor.probes:
                port = here.get(probe.address)
                if port is not None:
                    out.append((lb, monitor, probe, port))
    return out


def compile_lb_probe(view: View) -> list[Flow]:
    """Per probed member hosted here, its replies to the VIP (TCP or UDP to the probe
    ports, ICMP unreachable for UDP-CONNECT) → the agent; the rest → port_security."""
    flows: dict[tuple, Flow] = {}
    for lb, monitor, probe, port in probed(view):
        net = view.networks.get(port.network_id)
        if net is None:
            continue
        base = {"net": net.key, "inport": port.key, "eth_type": ETH_IP,
                "ipv4_src": probe.address, "ipv4_dst": lb.vip}
        cookie = f"loadbalancer:{lb.id}"
        if monitor.type == "TCP":
            matches = [{**base, "ip_proto": TCP, "tcp_src": probe.port,
                        "tcp_dst": (PROBE_PORT_MIN, PROBE_PORT_MASK)}]
        else:
            matches = [{**base, "ip_proto": UDP, "udp_src": probe.port,
                        "udp_dst": (PROBE_PORT_MIN, PROBE_PORT_MASK)},
                       {**base, "ip_proto": ICMP, "icmpv4_type": ICMP_DEST_UNREACH}]
        for match in matches:
            flow = Flow.make(STAGE, PRIO, match, [Controller(USERDATA)], cookie=cookie,
                             note=f"health probe reply: member {probe.member_id}")
            flows.setdefault(flow.key(), flow)
    return [default_flow(STAGE, goto=NEXT)] + list(flows.values())
