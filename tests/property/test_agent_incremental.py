"""The running agent (its catalog, relevance filter, incremental compile, lowering and
diff) leaves br-int exactly as a full recompute from the whole model would, after every
step of random event sequences — ports created, bound, moved, deleted, re-grouped,
router interfaces and gateway candidates changed, floating IPs moved, liveness lost —
and random VIF plugs and unplugs."""

from __future__ import annotations

import asyncio
import copy
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from plexus.agent import flowdiff
from plexus.agent import view as views
from plexus.agent.agent import Agent, AgentConfig
from plexus.agent.relevant import vif_ofports
from plexus.model.catalog import Catalog
from plexus.pipeline.compile import compile_view
from tests.golden.l3_reference import TUNNEL_IP
from tests.property.test_incremental import mutate, world
from tests.unit.test_agent import FakeSwitch, settle
from tests.unit.test_agent_l3 import L3Server

HERE = "hv1"


def expected(server, switch, agent) -> dict:
    """br-int's table as a full recompute from the whole model gives it."""
    catalog, problems = Catalog.from_wire(server.objects)
    assert not problems
    view = views.build(catalog, HERE, TUNNEL_IP[HERE],
                       vif_ofports=vif_ofports(switch.state.vifs),
                       tunnel_ofports=switch.state.tunnel_ofports(),
                       alive=agent.liveness.alive(catalog, switch.state.bfd_states()),
                       bridge_mappings={"physnet1": "br-ex"},
                       patch_ofports=switch.state.patch_ofports(),
                       external_macs=agent.resolver.macs)
    return {k: e for k, (e, _) in flowdiff.desired_entries(compile_view(view)).items()}


async def scenario(seed: int, steps: int) -> None:
    rnd = random.Random(seed)
    server = L3Server(world())
    switch = FakeSwitch()
    agent = Agent(AgentConfig(HERE, TUNNEL_IP[HERE], {"physnet1": "br-ex"}), server, switch)
    task = asyncio.create_task(agent.run())
    try:
        await settle(agent)
        ofport = 0
        for n in range(steps):
            if rnd.random() < 0.3:                 # a VIF of a port bound here comes or goes
                mine = sorted(p for p, o in server.objects["ports"].items()
                              if o.get("binding:host_id") == HERE)
                plugged = {v.iface_id: v for v in switch.state.vifs}
                if mine and rnd.random() < 0.6:
                    ofport += 1
                    switch.plug(f"tap{ofport}", rnd.choice(mine), ofport)
                elif plugged:
                    switch.unplug(rnd.choice(sorted(plugged.values(),
                                                    key=lambda v: v.name)).name)
            else:
                collection, ident, wire = mutate(server.objects, rnd, n)
                if wire is None:
                    if ident in server.objects.get(collection, {}):
                        server.delete(collection, ident)
                else:
                    server.put(collection, {**copy.deepcopy(wire), "id": ident})
            await settle(agent)
            assert switch.table == expected(server, switch, agent), n
    finally:
        agent.stop()
        await asyncio.wait_for(task, 5)


@settings(max_examples=12, deadline=None)
@given(st.integers(0, 2 ** 32), st.integers(4, 14))
def test_the_agent_converges_to_the_full_recompute(seed, steps):
    asyncio.run(scenario(seed, steps))
