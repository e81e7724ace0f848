"""The agent with fakes at its two boundaries only — the server's southbound API and
Open vSwitch (a flow table that applies flow mods as OVS does, OVSDB's bridge state and
conntrack zone flushes): first sync, reconcile on restart without changes, the minimal
flow diff, port status, tunnels, security groups, conntrack zones of VIFs that went away,
DHCP packet-ins, and what it does with bad input and an absent server."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging

import pytest
from os_ken.lib.packet import dhcp, ethernet, ipv4, packet, udp
from os_ken.ofproto import ofproto_v1_3 as ofp

from plexus.agent import flowdiff
from plexus.agent.agent import Agent, AgentConfig
from plexus.agent.ovs import BridgeState, PacketIn, Tunnel
from plexus.agent.relevant import Vif, build_view
from plexus.agent.southbound import Compacted, Refused, Unavailable
from plexus.agent.timing import Timing
from plexus.lower.openflow import cookie_of
from plexus.model.objects import to_qos_policy
from plexus.pipeline.compile import compile_view
from plexus.pipeline.flows import Meter
from plexus.pipeline.stages.qos import meter_id
from tests.golden.reference import reference_view

HERE = "c1"


# --- the fakes -------------------------------------------------------------------------

class FakeServer:
    """The southbound API over an in-memory model with a revisioned history."""

    def __init__(self, objects: dict):
        self.objects = copy.deepcopy(objects)
        self.revision = 10
        self.history: list[tuple[int, object]] = []
        self.compacted = 0
        self.down = False
        self.snapshots = 0
        self.statuses: list[tuple[str, str]] = []
        self.batch_reports = True   # the server takes several ports' statuses at once
        self.batches: list[list[tuple[str, str]]] = []
        self.registrations = 0
        self.refused = 0            # calls answered "connection refused" while down

    def _check(self):
        if self.down:
            self.refused += 1
            raise Unavailable("connection refused")

    def put(self, collection: str, obj: dict) -> None:
        self.revision += 1
        self.objects.setdefault(collection, {})[obj["id"]] = copy.deepcopy(obj)
        self.history.append((self.revision, {"type": "put", "collection": collection,
                                             "id": obj["id"], "revision": self.revision,
                                             "object": copy.deepcopy(obj)}))

    def delete(self, collection: str, ident: str) -> None:
        self.revision += 1
        self.objects[collection].pop(ident)
        self.history.append((self.revision, {"type": "delete", "collection": collection,
                                             "id": ident, "revision": self.revision,
                                             "object": None}))

    def inject(self, raw) -> None:
        """A malformed event, as if the stream carried it."""
        self.revision += 1
        self.history.append((self.revision, raw))

    async def snapshot(self):
        self._check()
        self.snapshots += 1
        return self.revision, {c: list(copy.deepcopy(v).values())
                               for c, v in self.objects.items()}

    async def watch(self, start, wait=25.0):
        self._check()
        if start <= self.compacted:
            raise Compacted(f"from {start}")
        for _ in range(20):
            events = [e for rev, e in self.history if rev >= start]
            if events:
                return events, self.revision + 1
            await asyncio.sleep(0.005)
        return [], max(start, self.revision + 1)

    async def register(self, chassis, tunnel_ip, mappings, gateway, ttl,
                       availability_zone="nova"):
        self._check()
        self.registrations += 1
        self.zone = availability_zone
        return 1, ttl

    async def heartbeat(self, chassis, lease):
        self._check()

    async def unregister(self, chassis, lease):
        self._check()

    async def port_status(self, port_id, status, chassis):
        self._check()
        self.statuses.append((port_id, status))
        self.put("ports", dict(self.objects["ports"][port_id], status=status))

    async def port_statuses(self, reports, chassis):
        """The batch report, as the server answers it: per port None (recorded) or
        (status, message); a 404 for the whole report from a server without it."""
        self._check()
        if not self.batch_reports:
            raise Refused(404, "Not Found")
        self.batches.append(list(reports))
        out = {}
        for port_id, status in reports:
            found = self.objects["ports"].get(port_id)
            if found is None or found.get("binding:host_id") != chassis:
                out[port_id] = (404 if found is None else 409, "refused")
                continue
            self.statuses.append((port_id, status))
            self.put("ports", dict(found, status=status))
            out[port_id] = None
        return out


class FakeSwitch:
    """br-int: a flow table that applies flow mods like OVS, and OVSDB's bridge state."""

    def __init__(self, table: dict | None = None):
        self.table: dict = dict(table or {})
        self.bundles: list[list] = []
        self.state = BridgeState(synced=True, bridge_ok=True)
        self.tunnel_requests: list[dict] = []
        self.sent: list[tuple[int, bytes]] = []
        self.warmed: list[int] = []             # tunnel ofports warm_tunnel was called for
        self.on_state = None
        self.on_packet_in = None
        self._closed: asyncio.Event | None = None
        self.events: list[tuple] = []           # ("bundle", n) and ("flush", zone), in order
        self.flush_error: OSError | None = None
        self.patch_requests: list[dict] = []
        self.bfd_requests: list[frozenset] = []
        self.bfd_state: dict[str, str] = {}
        self._bfd: frozenset = frozenset()
        self.punts: set = set()
        self.sent_external: list[tuple[str, bytes]] = []
        self.loopback: dict[str, tuple] = {}
        self.on_external_packet_in = None

    def start(self, on_state):
        self.on_state = on_state
        asyncio.get_running_loop().call_soon(on_state, self.state)

    def _publish(self, **changes):
        self.state = BridgeState(**{**self.state.__dict__, **changes})
        if self.on_state:
            self.on_state(self.state)

    def plug(self, name: str, iface_id: str, ofport: int) -> None:
        vifs = [v for v in self.state.vifs if v.name != name] + [Vif(name, iface_id, ofport)]
        self._publish(vifs=tuple(vifs))

    def unplug(self, name: str) -> None:
        self._publish(vifs=tuple(v for v in self.state.vifs if v.name != name))

    def set_tunnels(self, local_ip, peers, bfd=frozenset()):
        self.tunnel_requests.append(dict(peers))
        self.bfd_requests.append(frozenset(bfd))
        self._bfd = frozenset(bfd)
        self._publish(tunnels=self._tunnels(peers))

    def _tunnels(self, peers):
        return tuple(Tunnel(f"t-{c}", c, ip, 100 + i,
                            self.bfd_state.get(c, "up") if c in self._bfd else "")
                     for i, (c, ip) in enumerate(sorted(peers.items())))

    def set_bfd(self, chassis, state):
        """A BFD session changes state (as OVSDB's bfd_status reports)."""
        self.bfd_state[chassis] = state
        peers = {t.chassis: t.remote_ip for t in self.state.tunnels}
        self._publish(tunnels=self._tunnels(peers))

    async def connect(self, on_packet_in):
        self.on_packet_in = on_packet_in
        self._closed = asyncio.Event()

    @property
    def connected(self):
        return self._closed is not None and not self._closed.is_set()

    async def disconnected(self):
        await self._closed.wait()

    async def installed(self):
        return dict(self.table)

    async def meters(self):
        return dict(getattr(self, "meter_table", {}))

    async def apply_meters(self, messages):
        table = self.__dict__.setdefault("meter_table", {})
        self.events.append(("meters", tuple((m.command, m.meter_id) for m in messages)))
        for mod in messages:
            if mod.command == ofp.OFPMC_DELETE:
                table.pop(mod.meter_id, None)
            else:
                band = mod.bands[0]
                table[mod.meter_id] = Meter(mod.meter_id, band.rate, band.burst_size)

    async def apply(self, messages):
        self.bundles.append(messages)
        self.events.append(("bundle", len(messages)))
        apply_mods(self.table, messages)

    async def flush_conntrack(self, zone):
        if self.flush_error is not None:
            raise self.flush_error
        self.events.append(("flush", zone))

    async def set_zone_timeouts(self, add, remove=()):
        self.zone_timeouts = {**{z: t for z, t in getattr(self, "zone_timeouts", {}).items()
                                 if z not in remove}, **add}

    async def table_packets(self, table):
        return {}

    async def dump_conntrack(self):
        return ""

    def flushed(self) -> list[int]:
        return [zone for kind, zone in self.events if kind == "flush"]

    def packet_out(self, port, data):
        self.sent.append((port, data))

    def warm_tunnel(self, ofport):
        self.warmed.append(ofport)

    def set_patches(self, mappings):
        self.patch_requests.append(dict(mappings))
        self._publish(patches=tuple((physnet, 50 + i)
                                    for i, physnet in enumerate(sorted(mappings))))

    async def punt_arp_replies(self, bridge, mac, on_packet_in):
        self.punts.add((bridge, mac))
        self.on_external_packet_in = on_packet_in

    def packet_out_external(self, bridge, data):
        self.sent_external.append((bridge, data))

    async def set_loopback(self, bridge, macs, on_packet_in):
        self.loopback[bridge] = tuple(macs)

    def external_alive(self, bridge):
        return bridge in self.loopback

    def stop(self):
        if self._closed is not None:
            self._closed.set()


