"""``plexus trace --live``: the packet ``plexus trace`` follows through the model, sent
again through ``ovs-appctl ofproto/trace`` on the real br-int of every chassis on its
path, and the two told side by side, stage by stage: the table, the flow's cookie (→ the
Neutron object behind it), its priority and actions, and where the packet leaves.

How the two are made comparable:

- the model is compiled with the chassis' *real* OpenFlow port numbers (its VIFs by
  ``external_ids:iface-id``, tunnels by ``plexus-chassis``, patch ports by
  ``plexus-physnet``, as the agent reads them), so the packet's ``in_port`` and every
  ``output`` name the same ports on both sides;
- ``ofproto/trace`` is told (``--ct-next``) the connection states the model's
  connection tracker gave at each ``ct(table=…)``, as a fresh connection;
- a tunnel hop is followed to the next chassis' br-int with the tunnel id OVS itself
  set (``set_field:…->tun_id``) and the tunnel's ofport there as ``in_port``;
- actions are compared exactly: the model's flow, lowered as the agent lowers it, against
  the flow OVS holds under the same table, priority and match (read once per chassis over
  its OpenFlow management socket). A next hop outside the cloud is the one thing the
  model cannot know (the agent resolves its MAC by ARP; the model makes one up), so a
  flow that differs only by that MAC is told, not counted as a difference.

Reaching a chassis' OVS: a lab's (``--lab``: the chassis' own OVS instance), or on a real
chassis its run directory (``--ovs CHASSIS=RUNDIR``: ``db.sock``, ``br-int.mgmt`` and
``ovs-vswitchd``'s unixctl socket live there, as the agent's ``--ovsdb`` and
``--ovs-rundir`` name them). A chassis on the path with no target is reported untraced.

Cost: per chassis on the path, one ``ovs-vsctl`` (ports), one flow dump over OpenFlow and
one ``ofproto/trace``; the model side is ``plexus trace``'s."""

from __future__ import annotations

import asyncio
import difflib
import json
import re
import subprocess
from dataclasses import dataclass, field
from typing import Callable, Protocol

from plexus.agent import flowdiff
from plexus.agent.ovs import vswitchd_target
from plexus.agent.ovs.ovsdb import PATCH_ID, TUNNEL_ID
from plexus.lower.openflow import cookie_of
from plexus.pipeline.flows import CT_STATE_BITS, CheckPktLarger, SetField
from plexus.pipeline.registry import STAGES
from plexus.tools.conntrack import Conntrack
from plexus.tools.fabric import Fabric, Ofports
from plexus.tools.trace import Probe, Report, objects_of, packet_from, report

BY_TABLE = {s.table: s.name for s in STAGES}
MADE_UP_MAC = "02:ee:"          # ``fabric.external_mac``: a next hop the model assumes


class Switch(Protocol):
    """What the live trace needs of one chassis' OVS (``plexus.lab.ovs.Ovs`` has it)."""

    def vsctl(self, *args: str) -> str: ...

    def appctl(self, *args: str) -> str: ...

    def ofctl(self, command: str, bridge: str, *args: str) -> str: ...

    def mgmt(self, bridge: str = "br-int") -> str: ...


class RunDir:
    """A chassis' Open vSwitch reached through its run directory (a real chassis:
    ``/var/run/openvswitch`` by default), with the OVSDB remote the agent uses (default
    ``unix:RUNDIR/db.sock``)."""

    def __init__(self, rundir: str = "/var/run/openvswitch", db: str | None = None):
        self.rundir = rundir.rstrip("/") or "/"
        self.db = db or f"unix:{self.rundir}/db.sock"

    def __repr__(self) -> str:
        return f"RunDir({self.rundir!r}, db={self.db!r})"

    def mgmt(self, bridge: str = "br-int") -> str:
        return f"unix:{self.rundir}/{bridge}.mgmt"

    def vsctl(self, *args: str) -> str:
        return _run(["ovs-vsctl", f"--db={self.db}", "--timeout=10", *args])

    def ofctl(self, command: str, bridge: str, *args: str) -> str:
        return _run(["ovs-ofctl", "-O", "OpenFlow13", command, self.mgmt(bridge), *args])

    def appctl(self, *args: str) -> str:
        return _run(["ovs-appctl", "-t", vswitchd_target(self.rundir), "--timeout=5", *args])


