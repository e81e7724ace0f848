"""``plexus trace``: one packet from a port, through the compiled pipelines of every
chassis it crosses (``plexus.tools.fabric``), told stage by stage with the Neutron
object that decided each step (the flow's cookie: network, port, router, security
group rule, floating IP, SNAT block of a chassis), the tunnels it takes, what NAT
rewrote and where it ends: delivered to a port, out to a physical network, to the
agent, or dropped, and why.

The packet: from the port's MAC and first IPv4 address, to ``dst`` — a port (name or
id) or an address. On the source's network the frame goes to the destination's MAC;
elsewhere to the source subnet's gateway (the router's interface MAC), as a VM's stack
does; with no gateway, straight to the destination port's MAC (a frame isolation must
stop)."""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass, field

from plexus.model import keys
from plexus.tools.conntrack import ACK, FIN, RST, SYN
from plexus.tools.fabric import Fabric, Model, Trip

BROADCAST = "ff:ff:ff:ff:ff:ff"
FLAGS = {"syn": SYN, "ack": ACK, "fin": FIN, "rst": RST}
# packet fields worth showing when a hop changed them
SHOWN = ("eth_src", "eth_dst", "ipv4_src", "ipv4_dst", "tcp_src", "tcp_dst", "udp_src",
         "udp_dst", "nw_ttl", "vlan_vid", "tunnel_id")


@dataclass(frozen=True)
class Probe:
    """What to send: protocol (icmp, tcp, udp), destination (port or address), ports
    (ICMP: type and code), TCP flags (names joined by ``+``), TTL."""

    protocol: str = "icmp"
    dst: str = ""
    sport: int = 40000
    dport: int | None = None
    flags: str = "syn"
    icmp_type: int = 8
    icmp_code: int = 0
    ttl: int = 64

    def command(self, src: str) -> str:
        """The ``plexus trace`` command that sends this probe from ``src``."""
        words = ["plexus", "trace", src, f"--{self.protocol}", "--to", self.dst]
        if self.protocol in ("tcp", "udp"):
            words += ["--dport", str(self.dport if self.dport is not None else 80)]
            if self.sport != 40000:
                words += ["--sport", str(self.sport)]
            if self.protocol == "tcp" and self.flags != "syn":
                words += ["--flags", self.flags]
        elif self.icmp_type != 8 or self.icmp_code:
            words += ["--icmp-type", str(self.icmp_type), "--icmp-code", str(self.icmp_code)]
        return " ".join(shlex.quote(w) for w in words)


@dataclass
class Stage:
    """One table visit, for people: the stage, what the flow did, the objects behind it."""

    chassis: str
    stage: str
    action: str
    objects: list[str]
    note: str = ""

    def as_dict(self) -> dict:
        return {"chassis": self.chassis, "stage": self.stage, "action": self.action,
                "objects": self.objects, "note": self.note}


@dataclass
class Report:
    """A traced packet: the input, each stage, each hop, the verdict."""

    source: str
    chassis: str
    packet: dict
    stages: list[Stage] = field(default_factory=list)
    hops: list[dict] = field(default_factory=list)
    verdict: str = ""
    delivered: list[str] = field(default_factory=list)
    trip: Trip | None = None

    def as_dict(self) -> dict:
        return {"source": self.source, "chassis": self.chassis, "packet": self.packet,
                "stages": [s.as_dict() for s in self.stages], "hops": self.hops,
                "verdict": self.verdict, "delivered": self.delivered}


# --- the packet ---------------------------------------------------------------------

def first_ipv4(port) -> str | None:
    """A port's first IPv4 address."""
    return next((ip for ip in port.addresses() if ":" not in ip), None)


def gateway_mac(model: Model, port) -> str | None:
    """The MAC of the router interface holding the gateway of the port's IPv4 subnet."""
    cat = model.catalog
    subnets = {sid for sid, ip in port.ips if ":" not in ip}
    for sid in sorted(subnets):
        subnet = cat.get(keys.SUBNETS, sid)
        if subnet is None or not subnet.gateway_ip:
            continue
        for pid in sorted(cat.ports_by_network.of(port.network_id)):
            other = cat.get(keys.PORTS, pid)
            if other and other.device_owner in keys.INTERFACE_OWNERS and \
                    (sid, subnet.gateway_ip) in other.ips:
                return other.mac
    return None