def apply_mods(table: dict, messages: list) -> None:
    """OpenFlow 1.3 semantics of add / strict modify (keeps the cookie) / strict delete."""
    for mod in messages:
        e = flowdiff.entry(mod.table_id, mod.priority, mod.cookie, mod.match,
                           mod.instructions)
        if mod.command == ofp.OFPFC_ADD:
            table[e.key] = e
        elif mod.command == ofp.OFPFC_MODIFY_STRICT:
            old = table.get(e.key)
            if old is not None:
                table[e.key] = flowdiff.Entry(e.table, e.priority, e.fields, old.cookie,
                                              e.instructions, e.match)
        elif mod.command == ofp.OFPFC_DELETE_STRICT:
            table.pop(e.key, None)
        else:
            raise AssertionError(f"unexpected command {mod.command}")


# --- a small model -------------------------------------------------------------------------

def network(ident, key):
    return {"id": ident, "plexus:key": key, "mtu": 1450, "provider:network_type": "vxlan"}


def subnet(ident, net, cidr):
    return {"id": ident, "network_id": net, "cidr": cidr, "ip_version": 4,
            "gateway_ip": cidr.replace("0/24", "1"), "enable_dhcp": True,
            "dns_nameservers": ["10.0.0.2"], "host_routes": []}


def port(ident, key, host, ip, net="n1", sub="s1"):
    return {"id": ident, "network_id": net, "plexus:key": key,
            "mac_address": f"fa:16:3e:00:00:{key:02x}", "binding:host_id": host,
            "fixed_ips": [{"subnet_id": sub, "ip_address": ip}], "status": "DOWN",
            "admin_state_up": True, "port_security_enabled": True,
            "allowed_address_pairs": [], "device_owner": "compute:nova"}


def chassis(host, ip):
    return {"id": f"a-{host}", "host": host, "configurations": {"tunnel_ip": ip}}


def model():
    return {"networks": {"n1": network("n1", 101)},
            "subnets": {"s1": subnet("s1", "n1", "10.0.0.0/24")},
            "ports": {"p1": port("p1", 1, HERE, "10.0.0.11"),
                      "p2": port("p2", 2, "c2", "10.0.0.12")},
            "agents": {f"a-{h}": chassis(h, f"198.18.0.{i}")
                       for i, h in ((11, "c1"), (12, "c2"), (13, "c3"))}}


def make_agent(server, switch):
    return Agent(AgentConfig(HERE, "198.18.0.11"), server, switch)


