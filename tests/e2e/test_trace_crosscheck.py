"""The one evaluator against Open vSwitch itself (STYLE.md, point 4). Compiled reference
views are installed on a real br-int — a lab chassis without an agent, through the
agent's own OpenFlow channel and flow diff — and packets are traced in both: the
evaluator, and ``ovs-appctl ofproto/trace`` given (``--ct-next``) the connection states
the evaluator's conntrack found. Both must send the packet out of the same ports, to
the controller alike, or drop it. Reading the flows back must give an empty diff: what
a restarted agent sees (conntrack, conjunction and ct_clear actions; ct_state, conj_id
and ct_mark matches as OVS reports them).

One lab serves the module; it is torn down by its inventory, failed or not."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

import pytest

from plexus.agent import flowdiff
from plexus.agent.ovs.openflow import Channel
from plexus.lab import Lab, LabSpec
from plexus.lab.ovs import Ovs
from plexus.pipeline.compile import compile_view
from plexus.pipeline.flows import CT_STATE_BITS, Flow
from plexus.tools.conntrack import ACK, SYN, Conntrack
from plexus.tools.evaluator import Pipeline
from tests.e2e.conftest import require_lab_host, unique_name
from tests.golden import acl_reference as acl
from tests.golden import reference as ref

pytestmark = pytest.mark.e2e

BROADCAST = "ff:ff:ff:ff:ff:ff"
VIFS = range(1, 7)                      # every VIF ofport of both reference views
TUNNELS = {100: "198.18.0.12", 101: "198.18.0.13", 102: "198.18.0.14"}


# --- the bridge ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bridge(tmp_path_factory):
    """br-int of a one-chassis lab without an agent, with a port at every ofport the
    reference views use (VIFs as internal ports, tunnels as VXLAN ports)."""
    require_lab_host()
    lab = Lab(LabSpec(name=unique_name(), chassis=1, gateways=0, agents=False),
              tmp_path_factory.mktemp("trace"))
    lab.up()
    try:
        ovs = lab.ovs("c1")
        args: list[str] = []
        for ofport in VIFS:
            args += port_args(lab, f"vif{ofport}", ofport, "type=internal")
        for ofport, remote in TUNNELS.items():
            args += port_args(lab, f"tun{ofport}", ofport, "type=vxlan", "options:key=flow",
                              f"options:remote_ip={remote}", "options:local_ip=198.18.0.11")
        ovs.vsctl(*args)
        have = {int(n) for n in ovs.vsctl("--bare", "--columns=ofport", "find", "Interface",
                                           "external_ids:plexus-trace=true").split()}
        assert have == set(VIFS) | set(TUNNELS), have
        yield ovs
    finally:
        errors = lab.down()
        assert not errors, errors


def port_args(lab: Lab, name: str, ofport: int, *settings: str) -> list[str]:
    """ovs-vsctl arguments adding a port at ``ofport`` (recorded for teardown first)."""
    lab.inventory.record("ovs-port", group="trace", chassis="c1", bridge="br-int", name=name)
    return ["--", "add-port", "br-int", name, "--", "set", "Interface", name, *settings,
            f"ofport_request={ofport}", "external_ids:plexus-trace=true"]


def install(ovs: Ovs, flows: list[Flow]) -> None:
    """Make br-int hold exactly ``flows``, as the agent does (the meters they name first,
    then the difference as one bundle), then read them back: the diff must be empty (a
    restarted agent changes nothing)."""
    async def go():
        channel = await Channel(ovs.mgmt("br-int")).connect()
        try:
            want = flowdiff.desired_entries(flows)
            have = {e.key: e for e in map(flowdiff.of_stats, await channel.flow_stats())}
            meters = {m.id: m for flow in flows for m in flow.meters()}
            held = {c.meter_id: flowdiff.of_meter_config(c)
                    for c in await channel.meter_configs()}
            before, after = flowdiff.meter_changes(meters, held, set(meters) | set(held))
            await channel.send_checked(before)
            await channel.bundle(flowdiff.diff(want, have).messages())
            await channel.send_checked(after)
            have = {e.key: e for e in map(flowdiff.of_stats, await channel.flow_stats())}
            again = flowdiff.diff(want, have)
            assert not again, f"as read back from OVS, the flows differ: {again.summary()}" \
                              f"\n{[e for e, _ in again.modifies][:3]}"
        finally:
            channel.close()
    asyncio.run(go())


# --- both sides --------------------------------------------------------------------------

class Recording(Conntrack):
    """The evaluator's conntrack, remembering what each ``ct(table=…)`` told a packet."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, int, int]] = []

    def lookup(self, zone: int, pkt: dict) -> tuple[int, int, int]:
        found = super().lookup(zone, pkt)
        self.seen.append(found)
        return found


