"""The agent's IPv6 duties with the fakes of test_agent.py / test_agent_l3.py, on the
dual-stack reference (tests/golden/ipv6_reference.py): a VIF plugged on a network with
an advertising router gets a router advertisement at once; a solicitation and a DHCPv6
message punted by the pipeline are answered out of the VIF they came from; the IPv6
upstream next hop is probed by neighbour solicitation and learnt from the
advertisement; the active gateway answers a solicitation for its gateway address."""

from __future__ import annotations

import asyncio
import struct

from plexus.agent import dhcp6, ipv6
from plexus.agent.agent import Agent, AgentConfig
from plexus.agent.external import probe_mac
from plexus.agent.ovs import PacketIn
from plexus.pipeline.stages.l3_input import ND_GATEWAY
from plexus.pipeline.stages.router import link_local
from tests.golden.ipv6_reference import UPSTREAM6, objects
from tests.golden.l3_reference import CHASSIS, TUNNEL_IP, mac
from tests.unit.test_agent import FakeSwitch, Running, scrape_agent, settle, until
from tests.unit.test_agent_l3 import L3Server


def wire(objs=None) -> dict:
    objs = objs or objects()
    objs["liveness"] = {f"agent-{c}": {"host": c, "since": 0} for c in CHASSIS}
    return objs


def agent_on(chassis: str, server, switch, metrics: str | None = None) -> Agent:
    return Agent(AgentConfig(chassis, TUNNEL_IP[chassis], {"physnet1": "br-ex"},
                             gateway=chassis.startswith("gw"), metrics=metrics), server, switch)


def icmp6_kinds(switch, port=None) -> list[int]:
    out = []
    for p, frame in switch.sent:
        pkt = ipv6.parse(frame)
        if pkt is not None and pkt.proto == 58 and (port is None or p == port):
            out.append(pkt.payload[0])
    return out


def test_plugged_vif_gets_an_advertisement_and_solicitations_and_dhcpv6_are_answered():
    async def go():
        server, switch = L3Server(wire()), FakeSwitch()
        switch.plug("tap-a1", "a-vm1", 1)
        agent = agent_on("hv1", server, switch, metrics="127.0.0.1:0")
        async with Running(agent):
            await until(lambda: 134 in icmp6_kinds(switch, 1))
            ra = next(ipv6.parse(f) for p, f in switch.sent if p == 1 and ipv6.parse(f))
            assert (ra.src, ra.src_mac) == (link_local(mac("r1-a")), mac("r1-a"))
            switch.plug("tap-c1", "c-vm1", 3)                 # net-c: dhcpv6-stateless
            await until(lambda: 134 in icmp6_kinds(switch, 3))
            switch.sent.clear()
            await settle(agent)
            assert icmp6_kinds(switch) == []                    # once per plug, not per reconcile
            c = agent.view.ports["c-vm1"]
            src = link_local(c.mac)
            body = struct.pack("!BBHI", 133, 0, 0, 0)
            body = body[:2] + struct.pack("!H", ipv6.checksum(src, "ff02::2", 58, body)) + \
                body[4:]
            switch.on_packet_in(PacketIn("rs", 3, 0, 30, ipv6.frame(
                c.mac, "33:33:00:00:00:02", src, "ff02::2", 58, body)))
            assert icmp6_kinds(switch, 3) == [134]
            switch.on_packet_in(PacketIn("dhcp6", 3, 0, 30, ipv6.udp6(
                c.mac, "33:33:00:01:00:02", src, "ff02::1:2", 546, 547,
                bytes([dhcp6.INFORMATION_REQUEST, 1, 2, 3]))))
            port, frame = switch.sent[-1]
            assert port == 3 and ipv6.parse(frame).payload[8] == dhcp6.REPLY
            assert agent.counters.dhcp6_replies == 1
            assert agent.counters.router_advertisements >= 3
            scraped = await scrape_agent(agent)
            assert scraped[("plexus_agent_dhcp6_replies_total", ())] == 1
            assert scraped[("plexus_agent_router_advertisements_total", ())] == \
                agent.counters.router_advertisements
    asyncio.run(go())


def test_ipv6_upstream_is_resolved_by_neighbour_solicitation():
    async def go():
        server, switch = L3Server(wire()), FakeSwitch()
        agent = agent_on("hv1", server, switch)
        up = "2001:db8:ee::1"
        async with Running(agent):
            await until(lambda: any(ipv6.nd_message(f, 135) for _, f in switch.sent_external))
            solicited = {ipv6.nd_message(f, 135)[1] for _, f in switch.sent_external
                         if ipv6.nd_message(f, 135)}
            assert solicited == {up}
            me = probe_mac("hv1")
            switch.on_external_packet_in(PacketIn("arp", 1, 0, 0, ipv6.neighbor_advert(
                UPSTREAM6[up], up, me, link_local(me), solicited=True)))
            await settle(agent)
            assert agent.view.external_macs.get(up) == UPSTREAM6[up]
    asyncio.run(go())