def destination(model: Model, src, dst: str) -> tuple[str, str]:
    """(IPv4 address, MAC to send the frame to) for ``dst``, a port or an address."""
    try:
        ip = str(ipaddress.IPv4Address(dst))
        target = None
    except ValueError:
        target = model.find_port(dst)
        ip = first_ipv4(target)
        if ip is None:
            raise LookupError(f"port {dst!r} has no IPv4 address") from None
    if target is None:                      # an address: a port of the source's network?
        cat = model.catalog
        target = next((p for p in cat.each(keys.PORTS, sorted(cat.ports_by_network.of(
            src.network_id))) if ip in p.addresses()), None)
    if target is not None and target.network_id == src.network_id:
        return ip, target.mac
    if ip == "255.255.255.255":
        return ip, BROADCAST
    # elsewhere: the gateway; with none, a port's own MAC (what isolation must stop)
    return ip, gateway_mac(model, src) or (target.mac if target is not None else BROADCAST)


def packet_from(fabric: Fabric, src_ref: str, probe: Probe) -> tuple[str, dict]:
    """(chassis, packet) for a probe sent by a port's VIF."""
    model = fabric.model
    src = model.find_port(src_ref)
    if not src.chassis:
        raise LookupError(f"port {src_ref!r} is not bound to a chassis")
    ofport = fabric.ofports(src.chassis).vifs.get(src.id)
    if ofport is None:
        raise LookupError(f"port {src_ref!r} has no VIF on {src.chassis}")
    ip_src = first_ipv4(src)
    if ip_src is None:
        raise LookupError(f"port {src_ref!r} has no IPv4 address")
    ip_dst, mac_dst = destination(model, src, probe.dst)
    pkt = {"in_port": ofport, "eth_src": src.mac, "eth_dst": mac_dst, "eth_type": 0x0800,
           "ipv4_src": ip_src, "ipv4_dst": ip_dst, "nw_ttl": probe.ttl}
    if probe.protocol == "icmp":
        pkt.update(ip_proto=1, icmpv4_type=probe.icmp_type, icmpv4_code=probe.icmp_code)
    else:
        number = {"tcp": 6, "udp": 17}[probe.protocol]
        dport = probe.dport if probe.dport is not None else 80
        pkt.update({"ip_proto": number, f"{probe.protocol}_src": probe.sport,
                    f"{probe.protocol}_dst": dport})
        if probe.protocol == "tcp":
            pkt["tcp_flags"] = sum(FLAGS[f] for f in probe.flags.lower().split("+") if f)
    return src.chassis, pkt


# --- what the cookies say -------------------------------------------------------------

def describe_rule(model: Model, group: str, rule_id: str) -> str:
    """A security group rule in a few words."""
    for rule in model.wire(keys.GROUPS, group).get("security_group_rules") or ():
        if rule.get("id") != rule_id:
            continue
        proto = rule.get("protocol") or "any"
        lo, hi = rule.get("port_range_min"), rule.get("port_range_max")
        ports = "" if lo is None else (f" {lo}" if hi in (None, lo) else f" {lo}-{hi}")
        peer = (f"group {rule['remote_group_id']}" if rule.get("remote_group_id")
                else f"address group {rule['remote_address_group_id']}"
                if rule.get("remote_address_group_id")
                else rule.get("remote_ip_prefix") or "anywhere")
        way = "from" if rule.get("direction") == "ingress" else "to"
        return (f"rule {rule_id}: {rule.get('direction')} {rule.get('ethertype', 'IPv4')} "
                f"{proto}{ports} {way} {peer}")
    return f"rule {rule_id}"


def objects_of(model: Model, cookie: str) -> list[str]:
    """The Neutron objects a flow's cookie names, for people."""
    out = []
    for part in filter(None, cookie.split(",")):
        kind, _, rest = part.partition(":")
        if kind == "port":
            out.append("port " + model.name(keys.PORTS, rest))
        elif kind == "network":
            out.append("network " + model.name(keys.NETWORKS, rest))
        elif kind == "subnet":
            out.append("subnet " + model.name(keys.SUBNETS, rest))
        elif kind == "floatingip":
            fip = model.wire(keys.FLOATINGIPS, rest)
            out.append(f"floating IP {fip.get('floating_ip_address', '')} ({rest})")
        elif kind == "router":
            rid, _, what = rest.partition(":")
            name = "router " + model.name(keys.ROUTERS, rid)
            if what.startswith("snat:"):
                name += f", SNAT blocks of chassis {what[5:]}"
            elif what:
                name += f" ({what})"
            out.append(name)
        elif kind == "sg":
            group, _, what = rest.partition(":")
            gname = "security group " + model.name(keys.GROUPS, group)
            if what.startswith("rule:"):
                out.append(f"{gname}, {describe_rule(model, group, what[5:])}")
            else:
                out.append(f"{gname} ({what})")
        elif kind == "ag":
            group, _, what = rest.partition(":")
            out.append(f"address group {model.name(keys.ADDRESS_GROUPS, group)} ({what})")
        elif kind == "chassis":
            out.append("chassis " + rest)
        elif kind == "pipeline":
            out.append("pipeline default (" + rest + ")")
        else:
            out.append(part)
    return out