async def until(check, timeout=3.0):
    """Wait until ``check()`` is true (or fail)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


async def settle(agent):
    """Let every pending event reach the agent and its reconcile finish (the dirty flag
    is cleared when a reconcile starts: wait for that reconcile to end too)."""
    for _ in range(6):
        await asyncio.sleep(0.03)
        await until(lambda: not agent._dirty.is_set() and not agent._reconciling)


class Running:
    """``async with Running(agent)``: the agent runs for the block, then stops. With
    ``compiled=True`` the block starts once it compiled and applied its first view."""

    def __init__(self, agent, compiled: bool = False):
        self.agent = agent
        self.compiled = compiled

    async def __aenter__(self):
        self.task = asyncio.create_task(self.agent.run())
        if self.compiled:
            await until(self.agent.compiled.is_set)
            await settle(self.agent)
        return self.agent

    async def __aexit__(self, *exc):
        self.agent.stop()
        await asyncio.wait_for(self.task, 5)


def expected_table(server, switch) -> dict:
    view = build_view(server.objects, HERE, "198.18.0.11",
                      {v.iface_id: v.ofport for v in switch.state.vifs},
                      switch.state.tunnel_ofports())
    return {k: e for k, (e, _) in flowdiff.desired_entries(compile_view(view)).items()}


def cookies(table) -> set[int]:
    return {e.cookie for e in table.values()}


# --- the flow diff -----------------------------------------------------------------------

def entries(view):
    return flowdiff.desired_entries(compile_view(view))


def test_diff_of_identical_flow_sets_is_empty():
    want = entries(reference_view())
    assert not flowdiff.diff(want, {k: e for k, (e, _) in want.items()})


def test_diff_is_minimal_and_applying_it_gives_the_desired_table():
    old = reference_view()
    ports = dict(old.ports)
    del ports["a1-vm2"]                                       # a local port goes away
    ports["a1-vm3"] = dataclasses.replace(ports["a1-vm3"], chassis="hv3")   # a port moves
    new = dataclasses.replace(old, ports=ports,
                              vif_ofports={k: v for k, v in old.vif_ofports.items()
                                           if k != "a1-vm2"})
    have = {k: e for k, (e, _) in entries(old).items()}
    want = entries(new)
    change = flowdiff.diff(want, have)
    changed_keys = ({e.key for e in change.deletes} | {o.key for o, _ in change.modifies}
                    | {flowdiff.of_flow(f).key for f in change.adds})
    different = {k for k in have.keys() | want.keys()
                 if k not in have or k not in want or have[k] != want[k][0]}
    assert changed_keys == different and change
    table = dict(have)
    apply_mods(table, change.messages())
    assert table == {k: e for k, (e, _) in want.items()}


def test_a_new_cookie_is_an_add_and_new_actions_a_strict_modify():
    flows = compile_view(reference_view())
    want = flowdiff.desired_entries(flows)
    have = {k: e for k, (e, _) in want.items()}
    key_a, key_b = sorted(have, key=repr)[5:7]
    a, b = have[key_a], have[key_b]
    have[key_a] = flowdiff.Entry(a.table, a.priority, a.fields, a.cookie + 1, a.instructions,
                                 a.match)
    have[key_b] = flowdiff.Entry(b.table, b.priority, b.fields, b.cookie, (), b.match)
    stale = flowdiff.Entry(99, 1, (("in_port", 77),), 5, ())
    have[stale.key] = stale
    change = flowdiff.diff(want, have)
    assert change.summary() == "-1 ~2 +0"
    commands = {(m.table_id, m.command) for m in change.messages()}
    assert (99, ofp.OFPFC_DELETE_STRICT) in commands
    assert (a.table, ofp.OFPFC_ADD) in commands and (b.table, ofp.OFPFC_MODIFY_STRICT) in commands
    assert change.messages()[0].command == ofp.OFPFC_DELETE_STRICT       # deletes first


def test_lowering_is_remembered_between_reconciles():
    lowered = flowdiff.Lowered()
    flows = compile_view(reference_view())
    lowered.update([], flows)
    first = dict(lowered.entries)
    assert first == flowdiff.desired_entries(flows)
    lowered.update(flows[:1], [])
    again = lowered.entries
    assert set(again) == set(first) - {flowdiff.of_flow(flows[0]).key}
    assert all(again[k][0] is first[k][0] for k in again)           # reused, not re-lowered


# --- the loop --------------------------------------------------------------------------------

def test_first_sync_installs_exactly_the_compiled_flows():
    async def go():
        server, switch = FakeServer(model()), FakeSwitch()
        switch.plug("tap1", "p1", 1)
        async with Running(make_agent(server, switch), compiled=True) as agent:
            assert switch.tunnel_requests[-1] == {"c2": "198.18.0.12"}
            assert switch.table == expected_table(server, switch)
            assert cookie_of("port:p2") in cookies(switch.table)      # remote port known
            assert server.registrations == 1
    asyncio.run(go())


def test_restart_reconciles_against_installed_flows_without_changes():
    async def go():
        server, switch = FakeServer(model()), FakeSwitch()
        switch.plug("tap1", "p1", 1)
        async with Running(make_agent(server, switch)) as agent:
            await until(agent.compiled.is_set)
            await settle(agent)
        before, bundles = dict(switch.table), len(switch.bundles)
        async with Running(make_agent(server, switch), compiled=True) as again:      # a restart
            assert len(switch.bundles) == bundles and switch.table == before
            assert again.counters.flow_mods == 0 and again.counters.reconciles >= 1
    asyncio.run(go())


def test_restart_with_drifted_flows_changes_only_the_drift():
    async def go():
        server, switch = FakeServer(model()), FakeSwitch()
        switch.plug("tap1", "p1", 1)
        switch.set_tunnels("198.18.0.11", {"c2": "198.18.0.12"})
        table = expected_table(server, switch)
        missing = sorted(table, key=repr)[3]
        del table[missing]
        stale = flowdiff.Entry(50, 7, (("eth_dst", "fa:16:3e:99:99:99"),), 1, ())
        table[stale.key] = stale
        switch.table = dict(table)
        async with Running(make_agent(server, switch), compiled=True) as agent:
            assert len(switch.bundles) == 1 and len(switch.bundles[0]) == 2
            assert switch.table == expected_table(server, switch)
    asyncio.run(go())


def test_nothing_is_touched_before_the_first_snapshot():
    async def go():
        server, switch = FakeServer(model()), FakeSwitch()
        old = flowdiff.Entry(0, 1, (), 1, ())                          # someone's old flow
        switch.table = {old.key: old}
        server.down = True
        async with Running(make_agent(server, switch)) as agent:
            await asyncio.sleep(0.3)
            assert not switch.bundles and not switch.tunnel_requests
            server.down = False                 # the server comes back: now it reconciles
            await until(agent.compiled.is_set)
            await settle(agent)
            assert old.key not in switch.table and switch.bundles
    asyncio.run(go())


def test_server_outage_keeps_the_data_plane_and_resumes_from_the_revision():
    async def go():
        server, switch = FakeServer(model()), FakeSwitch()
        switch.plug("tap1", "p1", 1)
        async with Running(make_agent(server, switch), compiled=True) as agent:
            server.down = True
            await asyncio.sleep(0.2)
            table, bundles = dict(switch.table), len(switch.bundles)
            server.put("ports", port("p3", 3, "c3", "10.0.0.13"))     # while we cannot see
            await asyncio.sleep(0.3)
            assert switch.table == table and len(switch.bundles) == bundles
            server.down = False
            await until(lambda: cookie_of("port:p3") in cookies(switch.table))
            await settle(agent)
            assert server.snapshots == 1                              # resumed, no re-list
            assert switch.table == expected_table(server, switch)
    asyncio.run(go())


def test_compacted_history_takes_a_new_snapshot():
    async def go():
        server, switch = FakeServer(model()), FakeSwitch()
        switch.plug("tap1", "p1", 1)
        async with Running(make_agent(server, switch)) as agent:
            await until(agent.compiled.is_set)
            server.down = True
            await asyncio.sleep(0.1)
            server.put("ports", port("p3", 3, "c3", "10.0.0.13"))
            server.compacted = server.revision
            server.down = False
            await until(lambda: cookie_of("port:p3") in cookies(switch.table))
            assert server.snapshots == 2
    asyncio.run(go())


def test_vif_plug_and_unplug_report_port_status():
    async def go():
        server, switch = FakeServer(model()), FakeSwitch()
        async with Running(make_agent(server, switch)) as agent:
            await until(agent.compiled.is_set)
            assert cookie_of("port:p1") not in {e.cookie for e in switch.table.values()
                                                if e.table == 0}
            switch.plug("tap1", "p1", 1)
            await until(lambda: ("p1", "ACTIVE") in server.statuses)
            await until(lambda: any(e.table == 0 and e.cookie == cookie_of("port:p1")
                                    for e in switch.table.values()))
            switch.unplug("tap1")
            await until(lambda: ("p1", "DOWN") in server.statuses)
            await settle(agent)
            assert server.statuses == [("p1", "ACTIVE"), ("p1", "DOWN")]
            assert server.objects["ports"]["p1"]["status"] == "DOWN"
    asyncio.run(go())


def test_vifs_plugged_together_are_reported_active_in_one_request():
    async def go():
        objects = model()
        for i in (4, 5, 6):
            objects["ports"][f"p{i}"] = port(f"p{i}", i, HERE, f"10.0.0.{10 + i}")
        server, switch = FakeServer(objects), FakeSwitch()
        async with Running(make_agent(server, switch), compiled=True) as agent:
            before = len(server.batches)
            switch._publish(vifs=tuple(Vif(f"tap{i}", f"p{i}", i) for i in (4, 5, 6)))
            await until(lambda: all(server.objects["ports"][f"p{i}"]["status"] == "ACTIVE"
                                    for i in (4, 5, 6)))
            await settle(agent)
            assert server.batches[before:] == [[("p4", "ACTIVE"), ("p5", "ACTIVE"),
                                                ("p6", "ACTIVE")]]
    asyncio.run(go())


def test_status_reports_one_by_one_to_a_server_without_the_batch_report():
    async def go():
        server, switch = FakeServer(model()), FakeSwitch()
        server.batch_reports = False
        async with Running(make_agent(server, switch), compiled=True) as agent:
            switch.plug("tap1", "p1", 1)
            await until(lambda: ("p1", "ACTIVE") in server.statuses)
            switch.unplug("tap1")
            await until(lambda: ("p1", "DOWN") in server.statuses)
            await settle(agent)
            assert server.batches == []
            assert server.objects["ports"]["p1"]["status"] == "DOWN"
    asyncio.run(go())


def test_a_port_the_batch_report_refuses_is_not_reported_again_and_again():
    async def go():
        server, switch = FakeServer(model()), FakeSwitch()
        async with Running(make_agent(server, switch), compiled=True) as agent:
            real = server.port_statuses

            async def refuse_p1(reports, chassis):      # p1 rebound meanwhile, say
                out = await real([r for r in reports if r[0] != "p1"], chassis)
                return {**out, **{p: (409, "bound elsewhere") for p, _ in reports
                                  if p == "p1"}}
            server.port_statuses = refuse_p1
            switch.plug("tap1", "p1", 1)
            await until(lambda: agent._reported.get("p1") == "ACTIVE")
            await settle(agent)
            asked = len(server.batches)
            agent._status_dirty.set()           # another round: nothing left to say
            await settle(agent)
            assert len(server.batches) == asked
            assert server.objects["ports"]["p1"]["status"] == "DOWN"
    asyncio.run(go())


def test_tunnels_follow_the_ports_that_share_a_network():
    async def go():
        server, switch = FakeServer(model()), FakeSwitch()
        switch.plug("tap1", "p1", 1)
        async with Running(make_agent(server, switch)) as agent:
            await until(agent.compiled.is_set)
            server.put("ports", port("p3", 3, "c3", "10.0.0.13"))
            await until(lambda: switch.tunnel_requests[-1] == {"c2": "198.18.0.12",
                                                               "c3": "198.18.0.13"})
            await settle(agent)
            assert switch.table == expected_table(server, switch)
            server.delete("ports", "p2")
            server.delete("ports", "p3")
            await until(lambda: switch.tunnel_requests[-1] == {})
            await settle(agent)
            assert switch.table == expected_table(server, switch)
    asyncio.run(go())


def test_each_new_tunnel_is_warmed_once_before_any_vif_on_it_is_plugged():
    async def go():
        server, switch = FakeServer(model()), FakeSwitch()
        switch.plug("tap1", "p1", 1)
        async with Running(make_agent(server, switch), compiled=True) as agent:
            await until(lambda: switch.warmed == [100])          # c2's tunnel
            # a port bound here, not plugged, on a new network shared with c3: the
            # tunnel to c3 comes (and is warmed) from the binding alone
            server.put("networks", network("n2", 102))
            server.put("subnets", subnet("s2", "n2", "10.0.1.0/24"))
            server.put("ports", port("p7", 7, HERE, "10.0.1.17", net="n2", sub="s2"))
            server.put("ports", port("p8", 8, "c3", "10.0.1.18", net="n2", sub="s2"))
            await until(lambda: switch.tunnel_requests[-1] == {"c2": "198.18.0.12",
                                                               "c3": "198.18.0.13"})
            await until(lambda: sorted(switch.warmed) == [100, 101])
            await settle(agent)
            assert cookie_of("port:p7") in cookies(switch.table)   # its logical flows
            switch.plug("tap7", "p7", 7)
            await until(lambda: ("p7", "ACTIVE") in server.statuses)
            await settle(agent)
            assert sorted(switch.warmed) == [100, 101]             # not again
            assert switch.table == expected_table(server, switch)
    asyncio.run(go())


def test_tunnels_are_warmed_again_before_their_neighbour_entry_could_age_out():
    async def go():
        server, switch = FakeServer(model()), FakeSwitch()
        switch.plug("tap1", "p1", 1)
        agent = Agent(AgentConfig(HERE, "198.18.0.11", timing=Timing(tunnel_warm=0.02)),
                      server, switch)
        async with Running(agent, compiled=True):
            await until(lambda: switch.warmed.count(100) >= 3)
            server.delete("ports", "p2")                   # no tunnel any more
            await until(lambda: switch.tunnel_requests[-1] == {})
            await settle(agent)
            before = len(switch.warmed)
            await asyncio.sleep(0.1)
            assert len(switch.warmed) == before            # nothing warms a gone tunnel
    asyncio.run(go())


def test_port_delete_removes_its_flows():
    async def go():
        server, switch = FakeServer(model()), FakeSwitch()
        switch.plug("tap1", "p1", 1)
        server.put("ports", port("p4", 4, HERE, "10.0.0.14"))
        switch.plug("tap4", "p4", 4)
        async with Running(make_agent(server, switch), compiled=True) as agent:
            assert cookie_of("port:p4") in cookies(switch.table)
            server.delete("ports", "p4")
            await until(lambda: cookie_of("port:p4") not in cookies(switch.table))
            await settle(agent)
            assert switch.table == expected_table(server, switch)
    asyncio.run(go())


def test_bad_input_is_logged_once_and_disturbs_nothing(caplog):
    async def go():
        server, switch = FakeServer(model()), FakeSwitch()
        switch.plug("tap1", "p1", 1)
        async with Running(make_agent(server, switch), compiled=True) as agent:
            table = dict(switch.table)
            server.inject({"type": "put", "collection": "ports", "id": "px",
                           "revision": server.revision + 1, "object": {"id": "px"}})
            server.inject("garbage")
            switch.plug("tap9", "ghost", 9)                              # unknown port
            switch.plug("tap2", "p2", 2)                                 # bound to c2
            server.put("ports", port("p5", 5, "c9", "10.0.0.15"))        # unknown chassis
            await until(lambda: "p5" in agent.model.objects["ports"])
            await settle(agent)
            # p5 is a new port on our network: its MAC and ARP answer appear; nothing else
            expected = expected_table(server, switch)
            assert switch.table == expected
            assert {k for k in expected if k not in table} == {
                k for k, e in expected.items() if e.cookie == cookie_of("port:p5")}
            server.put("ports", port("p6", 6, "c2", "10.0.0.16"))      # still working
            await until(lambda: cookie_of("port:p6") in cookies(switch.table))
    with caplog.at_level(logging.WARNING, logger="plexus.agent"):
        asyncio.run(go())
    text = caplog.text
    assert "skipping southbound event ports/px" in text
    assert "VIF tap9 (iface-id ghost) names no known port" in text
    assert "VIF tap2 (iface-id p2) is for a port bound to 'c2'" in text
    assert "bound to chassis 'c9', which is not registered" in text
    assert text.count("VIF tap9") == 1                                   # once


def test_dhcp_packet_in_is_answered_out_of_its_in_port():
    async def go():
        server, switch = FakeServer(model()), FakeSwitch()
        switch.plug("tap1", "p1", 1)
        async with Running(make_agent(server, switch), compiled=True) as agent:
            switch.on_packet_in(PacketIn("dhcp", 1, cookie_of("port:p1"), 30,
                                         discover("fa:16:3e:00:00:01")))
            switch.on_packet_in(PacketIn("dhcp", 42, 0, 30, discover("fa:16:3e:00:00:01")))
            assert len(switch.sent) == 1
            out_port, frame = switch.sent[0]
            reply = packet.Packet(frame).get_protocol(dhcp.dhcp)
            assert out_port == 1 and reply.yiaddr == "10.0.0.11"
            assert agent.counters.dhcp_replies == 1
    asyncio.run(go())


def discover(mac: str) -> bytes:
    """A DHCPDISCOVER frame from ``mac``."""
    opts = dhcp.options(option_list=[dhcp.option(dhcp.DHCP_MESSAGE_TYPE_OPT, b"\x01")])
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet("ff:ff:ff:ff:ff:ff", mac, 0x0800))
    pkt.add_protocol(ipv4.ipv4(src="0.0.0.0", dst="255.255.255.255", proto=17))
    pkt.add_protocol(udp.udp(68, 67))
    pkt.add_protocol(dhcp.dhcp(op=1, chaddr=mac, xid=0x1234, options=opts))
    pkt.serialize()
    return bytes(pkt.data)


@pytest.mark.parametrize("down_for", [0.0, 0.3])
def test_registration_survives_an_absent_server(down_for):
    async def go():
        server, switch = FakeServer(model()), FakeSwitch()
        server.down = down_for > 0
        async with Running(make_agent(server, switch)):
            await asyncio.sleep(down_for)
            server.down = False
            await until(lambda: server.registrations == 1)
    asyncio.run(go())


# --- security groups and conntrack zones -----------------------------------------------------

def sg_rule(rid, direction, protocol=None, low=None, high=None, remote=None):
    return {"id": rid, "direction": direction, "ethertype": "IPv4", "protocol": protocol,
            "port_range_min": low, "port_range_max": high, "remote_ip_prefix": None,
            "remote_group_id": remote, "remote_address_group_id": None}


def sg(gid, *rules):
    return {"id": gid, "name": gid, "stateful": True,
            "security_group_rules": [dict(r, security_group_id=gid) for r in rules]}


def secured_model():
    """model() with p1 (here) in sg-db, which admits TCP 5432 from members of sg-app."""
    m = model()
    m["security-groups"] = {"sg-db": sg("sg-db", sg_rule("pg", "ingress", "tcp", 5432, 5432,
                                                         remote="sg-app")),
                            "sg-app": sg("sg-app")}
    m["ports"]["p1"]["security_groups"] = ["sg-db"]
    m["ports"]["p2"]["security_groups"] = []
    return m


def test_security_group_changes_reach_the_flows():
    members = cookie_of("sg:sg-app:members")
    async def go():
        server, switch = FakeServer(secured_model()), FakeSwitch()
        switch.plug("tap1", "p1", 1)
        async with Running(make_agent(server, switch), compiled=True) as agent:
            assert switch.table == expected_table(server, switch)
            assert cookie_of("sg:sg-db:rule:pg") in cookies(switch.table)
            assert members not in cookies(switch.table)               # nobody in sg-app yet
            # p2 (on c2) joins sg-app: only its member address flow is added
            before = dict(switch.table)
            server.put("ports", dict(server.objects["ports"]["p2"], security_groups=["sg-app"]))
            await until(lambda: members in cookies(switch.table))
            await settle(agent)
            assert switch.table == expected_table(server, switch)
            assert {e.cookie for k, e in switch.table.items() if k not in before} == {members}
            # a rule goes: its flows go
            server.put("security-groups", sg("sg-db"))
            await until(lambda: cookie_of("sg:sg-db:rule:pg") not in cookies(switch.table))
            await settle(agent)
            assert switch.table == expected_table(server, switch)
        bundles = len(switch.bundles)
        async with Running(make_agent(server, switch), compiled=True) as again:      # a restart
            assert len(switch.bundles) == bundles and again.counters.flow_mods == 0
    asyncio.run(go())


def test_a_bad_group_event_is_skipped_and_disturbs_nothing(caplog):
    async def go():
        server, switch = FakeServer(secured_model()), FakeSwitch()
        switch.plug("tap1", "p1", 1)
        async with Running(make_agent(server, switch), compiled=True) as agent:
            table = dict(switch.table)
            server.put("security-groups", sg("sg-db", sg_rule("pg", "ingress", "frob")))
            server.put("ports", port("p3", 3, "c3", "10.0.0.13"))      # still working
            await until(lambda: cookie_of("port:p3") in cookies(switch.table))
            await settle(agent)
            assert agent.model.objects["security-groups"]["sg-db"]["security_group_rules"][0][
                "protocol"] == "tcp"                                    # the last good one
            rule = {k: e for k, e in table.items() if e.cookie == cookie_of("sg:sg-db:rule:pg")}
            assert rule and all(switch.table.get(k) == e for k, e in rule.items())
    with caplog.at_level(logging.WARNING, logger="plexus.agent"):
        asyncio.run(go())
    assert "skipping southbound event security-groups/sg-db" in caplog.text


def uses_zone(table, zone) -> bool:
    """Whether an installed flow has a ct action in ``zone``."""
    return any(("zone_ofs_nbits", zone) in attrs for e in table.values()
               for kind, *rest in e.instructions if kind == "actions"
               for name, attrs in rest[1] if name == "NXActionCT")


def test_a_vif_that_goes_away_has_its_conntrack_zone_flushed_after_its_flows():
    async def go():
        server, switch = FakeServer(secured_model()), FakeSwitch()
        server.put("ports", dict(port("p4", 4, HERE, "10.0.0.14"), security_groups=["sg-db"]))
        switch.plug("tap1", "p1", 1)
        switch.plug("tap4", "p4", 4)
        async with Running(make_agent(server, switch), compiled=True) as agent:
            assert switch.flushed() == []
            assert uses_zone(switch.table, 4), "p4's flows use zone 4"
            switch.unplug("tap4")
            await until(lambda: switch.flushed() == [4])
            # the flush came after the bundle that removed every flow using zone 4
            assert switch.events[-1] == ("flush", 4) and switch.events[-2][0] == "bundle"
            assert not uses_zone(switch.table, 4)
            switch.plug("tap4", "p4", 7)                                  # back, renumbered
            switch.plug("tap9", "ghost", 9)                               # a stray VIF
            await settle(agent)
            assert switch.flushed() == [4]
            switch.unplug("tap9")                                         # no flows: at once
            await until(lambda: switch.flushed() == [4, 9])
            assert agent.counters.ct_flushes == 2
    asyncio.run(go())


def test_a_failed_flush_is_logged_and_disturbs_nothing(caplog):
    async def go():
        server, switch = FakeServer(model()), FakeSwitch()
        switch.plug("tap1", "p1", 1)
        switch.flush_error = OSError("ovs-appctl: cannot connect")
        async with Running(make_agent(server, switch)) as agent:
            await until(agent.compiled.is_set)
            switch.unplug("tap1")
            await until(lambda: "flushing conntrack zone 1 failed" in caplog.text)
            server.put("ports", port("p3", 3, "c3", "10.0.0.13"))
            switch.plug("tap1", "p1", 1)
            await until(lambda: cookie_of("port:p3") in cookies(switch.table))
            await settle(agent)
            assert switch.table == expected_table(server, switch)
    with caplog.at_level(logging.WARNING, logger="plexus.agent"):
        asyncio.run(go())


def test_the_diff_sees_every_part_of_conntrack_and_conjunction_actions():
    from plexus.pipeline.flows import Conjunction, Ct, CtClear, Flow

    def flow(actions, **match):
        return Flow.make("ingress_acl", 70, {"eth_type": 0x0800, "reg7": 1, **match},
                         actions, cookie="c")

    def installed(f):
        return {k: e for k, (e, _) in flowdiff.desired_entries([f]).items()}

    def change(want, have):
        return flowdiff.diff(flowdiff.desired_entries([want]), installed(have)).summary()

    base = flow([Ct(5, commit=True, mark=1)])
    assert change(base, base) == "-0 ~0 +0"
    for actions in ([Ct(6, commit=True, mark=1)], [Ct(5, commit=True, mark=2)],
                    [Ct(5, commit=True)], [Ct(5, mark=1)], [Ct(5, table="output")],
                    [CtClear()], [Conjunction(7, 1, 2)]):
        assert change(flow(actions), base) == "-0 ~1 +0", actions
    conj = flow([Conjunction(7, 1, 2)])
    for other in (Conjunction(8, 1, 2), Conjunction(7, 2, 2), Conjunction(7, 1, 3)):
        assert change(flow([other]), conj) == "-0 ~1 +0", other
    # ct_state (value and mask), conj_id and ct_mark are part of a flow's identity
    for match in ({"ct_state": (0x21, 0x21)}, {"ct_state": (0x21, 0x23)}, {"conj_id": 7},
                  {"ct_mark": 1}):
        assert change(flow(base.actions, **match), base) == "-1 ~0 +1", match


def test_the_vswitchd_unixctl_socket_is_found_as_ovs_appctl_would(tmp_path):
    from plexus.agent.ovs import vswitchd_target
    (tmp_path / "ovs-vswitchd.pid").write_text("4242\n")
    assert vswitchd_target(str(tmp_path)) == str(tmp_path / "ovs-vswitchd.4242.ctl")
    (tmp_path / "ovs-vswitchd.ctl").touch()                  # started with --unixctl=…
    assert vswitchd_target(str(tmp_path)) == str(tmp_path / "ovs-vswitchd.ctl")
    assert vswitchd_target(str(tmp_path / "nowhere")).endswith("ovs-vswitchd.ctl")


def test_delays_come_from_the_configured_timing():
    async def go():
        server, switch = FakeServer(model()), FakeSwitch()
        server.down = True
        fast = Timing(backoff=(0.01,))
        agent = Agent(AgentConfig(HERE, "198.18.0.11", timing=fast), server, switch)
        async with Running(agent):
            await asyncio.sleep(0.5)
            assert not agent.model.loaded
            # the configured 0.01 s back-off retried many times; the default (0.1, 0.2,
            # 0.5 s...) would have tried at most 4 times in these 0.5 s. Counted, not
            # timed, so a loaded machine does not make it fail
            assert server.refused >= 10, server.refused
            server.down = False
            await until(lambda: agent.model.loaded, timeout=3.0)
    assert Timing().after(0) == 0.1 and Timing().after(99) == 5.0
    assert Timing().after(99, cap=3) == 1.0
    asyncio.run(go())


# --- /metrics ----------------------------------------------------------------------------

async def scrape_agent(agent) -> dict:
    """The agent's /metrics over HTTP from its own listener, parsed by prometheus_client."""
    from prometheus_client.parser import text_string_to_metric_families
    host, port = agent.metrics.server.sockets[0].getsockname()[:2]
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples}