def _run(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"{argv[0]}: {exc}") from None
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:2])}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def parse_targets(specs: list[str]) -> dict[str, RunDir]:
    """``CHASSIS=RUNDIR`` or ``CHASSIS=RUNDIR,OVSDB`` options → chassis → RunDir."""
    out = {}
    for spec in specs:
        chassis, sep, rest = spec.partition("=")
        if not sep or not chassis or not rest:
            raise ValueError(f"bad --ovs {spec!r} (CHASSIS=RUNDIR[,OVSDB-REMOTE])")
        rundir, _, db = rest.partition(",")
        out[chassis] = RunDir(rundir, db or None)
    return out


# --- what a chassis holds ---------------------------------------------------------------

def read_ofports(ovs: Switch, bridge: str = "br-int") -> Ofports:
    """The bridge's VIFs, tunnels and patch ports with their ofports, from OVSDB."""
    names = ovs.vsctl("list-ifaces", bridge).split()
    if not names:
        return Ofports()
    table = json.loads(ovs.vsctl("--format=json", "--columns=name,ofport,external_ids",
                                 "list", "Interface", *names))
    return ofports_of_rows(table)


def ofports_of_rows(table: dict) -> Ofports:
    """``ovs-vsctl --format=json list Interface`` (name, ofport, external_ids) → Ofports."""
    cols = table["headings"]
    out = Ofports()
    for row in table["data"]:
        cell = dict(zip(cols, row))
        ofport = cell.get("ofport")
        if not isinstance(ofport, int) or ofport <= 0:
            continue
        ids = dict(cell["external_ids"][1]) if isinstance(cell.get("external_ids"), list) \
            else {}
        if ids.get(TUNNEL_ID):
            out.tunnels[ids[TUNNEL_ID]] = ofport
        elif ids.get(PATCH_ID):
            out.patches[ids[PATCH_ID]] = ofport
        elif ids.get("iface-id"):
            out.vifs[ids["iface-id"]] = ofport
    return out


def installed_flows(ovs: Switch, bridge: str = "br-int") -> dict:
    """The bridge's flows, canonical as the agent diffs them (``flowdiff.Entry`` by key)."""
    from plexus.agent.ovs.openflow import Channel

    async def read():
        channel = await Channel(ovs.mgmt(bridge)).connect()
        try:
            return [flowdiff.of_stats(s) for s in await channel.flow_stats()]
        finally:
            channel.close()
    return {e.key: e for e in asyncio.run(read())}


# --- ofproto/trace ----------------------------------------------------------------------

OVS_NAMES = {"tunnel_id": "tun_id", "eth_src": "dl_src", "eth_dst": "dl_dst",
             "ipv4_src": "nw_src", "ipv4_dst": "nw_dst", "icmpv4_type": "icmp_type",
             "icmpv4_code": "icmp_code", "vlan_vid": "dl_vlan"}
PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 132: "sctp"}
# said by the protocol keyword, or known to the model only
SKIP = {"eth_type", "ip_proto", "inner", "icmp_id", "pkt_len", "metadata", "reg5", "reg6",
        "reg7", "reg3", "reg4", "ct_state", "ct_zone", "ct_mark", "conj_id"}


def ovs_flow(pkt: dict) -> str:
    """A packet (the model's fields) in ofproto/trace's flow syntax."""
    if pkt["eth_type"] == 0x0806:
        words = ["arp"]
    elif pkt["eth_type"] == 0x0800:
        proto = pkt.get("ip_proto")
        words = [PROTOCOLS[proto] if proto in PROTOCOLS else f"ip,nw_proto={proto}"]
        if "nw_ttl" not in pkt:
            words.append("nw_ttl=64")
    else:
        words = [f"dl_type={pkt['eth_type']:#06x}"]
    for name, value in pkt.items():
        if name in SKIP or (name == "vlan_vid" and not value):
            continue
        if name == "tcp_flags":
            value = f"{value:#05x}"
        elif name == "vlan_vid":
            value = value & 0xFFF
        words.append(f"{OVS_NAMES.get(name, name)}={value}")
    return ",".join(words)


