"""The agent's L3 wiring, with the fakes of test_agent.py: routers, floating IPs and
SNAT blocks in the model, patch ports toward the mapped bridges, tunnels for routing,
external next hops resolved by ARP probes into br-ex (replies as packet-ins), and the
installed flows equal to what ``l3.with_l3`` + the compiler give for the same facts."""

from __future__ import annotations

import asyncio

from os_ken.lib.packet import arp, ethernet, packet

from plexus.agent import flowdiff
from plexus.agent.agent import Agent, AgentConfig
from plexus.agent.external import Resolver, probe_mac
from plexus.agent.ovs import PacketIn
from plexus.agent.relevant import alive_chassis, build_view
from plexus.agent import l3
from plexus.pipeline.compile import compile_view
from tests.golden.l3_reference import CHASSIS, TUNNEL_IP, mac, objects
from tests.unit.test_agent import FakeServer, FakeSwitch, Running, settle, until

HERE = "hv1"
UPSTREAM_MAC = "02:ee:00:00:00:01"


class L3Server(FakeServer):
    """The fake southbound API, with SNAT block leases and router/FIP status reports."""

    def __init__(self, objects):
        super().__init__(objects)
        self.leases: list[tuple[str, str, int]] = []
        self.l3_reports: list[tuple] = []

    async def lease_snat_blocks(self, router_id, chassis, count):
        self._check()
        self.leases.append((router_id, chassis, count))
        mine = [b for b in self.objects["snat_blocks"].values()
                if b["router_id"] == router_id and b["chassis"] == chassis]
        if not mine:
            block = {"id": f"{router_id}:8192", "router_id": router_id, "chassis": chassis,
                     "ip": "203.0.113.10", "port_min": 8192, "port_max": 8255}
            self.put("snat_blocks", block)
            mine = [block]
        return mine

    async def l3_status(self, collection, ident, status, chassis, revision):
        self._check()
        self.l3_reports.append((collection, ident, status, revision))


def wire_model() -> dict:
    objs = objects()
    objs["liveness"] = {f"agent-{c}": {"host": c, "since": 0} for c in CHASSIS}
    return objs


def make_agent(server, switch):
    return Agent(AgentConfig(HERE, TUNNEL_IP[HERE], {"physnet1": "br-ex"}), server, switch)


def arp_reply(ip: str, mac: str, to: str) -> bytes:
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(to, mac, 0x0806))
    pkt.add_protocol(arp.arp(opcode=arp.ARP_REPLY, src_mac=mac, src_ip=ip, dst_mac=to,
                             dst_ip="0.0.0.0"))
    pkt.serialize()
    return bytes(pkt.data)


def expected(server, switch, macs) -> dict:
    view = build_view(server.objects, HERE, TUNNEL_IP[HERE], {},
                      switch.state.tunnel_ofports())
    view = l3.with_l3(view, server.objects, alive=alive_chassis(server.objects),
                      bridge_mappings={"physnet1": "br-ex"},
                      patch_ofports=switch.state.patch_ofports(),
                      tunnel_ofports=switch.state.tunnel_ofports(), external_macs=macs)
    return {k: e for k, (e, _) in flowdiff.desired_entries(compile_view(view)).items()}


def test_alive_chassis_come_from_liveness():
    assert alive_chassis({"liveness": {"a": {"host": "c1"}, "b": {"x": 1}, "c": None}}) == {"c1"}


def test_resolver_probes_learns_and_forgets():
    r = Resolver("hv1")
    hops = [l3.Nexthop("ext", "203.0.113.1", "physnet1", None, 50),
            l3.Nexthop("ext2", "198.51.100.1", "physnet9", 7, None)]
    assert r.want(hops, {"physnet1": "br-ex"}) and not r.want(hops, {"physnet1": "br-ex"})
    probes = r.due(now=100.0)
    assert [(p.bridge, p.ip) for p in probes] == [("br-ex", "203.0.113.1")]
    sent = packet.Packet(probes[0].frame).get_protocol(arp.arp)
    assert (sent.src_ip, sent.dst_ip, sent.src_mac) == ("0.0.0.0", "203.0.113.1", r.mac)
    assert r.due(now=100.5) == [] and len(r.due(now=101.0)) == 1     # retried each second
    assert not r.learn(arp_reply("203.0.113.9", UPSTREAM_MAC, r.mac))  # not wanted
    assert not r.learn(b"garbage")
    assert r.learn(arp_reply("203.0.113.1", UPSTREAM_MAC, r.mac))
    assert r.macs == {"203.0.113.1": UPSTREAM_MAC}
    assert r.due(now=102.0) == [] and len(r.due(now=131.0)) == 1     # then refreshed
    assert r.want([], {"physnet1": "br-ex"}) and r.macs == {}
    assert probe_mac("hv1") == r.mac != probe_mac("hv2")