def test_metrics_move_with_events_reconciles_and_dhcp_answers():
    async def go():
        server, switch = FakeServer(model()), FakeSwitch()
        switch.plug("tap1", "p1", 1)
        agent = Agent(AgentConfig(HERE, "198.18.0.11", metrics="127.0.0.1:0"), server,
                      switch)
        async with Running(agent, compiled=True):
            first = await scrape_agent(agent)
            assert first[("plexus_agent_flows_installed", ())] == len(switch.table) > 0
            reconciles = first[("plexus_agent_reconcile_duration_seconds_count", ())]
            assert reconciles >= 1
            events = first[("plexus_agent_events_received_total", ())]
            # a relevant change: one more event, one more reconcile observed
            server.put("ports", port("p3", 3, "c3", "10.0.0.13"))
            await until(lambda: cookie_of("port:p3") in cookies(switch.table))
            await settle(agent)
            switch.on_packet_in(PacketIn("dhcp", 1, cookie_of("port:p1"), 30,
                                         discover("fa:16:3e:00:00:01")))
            after = await scrape_agent(agent)
            assert after[("plexus_agent_events_received_total", ())] == events + 1
            assert after[("plexus_agent_reconcile_duration_seconds_count", ())] > reconciles
            assert after[("plexus_agent_flows_installed", ())] == len(switch.table)
            assert after[("plexus_agent_dhcp_replies_total", ())] == 1
            assert after[("plexus_agent_bundle_failures_total", ())] == 0
            # the revision the agent has applied: everything the watch read
            assert after[("plexus_agent_applied_revision", ())] == server.revision
            assert agent.heartbeat_report()["revision"] == server.revision
            # no object id in any label
            assert not any("p3" in str(labels) for _, labels in after)
            # every agent series the sample Grafana dashboard queries is served
            from tests.api.test_metrics import dashboard_metrics
            wanted = dashboard_metrics("plexus_agent_")
            assert wanted and wanted <= {name for name, _ in after}, wanted
    asyncio.run(go())