def changes(before: dict, after: dict) -> list[str]:
    """``field: old → new`` for the shown fields a chassis rewrote."""
    return [f"{k}: {before.get(k)} → {after.get(k)}" for k in SHOWN
            if k in after and before.get(k) != after.get(k)]


# --- the trace ------------------------------------------------------------------------

def trace(fabric: Fabric, src_ref: str, probe: Probe) -> Report:
    """Send ``probe`` from port ``src_ref`` and report its path (module doc)."""
    chassis, pkt = packet_from(fabric, src_ref, probe)
    return report(fabric, src_ref, chassis, pkt, fabric.send(chassis, pkt))


def report(fabric: Fabric, source: str, chassis: str, pkt: dict, trip: Trip) -> Report:
    """A trip told for people (and JSON)."""
    model = fabric.model
    out = Report(source=source, chassis=chassis, packet=dict(pkt), trip=trip)
    for here, arrived, result in trip.visits:
        for step in result.steps:
            flow = step.flow
            if flow is None:
                out.stages.append(Stage(here, step.stage, "no flow matched: drop", []))
                continue
            acts = [str(a) for a in flow.actions] + ([f"goto:{flow.goto}"] if flow.goto
                                                     else [])
            named = objects_of(model, flow.cookie)
            for part in step.via:     # a conjunction: its dimensions name the rule
                named += [o for o in objects_of(model, part.cookie) if o not in named]
            out.stages.append(Stage(here, step.stage, ",".join(acts) or "drop", named,
                                    flow.note))
        for port, sent in result.outputs:
            kind, what = fabric.ofports(here).name_of(port)
            label = {"vif": "port " + model.name(keys.PORTS, what),
                     "tunnel": f"tunnel to chassis {what} (VNI {sent.get('tunnel_id')})",
                     "patch": f"physical network {what}"}.get(kind, f"OpenFlow port {what}")
            out.hops.append({"chassis": here, "kind": kind, "to": what, "label": label,
                             "rewrites": changes(arrived, sent)})
        for reason, sent in result.controller:
            out.hops.append({"chassis": here, "kind": "controller", "to": reason,
                             "label": f"the agent of {here} ({reason})",
                             "rewrites": changes(arrived, sent)})
    ends = trip.ends
    out.delivered = sorted(trip.delivered())
    if not ends:
        last = next(((c, r) for c, _, r in reversed(trip.visits) if r.steps), None)
        out.verdict = "dropped" + (": " + drop_reason(model, *last) if last else "")
    else:
        out.verdict = "; ".join(h["label"] for h in out.hops if h["kind"] != "tunnel")
        out.verdict = ("delivered to " if out.delivered else "leaves to ") + out.verdict
    return out


def drop_reason(model: Model, chassis: str, result) -> str:
    """Why a chassis dropped a packet: its last step."""
    step = result.steps[-1]
    if step.flow is None:
        return f"no flow matched in {step.stage} on {chassis}"
    objs = objects_of(model, step.flow.cookie)
    note = f" ({step.flow.note})" if step.flow.note else ""
    return f"{step.stage} on {chassis}{note}" + (f", by {'; '.join(objs)}" if objs else "")


def render(report: Report, console) -> None:
    """Print a report with rich."""
    from rich.table import Table
    pkt = report.packet
    l4 = next((f"{p} {pkt[p + '_src']} → {pkt[p + '_dst']}" for p in ("tcp", "udp")
               if p + "_src" in pkt), f"icmp type {pkt.get('icmpv4_type')}")
    console.print(f"[bold]{report.source}[/] on {report.chassis}: {pkt['ipv4_src']} → "
                  f"{pkt['ipv4_dst']} {l4} (to {pkt['eth_dst']})")
    table = Table(show_lines=False)
    for col in ("chassis", "stage", "action", "decided by"):
        table.add_column(col, overflow="fold")
    for s in report.stages:
        table.add_row(s.chassis, s.stage, s.action + (f" [dim]({s.note})" if s.note else ""),
                      "\n".join(s.objects))
    console.print(table)
    for hop in report.hops:
        rewrites = f"  [yellow]{', '.join(hop['rewrites'])}" if hop["rewrites"] else ""
        console.print(f"  {hop['chassis']} → {hop['label']}{rewrites}")
    colour = "green" if not report.verdict.startswith("dropped") else "red"
    console.print(f"[bold {colour}]{report.verdict}")