def ct_flags(state: int) -> str:
    """A ct_state value in --ct-next's words (e.g. ``trk,est,rpl``)."""
    return ",".join(name for name, bit in CT_STATE_BITS.items() if state & bit)


@dataclass
class OvsStep:
    """One table visit in an ofproto/trace: table, the flow (priority, cookie, match;
    None when nothing matched) and the actions OVS printed under it."""

    table: int
    priority: int | None
    cookie: int
    match: str
    actions: list[str] = field(default_factory=list)

    @property
    def missed(self) -> bool:
        return self.priority is None


@dataclass
class OvsTrace:
    """A parsed ofproto/trace of one bridge: its steps (recirculations included, in
    order), the OpenFlow ports it output to (with the tunnel id set before each), whether
    the controller got it, and the text."""

    steps: list[OvsStep] = field(default_factory=list)
    outputs: list[tuple[int, int | None]] = field(default_factory=list)
    controller: list[str] = field(default_factory=list)
    text: str = ""


_TABLE = re.compile(r"^\s*(\d+)\.\s+(.*)$")
_FLOW = re.compile(r"^(?P<match>.*?),?\s*priority (?P<prio>\d+)(?:,\s*cookie (?P<cookie>0x[0-9a-f]+))?$")


def parse_ofproto_trace(text: str, bridge: str = "br-int") -> OvsTrace:
    """The steps and outputs of ``bridge`` in an ofproto/trace; an output OVS skips (to
    the in_port) does not count."""
    found = re.search(r"\bin_port=(\d+)", text)
    in_port = int(found.group(1)) if found else 0
    out = OvsTrace(text=text)
    current, tun_id = None, None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        header = re.match(r'\s*bridge\("([^"]+)"\)', line)
        if header:
            current = header.group(1)
            continue
        if current != bridge:
            continue
        table = _TABLE.match(line)
        if table:
            rest = table.group(2).strip()
            flow = _FLOW.match(rest)
            if flow:
                out.steps.append(OvsStep(int(table.group(1)), int(flow.group("prio")),
                                         int(flow.group("cookie") or "0", 16),
                                         flow.group("match")))
            else:           # "No match." (and its drop)
                out.steps.append(OvsStep(int(table.group(1)), None, 0, rest))
            continue
        action = line.strip()
        if not action or action.startswith(("->", ">>", "-----")) or not out.steps:
            continue
        if action.startswith(("Final flow", "Megaflow", "Datapath actions", "Flow:",
                              "bridge(", "====", "recirc(", "thaw", "Resuming")):
            continue
        out.steps[-1].actions.append(action)
        following = lines[i + 1].strip() if i + 1 < len(lines) else ""
        setting = re.fullmatch(r"set_field:(0x[0-9a-f]+|\d+)->tun_id", action)
        if setting:
            tun_id = int(setting.group(1), 0)
        if following.startswith(">> skipping output to input port"):
            continue
        port = re.fullmatch(r"output:(\d+)", action)
        if port:
            out.outputs.append((int(port.group(1)), tun_id))
        elif action == "IN_PORT":
            out.outputs.append((in_port, tun_id))
        elif action.startswith("controller("):
            userdata = re.search(r"userdata=([0-9a-f.]+)", action)
            out.controller.append(_userdata(userdata.group(1)) if userdata else "")
    return out


def _userdata(hexdots: str) -> str:
    try:
        return bytes.fromhex(hexdots.replace(".", "")).decode()
    except ValueError:
        return hexdots


# --- the comparison ---------------------------------------------------------------------

@dataclass
class Row:
    """One stage, both sides: the model's flow and OVS's (either may be missing), and
    what differs (empty when they agree)."""

    table: int
    stage: str
    model: dict | None
    ovs: dict | None
    difference: str = ""
    note: str = ""

    def as_dict(self) -> dict:
        return {"table": self.table, "stage": self.stage, "model": self.model,
                "ovs": self.ovs, "difference": self.difference, "note": self.note}


