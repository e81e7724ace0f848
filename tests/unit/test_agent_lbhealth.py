"""The agent's side of load balancer health checks (plexus.agent.lbhealth in the agent
loop), against the fake server and switch of test_agent: a probe leaves by the member's
VIF once due, a SYN-ACK packet-in is reset and makes one report, an RST another; the
report is not repeated once the model holds it, and a failed report is tried again."""

from __future__ import annotations

import asyncio
import random

from os_ken.lib.packet import ipv4, packet, tcp

from plexus.agent.lbhealth import ACK, RST, SYN, Prober, tcp_frame
from plexus.agent.ovs import PacketIn
from plexus.agent.southbound import Unavailable
from plexus.model.keys import HEALTH_KEY
from plexus.pipeline.stages.lb_probe import USERDATA
from tests.unit.test_agent import (
    FakeServer, FakeSwitch, Running, make_agent, model, port, settle, until,
)

VIP = "10.0.0.100"


def lb_tree() -> dict:
    return {"id": "lb1", "admin_state_up": True, "vip_address": VIP, "vip_network_id": "n1",
            "vip_port_id": "vip", "project_id": "p", "children": {
                "listeners": {"li": {"id": "li", "protocol": "TCP", "protocol_port": 80,
                                     "default_pool_id": "pool", "admin_state_up": True}},
                "pools": {"pool": {"id": "pool", "protocol": "TCP",
                                   "lb_algorithm": "ROUND_ROBIN", "admin_state_up": True}},
                "members": {
                    "m1": {"id": "m1", "pool_id": "pool", "address": "10.0.0.11",
                           "protocol_port": 8080, "admin_state_up": True, "weight": 1},
                    "m2": {"id": "m2", "pool_id": "pool", "address": "10.0.0.12",
                           "protocol_port": 8080, "admin_state_up": True, "weight": 1}},
                "healthmonitors": {"hm": {"id": "hm", "pool_id": "pool", "type": "TCP",
                                          "delay": 1, "timeout": 1, "max_retries": 1,
                                          "max_retries_down": 1, "admin_state_up": True}}}}


class HealthServer(FakeServer):
    """FakeServer with the member health route: the verdict is kept on the member (a
    put of the tree only when it changes), as api.services.lbaas does."""

    def __init__(self, objects):
        super().__init__(objects)
        self.health: list[tuple[str, str, str]] = []
        self.fail_health = 0

    async def member_health(self, member_id, status, chassis):
        self._check()
        if self.fail_health:
            self.fail_health -= 1
            raise Unavailable("connection refused")
        self.health.append((member_id, status, chassis))
        tree = self.objects["loadbalancers"]["lb1"]
        if tree["children"]["members"][member_id].get(HEALTH_KEY) == status:
            return False
        tree["children"]["members"][member_id][HEALTH_KEY] = status
        self.put("loadbalancers", tree)
        return True


class Clock:
    now = 1000.0

    def __call__(self):
        return self.now


class Now(random.Random):
    """First probes at once (no random spread)."""

    def random(self):
        return 0.0


def objects() -> dict:
    objs = model()
    vip = port("vip", 60, "", VIP)
    vip["device_owner"] = "Octavia"
    objs["ports"]["vip"] = vip
    objs["loadbalancers"] = {"lb1": lb_tree()}
    return objs


def syns(switch) -> list[tuple[int, bytes]]:
    return [(p, f) for p, f in switch.sent
            if (seg := packet.Packet(f).get_protocol(tcp.tcp)) and seg.bits == SYN]


def answer(probe: bytes, flags: int) -> PacketIn:
    pkt = packet.Packet(probe)
    ip, seg = pkt.get_protocol(ipv4.ipv4), pkt.get_protocol(tcp.tcp)
    frame = tcp_frame("fa:16:3e:00:00:01", "fa:16:3e:00:00:3c", ip.dst, ip.src, seg.dst_port,
                      seg.src_port, 777, seg.seq + 1, flags)
    return PacketIn(USERDATA, 1, 0, 7, frame)


def test_probes_go_out_of_the_members_vif_and_verdicts_are_reported_once():
    async def go():
        server, switch = HealthServer(objects()), FakeSwitch()
        switch.plug("tap1", "p1", 1)
        agent = make_agent(server, switch)
        clock = Clock()
        agent.lbhealth = Prober(clock=clock, rng=Now())
        async with Running(agent, compiled=True):
            await until(lambda: syns(switch))
            (ofport, syn), = syns(switch)      # m1 only: m2 is on c2
            assert ofport == 1 and packet.Packet(syn).get_protocol(ipv4.ipv4).src == VIP
            switch.on_packet_in(answer(syn, SYN | ACK))
            rst = packet.Packet(switch.sent[-1][1]).get_protocol(tcp.tcp)
            assert switch.sent[-1][0] == 1 and rst.bits == RST
            await until(lambda: server.health == [("m1", "ONLINE", "c1")])
            await settle(agent)
            assert agent.lbhealth.states["m1"].target.reported == "ONLINE"
            # the next probe is refused: ERROR, reported once (the first report fails)
            server.fail_health = 1
            clock.now += 1.0
            agent._health_wake.set()
            await until(lambda: len(syns(switch)) == 2)
            switch.on_packet_in(answer(syns(switch)[-1][1], RST | ACK))
            await until(lambda: server.health[-1:] == [("m1", "ERROR", "c1")], timeout=5)
            await settle(agent)
            assert [h for h in server.health if h[1] == "ERROR"] == [("m1", "ERROR", "c1")]
            assert agent.counters.lb_reports == 2 and agent.counters.lb_probes == 2
    asyncio.run(go())


def test_no_monitor_no_probe():
    async def go():
        objs = objects()
        objs["loadbalancers"]["lb1"]["children"]["healthmonitors"] = {}
        server, switch = HealthServer(objs), FakeSwitch()
        switch.plug("tap1", "p1", 1)
        agent = make_agent(server, switch)
        agent.lbhealth = Prober(clock=Clock(), rng=Now())
        async with Running(agent, compiled=True):
            await settle(agent)
            assert not syns(switch) and not agent.lbhealth.states
    asyncio.run(go())