@dataclass(frozen=True)
class Verdict:
    """Where a packet went: OpenFlow ports in order, and whether the controller got it."""

    ports: tuple[int, ...]
    controller: bool

    def __str__(self) -> str:
        words = (["controller"] if self.controller else []) + [",".join(map(str, self.ports))]
        return " ".join(w for w in words if w) or "drop"


OVS_NAMES = {"tunnel_id": "tun_id", "eth_src": "dl_src", "eth_dst": "dl_dst",
             "ipv4_src": "nw_src", "ipv4_dst": "nw_dst", "icmpv4_type": "icmp_type",
             "icmpv4_code": "icmp_code"}
PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 132: "sctp"}
SKIP = {"eth_type", "ip_proto", "inner", "icmp_id"}     # said by the protocol keyword, or
                                                        # known to the evaluator only


def ovs_flow(pkt: dict) -> str:
    """The packet in ofproto/trace's flow syntax."""
    if pkt["eth_type"] == 0x0806:
        words = ["arp"]
    elif pkt["eth_type"] == 0x0800:
        proto = pkt.get("ip_proto")
        words = [PROTOCOLS[proto] if proto in PROTOCOLS else f"ip,nw_proto={proto}",
                 "nw_ttl=64"]
    else:
        words = [f"dl_type={pkt['eth_type']:#06x}"]
    for name, value in pkt.items():
        if name in SKIP:
            continue
        if name == "tcp_flags":
            value = f"{value:#05x}"
        words.append(f"{OVS_NAMES.get(name, name)}={value}")
    return ",".join(words)


def ct_flags(state: int) -> str:
    """A ct_state value in --ct-next's words (e.g. ``trk,est,rpl``)."""
    return ",".join(name for name, bit in CT_STATE_BITS.items() if state & bit)


def parse_trace(text: str) -> Verdict:
    """The OpenFlow outputs of br-int in an ofproto/trace (every recirculation included):
    ``output:N``, ``IN_PORT`` (the flow's in_port), ``controller(…)``; an output OVS
    skips (to the in_port) does not count."""
    in_port = int(re.search(r"\bin_port=(\d+)", text).group(1))
    ports, controller, bridge = [], False, None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        header = re.match(r'\s*bridge\("([^"]+)"\)', line)
        if header:
            bridge = header.group(1)
            continue
        action = line.strip()
        if bridge != "br-int":
            continue
        following = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if following.startswith(">> skipping output to input port"):
            continue
        out = re.fullmatch(r"output:(\d+)", action)
        if out:
            ports.append(int(out.group(1)))
        elif action == "IN_PORT":
            ports.append(in_port)
        elif action.startswith("controller("):
            controller = True
    return Verdict(tuple(ports), controller)


def crosscheck(ovs: Ovs, pipeline: Pipeline, pkt: dict) -> Verdict:
    """Trace ``pkt`` in the evaluator and in OVS; fail unless they agree."""
    conntrack = pipeline.conntrack
    assert isinstance(conntrack, Recording)
    conntrack.seen.clear()
    result = pipeline.run(pkt)
    ours = Verdict(tuple(p if isinstance(p, int) else pkt["in_port"] for p in result.ports),
                   bool(result.controller))
    marks = [mark for _, _, mark in conntrack.seen]
    assert not any(marks), "ofproto/trace cannot give a ct_mark after conntrack"
    argv = ["ofproto/trace", "br-int", ovs_flow(pkt)]
    for state, _, _ in conntrack.seen:
        argv += ["--ct-next", ct_flags(state)]
    text = ovs.appctl(*argv)
    theirs = parse_trace(text)
    assert ours == theirs, (f"evaluator: {ours}, OVS: {theirs} for {ovs_flow(pkt)} "
                            f"(ct {[ct_flags(s) for s, _, _ in conntrack.seen]})\n"
                            f"{result.explain()}\n--- ofproto/trace ---\n{text}")
    return ours