@dataclass
class ChassisLive:
    """One chassis of the path: the packet given to ofproto/trace, its rows, where each
    side sent the packet, and the differences."""

    chassis: str
    flow: str = ""
    rows: list[Row] = field(default_factory=list)
    model_outputs: list[str] = field(default_factory=list)
    ovs_outputs: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    untraced: str = ""
    text: str = ""

    def as_dict(self) -> dict:
        return {"chassis": self.chassis, "flow": self.flow,
                "rows": [r.as_dict() for r in self.rows],
                "model_outputs": self.model_outputs, "ovs_outputs": self.ovs_outputs,
                "differences": self.differences, "untraced": self.untraced}


@dataclass
class Live:
    """The model's report and, per chassis visited, the live comparison."""

    report: Report
    chassis: list[ChassisLive] = field(default_factory=list)

    @property
    def differences(self) -> list[str]:
        return [f"{c.chassis}: {d}" for c in self.chassis for d in c.differences]

    @property
    def agree(self) -> bool:
        return not self.differences and not any(c.untraced for c in self.chassis)

    def as_dict(self) -> dict:
        return {**self.report.as_dict(), "live": {
            "agree": self.agree, "differences": self.differences,
            "chassis": [c.as_dict() for c in self.chassis]}}


class Recording(Conntrack):
    """A connection tracker remembering the ct_state each ``ct(table=…)`` gave."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []

    def lookup(self, zone: int, pkt: dict) -> tuple[int, int, int]:
        found = super().lookup(zone, pkt)
        self.seen.append(found[0])
        return found


def live_trace(fabric: Fabric, switches: Callable[[str], Switch | None], src_ref: str,
               probe: Probe, bridge: str = "br-int") -> Live:
    """Trace ``probe`` in the model (with the real ofports ``fabric`` was given) and in
    every chassis' OVS it visits (``switches``: chassis → its Switch, None when not
    reachable); compare them (module doc)."""
    chassis, pkt = packet_from(fabric, src_ref, probe)
    trackers: list[Recording] = []

    def tracker() -> Recording:
        trackers.append(Recording())
        return trackers[-1]
    trip = fabric.send(chassis, pkt, tracker=tracker)
    out = Live(report(fabric, src_ref, chassis, pkt, trip))
    sent: dict[str, int | None] = {chassis: None}     # chassis → tun_id OVS sent it with
    for (here, arrived, result), rec in zip(trip.visits, trackers):
        side = ChassisLive(here)
        out.chassis.append(side)
        ports = fabric.ofports(here)
        side.model_outputs = sorted(_label(ports, p) for p, _ in result.outputs) + sorted(
            f"controller ({r})" for r, _ in result.controller)
        ovs = switches(here)
        if ovs is None:
            side.untraced = f"no OVS target for chassis {here} (--ovs {here}=RUNDIR)"
            continue
        if here not in sent:
            side.differences.append("OVS does not send the packet here; traced with the "
                                    "model's packet")
        pkt_here = dict(arrived)
        if sent.get(here) is not None:
            pkt_here["tunnel_id"] = sent[here]
        side.flow = ovs_flow(pkt_here)
        # -generate: a packet made from the flow, so check_pkt_larger sees a length (a
        # small frame, as the model's) instead of tracing both of its branches
        argv = ["ofproto/trace", bridge, side.flow, "-generate"]
        for state in rec.seen:
            argv += ["--ct-next", ct_flags(state)]
        try:
            text = ovs.appctl(*argv)
            installed = installed_flows(ovs, bridge)
        except RuntimeError as exc:
            side.untraced = str(exc)
            continue
        side.text = text
        theirs = parse_ofproto_trace(text, bridge)
        compare(fabric, here, result, theirs, installed, side)
        side.ovs_outputs = sorted(_label(ports, p) for p, _ in theirs.outputs) + sorted(
            f"controller ({r})" for r in theirs.controller)
        if both_branches(result) and TOO_BIG in side.ovs_outputs and \
                TOO_BIG not in side.model_outputs:
            side.ovs_outputs.remove(TOO_BIG)
        if side.ovs_outputs != side.model_outputs:
            side.differences.append(f"the model sends it to {side.model_outputs or 'nowhere'}"
                                    f", OVS to {side.ovs_outputs or 'nowhere'}")
        for port, tun_id in theirs.outputs:
            kind, what = ports.name_of(port)
            if kind == "tunnel":
                sent.setdefault(what, tun_id)
    visited = {c for c, _, _ in trip.visits}
    for what in sorted(set(sent) - visited):
        out.chassis[0].differences.append(f"OVS also sends the packet to chassis {what}")
    return out


TOO_BIG = "controller (icmp:too-big)"
BRANCH_NOTE = ("the other branch of check_pkt_larger: ofproto/trace follows both, the "
               "packet takes one")


def both_branches(result) -> bool:
    """Whether the model's path checks the packet's length (``check_pkt_larger``): with
    no real packet ofproto/trace follows both of its branches, the model the one a small
    frame takes."""
    return any(isinstance(a, CheckPktLarger) for s in result.steps if s.flow is not None
               for a in s.flow.actions)


def _label(ports: Ofports, port) -> str:
    kind, what = ports.name_of(port)
    return f"{kind} {what}"


def compare(fabric: Fabric, chassis: str, result, theirs: OvsTrace, installed: dict,
            side: ChassisLive) -> None:
    """Align the model's steps with OVS's (by table, cookie and priority) into rows."""
    model = fabric.model
    names = _cookie_names(fabric, chassis)
    ours = [(s, flowdiff.of_flow(s.flow) if s.flow is not None else None)
            for s in result.steps]
    a = [(e.table, e.cookie, e.priority) if e else (_table(s.stage), 0, None)
         for s, e in ours]
    b = [(s.table, s.cookie, s.priority) for s in theirs.steps]

    def model_side(i):
        step, e = ours[i]
        if step.flow is None:
            return {"cookie": None, "objects": [], "priority": None, "actions": "no match"}
        acts = [str(x) for x in step.flow.actions] + (
            [f"goto:{step.flow.goto}"] if step.flow.goto else [])
        named = objects_of(model, step.flow.cookie)
        for part in step.via:
            named += [o for o in objects_of(model, part.cookie) if o not in named]
        return {"cookie": f"{e.cookie:#x}", "objects": named, "priority": e.priority,
                "actions": ",".join(acts) or "drop"}

    def ovs_side(j):
        s = theirs.steps[j]
        if s.missed:
            return {"cookie": None, "objects": [], "priority": None, "actions": "no match"}
        name = names.get(s.cookie)
        return {"cookie": f"{s.cookie:#x}", "priority": s.priority, "match": s.match,
                "objects": objects_of(model, name) if name else
                ([] if s.cookie == 0 else [f"unknown cookie {s.cookie:#x}"]),
                "actions": ",".join(s.actions) or "drop"}

    def row(i, j, difference="") -> Row:
        table = a[i][0] if i is not None else b[j][0]
        r = Row(table, BY_TABLE.get(table, str(table)),
                model_side(i) if i is not None else None,
                ovs_side(j) if j is not None else None, difference)
        if i is not None and j is not None and not difference:
            r.difference, r.note = _actions(ours[i], installed)
        if r.difference:
            side.differences.append(f"table {table} ({r.stage}): {r.difference}")
        side.rows.append(r)
        return r

    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            for k in range(i2 - i1):
                row(i1 + k, j1 + k)
            continue
        pairs = max(i2 - i1, j2 - j1)
        for k in range(pairs):
            i = i1 + k if i1 + k < i2 else None
            j = j1 + k if j1 + k < j2 else None
            if i is not None and j is not None:
                row(i, j, "another flow matched in OVS" if a[i][0] == b[j][0]
                    else "the packet went elsewhere")
            elif i is not None:
                row(i, None, "not reached in OVS")
            elif both_branches(result):
                row(None, j).note = BRANCH_NOTE
            else:
                row(None, j, "not reached in the model")


def _table(stage: str) -> int:
    from plexus.pipeline.registry import table_of
    return table_of(stage)


def _actions(ours, installed: dict) -> tuple[str, str]:
    """(difference, note) between the model's flow and the one OVS holds at its key."""
    step, e = ours
    if e is None:
        return "", ""
    have = installed.get(e.key)
    if have is None:
        return "the model's flow is not installed (OVS matched one like it)", ""
    if have.instructions == e.instructions and have.cookie == e.cookie:
        return "", ""
    if have.cookie != e.cookie:
        return f"installed with cookie {have.cookie:#x}, the model's is {e.cookie:#x}", ""
    made_up = [a for a in step.flow.actions if isinstance(a, SetField)
               and isinstance(a.value, str) and a.value.startswith(MADE_UP_MAC)]
    if made_up and len(have.instructions) == len(e.instructions):
        return "", ("the next hop's MAC: the chassis resolved it by ARP, the model "
                    "assumes one")
    return "installed with other actions", ""