def test_bfd_session_states_are_counted_by_state():
    async def go():
        objects = model()
        objects["agents"]["a-c2"]["configurations"]["gateway"] = True
        server, switch = FakeServer(objects), FakeSwitch()
        switch.plug("tap1", "p1", 1)
        agent = Agent(AgentConfig(HERE, "198.18.0.11", gateway=True, metrics="127.0.0.1:0"),
                      server, switch)
        async with Running(agent, compiled=True):
            await until(lambda: switch._bfd)
            up = await scrape_agent(agent)
            n = len(switch._bfd)
            assert up[("plexus_agent_bfd_sessions", (("state", "up"),))] == n
            switch.set_bfd(sorted(switch._bfd)[0], "down")
            await settle(agent)
            down = await scrape_agent(agent)
            assert down[("plexus_agent_bfd_sessions", (("state", "down"),))] == 1
            assert down[("plexus_agent_bfd_sessions", (("state", "up"),))] == n - 1
    asyncio.run(go())


def test_a_taken_metrics_port_does_not_stop_the_agent(caplog):
    async def go():
        taken = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        where = "127.0.0.1:%d" % taken.sockets[0].getsockname()[1]
        server, switch = FakeServer(model()), FakeSwitch()
        switch.plug("tap1", "p1", 1)
        agent = Agent(AgentConfig(HERE, "198.18.0.11", metrics=where), server, switch)
        async with Running(agent, compiled=True):
            assert switch.table == expected_table(server, switch)
            assert agent.metrics.server is None
        taken.close()
    with caplog.at_level(logging.ERROR):
        asyncio.run(go())
    assert "running without it" in caplog.text