def check_all(ovs: Ovs, flows: list[Flow], cases: list[tuple[str, dict, str]]) -> None:
    """Install ``flows``, then crosscheck each (name, packet, expected verdict) in order,
    with one conntrack for all (later packets may be replies of earlier ones)."""
    install(ovs, flows)
    pipeline = Pipeline(flows, Recording())
    wrong = []
    for name, pkt, expected in cases:
        got = crosscheck(ovs, pipeline, pkt)
        if str(got) != expected:
            wrong.append(f"{name}: {got}, expected {expected}")
    assert not wrong, wrong


# --- packets -------------------------------------------------------------------------------

REF = {p.id: p for p in ref.PORTS}


def l2_ip(src: str, dst: str, **extra) -> dict:
    """TCP from reference port ``src`` (its VIF, if local) to port ``dst`` (ids)."""
    s, d = REF[src], REF[dst]
    return {"in_port": ref.VIF_OFPORTS.get(src), "eth_src": s.mac, "eth_dst": d.mac,
            "eth_type": 0x0800, "ipv4_src": s.addresses()[0], "ipv4_dst": d.addresses()[0],
            "ip_proto": 6, "tcp_src": 40000, "tcp_dst": 22, **extra}


def sg_packet(src: str, dst: str, proto: str = "tcp", dport: int = 80, **extra) -> dict:
    """IPv4 between ACL reference ports: from a local VIF, or from hv2's tunnel. ICMP:
    ``dport`` is the type (code 0)."""
    pkt = {"eth_src": acl.mac(src), "eth_dst": acl.mac(dst), "eth_type": 0x0800,
           "ipv4_src": acl.ip(src), "ipv4_dst": acl.ip(dst)}
    if src in acl.VIF_OFPORTS:
        pkt["in_port"] = acl.VIF_OFPORTS[src]
    else:
        pkt.update(in_port=acl.TUNNELS["hv2"], tunnel_id=acl.NET.key)
    if proto == "icmp":
        pkt.update(ip_proto=1, icmpv4_type=dport, icmpv4_code=0)
    else:
        number = {"tcp": 6, "udp": 17}[proto]
        pkt.update(ip_proto=number, **{f"{proto}_src": 40000, f"{proto}_dst": dport})
        if proto == "tcp":
            pkt["tcp_flags"] = SYN
    return {**pkt, **extra}


def answer(pkt: dict, src: str) -> dict:
    """The reply to ``pkt``, sent by ACL reference port ``src`` (TCP: SYN+ACK)."""
    out = sg_packet(src, next(p for p in acl.PORTS if acl.mac(p) == pkt["eth_src"]),
                    {1: "icmp", 6: "tcp", 17: "udp"}[pkt["ip_proto"]])
    for proto in ("tcp", "udp"):
        if f"{proto}_src" in pkt:
            out[f"{proto}_src"], out[f"{proto}_dst"] = pkt[f"{proto}_dst"], pkt[f"{proto}_src"]
    if pkt["ip_proto"] == 6:
        out["tcp_flags"] = SYN | ACK
    if pkt["ip_proto"] == 1:
        out["icmpv4_type"] = {8: 0, 13: 14}[pkt["icmpv4_type"]]
    return out


# --- the checks ----------------------------------------------------------------------------