def _cookie_names(fabric: Fabric, chassis: str) -> dict[int, str]:
    """Cookie → the name it hashes, over the chassis' compiled flows (once per chassis)."""
    cache = fabric.__dict__.setdefault("_cookie_names", {})
    if chassis not in cache:
        cache[chassis] = {cookie_of(f.cookie): f.cookie
                          for f in fabric.pipeline(chassis).flows() if f.cookie}
    return cache[chassis]


# --- for people ---------------------------------------------------------------------------

def render(live: Live, console) -> None:
    """Print the model's trace, then each chassis' comparison."""
    from rich.table import Table

    from plexus.tools.trace import render as render_report
    render_report(live.report, console)
    for side in live.chassis:
        console.print(f"\n[bold]live: {side.chassis}[/]" + (
            f"  [dim]ofproto/trace br-int {side.flow}" if side.flow else ""))
        if side.untraced:
            console.print(f"  [yellow]not traced: {side.untraced}")
            continue
        table = Table(show_lines=False)
        for col in ("table", "model: flow (cookie → object), actions",
                    "OVS: flow (cookie → object), actions", ""):
            table.add_column(col, overflow="fold")
        for r in live_rows(side):
            table.add_row(*r)
        console.print(table)
        console.print(f"  model → {', '.join(side.model_outputs) or 'drop'};  "
                      f"OVS → {', '.join(side.ovs_outputs) or 'drop'}")
    if live.agree:
        console.print("[bold green]live: the installed flows do what the model says")
    else:
        for d in live.differences:
            console.print(f"[red]differs[/] {d}")
        for c in live.chassis:
            if c.untraced:
                console.print(f"[yellow]untraced[/] {c.chassis}: {c.untraced}")


