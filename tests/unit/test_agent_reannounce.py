"""A chassis announces again what it answers for when its own liveness reappears (it
registered again after its lease ran out): meanwhile another gateway candidate may have
taken it for dead and drawn the external traffic with gratuitous ARPs of its own, then
stepped down on seeing it alive. The returning chassis' own view does not change (it
always counts itself alive), so only this rule sends them. With the fakes of
test_agent.py / test_agent_l3.py: gw1, r1's first gateway candidate, no VMs."""

from __future__ import annotations

import asyncio

from plexus.agent.agent import Agent, AgentConfig
from tests.golden.l3_reference import TUNNEL_IP
from tests.unit.test_agent import FakeSwitch, Running, settle, until
from tests.unit.test_agent_l3 import L3Server, garps, wire_model

ME = "gw1"


def liveness(server, chassis: str) -> dict:
    return dict(server.objects["liveness"][f"agent-{chassis}"], id=f"agent-{chassis}")


def test_own_liveness_back_announces_the_gateway_again_and_others_do_not():
    async def go():
        server, switch = L3Server(wire_model()), FakeSwitch()
        agent = Agent(AgentConfig(ME, TUNNEL_IP[ME], {"physnet1": "br-ex"}, gateway=True),
                      server, switch)
        async with Running(agent):
            await until(lambda: garps(switch))
            gateway = garps(switch)[0]
            await asyncio.sleep(sum(agent.config.timing.garp) + 0.3)   # its burst is over
            own, other = liveness(server, ME), liveness(server, "hv2")
            switch.sent.clear()
            server.delete("liveness", "agent-hv2")         # another chassis dies, returns
            await settle(agent)
            server.put("liveness", other)
            await settle(agent)
            await asyncio.sleep(0.3)
            assert garps(switch) == []
            server.delete("liveness", f"agent-{ME}")       # its own lease ran out
            await settle(agent)
            await asyncio.sleep(0.3)
            assert garps(switch) == [] and agent.view.active_gateway["r1"] == ME
            server.put("liveness", own)                    # registered again
            await settle(agent)
            await asyncio.sleep(1.0)                       # bursts start at once
            assert garps(switch) and garps(switch)[0] == gateway
    asyncio.run(go())