def test_l2_features_agree(bridge):
    a = REF["a1-vm1"]
    arp = {"in_port": 1, "eth_src": a.mac, "eth_dst": BROADCAST, "eth_type": 0x0806,
           "arp_op": 1, "arp_sha": a.mac, "arp_spa": "10.0.0.11",
           "arp_tha": "00:00:00:00:00:00", "arp_tpa": "10.0.0.13"}
    dhcp = {"in_port": 1, "eth_src": a.mac, "eth_dst": BROADCAST, "eth_type": 0x0800,
            "ipv4_src": "0.0.0.0", "ipv4_dst": "255.255.255.255", "ip_proto": 17,
            "udp_src": 68, "udp_dst": 67}
    flood = {"in_port": 1, "eth_src": a.mac, "eth_dst": BROADCAST, "eth_type": 0x0800,
             "ipv4_src": "10.0.0.11", "ipv4_dst": "10.0.0.255", "ip_proto": 17,
             "udp_src": 5000, "udp_dst": 5000}
    from_hv2 = {**l2_ip("a1-vm3", "a1-vm1"), "in_port": 100, "tunnel_id": 101}
    check_all(bridge, compile_view(ref.reference_view()), [
        ("local unicast", l2_ip("a1-vm1", "a1-vm2"), "2"),
        ("remote unicast", l2_ip("a1-vm1", "a1-vm3"), "100"),
        ("remote unicast, other chassis", l2_ip("a1-vm1", "a1-vm4"), "101"),
        ("other network, same address", l2_ip("b1-vm1", "b1-vm2"), "100"),
        ("from a tunnel", from_hv2, "1"),
        ("no transit between tunnels", {**from_hv2, "eth_dst": REF["a1-vm4"].mac,
                                        "ipv4_dst": "10.0.0.14"}, "drop"),
        ("unknown destination", l2_ip("a1-vm1", "a1-vm2", eth_dst="fa:16:3e:99:99:99"),
         "drop"),
        ("ARP answered in place", arp, "1"),
        ("ARP spoofed", {**arp, "arp_spa": "10.0.0.12"}, "drop"),
        ("DHCP to the agent", dhcp, "controller"),
        ("flood", flood, "2,100,101"),
        ("spoofed IP", l2_ip("a1-vm1", "a1-vm3", ipv4_src="10.0.0.13"), "drop"),
        ("spoofed MAC", l2_ip("a1-vm1", "a1-vm3", eth_src="fa:16:3e:66:66:66"), "drop"),
        ("allowed address pair", l2_ip("a1-vm2", "a1-vm3", ipv4_src="10.0.0.100"), "100"),
        ("port security off", l2_ip("a2-vm1", "a2-vm2", eth_src="02:00:00:00:00:01",
                                    ipv4_src="192.0.2.9"), "101"),
        ("VIF of a port bound elsewhere", l2_ip("b1-vm1", "b1-vm2", in_port=5), "drop"),
        ("admin down", l2_ip("b1-vm1", "b1-vm2", in_port=6), "drop"),
    ])


def test_security_group_rules_agree(bridge):
    syn = sg_packet("web1", "vm", dport=8080)
    check_all(bridge, compile_view(acl.kind_view("tcp_range")), [
        ("allowed port, new", syn, "5"),
        ("its reply", answer(syn, "vm"), "100"),
        ("established, original direction", {**syn, "tcp_flags": ACK}, "5"),
        ("denied port", sg_packet("web1", "vm", dport=9000), "drop"),
        ("no egress rule", sg_packet("vm", "web1", dport=22), "drop"),
        ("invalid: a SYN+ACK that starts nothing",
         sg_packet("vm", "web1", dport=22, tcp_flags=SYN | ACK), "drop"),
        ("related: an ICMP error about the connection",
         sg_packet("web1", "vm", "icmp", 3, icmpv4_code=3, inner=answer(syn, "vm")), "5"),
        ("DHCP request, untracked", {**sg_packet("vm", "web1", "udp", 67), "udp_src": 68,
                                     "eth_dst": BROADCAST, "ipv4_src": "0.0.0.0",
                                     "ipv4_dst": "255.255.255.255"}, "controller"),
    ])
    echo = sg_packet("web1", "vm", "icmp", 8)
    check_all(bridge, compile_view(acl.kind_view("icmp_type_code")), [
        ("echo request allowed", echo, "5"),
        ("its reply", answer(echo, "vm"), "100"),
        ("timestamp request denied", sg_packet("web1", "vm", "icmp", 13), "drop"),
        ("egress: any ICMP", sg_packet("vm", "web1", "icmp", 13), "100"),
    ])