def live_rows(side: ChassisLive) -> list[tuple[str, str, str, str]]:
    """The rows of one chassis, as text cells."""
    def cell(s: dict | None) -> str:
        if s is None:
            return "-"
        if s["cookie"] is None:
            return "no match: drop"
        who = "; ".join(s["objects"]) or "-"
        return f"prio {s['priority']} {s['cookie']} → {who}\n{s['actions']}"
    out = []
    for r in side.rows:
        mark = f"[red]{r.difference}" if r.difference else (
            f"[yellow]{r.note}" if r.note else "[green]same")
        out.append((f"{r.table} {r.stage}", cell(r.model), cell(r.ovs), mark))
    return out


# --- a real chassis' settings ---------------------------------------------------------------

def agent_options(text: str) -> dict[str, str]:
    """``--chassis``, ``--ovsdb``, ``--ovs-rundir`` and ``--bridge`` of a plexus-agent
    command line, as written in its systemd unit (``ExecStart=``, ``\\`` continuations)
    or a shell script: what ``plexus flows`` and ``plexus trace --live`` need to reach the
    chassis' OVS as its agent does."""
    import shlex
    joined = re.sub(r"\\\n", " ", text)
    wanted = {"--chassis": "chassis", "--ovsdb": "ovsdb", "--ovs-rundir": "rundir",
              "--bridge": "bridge"}
    out: dict[str, str] = {}
    for line in joined.splitlines():
        if "plexus-agent" not in line:
            continue
        try:
            words = shlex.split(line.split("=", 1)[1] if line.lstrip().startswith(
                "ExecStart=") else line, comments=True)
        except ValueError:
            continue
        for i, word in enumerate(words):
            name, eq, value = word.partition("=")
            if name in wanted:
                if eq:
                    out[wanted[name]] = value
                elif i + 1 < len(words):
                    out[wanted[name]] = words[i + 1]
    return out