def test_agent_patches_tunnels_resolves_and_installs_the_l3_flows():
    async def go():
        server, switch = L3Server(wire_model()), FakeSwitch()
        agent = make_agent(server, switch)
        async with Running(agent):
            await until(lambda: switch.sent_external)
            await settle(agent)
            assert switch.patch_requests == [{"physnet1": "br-ex"}]
            # the active gateway (gw1) and every chassis behind r1/r2 get a tunnel
            assert {"gw1", "gw2", "hv2", "hv3"} <= set(switch.tunnel_requests[-1])
            assert HERE not in switch.tunnel_requests[-1]
            assert ("br-ex", probe_mac(HERE)) in switch.punts
            probed = {packet.Packet(f).get_protocol(arp.arp).dst_ip
                      for _, f in switch.sent_external}
            assert "203.0.113.1" in probed
            assert agent.view.patch_ofports == {"physnet1": 50}
            assert not agent.view.external_macs
            assert switch.table == expected(server, switch, {})
            switch.on_external_packet_in(PacketIn(
                "arp", 1, 0, 0, arp_reply("203.0.113.1", UPSTREAM_MAC, probe_mac(HERE))))
            await settle(agent)
            assert agent.view.external_macs == {"203.0.113.1": UPSTREAM_MAC}
            assert switch.table == expected(server, switch, {"203.0.113.1": UPSTREAM_MAC})
    asyncio.run(go())


def test_the_active_gateway_follows_liveness():
    async def go():
        server, switch = L3Server(wire_model()), FakeSwitch()
        agent = make_agent(server, switch)
        async with Running(agent):
            await until(lambda: agent.view is not None and agent.view.routers)
            await settle(agent)
            assert agent.view.active_gateway["r1"] == "gw1"
            server.delete("liveness", "agent-gw1")
            await settle(agent)
            assert agent.view.active_gateway["r1"] == "gw2"
    asyncio.run(go())


def garps(switch) -> list[tuple[int, str]]:
    out = []
    for port, frame in switch.sent:
        found = packet.Packet(frame).get_protocol(arp.arp)
        if found is not None and found.src_ip == found.dst_ip:
            out.append((port, found.src_ip))
    return out


def test_a_floating_ip_appearing_here_is_announced_out_of_the_patch_port():
    async def go():
        server, switch = L3Server(wire_model()), FakeSwitch()
        switch.plug("tap-a1", "a-vm1", 1)
        agent = make_agent(server, switch)
        async with Running(agent):
            await until(lambda: garps(switch))
            await asyncio.sleep(1.8)
            assert garps(switch) == [(50, "203.0.113.101")] * 4      # a burst of four
            fip = dict(server.objects["floatingips"]["fip-a1"])
            server.put("floatingips", {**fip, "port_id": None, "fixed_ip_address": None})
            await settle(agent)
            switch.sent.clear()
            server.put("floatingips", fip)                           # associated again
            await until(lambda: garps(switch))
            assert garps(switch)[0] == (50, "203.0.113.101")
    asyncio.run(go())


def test_a_floating_ip_here_gets_a_hairpin_loopback_on_the_mapped_bridge():
    async def go():
        server, switch = L3Server(wire_model()), FakeSwitch()
        switch.plug("tap-a1", "a-vm1", 1)
        agent = make_agent(server, switch)
        async with Running(agent):
            await until(lambda: switch.loopback.get("br-ex"))
            assert switch.loopback["br-ex"] == (mac("fip-a1-port"),)
            fip = dict(server.objects["floatingips"]["fip-a1"])
            server.put("floatingips", {**fip, "port_id": None, "fixed_ip_address": None})
            await until(lambda: switch.loopback.get("br-ex") == ())
    asyncio.run(go())


def test_a_chassis_without_a_block_leases_one_and_uses_it():
    async def go():
        objs = wire_model()
        objs["snat_blocks"] = {k: b for k, b in objs["snat_blocks"].items()
                               if b["chassis"] != HERE}
        server, switch = L3Server(objs), FakeSwitch()
        switch.plug("tap-a2", "a-vm2", 2)
        agent = make_agent(server, switch)
        async with Running(agent):
            await until(lambda: server.leases)
            await settle(agent)
            assert server.leases[0] == ("r1", HERE, 1)
            assert (HERE, 8192, 8255) in agent.view.snat_blocks["r1"]
            assert agent.snat_wanted() == []
            count = len(server.leases)
            server.put("ports", dict(server.objects["ports"]["a-vm2"], status="ACTIVE"))
            await settle(agent)
            assert len(server.leases) == count          # holds one: asks no more
    asyncio.run(go())