def test_the_active_gateway_answers_a_solicitation_for_its_ipv6_address():
    async def go():
        server, switch = L3Server(wire()), FakeSwitch()
        agent = agent_on("gw1", server, switch)
        up, gw = "2001:db8:ee::1", "2001:db8:ee::10"
        async with Running(agent):
            await until(lambda: agent.view is not None and agent.view.routers)
            await settle(agent)
            ns = ipv6.neighbor_solicit(UPSTREAM6[up], gw, src=up)
            switch.sent.clear()
            switch.on_packet_in(PacketIn(ND_GATEWAY, 50, 0, 46, ns))
            assert len(switch.sent) == 1
            port, frame = switch.sent[0]
            answer = ipv6.nd_message(frame, 136)
            assert port == 50 and answer is not None
            pkt, target, lladdr = answer
            assert (target, lladdr, pkt.dst, pkt.dst_mac) == (gw, mac("r1-gw"), up,
                                                               UPSTREAM6[up])
            assert pkt.payload[4] & 0xE0 == 0xE0              # router, solicited, override
            switch.sent.clear()
            other = ns[:-1] + bytes([ns[-1] ^ 0xFF])
            switch.on_packet_in(PacketIn(ND_GATEWAY, 50, 0, 46, other))      # bad checksum
            assert switch.sent == []
    asyncio.run(go())


def test_only_the_active_gateway_answers_and_only_for_its_gateway_address():
    from plexus.agent import l3
    from tests.golden.ipv6_reference import view
    up, gw = "2001:db8:ee::1", "2001:db8:ee::10"
    assert l3.gateway_advert(view("gw1"), ipv6.neighbor_solicit(UPSTREAM6[up], gw, src=up))
    assert l3.gateway_advert(view("gw2"), ipv6.neighbor_solicit(UPSTREAM6[up], gw, src=up)) \
        is None
    assert l3.gateway_advert(view("gw1"), ipv6.neighbor_solicit(
        UPSTREAM6[up], "2001:db8:ee::99", src=up)) is None
    dad = ipv6.nd_message(l3.gateway_advert(view("gw1"), ipv6.neighbor_solicit(
        UPSTREAM6[up], gw, src="::")), 136)[0]
    assert (dad.dst, dad.dst_mac) == ("ff02::1", "33:33:00:00:00:01")


def test_a_router_interface_added_later_is_advertised_at_once():
    async def go():
        objs = objects()
        with_v6 = dict(objs["ports"]["r1-a"])
        objs["ports"]["r1-a"] = {**with_v6, "fixed_ips": [
            f for f in with_v6["fixed_ips"] if ":" not in f["ip_address"]]}
        server, switch = L3Server(wire(objs)), FakeSwitch()
        switch.plug("tap-a1", "a-vm1", 1)
        agent = agent_on("hv1", server, switch)
        async with Running(agent):
            await until(lambda: agent.view is not None and "r1-a" in agent.view.ports)
            await settle(agent)
            assert 134 not in icmp6_kinds(switch, 1)
            server.put("ports", with_v6)
            await until(lambda: 134 in icmp6_kinds(switch, 1))
    asyncio.run(go())


def test_a_removed_router_interface_says_goodbye_with_lifetime_zero():
    async def go():
        objs = objects()
        server, switch = L3Server(wire(objs)), FakeSwitch()
        switch.plug("tap-a1", "a-vm1", 1)
        agent = agent_on("hv1", server, switch)
        async with Running(agent):
            await until(lambda: 134 in icmp6_kinds(switch, 1))
            switch.sent.clear()
            port = objs["ports"]["r1-a"]
            server.put("ports", {**port, "fixed_ips": [
                f for f in port["fixed_ips"] if ":" not in f["ip_address"]]})
            await until(lambda: 134 in icmp6_kinds(switch, 1))
            ra = [ipv6.parse(f) for p, f in switch.sent if p == 1 and ipv6.parse(f)]
            assert len(ra) == 1 and ra[0].src == link_local(mac("r1-a"))
            assert struct.unpack_from("!H", ra[0].payload, 6)[0] == 0      # lifetime 0
            assert ipv6.valid_checksum(ra[0])
    asyncio.run(go())
