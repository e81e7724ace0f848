"""Control path at cloud scale (issue 10): what one agent spends per southbound event,
what one server costs with many agents watching. Prints one table.

A. Agent, in process, no OVS. A synthetic cloud (``bench/synthetic.py``: 1,000 chassis,
   the measured chassis hosting 90 ports on 9 networks of 50 ports over 5 chassis, a
   router with its gateway on an external network, a default-like security group with a
   remote-group rule; filler projects of the same shape up to N ports) is served by a
   fake southbound to the real ``plexus.agent.agent.Agent`` — its own tasks (sync,
   reconcile, status, …) running on its event loop — against a recording switch (a flow
   table that applies the bundles as OVS does, and OVSDB's bridge state). Both fakes
   are the boundaries of ``tests/unit/test_agent.py``; everything between them (model,
   view, compile, lower, diff) is the code under test. Measured as this process's CPU
   time (``time.process_time``) from handing the agent one watch event until it is idle
   again, minus the idle loop's own cost:

   - full compile: from ``run()`` (snapshot already built) to idle with every flow
     installed;
   - irrelevant event: a port created on a network of a far chassis;
   - relevant events: a port created on one of the chassis' networks, bound to another
     chassis; a port bound to the chassis itself (created, then its VIF plugged); a rule
     added to the security group of its ports; (``dns_rename``) a new ``dns_name`` on a
     port bound to it (what its DHCP says; no flow changes).

   Each size runs in its own process under a wall-clock cap; what did not finish within
   it is reported as "n/a (> cap)". The snapshot sizes are the JSON of every object (what
   ``GET /southbound/v1/snapshot`` sends) and of the objects ``plexus.model.relevance``
   selects for the chassis (what a per-chassis ``?chassis=`` snapshot would send).

B. Server: a real ``plexus-server`` process on loopback with a fresh SQLite store, loaded
   through the API with a shared network holding one port on each of 1,000 chassis plus
   filler networks; W long-poll watchers (raw asyncio HTTP, spread over two client
   processes, each watcher as one chassis: ``/southbound/v1/watch?from=REV&timeout=25
   &chassis=cNNNN``); then K port updates on the shared network (every watcher must get
   each) through ``PUT /v2.0/ports``, one every ``--write-interval`` s, while a prober
   times ``GET`` and ``PUT /v2.0/ports/{id}``. Reported: write → watcher delivery p50 /
   p99 over every (write, watcher) pair and the time until the last watcher had a write,
   deliveries made within the phase's cap, API p95 during the watch and the server's peak
   RSS. Each W gets a fresh server process on the preloaded store; the one that took
   the preload is first timed until it answers a chassis' snapshot within 1 s again
   (how long it takes to digest a burst of creates).

    .venv/bin/python bench/scale.py [--sizes 1000,10000,100000] [--watchers 100,500,1000]
        [--part agent|server|both] [--events 50] [--kind-budget 30] [--size-cap 300]
        [--writes 20] [--write-interval 0.5] [--phase-cap 90] [--catch-up-cap 180]

``PLEXUS_BENCH_COMMIT`` names the code measured when the tree is not a git checkout.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE_DIR = Path(__file__).resolve().parent
SRC = HERE_DIR.parent / "src"
sys.path.insert(0, str(SRC))
sys.path.insert(0, str(HERE_DIR))   # bench/table.py, bench/synthetic.py
import synthetic  # noqa: E402
from plexus.model.keys import PORT_FORWARDINGS  # noqa: E402
from table import machine, print_table  # noqa: E402
from api import token as _token  # noqa: E402  (bench/api.py)

KINDS = ("irrelevant", "neighbour", "here", "plug", "plug10", "sg_rule", "port_forwarding",
         "qos_rule", "lb_member", "dns_rename")
KIND_LABEL = {
    "irrelevant": "irrelevant event (port on a far network)",
    "neighbour": "relevant: port bound to a chassis sharing a network",
    "here": "relevant: port bound here (create + VIF plug)",
    "plug": "port-up: VIF plugged for a port bound here (flows + status report)",
    "plug10": "port-up: 10 VIFs plugged at once (per port; flows + status reports)",
    "sg_rule": "relevant: rule added to its security group",
    "port_forwarding": "relevant: port forwarding to a port here added (event i: a floating "
                       "IP with i + 1 forwardings)",
    "qos_rule": "relevant: QoS rule changed (policy of 10 local ports of 90)",
    "lb_member": "relevant: member added to a load balancer on a local network (event i: "
                 "its tree with i + 1 members)",
    "dns_rename": "relevant: dns_name of a port bound here changed",
}


# ======================================================================================
# A. the agent, in process
# ======================================================================================

def _vif_class():
    """``Vif`` wherever the agent keeps it today."""
    for module in ("plexus.agent.relevant", "plexus.agent.ovs", "plexus.agent.ovs.ovsdb",
                   "plexus.agent.view"):
        try:
            mod = __import__(module, fromlist=["Vif"])
        except ImportError:
            continue
        if hasattr(mod, "Vif"):
            return mod.Vif
    raise ImportError("no Vif class in the agent")


class FakeSouthbound:
    """The server's southbound API over prepared objects (as tests/unit/test_agent.py's
    FakeServer): a snapshot, a revisioned history the watch long-polls (woken at once by a
    put), chassis registration, status reports that come back as events like the
    server's, SNAT block leases. Costs nothing at call time: events and the snapshot are
    built before the clock starts."""

    url = "fake://southbound"

    def __init__(self, objects: dict[str, dict[str, dict]]):
        self.objects = objects
        self.revision = 10
        self.history: list[dict] = []
        self.asked_from = 0                      # the start of the agent's latest watch
        self._wake = asyncio.Event()
        self._snapshot = synthetic.snapshot_lists(objects)
        self.snapshots = 0
        self.statuses: list[tuple[str, str]] = []
        self.requests = 0                        # status report requests
        self.leases = 0

    def put(self, collection: str, obj: dict, ident: str | None = None) -> int:
        self.revision += 1
        ident = ident or obj["id"]
        obj = dict(obj, revision_number=self.revision) if "revision_number" in obj else obj
        self.objects.setdefault(collection, {})[ident] = obj
        self.history.append({"type": "put", "collection": collection, "id": ident,
                             "revision": self.revision, "object": obj})
        self._wake.set()
        return self.revision

    async def snapshot(self, *args, **kwargs):
        self.snapshots += 1
        return self.revision, self._snapshot

    async def watch(self, start, wait=25.0, *args, **kwargs):
        self.asked_from = start
        deadline = time.monotonic() + wait
        while True:
            events = [e for e in self.history[-64:] if e["revision"] >= start]
            if events and events[0]["revision"] > start:      # older than the window
                events = [e for e in self.history if e["revision"] >= start]
            if events:
                return events, self.revision + 1
            self._wake.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                return [], max(start, self.revision + 1)
            try:
                await asyncio.wait_for(self._wake.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def register(self, chassis, tunnel_ip, mappings, gateway, ttl, *args, **kwargs):
        return 1, ttl

    async def heartbeat(self, *args, **kwargs):
        return None

    async def unregister(self, *args, **kwargs):
        return None

    async def port_status(self, port_id, status, chassis, *args, **kwargs):
        self.requests += 1
        self.statuses.append((port_id, status))
        self.put("ports", dict(self.objects["ports"][port_id], status=status))

    async def port_statuses(self, reports, chassis, *args, **kwargs):
        self.requests += 1
        for port_id, status in reports:
            self.statuses.append((port_id, status))
            self.put("ports", dict(self.objects["ports"][port_id], status=status))
        return {port_id: None for port_id, _ in reports}

    def active(self, ids) -> bool:
        """Whether every port of ``ids`` is ACTIVE in the model served."""
        ports = self.objects["ports"]
        return all(ports[i].get("status") == "ACTIVE" for i in ids)

    async def l3_status(self, *args, **kwargs):
        return None

    async def lease_snat_blocks(self, router_id, chassis, count, *args, **kwargs):
        self.leases += 1
        router = self.objects["routers"][router_id]
        gw = self.objects["ports"][router["gw_port_id"]]
        low = 1024 + 64 * self.leases
        ident = f"{router_id}:{low}"
        block = {"id": ident, "router_id": router_id, "chassis": chassis,
                 "ip": gw["fixed_ips"][0]["ip_address"], "port_min": low,
                 "port_max": low + 63}
        self.put("snat_blocks", block)
        return [block]

    async def close(self):
        return None


class RecordingSwitch:
    """br-int as tests/unit/test_agent.py's FakeSwitch: a flow table that applies flow
    mods as OVS does (bundles recorded), OVSDB's bridge state (VIFs, tunnels, patch
    ports, BFD up), conntrack flushes and packet-outs counted. Bundles are applied to
    the table when it is read, not when they come: a real switch decodes the messages
    in its own process, so decoding them here must not count as the agent's CPU."""

    def __init__(self, vifs: tuple = ()):
        from plexus.agent.ovs import BridgeState
        self._table: dict = {}
        self._pending: list = []
        self.flow_mods = 0
        self.bundles = 0
        self.state = BridgeState(synced=True, bridge_ok=True, vifs=tuple(vifs))
        self.on_state = None
        self._closed: asyncio.Event | None = None
        self._bfd: frozenset = frozenset()
        self.sent = 0

    def start(self, on_state):
        self.on_state = on_state
        asyncio.get_running_loop().call_soon(on_state, self.state)

    def _publish(self, **changes):
        from plexus.agent.ovs import BridgeState
        self.state = BridgeState(**{**self.state.__dict__, **changes})
        if self.on_state:
            self.on_state(self.state)

    def plug(self, name: str, iface_id: str, ofport: int) -> None:
        vif = _vif_class()(name, iface_id, ofport)
        self._publish(vifs=tuple(v for v in self.state.vifs if v.name != name) + (vif,))

    def plug_many(self, plugs) -> None:
        """Several VIFs in one OVSDB update (one transaction plugging them all)."""
        Vif = _vif_class()
        names = {name for name, _, _ in plugs}
        self._publish(vifs=tuple(v for v in self.state.vifs if v.name not in names)
                      + tuple(Vif(*p) for p in plugs))

    def set_tunnels(self, local_ip, peers, bfd=frozenset(), *args, **kwargs):
        from plexus.agent.ovs import Tunnel
        self._bfd = frozenset(bfd)
        self._publish(tunnels=tuple(Tunnel(f"t-{c}", c, ip, 1000 + i,
                                           "up" if c in self._bfd else "")
                                    for i, (c, ip) in enumerate(sorted(peers.items()))))

    def set_patches(self, mappings, *args, **kwargs):
        self._publish(patches=tuple((physnet, 50 + i)
                                    for i, physnet in enumerate(sorted(mappings))))

    async def connect(self, on_packet_in, *args, **kwargs):
        self._closed = asyncio.Event()

    @property
    def connected(self):
        return self._closed is not None and not self._closed.is_set()

    async def disconnected(self):
        await self._closed.wait()

    async def installed(self):
        return dict(self.table)

    async def meters(self):
        return {}

    async def apply_meters(self, messages):
        self.flow_mods += len(messages)

    async def apply(self, messages):
        self.bundles += 1
        self.flow_mods += len(messages)
        self._pending.append(list(messages))

    @property
    def table(self) -> dict:
        """The flow table, every bundle received applied."""
        from os_ken.ofproto import ofproto_v1_3 as ofp
        from plexus.agent import flowdiff
        pending, self._pending = self._pending, []
        for mod in (m for bundle in pending for m in bundle):
            e = flowdiff.entry(mod.table_id, mod.priority, mod.cookie, mod.match,
                               mod.instructions)
            if mod.command == ofp.OFPFC_ADD:
                self._table[e.key] = e
            elif mod.command == ofp.OFPFC_MODIFY_STRICT:
                old = self._table.get(e.key)
                if old is not None:
                    self._table[e.key] = flowdiff.Entry(e.table, e.priority, e.fields,
                                                        old.cookie, e.instructions, e.match)
            elif mod.command == ofp.OFPFC_DELETE_STRICT:
                self._table.pop(e.key, None)
        return self._table

    async def flush_conntrack(self, zone, *args, **kwargs):
        return None

    async def set_zone_timeouts(self, *args, **kwargs):
        return None

    async def table_packets(self, *args, **kwargs):
        return {}

    async def dump_conntrack(self, *args, **kwargs):
        return ""

    def warm_tunnel(self, ofport):
        """A tunnel's warm-up frame (the real switch sends one packet-out)."""
        self.warmed = getattr(self, "warmed", 0) + 1

    def packet_out(self, *args, **kwargs):
        self.sent += 1

    async def punt_arp_replies(self, *args, **kwargs):
        return None

    def packet_out_external(self, *args, **kwargs):
        self.sent += 1

    def stop(self):
        if self._closed is not None:
            self._closed.set()