def test_load_balancer_probe_replies_agree(bridge):
    """Stage lb_probe (health checks, agent.lbhealth) on the members' chassis of the
    load balancer reference (tests/golden/test_lb_golden.py, hv2: b-vm1 at ofport 1,
    b-app at 2), with a TCP monitor on the TCP pool and a UDP-CONNECT one on the UDP
    pool: replies from a member to the VIP and a probe port go to the agent; the rest
    of what a member sends goes on through the pipeline."""
    from plexus.model.lbaas import to_loadbalancer
    from tests.golden import test_lb_golden as lbref
    from tests.golden.l3_reference import mac, replace_view
    tree = lbref.tree()
    tree["children"]["healthmonitors"]["hm-udp"] = {
        "id": "hm-udp", "pool_id": "p-udp", "type": "UDP-CONNECT", "admin_state_up": True}
    base = lbref.lb_view("hv2")
    lb = to_loadbalancer(tree)
    view = replace_view(base, lbs={lb.id: lb})

    def reply(proto: int, dport: int = 0xFFF0, dst: str = "lb-vip", **extra) -> dict:
        to_vip = dst == "lb-vip"
        pkt = {"in_port": 1, "eth_src": mac("b-vm1"),
               "eth_dst": lbref.VIP_PORT["mac_address"] if to_vip else mac(dst),
               "eth_type": 0x0800, "ipv4_src": "10.2.0.11",
               "ipv4_dst": "10.2.0.100" if to_vip else "10.2.0.50", "ip_proto": proto}
        if proto == 6:
            pkt.update(tcp_src=8080, tcp_dst=dport, tcp_flags=SYN | ACK)
        elif proto == 17:
            pkt.update(udp_src=53, udp_dst=dport)
        else:
            pkt.update(icmpv4_type=3, icmpv4_code=3)
        return {**pkt, **extra}
    check_all(bridge, compile_view(view), [
        ("TCP probe answered (SYN-ACK)", reply(6), "controller"),
        ("TCP probe answered, last probe port", reply(6, 0xFFFF), "controller"),
        ("TCP probe refused (RST)", reply(6, tcp_flags=0x14), "controller"),
        ("TCP below the probe range", reply(6, 0xFFEF), "drop"),
        ("TCP from another port", reply(6, tcp_src=8081), "drop"),
        ("UDP probe answered", reply(17), "controller"),
        ("ICMP port unreachable to the VIP", reply(1), "controller"),
        ("to another member, probe port", reply(6, dst="b-app"), "2"),
        ("from a port that is no member", reply(6, in_port=2, eth_src=mac("b-app"),
                                                ipv4_src="10.2.0.50", tcp_src=9999), "drop"),
    ])


def test_remote_groups_and_local_traffic_agree(bridge):
    check_all(bridge, compile_view(acl.kind_view("remote_group")), [
        ("member of the remote group", sg_packet("web1", "vm", dport=5432), "5"),
        ("second range of the group", sg_packet("web2", "vm", dport=6001), "5"),
        ("member by an address pair CIDR",
         sg_packet("web2", "vm", dport=5432, ipv4_src="10.1.0.130"), "5"),
        ("not a member", sg_packet("db1", "vm", dport=5432), "drop"),
        ("member, port not in the rule", sg_packet("web1", "vm", dport=5433), "drop"),
        ("egress to a member", sg_packet("vm", "db1", "udp", 53), "100"),
        ("egress to a non-member", sg_packet("vm", "web1", "udp", 53), "drop"),
        ("the other local port", sg_packet("web1", "vm2", dport=6000), "6"),
    ])
    local = sg_packet("vm", "vm2", dport=22)
    check_all(bridge, compile_view(acl.kind_view("default_group")), [
        ("local to local: egress, then ingress", local, "6"),
        ("its reply", answer(local, "vm2"), "5"),
        ("to a remote port", sg_packet("vm", "web1", dport=443), "100"),
        ("from a non-member", sg_packet("web1", "vm", dport=22), "drop"),
    ])
    stateless = sg_packet("web1", "vm", dport=22)
    check_all(bridge, compile_view(acl.kind_view("stateless")), [
        ("stateless rule", stateless, "5"),
        ("stateless reply by its own rule", answer(stateless, "vm"), "100"),
        ("stateless, other port", sg_packet("web1", "vm", dport=23), "drop"),
    ])
    check_all(bridge, compile_view(acl.kind_view("port_security_off")), [
        ("port security off: anything in", sg_packet("web1", "vm", dport=9), "5"),
        ("port security off: spoofed out", sg_packet("vm", "web1", dport=9,
                                                     ipv4_src="192.0.2.1"), "100"),
    ])


# --- the trace command against a running lab ------------------------------------------------

