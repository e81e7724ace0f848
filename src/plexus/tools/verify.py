"""``plexus verify``: properties of the compiled pipelines of every chassis, checked
against what the model says, over classes of ports and of headers rather than random
packets. Each finding comes with the ``plexus trace`` command that shows it.

- **isolation**: from one port of each class (chassis, network, project), unicast to
  one port of every network its chassis' view can address — by the
  destination's MAC and by the source subnet's gateway — and a broadcast: it may reach
  only ports of its own network (shared and RBAC-shared networks included) or of a
  network its network shares a router with. A compiler can only send a packet where
  the chassis' view knows, so the view's ports cover every reachable destination.
- **anti-spoofing**: from every port with port security, an IPv4 packet with a MAC it
  does not own, one with an address it does not own (nor lists in its allowed-address
  pairs) and an ARP claiming that address: none may leave its chassis.
- **security groups**: for one port of each class (chassis, network, groups), the
  headers are partitioned by every boundary the port's rules draw (protocols, port
  ranges, ICMP types and codes, remote prefixes and remote groups' member addresses);
  one packet per class, in each direction, must pass the ACL stage exactly when a rule
  says so (a new connection; ingress as from a tunnel, from l2_lookup on).
- **SNAT**: from one port of each class (chassis, network) behind a SNAT router, and
  from each port with a floating IP, a packet to the internet must leave on a
  provider network with the router's gateway address or the port's floating IP as
  source, never a tenant address.

Cost: the ports (a few packets each) plus, per class, the destinations its chassis'
view holds and the header classes of its rules; each packet is evaluated on the
chassis it visits, each stage's lookup worked out once per value of what the stage's
flows match (``plexus.tools.fabric.LazyPipeline.resolve``). Only the representatives'
chassis are compiled, each once."""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass, field

from plexus.model import keys
from plexus.model.objects import ADDRESS_GROUP
from plexus.pipeline.flows import ovs_field
from plexus.pipeline.registry import FLAG_FROM_TUNNEL, STAGES
from plexus.tools.conntrack import Conntrack
from plexus.tools.fabric import Fabric
from plexus.tools.trace import BROADCAST, Probe, first_ipv4, gateway_mac

INTERNET = "192.0.2.80"         # a destination beyond every router's default route
OTHER_PROTO = 47                # GRE: a protocol no rule names (unless one does)
FAKE_MAC = "02:00:5e:00:53:99"
STAGE_INDEX = {s.name: i for i, s in enumerate(STAGES)}
CHECKS = ("isolation", "anti-spoofing", "security-groups", "snat")


@dataclass
class Finding:
    """One property that does not hold, and how to see it."""

    check: str
    message: str
    command: str

    def as_dict(self) -> dict:
        return {"check": self.check, "message": self.message, "command": self.command}


@dataclass
class Result:
    """Findings, and how much was checked."""

    findings: list[Finding] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def as_dict(self) -> dict:
        return {"ok": not self.findings, "counts": self.counts,
                "findings": [f.as_dict() for f in self.findings]}


def is_vm(port) -> bool:
    """A port a workload sends from (not a router's, DHCP's or floating IP's)."""
    return bool(port.chassis) and not port.device_owner.startswith("network:")


def verify(fabric: Fabric, checks=CHECKS) -> Result:
    """Run the checks over every port of the model: concretely on one representative of
    each class, symbolically on the others (module doc); a class whose representative
    has a finding is checked concretely port by port, so every affected port is named."""
    result = Result()
    model = fabric.model
    ports = []
    for chassis in model.chassis_names():
        bound = model.catalog.ports_by_chassis.of(chassis)
        ports += [p for p in model.catalog.each(keys.PORTS, sorted(bound)) if is_vm(p)
                  and p.admin_up and first_ipv4(p)]
    classes: dict[tuple, list] = {}
    for p in ports:
        classes.setdefault(port_class(fabric, p), []).append(p)
    result.count("ports", len(ports))
    result.count("port classes", len(classes))
    chosen = choose_representatives(classes)
    fabric.__dict__["_followed"] = {rep.chassis for rep, _ in chosen}
    done: dict[str, set] = {c: set() for c in checks}      # check → the keys checked
    for rep, members in chosen:
        before = len(result.findings)
        check_port(fabric, rep, checks, done, result)
        broken = len(result.findings) > before
        for member in members:
            if broken or not same_as(fabric, rep, member, result):
                check_port(fabric, member, checks, done, result, alone=True)
    result.count("chassis", len(fabric.pipelines))
    return result