async def _settle(quiet: float = 0.0015, rounds: int = 3, step: float = 0.005) -> None:
    """Return once the event loop has been idle for ``rounds`` consecutive ``step``s (the
    CPU spent in each below ``quiet`` s)."""
    idle = 0
    while idle < rounds:
        before = time.process_time()
        await asyncio.sleep(step)
        idle = idle + 1 if time.process_time() - before < quiet else 0


async def _until(predicate, timeout: float = 3600) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("agent did not get there")
        await asyncio.sleep(0.001)


class AgentBench:
    """One agent on a synthetic cloud; ``emit`` gets one dict per measurement."""

    def __init__(self, size: int, emit, chassis: int = synthetic.CHASSIS):
        self.cloud = synthetic.generate(size, chassis)
        self.emit = emit
        self.here = self.cloud.here
        self.ofport = 0
        self.far = 0
        self.local = 0
        self.pf_fip = None

    def snapshot_bytes(self) -> dict:
        """JSON size of the full snapshot and of the chassis' relevant selection."""
        import orjson
        objects = self.cloud.objects
        full = len(orjson.dumps({"revision": 10,
                                 "objects": synthetic.snapshot_lists(objects)}))
        out = {"kind": "snapshot", "full": full, "ports": len(objects["ports"])}
        try:
            from plexus.model import relevance
            from plexus.model.catalog import Catalog
        except ImportError as exc:
            out["selected_error"] = f"no plexus.model.relevance ({exc})"
            return out
        catalog, _ = Catalog.from_wire(objects)
        chosen = relevance.select(catalog, relevance.subscriptions(catalog, self.here))
        selected = {c: [objects[c][i] for i in sorted(ids)]
                    for c, ids in chosen.items() if ids}
        out["selected"] = len(orjson.dumps({"revision": 10, "objects": selected}))
        out["selected_ports"] = len(chosen.get("ports", ()))
        return out

    async def run(self, kinds, events: int, kind_budget: float) -> None:
        from plexus.agent.agent import Agent, AgentConfig
        Vif = _vif_class()
        vifs = []
        for port in sorted(self.cloud.ports_on(self.here), key=lambda p: p["id"]):
            self.ofport += 1
            vifs.append(Vif(f"tap{self.ofport}", port["id"], self.ofport))
        sb = FakeSouthbound(self.cloud.objects)
        switch = RecordingSwitch(tuple(vifs))
        agent_obj = self.cloud.objects["agents"][synthetic._uuid(1, 0)]
        config = AgentConfig(chassis=self.here,
                             tunnel_ip=agent_obj["configurations"]["tunnel_ip"],
                             bridge_mappings={"physnet1": "br-ex"}, gateway=False, ttl=300)
        agent = Agent(config, sb, switch, dhcp=lambda *a: None)
        self.sb, self.switch = sb, switch
        baseline = []
        for _ in range(5):
            t0 = time.process_time()
            await _settle()
            baseline.append(time.process_time() - t0)
        self.idle = statistics.median(baseline)

        t0, w0 = time.process_time(), time.perf_counter()
        task = asyncio.get_running_loop().create_task(agent.run())
        try:
            await _until(lambda: switch.flow_mods > 0 or task.done())
            await _settle()
            if task.done():
                task.result()
            self.emit({"kind": "compile", "cpu_ms": self._ms(t0),
                       "wall_ms": (time.perf_counter() - w0) * 1000,
                       "flows": len(switch.table), "ports": len(self.cloud.objects["ports"])})
            # the recording switch's decoded table stands for OVS's, which lives in
            # another process: keep it out of this process' cyclic collector, as the
            # agent keeps its own snapshot and compiled pipeline
            gc.freeze()
            for kind in kinds:
                start = last = time.monotonic()
                for i in range(events):
                    now = time.monotonic()
                    if i and now - start + (now - last) > kind_budget:
                        break               # the next event would end past the budget
                    last = now
                    await self.event(kind, i, task)
        finally:
            agent.stop()
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 30)

    def _ms(self, t0: float) -> float:
        return max(0.0, (time.process_time() - t0 - self.idle) * 1000)

    async def event(self, kind: str, i: int, task) -> None:
        """Make one event of ``kind``, hand it to the agent, measure until idle."""
        cloud, sb, switch = self.cloud, self.sb, self.switch
        plug = None
        if kind == "irrelevant":
            far = cloud.far_networks()
            net = far[(self.far * 7) % len(far)]
            self.far += 1
            hosts = cloud.network_chassis[net]
            change = ("ports", cloud.new_port(net, hosts[i % len(hosts)]))
        elif kind in ("neighbour", "here"):
            nets = cloud.local_networks()
            net = nets[self.local % len(nets)]
            self.local += 1
            if kind == "neighbour":
                change = ("ports", cloud.new_port(net, cloud.network_chassis[net][1 + i % 4]))
            else:
                port = cloud.new_port(net, self.here, status="DOWN")
                change = ("ports", port)
                self.ofport += 1
                plug = (f"tap{self.ofport}", port["id"], self.ofport)
        elif kind in ("plug", "plug10"):
            # the ports are created bound here first (unmeasured: their flows come from
            # the binding), then their VIFs are plugged: the port-up path of the lab's
            # bench (bench/portup.py), flows for the ofports and the ACTIVE reports
            count = 10 if kind == "plug10" else 1
            nets = cloud.local_networks()
            plugs = []
            for _ in range(count):
                net = nets[self.local % len(nets)]
                self.local += 1
                port = cloud.new_port(net, self.here, status="DOWN")
                revision = sb.put("ports", port)
                self.ofport += 1
                plugs.append((f"tap{self.ofport}", port["id"], self.ofport))
            await _until(lambda: sb.asked_from > revision or task.done())
            await _settle()
            mods, bundles, reports = switch.flow_mods, switch.bundles, sb.requests
            t0, w0 = time.process_time(), time.perf_counter()
            switch.plug_many(plugs)
            await _until(lambda: sb.active(p[1] for p in plugs) or task.done())
            await _settle()
            if task.done():
                task.result()
            self.emit({"kind": kind, "cpu_ms": self._ms(t0) / count,
                       "wall_ms": (time.perf_counter() - w0) * 1000,
                       "flow_mods": switch.flow_mods - mods, "bundles": switch.bundles - bundles,
                       "reports": sb.requests - reports})
            return
        elif kind == "sg_rule":
            project = cloud.measured_project
            group = dict(cloud.objects["security-groups"][cloud.group_of[project]])
            rule = cloud.rule(group["id"], project, "ingress", protocol="tcp",
                              port=1000 + i, prefix="0.0.0.0/0")
            group["security_group_rules"] = list(group["security_group_rules"]) + [rule]
            change = ("security-groups", group)
        elif kind == "port_forwarding":
            if self.pf_fip is None:                       # its own port first, unmeasured
                fid = synthetic._uuid(8, 0)
                own = cloud.new_port(synthetic.EXTERNAL, "", owner="network:floatingip",
                                     device=fid)
                revision = sb.put("ports", own)
                await _until(lambda: sb.asked_from > revision or task.done())
                await _settle()
                self.pf_fip = {
                    "id": fid, "floating_ip_address": own["fixed_ips"][0]["ip_address"],
                    "floating_network_id": synthetic.EXTERNAL, "floating_port_id": own["id"],
                    "router_id": cloud.router_of[cloud.measured_project], "port_id": None,
                    "fixed_ip_address": None, "project_id": cloud.measured_project,
                    "status": "DOWN", "revision_number": 0, PORT_FORWARDINGS: []}
            local = sorted(cloud.ports_on(self.here), key=lambda p: p["id"])
            target = local[i % len(local)]
            fip = dict(self.pf_fip)
            fip[PORT_FORWARDINGS] = fip[PORT_FORWARDINGS] + [{
                "id": synthetic._uuid(9, i), "protocol": "tcp", "external": [10000 + i] * 2,
                "internal_port_id": target["id"],
                "internal_ip_address": target["fixed_ips"][0]["ip_address"],
                "internal": [20000 + i] * 2, "description": ""}]
            fip["revision_number"] += 1
            self.pf_fip = fip
            change = ("floatingips", fip)
        elif kind == "qos_rule":
            change = ("qos-policies", synthetic.qos_policy(cloud.measured_project, 2000 + i))
        elif kind == "lb_member":
            net = cloud.local_networks()[0]
            on = sorted((p for p in cloud.objects["ports"].values() if p["network_id"] == net),
                        key=lambda p: p["id"])
            members = {f"m{j}": {"id": f"m{j}", "pool_id": "p", "protocol_port": 8080 + j,
                                 "address": on[j % len(on)]["fixed_ips"][0]["ip_address"],
                                 "weight": 1, "admin_state_up": True}
                       for j in range(i + 1)}
            change = ("loadbalancers", {
                "id": "lb-bench", "admin_state_up": True, "vip_address": "10.255.255.1",
                "vip_network_id": net, "vip_port_id": "", "children": {
                    "listeners": {"l": {"id": "l", "protocol": "TCP", "protocol_port": 80,
                                        "default_pool_id": "p", "admin_state_up": True}},
                    "pools": {"p": {"id": "p", "protocol": "TCP", "admin_state_up": True,
                                    "lb_algorithm": "ROUND_ROBIN"}},
                    "members": members, "healthmonitors": {}}})
        elif kind == "dns_rename":
            local = sorted(cloud.ports_on(self.here), key=lambda p: p["id"])
            port = dict(local[i % len(local)], dns_name=f"vm-{i}")
            port["revision_number"] = port.get("revision_number", 0) + 1
            change = ("ports", port)
        else:
            raise ValueError(kind)
        mods, bundles = switch.flow_mods, switch.bundles
        t0, w0 = time.process_time(), time.perf_counter()
        revision = sb.put(*change)
        if plug:
            switch.plug(*plug)
        await _until(lambda: sb.asked_from > revision or task.done())
        await _settle()
        if task.done():
            task.result()
        self.emit({"kind": kind, "cpu_ms": self._ms(t0),
                   "wall_ms": (time.perf_counter() - w0) * 1000,
                   "flow_mods": switch.flow_mods - mods, "bundles": switch.bundles - bundles})