def test_routers_and_floating_ips_are_reported_once_per_change():
    async def go():
        objs = wire_model()
        objs["floatingips"]["fip-a1"]["revision_number"] = 3
        server, switch = L3Server(objs), FakeSwitch()
        switch.plug("tap-a1", "a-vm1", 1)
        agent = make_agent(server, switch)
        async with Running(agent):
            await until(lambda: server.l3_reports)
            await settle(agent)
            assert ("floatingips", "fip-a1", "ACTIVE", 3) in server.l3_reports
            assert not any(r[0] == "routers" for r in server.l3_reports)   # gw1 is active
            count = len(server.l3_reports)
            server.put("ports", dict(server.objects["ports"]["a-vm1"], status="ACTIVE"))
            await settle(agent)
            assert len(server.l3_reports) == count               # nothing changed
            fip = server.objects["floatingips"]["fip-a1"]
            server.put("floatingips", {**fip, "revision_number": 4})
            await until(lambda: ("floatingips", "fip-a1", "ACTIVE", 4) in server.l3_reports)
    asyncio.run(go())


def test_bfd_runs_toward_gateways_and_a_gateway_whose_session_drops_is_failed_over():
    async def go():
        server, switch = L3Server(wire_model()), FakeSwitch()
        switch.plug("tap-a2", "a-vm2", 2)
        agent = make_agent(server, switch)
        async with Running(agent):
            await until(lambda: agent.view is not None and agent.view.routers)
            await settle(agent)
            assert switch.bfd_requests[-1] == {"gw1", "gw2"}     # hv1 is no gateway
            assert agent.view.active_gateway["r1"] == "gw1"
            switch.set_bfd("gw1", "down")                       # cut off, lease still held
            await settle(agent)
            assert agent.view.active_gateway["r1"] == "gw2"
            switch.set_bfd("gw1", "up")
            await settle(agent)
            assert agent.view.active_gateway["r1"] == "gw1"
    asyncio.run(go())


def test_a_session_never_up_does_not_count_and_gateways_run_bfd_everywhere():
    from plexus.agent.liveness import Liveness, bfd_peers
    objs = wire_model()
    live = Liveness()
    assert "gw1" in live.alive(objs, {"gw1": "down"})        # not up yet: the lease decides
    assert "gw1" in live.alive(objs, {"gw1": "up"})
    assert "gw1" not in live.alive(objs, {"gw1": "init"})
    assert live.isolated({"gw1": "down"}) and not live.isolated({"gw1": "up"})
    assert not Liveness().isolated({"gw1": "down"})         # never up: not cut off
    assert bfd_peers(objs, {"hv2": "x", "gw1": "y"}, gateway=False) == {"gw1"}
    assert bfd_peers(objs, {"hv2": "x", "gw1": "y"}, gateway=True) == {"hv2", "gw1"}


def test_a_standby_gateway_keeps_tunnels_to_the_hosts_behind_its_routers():
    from plexus.agent.liveness import gateway_peers
    objs = wire_model()
    peers = gateway_peers(objs, "gw2")
    assert {"gw1", "hv1", "hv2", "hv3"} <= set(peers) and "gw2" not in peers
    assert peers["hv1"] == TUNNEL_IP["hv1"]
    assert gateway_peers(objs, "hv1") == {}


def test_a_gateway_cut_off_from_every_peer_stops_acting_as_active():
    async def go():
        server, switch = L3Server(wire_model()), FakeSwitch()
        agent = Agent(AgentConfig("gw1", TUNNEL_IP["gw1"], {"physnet1": "br-ex"}, True),
                      server, switch)
        async with Running(agent):
            await until(lambda: agent.view is not None and agent.view.routers)
            await settle(agent)
            assert agent.view.active_gateway["r1"] == "gw1"
            peers = {t.chassis for t in switch.state.tunnels}
            assert switch.bfd_requests[-1] == peers                 # BFD on every tunnel
            for peer in peers:
                switch.set_bfd(peer, "down")
            await settle(agent)
            assert "gw1" not in agent.view.active_gateway.values()
            switch.set_bfd("hv1", "up")
            await settle(agent)
            assert agent.view.active_gateway["r1"] == "gw1"
    asyncio.run(go())


def test_the_zone_of_a_router_that_goes_away_is_flushed():
    async def go():
        server, switch = L3Server(wire_model()), FakeSwitch()
        switch.plug("tap-a1", "a-vm1", 1)
        switch.plug("tap-c1", "c-vm1", 3)
        agent = make_agent(server, switch)
        async with Running(agent):
            await until(lambda: agent.view is not None and "r2" in agent.view.routers)
            await settle(agent)
            zone = l3.zones(agent.view)["r2"]
            assert zone >= 0xFF00 and zone not in switch.flushed()
            for ident in [p for p, o in server.objects["ports"].items()
                          if o.get("device_id") == "r2"]:
                server.delete("ports", ident)
            server.delete("floatingips", "fip-c1")
            server.delete("routers", "r2")
            await settle(agent)
            assert "r2" not in agent.view.routers
            assert zone in switch.flushed()
    asyncio.run(go())


def test_patch_port_names_fit_in_fifteen_characters():
    from plexus.agent.ovs import patch_names
    assert patch_names("br-ex") == ("int-br-ex", "phy-br-ex")
    inner, outer = patch_names("br-a-very-long-bridge")
    assert len(inner) <= 15 and len(outer) <= 15 and inner[4:] == outer[4:]