def port_class(fabric: Fabric, port) -> tuple:
    """What the pipelines treat alike (module doc): the port's network and project, its
    groups and port security, the shape of its addresses and allowed-address pairs, its
    floating IP (each its own), the role of its chassis (gateway-capable or not)."""
    model = fabric.model
    agent = model.catalog.agent(port.chassis)
    fips = fabric.__dict__.setdefault("_fip_ports", None)
    if fips is None:
        fips = fabric.__dict__["_fip_ports"] = {
            f.port_id for f in model.catalog.objects[keys.FLOATINGIPS].values()
            if getattr(f, "port_id", None)}
    return (port.network_id, model.project(keys.PORTS, port.id), port.device_owner,
            tuple(sorted(port.security_groups)), port.port_security,
            tuple(sorted(sid for sid, _ in port.ips)),
            tuple(sorted(str(ipaddress.ip_network(ip, strict=False).prefixlen) + str(bool(m))
                         for ip, m in port.allowed_pairs)),
            port.id if port.id in fips else "", bool(agent is not None and agent.gateway))


def choose_representatives(classes: dict[tuple, list]) -> list[tuple]:
    """(representative, the other members) per class: the representatives gathered on as
    few chassis as possible (each chassis compiled is the main cost), greedily: the
    chassis holding the most classes first."""
    by_chassis: dict[str, set] = {}
    for key, members in classes.items():
        for p in members:
            by_chassis.setdefault(p.chassis, set()).add(key)
    left, out = set(classes), []
    while left:
        chassis = max(sorted(by_chassis), key=lambda c: len(by_chassis[c] & left))
        for key in sorted(by_chassis[chassis] & left, key=str):
            members = classes[key]
            rep = next(p for p in members if p.chassis == chassis)
            out.append((rep, [p for p in members if p is not rep]))
            left.discard(key)
    return out


def check_port(fabric: Fabric, port, checks, done: dict, result: Result,
               alone: bool = False) -> None:
    """The concrete checks from one port (isolation, groups and SNAT once per key of
    theirs, unless ``alone``: a port checked for itself)."""
    model = fabric.model
    result.count("ports checked concretely")

    def first(check: str, key) -> bool:
        if check not in checks:
            return False
        if alone:
            return True
        if key in done[check]:
            return False
        done[check].add(key)
        return True
    if "anti-spoofing" in checks:
        check_spoofing(fabric, port, result)
    if first("isolation", (port.chassis, port.network_id, model.project(keys.PORTS, port.id))):
        check_isolation(fabric, port, result)
    if first("security-groups", (port.chassis, port.network_id, port.security_groups,
                                 port.port_security)):
        check_groups(fabric, port, result)
    if "snat" in checks:
        fips = {f.port_id: f for f in fabric.view(port.chassis).floating_ips.values()}
        if first("snat", (port.chassis, port.network_id, port.id if port.id in fips else "")):
            check_snat(fabric, port, fips.get(port.id), result)


# --- the other members of a class: their own part, symbolically ---------------------------