def agent_child(size: int, kinds, events: int, kind_budget: float, chassis: int) -> None:
    """Run one size and print one JSON line per measurement (the parent reads them)."""
    import logging
    logging.basicConfig(level=logging.ERROR)

    def emit(record: dict) -> None:
        print(json.dumps(record), flush=True)

    bench = AgentBench(size, emit, chassis)
    emit(bench.snapshot_bytes())
    asyncio.run(bench.run(kinds, events, kind_budget))
    emit({"kind": "done"})


def measure_agent(size: int, args) -> tuple[list[dict], str | None]:
    """One size in a child process under ``--size-cap``: its records and, when it was
    cut short, why."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_agent-child", str(size),
           "--events", str(args.events), "--kind-budget", str(args.kind_budget),
           "--chassis", str(args.chassis), "--kinds", ",".join(args.kinds)]
    records: list[dict] = []
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stderr: list[str] = []

    def read_out():
        for line in proc.stdout:
            try:
                records.append(json.loads(line))
            except ValueError:
                pass

    def read_err():
        stderr.extend(proc.stderr)

    readers = [threading.Thread(target=read_out, daemon=True),
               threading.Thread(target=read_err, daemon=True)]
    for r in readers:
        r.start()
    try:
        proc.wait(timeout=args.size_cap)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        for r in readers:
            r.join(5)
        return records, f"> {args.size_cap:.0f} s cap"
    for r in readers:
        r.join(5)
    if proc.returncode != 0:
        tail = "".join(stderr)[-2000:]
        print(f"agent part at {size} ports failed:\n{tail}", file=sys.stderr)
        return records, f"failed (exit {proc.returncode})"
    return records, None


# ======================================================================================
# B. the server with many watchers
# ======================================================================================

def start_server(store_url: str, port: int, log: Path) -> subprocess.Popen:
    """A plexus-server process of this tree's code (``src/`` next to ``bench/``),
    returned once it answers."""
    import httpx
    code = ("import sys; sys.path.insert(0, %r); from plexus.server.main import main; "
            "main()" % str(SRC))
    proc = subprocess.Popen([sys.executable, "-c", code, "--host", "127.0.0.1", "--port",
                             str(port), "--store", store_url, "--log-level", "warning"],
                            stdout=open(log, "a"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited ({proc.returncode}); see {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    stop_server(proc)
    raise SystemExit(f"server did not start; see {log}")


def stop_server(proc: subprocess.Popen) -> None:
    """Stop a server this benchmark started (by its pid)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def rss_mib(pid: int) -> float:
    """Resident set size of a process (MiB), 0 when gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def preload(url: str, token: str, chassis: int, filler_networks: int) -> dict:
    """The model for the watch test, through the API: a shared network with one port on
    each chassis (every watcher must see a write to one of them), filler networks of 50
    ports over 5 chassis, and a probe port on a network of its own (no chassis)."""
    import httpx
    from concurrent.futures import ThreadPoolExecutor
    headers = {"X-Auth-Token": token}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
        def network(name, cidr):
            net = c.post("/v2.0/networks", json={"network": {"name": name}})
            net.raise_for_status()
            nid = net.json()["network"]["id"]
            c.post("/v2.0/subnets", json={"subnet": {"network_id": nid, "cidr": cidr,
                                                     "ip_version": 4}}).raise_for_status()
            return nid

        shared = network("scale-shared", "10.100.0.0/16")
        probe_net = network("scale-probe", "10.101.0.0/24")
        fillers = [network(f"scale-filler-{i}", f"10.102.{i}.0/24")
                   for i in range(filler_networks)]
    jobs = [(shared, synthetic.chassis_name(i), f"shared-{i}") for i in range(chassis)]
    for i, nid in enumerate(fillers):
        hosts = [synthetic.chassis_name((i * 37 + k * 211) % chassis) for k in range(5)]
        jobs += [(nid, hosts[k % 5], f"filler-{i}-{k}") for k in range(50)]
    jobs.append((probe_net, "", "probe"))
    local = threading.local()

    def create(job):
        nid, host, name = job
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, headers=headers, timeout=60)
        body = {"network_id": nid, "name": name, "device_owner": "compute:nova",
                "device_id": f"vm-{name}"}
        if host:
            body["binding:host_id"] = host
        r = local.client.post("/v2.0/ports", json={"port": body})
        r.raise_for_status()
        return name, r.json()["port"]["id"]

    with ThreadPoolExecutor(4) as pool:
        ids = dict(pool.map(create, jobs))
    return {"shared": [ids[f"shared-{i}"] for i in range(chassis)], "probe": ids["probe"],
            "ports": len(jobs)}


async def _http(reader, writer, method: str, path: str, token: str,
                body: bytes | None = None) -> tuple[int, bytes]:
    """One HTTP/1.1 request on a kept-alive connection: (status, body)."""
    head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Auth-Token: {token}\r\n"
            f"Accept: application/json\r\n")
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    writer.write((head + "\r\n").encode() + (body or b""))
    await writer.drain()
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("closed")
    status = int(status_line.split()[1])
    length, chunked, close = None, False, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value:
            chunked = True
        elif name == "connection" and value == "close":
            close = True
    if chunked:
        parts = []
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                break
            parts.append(await reader.readexactly(size))
            await reader.readline()
        data = b"".join(parts)
    elif length is not None:
        data = await reader.readexactly(length)
    else:
        data = await reader.read()
        close = True
    if close:
        writer.close()
        raise _Closed(status, data)
    return status, data


class _Closed(Exception):
    """The server answered and closed the connection."""

    def __init__(self, status: int, data: bytes):
        super().__init__(status)
        self.status, self.data = status, data


async def _watchers(port: int, token: str, names: list[str], start: int, prefix: str,
                    writes: int, deadline_wall: float) -> dict:
    """Long-poll as each chassis of ``names`` until every one saw ``writes`` tokens or
    the deadline (``time.time()``); returns {token: [receive times]} and counts."""
    import orjson
    seen: dict[str, list[float]] = {}
    stats = {"requests": 0, "errors": 0, "cut": 0, "statuses": {}, "events": 0}
    ready = asyncio.Event()
    opened = [0]

    async def one(chassis: str) -> None:
        got: set[str] = set()
        nxt, conn = start, None
        announced = False
        while len(got) < writes and time.time() < deadline_wall:
            try:
                if conn is None:
                    conn = await asyncio.open_connection("127.0.0.1", port)
                if not announced:
                    announced = True
                    opened[0] += 1
                    if opened[0] == len(names):
                        ready.set()
                wait = max(1, min(25, int(deadline_wall - time.time())))
                task = _http(*conn, "GET", f"/southbound/v1/watch?from={nxt}&timeout={wait}"
                             f"&chassis={chassis}", token)
                status, data = await asyncio.wait_for(
                    task, max(0.1, deadline_wall - time.time() + 1))
            except _Closed as exc:
                conn = None
                status, data = exc.status, exc.data
            except asyncio.TimeoutError:        # an OSError too: catch it first
                stats["cut"] += 1              # still waiting at the deadline
                break
            except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError,
                    IndexError):
                stats["errors"] += 1
                if conn is not None:
                    conn[1].close()
                conn = None
                await asyncio.sleep(0.2)
                continue
            stats["requests"] += 1
            stats["statuses"][status] = stats["statuses"].get(status, 0) + 1
            if status != 200:
                await asyncio.sleep(0.5)
                continue
            now = time.time()
            body = orjson.loads(data)
            events = body.get("events") or []
            stats["events"] += len(events)
            for event in events:
                obj = event.get("object") or {}
                name = obj.get("name") if isinstance(obj, dict) else None
                if isinstance(name, str) and name.startswith(prefix) and name not in got:
                    got.add(name)
                    seen.setdefault(name, []).append(now)
            nxt = int(body.get("next", nxt))
        if conn is not None:
            conn[1].close()

    tasks = [asyncio.create_task(one(n)) for n in names]
    await asyncio.wait_for(ready.wait(), 60)
    print(json.dumps({"ready": True}), flush=True)
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"seen": seen, "stats": stats}


def watch_child(spec: str) -> None:
    """A watcher client process: args as JSON; prints {"ready"} then the results."""
    a = json.loads(spec)
    result = asyncio.run(_watchers(a["port"], a["token"], a["names"], a["start"],
                                   a["prefix"], a["writes"], a["deadline"]))
    print(json.dumps(result), flush=True)


async def _timed(client, method: str, path: str, timeout: float, **kw) -> tuple[float, int]:
    import httpx
    t0 = time.perf_counter()
    try:
        r = await client.request(method, path, timeout=timeout, **kw)
        return (time.perf_counter() - t0) * 1000, r.status_code
    except httpx.HTTPError:
        return (time.perf_counter() - t0) * 1000, 0


async def _drive(url: str, token: str, model: dict, prefix: str, args,
                 clients: list[subprocess.Popen], deadline: float) -> dict:
    """The writes (one every ``write_interval``) and the API prober, until the watcher
    clients exit or the deadline (``time.time()``)."""
    import httpx
    sent: dict[str, float] = {}
    api: list[tuple[str, float, int]] = []
    done = asyncio.Event()

    async def writer():
        async with httpx.AsyncClient(base_url=url, headers={"X-Auth-Token": token}) as c:
            for k in range(args.writes):
                if time.time() > deadline:
                    break
                name = f"{prefix}{k:03d}"
                pid = model["shared"][(k * 97) % len(model["shared"])]
                t_sent = time.time()
                sent[name] = t_sent
                ms, status = await _timed(c, "PUT", f"/v2.0/ports/{pid}",
                                          max(1.0, deadline - time.time()),
                                          json={"port": {"name": name}})
                api.append(("write", ms, status))
                await asyncio.sleep(max(0.0, t_sent + args.write_interval - time.time()))

    async def prober():
        async with httpx.AsyncClient(base_url=url, headers={"X-Auth-Token": token}) as c:
            i = 0
            while not done.is_set() and time.time() < deadline:
                i += 1
                left = max(1.0, deadline - time.time())
                if i % 4:
                    ms, status = await _timed(c, "GET", f"/v2.0/ports/{model['probe']}", left)
                    api.append(("get", ms, status))
                else:
                    ms, status = await _timed(c, "PUT", f"/v2.0/ports/{model['probe']}", left,
                                              json={"port": {"description": f"probe {i}"}})
                    api.append(("put", ms, status))
                await asyncio.sleep(0.25)

    async def clients_done():
        while any(p.poll() is None for p in clients) and time.time() < deadline + 15:
            await asyncio.sleep(0.1)
        done.set()

    w = asyncio.create_task(writer())
    p = asyncio.create_task(prober())
    await clients_done()
    for t in (w, p):
        t.cancel()
    await asyncio.gather(w, p, return_exceptions=True)
    return {"sent": sent, "api": api}


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, int(round(q * (len(values) - 1)))))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 when gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def run_phase(script: Path, specs: list[dict], url: str, token: str, model: dict,
              prefix: str, server: subprocess.Popen, args, deadline: float) -> dict:
    """One phase of watcher clients: a process per spec (``script --_watch-child SPEC``,
    each printing one JSON line when ready and one with its results), then, once all are
    ready and ``args.settle`` has passed, the writes and the API prober (``_drive``).
    Returns the drive's result, the clients' JSON records, the server's peak RSS (MiB)
    and its CPU seconds and the wall seconds of the drive."""
    clients: list[subprocess.Popen] = []
    outputs: list[list[str]] = []
    peak = [rss_mib(server.pid)]
    stop_sampling = threading.Event()

    def sample():
        while not stop_sampling.is_set():
            peak[0] = max(peak[0], rss_mib(server.pid))
            stop_sampling.wait(0.25)

    threading.Thread(target=sample, daemon=True).start()
    try:
        for spec in specs:
            clients.append(subprocess.Popen([sys.executable, str(script), "--_watch-child",
                                             json.dumps(spec)], stdout=subprocess.PIPE,
                                            text=True))
            outputs.append([])

        def read(proc, out):
            for line in proc.stdout:
                out.append(line)

        readers = [threading.Thread(target=read, args=(p, o), daemon=True)
                   for p, o in zip(clients, outputs)]
        for r in readers:
            r.start()
        t_ready = time.time()
        while not all(o for o in outputs) and time.time() < t_ready + 60:
            if any(p.poll() is not None and not o for p, o in zip(clients, outputs)):
                break
            time.sleep(0.05)
        time.sleep(args.settle)
        cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
        drive = asyncio.run(_drive(url, token, model, prefix, args, clients, deadline))
        cpu, wall = cpu_seconds(server.pid) - cpu0, time.monotonic() - t0
        for proc in clients:
            try:
                proc.wait(timeout=max(1.0, deadline + 20 - time.time()))
            except subprocess.TimeoutExpired:
                stop_server(proc)
        for r in readers:
            r.join(5)
    finally:
        stop_sampling.set()
        for proc in clients:
            stop_server(proc)
    records = [json.loads(line) for out in outputs for line in out]
    return {"drive": drive, "records": records, "rss": peak[0], "cpu": cpu, "wall": wall}


def measure_watchers(watchers: int, url: str, port: int, token: str, model: dict,
                     server: subprocess.Popen, args) -> dict:
    """One W: watchers connect, writes and probes run, results are gathered."""
    import httpx
    snap = httpx.get(f"{url}/southbound/v1/snapshot", headers={"X-Auth-Token": token},
                     timeout=120)
    snap.raise_for_status()
    start = int(snap.json()["revision"]) + 1
    full_bytes = len(snap.content)
    one = httpx.get(f"{url}/southbound/v1/snapshot?chassis=c0001",
                    headers={"X-Auth-Token": token}, timeout=120)
    chassis_bytes = len(one.content) if one.status_code == 200 else None
    prefix = f"scale-{watchers}-w"
    names = [synthetic.chassis_name(i) for i in range(watchers)]
    deadline = time.time() + args.phase_cap
    groups = [names[i::2] for i in range(2)] if watchers > 1 else [names]
    specs = [{"port": port, "token": token, "names": group, "start": start, "prefix": prefix,
              "writes": args.writes, "deadline": deadline} for group in groups]
    ran = run_phase(Path(__file__).resolve(), specs, url, token, model, prefix, server, args,
                    deadline)
    drive, peak = ran["drive"], [ran["rss"]]
    seen: dict[str, list[float]] = {}
    stats = {"requests": 0, "errors": 0, "cut": 0, "events": 0, "statuses": {}}
    for record in ran["records"]:
        if "seen" in record:
            for name, times in record["seen"].items():
                seen.setdefault(name, []).extend(times)
            for k in ("requests", "errors", "cut", "events"):
                stats[k] += record["stats"][k]
            for s, n in record["stats"]["statuses"].items():
                stats["statuses"][s] = stats["statuses"].get(s, 0) + n
    sent = drive["sent"]
    delays = [(t - sent[name]) * 1000 for name, times in seen.items() if name in sent
              for t in times]
    per_write_all = [(max(seen[name]) - sent[name]) * 1000 for name in sent
                     if len(seen.get(name, ())) == watchers]
    api = drive["api"]
    return {"watchers": watchers, "writes_sent": len(sent), "writes": args.writes,
            "expected": len(sent) * watchers, "delivered": len(delays),
            "p50": _pct(delays, 0.5) if delays else None,
            "p99": _pct(delays, 0.99) if delays else None,
            "all_max": max(per_write_all) if per_write_all else None,
            "complete_writes": len(per_write_all),
            "api_p95": _pct([ms for _, ms, _ in api], 0.95) if api else None,
            "api_n": len(api), "api_failed": sum(1 for _, _, s in api if s not in (200, 201)),
            "write_p95": _pct([ms for k, ms, _ in api if k == "write"], 0.95)
            if any(k == "write" for k, _, _ in api) else None,
            "rss": peak[0], "full_bytes": full_bytes, "chassis_bytes": chassis_bytes,
            "stats": stats}


def catch_up(url: str, token: str, cap: float) -> float | None:
    """Seconds after the preload until the server that took it answers a chassis'
    snapshot within 1 s again (None: not within ``cap``)."""
    import httpx
    t0 = time.monotonic()
    while time.monotonic() - t0 < cap:
        t1 = time.monotonic()
        try:
            r = httpx.get(f"{url}/southbound/v1/snapshot?chassis=c0001",
                          headers={"X-Auth-Token": token}, timeout=10)
            if r.status_code == 200 and time.monotonic() - t1 < 1.0:
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return None


def measure_server(args) -> tuple[list[dict], dict]:
    """Every W of ``--watchers`` against a fresh server process on one preloaded store."""
    from plexus.server.runner import free_port
    tmp = Path(tempfile.mkdtemp(prefix="plexus-scale-"))
    store_url = f"sqlite:///{tmp}/plexus.db"
    log = tmp / "server.log"
    results, model = [], {}
    server = None
    try:
        for i, watchers in enumerate(args.watchers):
            port = free_port()
            server = start_server(store_url, port, log)
            url = f"http://127.0.0.1:{port}"
            token = _token(url)
            if i == 0:
                t0 = time.perf_counter()
                model = preload(url, token, args.chassis, args.filler_networks)
                model["preload_s"] = time.perf_counter() - t0
                model["catch_up_s"] = catch_up(url, token, args.catch_up_cap)
                model["catch_up_cap"] = args.catch_up_cap
                stop_server(server)         # every W starts on a fresh server process
                server = None
                port = free_port()
                server = start_server(store_url, port, log)
                url = f"http://127.0.0.1:{port}"
                token = _token(url)
            results.append(measure_watchers(watchers, url, port, token, model, server, args))
            stop_server(server)
            server = None
    finally:
        if server is not None:
            stop_server(server)
        shutil.rmtree(tmp, ignore_errors=True)
    return results, model


# ======================================================================================
# the table
# ======================================================================================

def _size_label(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def agent_rows(sizes: list[int], runs: dict[int, tuple[list[dict], str | None]],
               kinds) -> list[tuple[str, str]]:
    def na(size):
        why = runs[size][1]
        return f"n/a ({why})" if why else "n/a"

    def col(fn) -> str:
        return " / ".join(fn(s) for s in sizes)

    def of(size, kind):
        return [r for r in runs[size][0] if r.get("kind") == kind]

    def snap(size):
        r = of(size, "snapshot")
        return r[0] if r else None

    rows = [("agent: sizes (global ports, 1,000 chassis)",
             col(lambda s: f"{snap(s)['ports']:,}" if snap(s) else _size_label(s)))]

    def compile_cell(s):
        r = of(s, "compile")
        return f"{r[0]['cpu_ms']:.0f} ms, {r[0]['flows']:,} flows" if r else na(s)

    rows.append(("full compile of one chassis: CPU, flows", col(compile_cell)))
    for kind in kinds:
        def cell(s, kind=kind):
            r = of(s, kind)
            if not r:
                return na(s)
            cpu = [x["cpu_ms"] for x in r]
            cut = f", cut: {runs[s][1]}" if runs[s][1] and len(r) < 2 else ""
            reports = (f", {statistics.median([x['reports'] for x in r]):.0f} status "
                       f"requests" if "reports" in r[0] else "")
            return (f"{statistics.median(cpu):.1f} / {max(cpu):.1f} "
                    f"(n={len(r)}, {statistics.median([x['flow_mods'] for x in r]):.0f} "
                    f"mods{reports}{cut})")
        rows.append((f"{KIND_LABEL[kind]}: CPU p50 / max ms", col(cell)))

    def snap_cell(s):
        r = snap(s)
        if not r:
            return na(s)
        if "selected" not in r:
            return f"n/a ({r.get('selected_error', '?')})"
        return f"{r['selected'] / 1e6:.2f} MB ({r['selected_ports']} ports)"

    rows.append(("snapshot per chassis, relevance.select (ports in it)", col(snap_cell)))
    rows.append(("full snapshot (every object)",
                 col(lambda s: f"{snap(s)['full'] / 1e6:.1f} MB" if snap(s) else na(s))))
    return rows


def _ms(v) -> str:
    if v is None:
        return "n/a"
    return f"{v / 1000:.1f} s" if v >= 10000 else f"{v:.0f} ms"


def server_rows(results: list[dict], model: dict, cap: float) -> list[tuple[str, str]]:
    rows = []
    if not results:
        return rows
    ws = " / ".join(str(r["watchers"]) for r in results)
    filtered = results[0]["chassis_bytes"]
    full = results[0]["full_bytes"]
    up = model.get("catch_up_s")
    catch = f"{up:.1f} s" if up is not None else f"n/a (> {model['catch_up_cap']:.0f} s)"
    rows.append(("server: preload through the API; then a chassis snapshot < 1 s after",
                 f"{model.get('ports', 0):,} ports in {model.get('preload_s', 0):.0f} s; "
                 f"{catch}"))
    rows.append(("server: snapshot, all / ?chassis=c0001",
                 f"{full / 1e6:.2f} MB / "
                 + (f"{filtered / 1e6:.2f} MB"
                    + (" (not filtered)" if filtered and abs(filtered - full) < 1024 else "")
                    if filtered is not None else "?chassis= refused")))

    def col(fn):
        return " / ".join(fn(r) for r in results)

    rows.append((f"watchers ({ws}): writes made / asked",
                 col(lambda r: f"{r['writes_sent']}/{r['writes']}")))
    rows.append(("deliveries within the cap (watch answers; unanswered at the cap)",
                 col(lambda r: f"{r['delivered']}/{r['expected']}"
                     + (f" (> {cap:.0f} s cap)" if r["delivered"] < r["expected"] else "")
                     + f" ({r['stats']['requests']}; {r['stats']['cut']}"
                     + (f"; {r['stats']['errors']} errors" if r["stats"]["errors"] else "")
                     + ")")))
    rows.append(("write → watcher delivery p50 / p99",
                 col(lambda r: f"{_ms(r['p50'])} / {_ms(r['p99'])}")))
    rows.append(("write → last watcher, worst write",
                 col(lambda r: _ms(r["all_max"]) if r["complete_writes"] == r["writes_sent"]
                     and r["writes_sent"] else
                     f"n/a ({r['complete_writes']}/{r['writes_sent']} writes reached all)")))
    rows.append(("API p95 during the watch (n, failed)",
                 col(lambda r: f"{_ms(r['api_p95'])} ({r['api_n']}, {r['api_failed']})")))
    rows.append(("server RSS peak", col(lambda r: f"{r['rss']:.0f} MiB")))
    return rows


def main() -> None:
    """Measure, then print one table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=("agent", "server", "both"), default="both")
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--watchers", default="100,500,1000")
    ap.add_argument("--chassis", type=int, default=synthetic.CHASSIS)
    ap.add_argument("--events", type=int, default=50, help="events per kind")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--kind-budget", type=float, default=30.0,
                    help="seconds of events per kind before moving on")
    ap.add_argument("--size-cap", type=float, default=300.0,
                    help="wall seconds per agent size (the child is killed after)")
    ap.add_argument("--writes", type=int, default=20)
    ap.add_argument("--write-interval", type=float, default=0.5)
    ap.add_argument("--phase-cap", type=float, default=90.0,
                    help="wall seconds per watcher count, from the watchers' start")
    ap.add_argument("--settle", type=float, default=3.0,
                    help="seconds between the watchers' first requests and the writes")
    ap.add_argument("--filler-networks", type=int, default=40)
    ap.add_argument("--catch-up-cap", type=float, default=180.0,
                    help="seconds to wait for the server to digest the preload")
    ap.add_argument("--_agent-child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_watch-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.kinds = [k for k in args.kinds.split(",") if k]
    if args._agent_child is not None:
        agent_child(args._agent_child, args.kinds, args.events, args.kind_budget,
                    args.chassis)
        return
    if args._watch_child is not None:
        watch_child(args._watch_child)
        return
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    args.watchers = [int(w) for w in args.watchers.split(",") if w]

    rows: list[tuple[str, str]] = []
    if args.part in ("agent", "both"):
        runs = {}
        for size in args.sizes:
            t0 = time.monotonic()
            runs[size] = measure_agent(size, args)
            print(f"# agent part, {size} ports: {time.monotonic() - t0:.0f} s"
                  + (f" ({runs[size][1]})" if runs[size][1] else ""), file=sys.stderr)
        rows += agent_rows(args.sizes, runs, args.kinds)
    if args.part in ("server", "both"):
        t0 = time.monotonic()
        results, model = measure_server(args)
        print(f"# server part: {time.monotonic() - t0:.0f} s", file=sys.stderr)
        rows += server_rows(results, model, args.phase_cap)
    rows.append(("code measured", _commit()))
    rows.append(("machine", machine()))
    print_table(rows)


def _commit() -> str:
    """The commit of the tree measured (and whether it has local changes);
    ``PLEXUS_BENCH_COMMIT`` names it for a tree exported without git."""
    if os.environ.get("PLEXUS_BENCH_COMMIT"):
        return os.environ["PLEXUS_BENCH_COMMIT"]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE_DIR,
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", str(SRC)],
                               cwd=HERE_DIR, capture_output=True, text=True,
                               timeout=10).stdout.strip()
        return (head + (" + uncommitted changes in src/" if dirty else "")) if head \
            else "unknown (not a git checkout)"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


if __name__ == "__main__":
    main()