def plexus_cli(lab, *args: str):
    """The ``plexus`` command with the lab's clouds.yaml (no lab name in the environment)."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    env = dict(os.environ, OS_CLIENT_CONFIG_FILE=str(lab.lab.clouds))
    env.pop("PLEXUS_LAB_NAME", None)
    return subprocess.run([str(Path(sys.executable).with_name("plexus")), *args],
                          env=env, capture_output=True, text=True, timeout=300)


def live(lab, *args: str) -> tuple[int, dict]:
    """``plexus trace ... --live --json`` on the lab: (exit status, report)."""
    import json
    proc = plexus_cli(lab, "trace", *args, "--live", "--json", "--lab", lab.spec.name,
                      "--root", str(lab.lab.dir.parent))
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_trace_command_agrees_with_ofproto_trace_on_a_lab(lab):
    """``plexus trace --live``: the command's own trace (the model, with the chassis' real
    ofports) against ofproto/trace on every chassis of the path, table by table (cookie,
    priority, actions as installed) and by where the packet leaves — for a local, a
    tunnelled, a routed, a TCP and an undeliverable packet (routed: ofproto/trace follows
    both branches of the router's check_pkt_larger, the model the small frame's); then one port's ACL flows
    deleted under the agent (``ovs-ofctl del-flows`` of its cookie) is reported."""
    from plexus.lower.openflow import cookie_of
    api = lab.api.network
    n1 = lab.network("tl1", "10.61.0.0/24")
    n2 = lab.network("tl2", "10.62.0.0/24")
    router = api.create_router(name="tlr")
    for net in (n1, n2):
        subnet = next(api.subnets(network_id=net.id))
        api.add_interface_to_router(router, subnet_id=subnet.id)
    a = lab.vm("ta", n1, chassis="c1", static=True)
    b = lab.vm("tb", n1, chassis="c2", static=True)
    c = lab.vm("tc", n1, chassis="c1", static=True)
    d = lab.vm("td", n2, chassis="c2", static=True)
    assert lab.vm("ta").ping(b.ip)          # the agents have programmed the ports
    cases = [
        ("local", ["--icmp", "--to", c.port_id], [c.port_id]),
        ("through the tunnel", ["--icmp", "--to", b.port_id], [b.port_id]),
        ("routed to the other network", ["--icmp", "--to", d.port_id], None),
        ("TCP, tunnelled", ["--tcp", "--dport", "22", "--to", b.port_id], [b.port_id]),
        ("nobody there", ["--udp", "--dport", "53", "--to", "10.61.0.250"], []),
    ]
    wrong = []
    for name, args, delivered in cases:
        status, report = live(lab, a.port_id, *args)
        if status != 0 or not report["live"]["agree"]:
            wrong.append((name, report["live"]["differences"],
                          [c["untraced"] for c in report["live"]["chassis"]]))
        if delivered is not None and report["delivered"] != delivered:
            wrong.append((name, "delivered", report["delivered"], report["verdict"]))
        traced = [side["chassis"] for side in report["live"]["chassis"]]
        if name == "through the tunnel" and traced != ["c1", "c2"]:
            wrong.append((name, "chassis traced", traced))
    assert not wrong, wrong

    # one port's flows deleted out from under the agent: where, and what follows
    ovs = lab.lab.ovs(lab.spec.chassis_named("c2"))
    cookie = cookie_of(f"port:{b.port_id}")
    ovs.ofctl("del-flows", "br-int", f"table=75,cookie={cookie:#x}/-1")
    status, report = live(lab, a.port_id, "--icmp", "--to", b.port_id)
    assert status == 1 and not report["live"]["agree"]
    found = report["live"]["differences"]
    assert any(d.startswith("c2: table 75 (ingress_acl)") for d in found), found
    assert any("OVS to nowhere" in d for d in found), found
    c2 = next(s for s in report["live"]["chassis"] if s["chassis"] == "c2")
    row = next(r for r in c2["rows"] if r["table"] == 75)
    assert any(b.port_id in o for o in row["model"]["objects"]), row
    c1 = next(s for s in report["live"]["chassis"] if s["chassis"] == "c1")
    assert not c1["differences"], c1["differences"]


def test_flows_without_a_lab_name(lab):
    """``plexus flows`` given the chassis' OVS run directory (as on a real chassis, no
    lab named) shows the same flows as through the lab."""
    import json
    net = lab.network("tlf", "10.63.0.0/24")
    a = lab.vm("fa", net, chassis="c1", static=True)
    run = str(lab.lab.ovs(lab.spec.chassis_named("c1")).rundir)

    def shown(*args):
        proc = plexus_cli(lab, "flows", "c1", "--object", a.port_id, "--json", *args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return sorted((f["cookie"], f["table"], f["priority"], f["object"])
                      for f in json.loads(proc.stdout))
    direct = shown("--os-cloud", "plexus", "--ovs-rundir", run)
    assert direct and direct == shown("--lab", lab.spec.name, "--root",
                                      str(lab.lab.dir.parent))