def same_as(fabric: Fabric, rep, port, result: Result) -> bool:
    """Whether ``port`` is ``rep`` with other addresses: its port security flows (what
    the compiler makes of its MAC, addresses, pairs and key) are the representative's,
    as compiled on the representative's chassis, with the port's own values in place of
    the representative's; its VIF is on its chassis; no other port of its network holds
    its MAC or a fixed IP of it. False sends the port to the concrete checks."""
    result.count("ports checked symbolically")
    if port.id not in fabric.ofports(port.chassis).vifs:
        return False
    if not unique_addresses(fabric, port):
        return False
    view = fabric.view(rep.chassis)
    net = view.networks.get(port.network_id)
    if net is None or rep.id not in view.ports:
        return False
    mine = port_security_flows(fabric, view, net, port)
    return abstract(mine, port) == rep_abstract(fabric, rep)


def rep_abstract(fabric: Fabric, rep) -> Counter:
    """The representative's port security flows, as compiled on its chassis, abstracted
    (once per representative: cached on the fabric, with the stage's flows by cookie)."""
    cache = fabric.__dict__.setdefault("_rep_abstract", {})
    if rep.id not in cache:
        by_cookie = fabric.__dict__.setdefault("_ps_by_cookie", {})
        if rep.chassis not in by_cookie:
            table: dict[str, list] = {}
            for f in fabric.pipeline(rep.chassis).stage_flows("port_security"):
                table.setdefault(f.cookie, []).append(f)
            by_cookie[rep.chassis] = table
        cache[rep.id] = abstract(by_cookie[rep.chassis].get(f"port:{rep.id}", []), rep)
    return cache[rep.id]


def port_security_flows(fabric: Fabric, view, net, port) -> list:
    """The port security flows the compiler makes for ``port`` (its network's context
    from ``view``: DHCP served, VIPs several ports share)."""
    from plexus.pipeline.stages import port_security as ps
    from plexus.pipeline.stages.dhcp import dhcp_subnets
    from plexus.pipeline.stages.l3_neighbor import shared_vips
    shared = shared_vips(view.ports_on(port.network_id)) if (
        port.port_security and port.allowed_pairs) else ()
    return ps.port_flows(net, port, dhcp_served=bool(dhcp_subnets(view, port)),
                         shared=shared)


def abstract(flows, port) -> Counter:
    """Flows with the port's own values (key, MAC, source addresses, cookie) replaced by
    placeholders: what two ports of one class must have alike."""
    from plexus.pipeline.stages.common import link_local, sources, sources6
    names = {port.mac: "<mac>", link_local(port.mac): "<link-local>"}
    for i, (mac, address) in enumerate(sources(port)):
        names.setdefault(mac, f"<mac{i}>")
        names.setdefault(address, f"<src{i}>")
    for i, (mac, address) in enumerate(sources6(port)):      # IPv6: by role, as IPv4
        names.setdefault(mac, f"<mac6-{i}>")
        names.setdefault(link_local(mac), f"<link-local6-{i}>")
        names.setdefault(address, f"<src6-{i}>")
    key = port.key
    out = []
    for f in flows:
        match = []
        for k, v in f.match:
            if isinstance(v, tuple):
                match.append((k, v))
            elif k == "inport" and v == key:
                match.append((k, "<key>"))
            else:
                match.append((k, names.get(v, v)))
        match = tuple(match)
        cookie = "<cookie>" if f.cookie == f"port:{port.id}" else f.cookie
        out.append((f.stage, f.priority, match, f.actions, f.goto, cookie))
    return Counter(out)


def unique_addresses(fabric: Fabric, port) -> bool:
    """No other port of the port's network has its MAC or one of its fixed IPs."""
    cache = fabric.__dict__.setdefault("_addresses", {})
    if port.network_id not in cache:
        cat = fabric.model.catalog
        seen: dict = {}
        for p in cat.each(keys.PORTS, sorted(cat.ports_by_network.of(port.network_id))):
            for value in (p.mac, *p.addresses()):
                seen[value] = seen.get(value, 0) + 1
        cache[port.network_id] = seen
    seen = cache[port.network_id]
    return all(seen.get(v, 0) == 1 for v in (port.mac, *port.addresses()))