def qos_policy(ident, egress_kbps=None, dscp=None):
    rules = []
    if egress_kbps is not None:
        rules.append({"id": f"{ident}-bw", "type": "bandwidth_limit", "direction": "egress",
                      "max_kbps": egress_kbps, "max_burst_kbps": 0})
    if dscp is not None:
        rules.append({"id": f"{ident}-dscp", "type": "dscp_marking", "dscp_mark": dscp})
    return {"id": ident, "rules": rules}


def test_qos_meters_are_installed_before_their_flows_and_removed_after():
    egress = meter_id("p1", "egress")

    def named(table) -> bool:
        return any(("raw" == i[0]) for e in table.values() for i in e.instructions)

    async def go():
        objects = model()
        objects["qos-policies"] = {"q1": qos_policy("q1", 1000)}
        objects["ports"]["p1"]["qos_policy_id"] = "q1"
        server, switch = FakeServer(objects), FakeSwitch()
        switch.plug("tap1", "p1", 1)
        async with Running(make_agent(server, switch), compiled=True) as agent:
            assert switch.table == expected_table(server, switch)
            assert switch.meter_table == {egress: Meter(egress, 1000, 800)}
            first_meters = switch.events.index(("meters", ((ofp.OFPMC_ADD, egress),)))
            assert first_meters < next(i for i, e in enumerate(switch.events)
                                       if e[0] == "bundle")
            assert named(switch.table)
            # a limit of 0 is no limit (Open vSwitch refuses a meter of rate 0)
            assert to_qos_policy(qos_policy("q0", 0)).egress is None
            # the rate changes: the meter is modified in place, no flow changes
            bundles = len(switch.bundles)
            server.put("qos-policies", qos_policy("q1", 3000))
            await until(lambda: switch.meter_table.get(egress) == Meter(egress, 3000, 2400))
            await settle(agent)
            assert len(switch.bundles) == bundles
            # the port leaves the policy: its flows go, then its meter
            server.put("ports", dict(server.objects["ports"]["p1"], qos_policy_id=None))
            await until(lambda: not switch.meter_table)
            await settle(agent)
            assert switch.table == expected_table(server, switch) and not named(switch.table)
            assert switch.events[-1] == ("meters", ((ofp.OFPMC_DELETE, egress),))
            assert switch.events[-2][0] == "bundle"
            # its network's policy applies to it now (DSCP only: no meter)
            server.put("qos-policies", qos_policy("q2", dscp=26))
            server.put("networks", dict(server.objects["networks"]["n1"], qos_policy_id="q2"))
            await until(lambda: any("ip_dscp" in str(e.instructions)
                                    for e in switch.table.values()))
            await settle(agent)
            assert switch.table == expected_table(server, switch) and not switch.meter_table
            server.put("ports", dict(server.objects["ports"]["p1"], qos_policy_id="q1"))
            await until(lambda: egress in switch.meter_table)
            await settle(agent)
        bundles, meters = len(switch.bundles), dict(switch.meter_table)
        events = len(switch.events)
        async with Running(make_agent(server, switch), compiled=True) as again:  # a restart
            assert len(switch.bundles) == bundles and again.counters.flow_mods == 0
            assert switch.meter_table == meters                  # read back, not re-sent
            assert not [e for e in switch.events[events:] if e[0] == "meters"]
    asyncio.run(go())