def label(fabric: Fabric, port_id: str) -> str:
    """What to call a port in a finding and a trace command (its name if unique)."""
    name = fabric.model.wire(keys.PORTS, port_id).get("name")
    if name and sum(o.get("name") == name for o in
                    fabric.model.raw.get(keys.PORTS, {}).values()) == 1:
        return name
    return port_id


def send(fabric: Fabric, port, pkt: dict, result: Result, follow=None):
    """Evaluate a packet from a port's VIF (fresh connection trackers; ``follow``: the
    chassis to evaluate it on beyond its own, default all it reaches)."""
    result.count("packets")
    return fabric.send(port.chassis, {"in_port": fabric.ofports(port.chassis).vifs[port.id],
                                      **pkt}, fresh=True, follow=follow)


# --- isolation --------------------------------------------------------------------------

def connected(fabric: Fabric, a: str, b: str) -> bool:
    """Whether networks ``a`` and ``b`` are the same or share a router."""
    cat = fabric.model.catalog
    return a == b or bool(cat.routers_on(a) & cat.routers_on(b))


def check_isolation(fabric: Fabric, src, result: Result) -> None:
    """Unicast to every (network, chassis) of the view, and a broadcast (module doc)."""
    model = fabric.model
    reps = {net: next(p for p in two if p.id != src.id)
            for net, two in destinations(fabric, src.chassis).items()
            if any(p.id != src.id for p in two)}
    gw = gateway_mac(model, src)
    base = {"eth_src": src.mac, "eth_type": 0x0800, "ipv4_src": first_ipv4(src),
            "ip_proto": 6, "tcp_src": 40000, "tcp_dst": 22, "tcp_flags": 0x02}
    tries = [(dst, {"eth_dst": mac, "ipv4_dst": first_ipv4(dst)})
             for dst in sorted(reps.values(), key=lambda p: p.id)
             for mac in ({dst.mac, gw} - {None})]
    tries.append((None, {"eth_dst": BROADCAST, "ipv4_dst": "255.255.255.255", "ip_proto": 17,
                         "udp_src": 5000, "udp_dst": 5000}))
    for dst, fields in tries:
        pkt = {**base, **fields}
        if "udp_src" in fields:
            for k in ("tcp_src", "tcp_dst", "tcp_flags"):
                pkt.pop(k)
        followed = fabric.__dict__.get("_followed")
        trip = send(fabric, src, pkt, result,
                    follow=None if followed is None else followed.__contains__)
        result.count("isolation packets")
        if not trip.delivered() and not trip.unfollowed():
            continue                # nothing reached: nothing to name
        probe = (Probe("udp", "255.255.255.255", sport=5000, dport=5000) if dst is None
                 else Probe("tcp", label(fabric, dst.id), dport=22))
        how = "a broadcast" if dst is None else (
            "by its MAC" if fields["eth_dst"] == dst.mac else "through the gateway")
        for reached in sorted(trip.delivered()):
            other = model.catalog.get(keys.PORTS, reached)
            if other is None or connected(fabric, src.network_id, other.network_id):
                continue
            result.findings.append(Finding(
                "isolation",
                f"port {label(fabric, src.id)} (project {model.project(keys.PORTS, src.id)},"
                f" network {src.network_id}) reaches port {label(fabric, reached)} "
                f"(project {model.project(keys.PORTS, reached)}, network "
                f"{other.network_id}) {how}, with no router or shared network between them",
                probe.command(label(fabric, src.id))))
        # a chassis not evaluated (no representative there) delivers a tunnelled packet
        # into the network its VNI names, as the representatives' chassis were shown to
        for hop in trip.unfollowed():
            net = network_of_key(fabric, hop.packet.get("tunnel_id"))
            if net is not None and connected(fabric, src.network_id, net):
                continue
            result.findings.append(Finding(
                "isolation",
                f"port {label(fabric, src.id)} (project {model.project(keys.PORTS, src.id)},"
                f" network {src.network_id}) sends {how if dst is None else 'a packet ' + how}"
                f" into the tunnel to {hop.what} with VNI {hop.packet.get('tunnel_id')} "
                f"(network {net or 'unknown'}), with no router or shared network between "
                "them", probe.command(label(fabric, src.id))))


def destinations(fabric: Fabric, chassis: str) -> dict[str, list]:
    """Per network of the chassis' view, its first two ports a workload sends from (in
    the view's order): the isolation destinations of any source there (the first that
    is not the source). Once per chassis: cached on the fabric."""
    cache = fabric.__dict__.setdefault("_destinations", {})
    if chassis not in cache:
        found: dict[str, list] = {}
        for p in fabric.view(chassis).ports.values():
            two = found.setdefault(p.network_id, [])
            if len(two) < 2 and is_vm(p) and first_ipv4(p):
                two.append(p)
        cache[chassis] = {net: two for net, two in found.items() if two}
    return cache[chassis]


def network_of_key(fabric: Fabric, key) -> str | None:
    """The network whose datapath key (VNI) is ``key``."""
    cache = fabric.__dict__.get("_by_key")
    if cache is None:
        cache = fabric.__dict__["_by_key"] = {
            n.key: n.id for n in fabric.model.catalog.objects[keys.NETWORKS].values()}
    return cache.get(key)


# --- anti-spoofing -----------------------------------------------------------------------

def owned(port, ip: str) -> bool:
    """Whether the port may send from ``ip``: a fixed IP or inside an address pair."""
    if ip in port.addresses():
        return True
    addr = ipaddress.ip_address(ip)
    for pair, _ in port.allowed_pairs:
        try:
            if addr in ipaddress.ip_network(pair, strict=False):
                return True
        except ValueError:
            continue
    return False


def foreign_address(port) -> str:
    """An address in the port's subnet that the port does not own."""
    net = next((ipaddress.ip_network(f"{ip}/24", strict=False) for ip in port.addresses()
                if ":" not in ip), ipaddress.ip_network("10.0.0.0/24"))
    for host in list(net.hosts())[::-1]:
        if not owned(port, str(host)):
            return str(host)
    return "192.0.2.1"


def check_spoofing(fabric: Fabric, port, result: Result) -> None:
    """Three spoofed packets from a port with port security: none may leave."""
    if not port.port_security:
        return
    ip = first_ipv4(port)
    other = foreign_address(port)
    macs = {p.mac for p in [port]} | {m for _, m in port.allowed_pairs}
    fake_mac = FAKE_MAC if FAKE_MAC not in macs else "02:00:5e:00:53:98"
    ip_pkt = {"eth_type": 0x0800, "eth_dst": BROADCAST, "ipv4_dst": "255.255.255.255",
              "ip_proto": 17, "udp_src": 5000, "udp_dst": 5000}
    cases = [
        ("a MAC it does not own", {**ip_pkt, "eth_src": fake_mac, "ipv4_src": ip}),
        (f"address {other}, which it does not own", {**ip_pkt, "eth_src": port.mac,
                                                     "ipv4_src": other}),
        (f"an ARP claiming {other}", {
            "eth_type": 0x0806, "eth_src": port.mac, "eth_dst": BROADCAST, "arp_op": 1,
            "arp_sha": port.mac, "arp_spa": other, "arp_tha": "00:00:00:00:00:00",
            "arp_tpa": ip}),
    ]
    for what, pkt in cases:
        trip = send(fabric, port, pkt, result)
        result.count("spoofing packets")
        left = [h for h in trip.hops if h.kind != "controller"]
        if left:
            where = ", ".join(sorted({f"{h.kind} {h.what}" for h in left}))
            result.findings.append(Finding(
                "anti-spoofing", f"port {label(fabric, port.id)} sends with {what}: it "
                f"leaves by {where}",
                f"plexus trace {label(fabric, port.id)} --udp --to 255.255.255.255 "
                f"--dport 5000   # with {what}"))


# --- security groups ----------------------------------------------------------------------

def rules_of(fabric: Fabric, port, direction: str) -> list:
    """The IPv4 rules of a port's groups in one direction."""
    cat = fabric.model.catalog
    out = []
    for gid in port.security_groups:
        group = cat.get(keys.GROUPS, gid)
        if group is not None:
            out += [r for r in group.rules if r.direction == direction
                    and r.ethertype == "IPv4"]
    return out


def members(fabric: Fabric, group: str) -> frozenset[str]:
    """The addresses of a remote group: its ports' fixed IPs and address pairs; of a
    remote address group (``address-group:<id>``), its IPv4 CIDRs (once per
    verification: cached on the fabric)."""
    cache = fabric.__dict__.setdefault("_members", {})
    if group not in cache and group.startswith(ADDRESS_GROUP):
        found = fabric.model.catalog.get(keys.ADDRESS_GROUPS, group[len(ADDRESS_GROUP):])
        cache[group] = frozenset(a for a in (found.addresses if found else ())
                                 if ":" not in a)
    if group not in cache:
        cat = fabric.model.catalog
        out: set[str] = set()
        for p in cat.each(keys.PORTS, sorted(cat.ports_by_group.of(group))):
            out |= {a for a in p.member_addresses() if ":" not in a}
        cache[group] = frozenset(out)
    return cache[group]


def in_any(ip: str, cidrs) -> bool:
    """Whether ``ip`` is one of ``cidrs`` (addresses or networks)."""
    if ip in cidrs:
        return True
    addr = ipaddress.ip_address(ip)
    return any("/" in c and addr in ipaddress.ip_network(c, strict=False) for c in cidrs)


def rule_allows(fabric: Fabric, rule, proto: int, l4: int | None, code: int | None,
                peer: str) -> bool:
    """What a rule says about a packet (Neutron's semantics, not the compiler's)."""
    if rule.protocol is not None and rule.protocol != proto:
        return False
    if rule.protocol in (6, 17, 132) and rule.port_min and rule.port_max:
        if not rule.port_min <= l4 <= rule.port_max:
            return False
    if rule.protocol == 1 and rule.port_min is not None:
        if l4 != rule.port_min or (rule.port_max is not None and code != rule.port_max):
            return False
    if rule.remote_prefix and not in_any(peer, [rule.remote_prefix]):
        return False
    if rule.remote and not in_any(peer, members(fabric, rule.remote)):
        return False
    return True


def address_classes(fabric: Fabric, rules, own: str) -> list[str]:
    """One address per class of remote addresses the rules tell apart: the boundaries of
    their remote prefixes and remote groups' member addresses cut the address space into
    intervals; intervals that every rule treats alike (inside the same prefixes and
    groups) are one class. The port's own address is never one (the classes' points are
    worked out once per set of remotes: cached on the fabric)."""
    cache = fabric.__dict__.setdefault("_address_points", {})
    remotes = tuple((rule.remote_prefix, rule.remote) for rule in rules)
    if remotes not in cache:
        cache[remotes] = address_points(fabric, remotes)
    mine = int(ipaddress.IPv4Address(own))
    classes: dict[tuple, str] = {}
    for p, signature in cache[remotes]:
        if p != mine:
            classes.setdefault(signature, str(ipaddress.IPv4Address(p)))
    return list(classes.values())


def address_points(fabric: Fabric, remotes) -> list[tuple[int, tuple]]:
    """Every boundary point of the remotes' (prefix, remote group) address sets, in
    order, with which of them it is inside."""
    peers = []                          # per rule: (addresses, [(first, last)])
    points = {0}
    for prefix, remote in remotes:
        cidrs = ([prefix] if prefix else []) + (
            sorted(members(fabric, remote)) if remote else [])
        hosts, ranges = set(), []
        for c in cidrs:
            net = ipaddress.ip_network(c, strict=False)
            lo, hi = int(net.network_address), int(net.broadcast_address)
            points |= {lo, hi + 1}
            if lo == hi:
                hosts.add(lo)
            else:
                ranges.append((lo, hi))
        peers.append((hosts, ranges))
    return [(p, tuple(p in hosts or any(lo <= p <= hi for lo, hi in ranges)
                      for hosts, ranges in peers))
            for p in sorted(points) if p < 2 ** 32]


def header_classes(rules) -> list[tuple[int, int | None, int | None]]:
    """(protocol, port or ICMP type, ICMP code): one per class the rules draw."""
    out = []
    protos = {r.protocol for r in rules if r.protocol is not None} | {6, 17, 1, OTHER_PROTO}
    for proto in sorted(protos):
        if proto in (6, 17, 132):
            points = {1}
            for r in rules:
                if r.protocol == proto and r.port_min and r.port_max:
                    points |= {r.port_min, r.port_max + 1}
            out += [(proto, p, None) for p in sorted(points) if p <= 65535]
        elif proto == 1:
            types = {r.port_min for r in rules if r.protocol == 1 and r.port_min is not None}
            unnamed = next(t for t in (8, 13, 15, 17, 200) if t not in types)
            for t in sorted(types | {unnamed}):
                codes = {r.port_max for r in rules if r.protocol == 1 and r.port_min == t
                         and r.port_max is not None}
                unused = next(c for c in range(0, 256) if c not in codes)
                out += [(1, t, c) for c in sorted(codes | {unused})]
        else:
            out.append((proto, None, None))
    return out


def l4_fields(proto: int, l4: int | None, code: int | None, sport: int = 40000) -> dict:
    if proto == 6:
        return {"tcp_src": sport, "tcp_dst": l4, "tcp_flags": 0x02}
    if proto == 17:
        return {"udp_src": sport, "udp_dst": l4}
    if proto == 132:
        return {"sctp_src": sport, "sctp_dst": l4}
    if proto == 1:
        return {"icmpv4_type": l4, "icmpv4_code": code}
    return {}


def passed(steps, acl_stage: str) -> bool:
    """Whether evaluation went beyond the ACL stage."""
    after = STAGE_INDEX[acl_stage]
    return any(STAGE_INDEX.get(s.stage, -1) > after for s in steps)


def check_groups(fabric: Fabric, port, result: Result) -> None:
    """Every header class, both directions, against the rules (module doc)."""
    pipeline = fabric.pipeline(port.chassis)
    net = fabric.model.catalog.get(keys.NETWORKS, port.network_id)
    ip = first_ipv4(port)
    peer_mac = gateway_mac(fabric.model, port) or BROADCAST
    for direction, stage in (("ingress", "ingress_acl"), ("egress", "egress_acl")):
        rules = rules_of(fabric, port, direction)
        for peer in address_classes(fabric, rules, ip):
            for proto, l4, code in header_classes(rules):
                want = (not port.port_security) or any(
                    rule_allows(fabric, r, proto, l4, code, peer) for r in rules)
                pipeline.conntrack = Conntrack()
                result.count("header classes")
                if direction == "ingress":
                    pkt = {"eth_src": "02:00:5e:00:53:01", "eth_dst": port.mac,
                           "eth_type": 0x0800, "ipv4_src": peer, "ipv4_dst": ip,
                           "ip_proto": proto, "in_port": 0, ovs_field("net"): net.key,
                           ovs_field("inport"): 0, ovs_field("flags"): FLAG_FROM_TUNNEL,
                           **l4_fields(proto, l4, code)}
                    got = passed(pipeline.run(pkt, stage="l2_lookup").steps, stage)
                else:
                    pkt = {"in_port": fabric.ofports(port.chassis).vifs[port.id],
                           "eth_src": port.mac, "eth_dst": peer_mac, "eth_type": 0x0800,
                           "ipv4_src": ip, "ipv4_dst": peer, "ip_proto": proto,
                           **l4_fields(proto, l4, code)}
                    got = passed(pipeline.run(pkt).steps, stage)
                if got != want:
                    result.findings.append(group_finding(fabric, port, direction, peer,
                                                         proto, l4, code, got))


def group_finding(fabric, port, direction, peer, proto, l4, code, got) -> Finding:
    name = {6: "tcp", 17: "udp", 1: "icmp"}.get(proto)
    what = f"{name or f'protocol {proto}'}" + (
        f" type {l4} code {code}" if proto == 1 else f" port {l4}" if l4 else "")
    way = "from" if direction == "ingress" else "to"
    verb = "allow" if got else "deny"
    src = label(fabric, port.id)
    if direction == "egress" and name:
        probe = Probe(name, peer, dport=l4 if proto != 1 else None,
                      icmp_type=l4 if proto == 1 else 8, icmp_code=code or 0)
        command = probe.command(src)
    else:
        command = (f"plexus trace <a port with address {peer}> --{name or 'icmp'} --to {src}"
                   + (f" --dport {l4}" if name in ("tcp", "udp") else ""))
    return Finding("security-groups",
                   f"{direction} ACL of port {src}: the flows {verb} {what} {way} {peer}, "
                   f"its rules {'do not' if got else 'do'}", command)


# --- SNAT ----------------------------------------------------------------------------------

def tenant_addresses(fabric: Fabric, ip: str) -> bool:
    """Whether ``ip`` is inside a subnet of a non-external network."""
    cat = fabric.model.catalog
    addr = ipaddress.ip_address(ip)
    for subnet in cat.objects[keys.SUBNETS].values():
        net = cat.get(keys.NETWORKS, subnet.network_id)
        if net is not None and not net.external and subnet.ip_version == 4 and \
                addr in ipaddress.ip_network(subnet.cidr):
            return True
    return False


def check_snat(fabric: Fabric, port, fip, result: Result) -> None:
    """A packet to the internet leaves NATed (module doc)."""
    view = fabric.view(port.chassis)
    routers = [r for r in view.routers.values() if r.enable_snat and r.gateway and any(
        view.ports[i].network_id == port.network_id for i in r.interfaces if i in view.ports)]
    if not routers or not gateway_mac(fabric.model, port):
        return
    allowed = {first_ipv4(view.ports[r.gateway]) for r in routers} | (
        {fip.address} if fip else set())
    pkt = {"eth_src": port.mac, "eth_dst": gateway_mac(fabric.model, port),
           "eth_type": 0x0800, "ipv4_src": first_ipv4(port), "ipv4_dst": INTERNET,
           "ip_proto": 6, **l4_fields(6, 443, None)}
    trip = send(fabric, port, pkt, result)
    result.count("snat packets")
    for hop in trip.hops:
        if hop.kind != "patch":
            continue
        source = hop.packet.get("ipv4_src")
        if source not in allowed:
            kind = " (a tenant address)" if tenant_addresses(fabric, source) else ""
            result.findings.append(Finding(
                "snat", f"port {label(fabric, port.id)}: a packet to {INTERNET} leaves on "
                f"{hop.what} from {hop.chassis} with source {source}{kind}, not "
                f"{' or '.join(sorted(a for a in allowed if a))}",
                Probe("tcp", INTERNET, dport=443).command(label(fabric, port.id))))


def render(result: Result, console, limit: int = 20) -> None:
    """Print a verification with rich."""
    counts = ", ".join(f"{v} {k}" for k, v in result.counts.items())
    console.print(f"checked {counts}")
    if not result.findings:
        console.print("[bold green]no finding: isolation, anti-spoofing, security groups "
                      "and SNAT hold")
        return
    for f in result.findings[:limit]:
        console.print(f"[red]{f.check}[/]: {f.message}\n    {f.command}")
    more = len(result.findings) - limit
    if more > 0:
        console.print(f"... and {more} more")
    console.print(f"[bold red]{len(result.findings)} finding(s)")
