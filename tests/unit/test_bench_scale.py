"""bench/scale.py cannot rot silently: its synthetic cloud has the shape the benchmark
claims (in the wire format the model parses), and its agent driver still runs the real
agent through one event of each kind."""

from __future__ import annotations

import asyncio
from collections import Counter

from bench import synthetic
from plexus.model import keys, relevance
from plexus.model.catalog import Catalog
from plexus.model.objects import parse


def test_measured_chassis_hosts_90_ports_on_9_networks_of_50_over_5_chassis():
    cloud = synthetic.generate(1000)
    ports = cloud.objects["ports"]
    local = cloud.ports_on(cloud.here)
    assert len(local) == 90
    assert len({p["network_id"] for p in local}) == 9
    for net in cloud.local_networks():
        on = [p for p in ports.values() if p["network_id"] == net]
        vms = [p for p in on if p["device_owner"] == "compute:nova"]
        assert len(vms) == 50
        assert Counter(p["binding:host_id"] for p in vms) == {
            h: 10 for h in cloud.network_chassis[net]}
        assert [p["device_owner"] for p in on if p not in vms] == ["network:router_interface"]
    router = cloud.objects["routers"][cloud.router_of[cloud.measured_project]]
    assert ports[router["gw_port_id"]]["network_id"] == synthetic.EXTERNAL
    assert len(router["plexus:gateway_chassis"]) == 2
    group = cloud.objects["security-groups"][cloud.group_of[cloud.measured_project]]
    assert any(r["remote_group_id"] == group["id"] for r in group["security_group_rules"])
    assert len(cloud.objects["agents"]) == len(cloud.objects["liveness"]) == 1000


def test_size_is_about_the_ports_asked_and_every_object_parses():
    for size in (1000, 10000):
        cloud = synthetic.generate(size)
        assert size <= len(cloud.objects["ports"]) < size * 1.03
        assert cloud.far_networks()
    for collection in keys.COLLECTIONS:
        for obj in cloud.objects.get(collection, {}).values():
            parse(collection, obj)


def test_per_chassis_selection_does_not_grow_with_the_cloud():
    selected = []
    for size in (1000, 10000):
        cloud = synthetic.generate(size)
        catalog, problems = Catalog.from_wire(cloud.objects)
        assert problems == []
        chosen = relevance.select(catalog, relevance.subscriptions(catalog, cloud.here))
        selected.append(len(chosen[keys.PORTS]))
    assert selected[0] == selected[1] == 9 * 51 + 1       # VMs, interfaces, gateway port


def test_agent_driver_runs_one_event_of_each_kind():
    from bench import scale
    records = []
    bench = scale.AgentBench(600, records.append, chassis=100)
    asyncio.run(bench.run(scale.KINDS, events=1, kind_budget=0))
    by_kind = {r["kind"]: r for r in records}
    assert by_kind["compile"]["flows"] > 0
    assert by_kind["irrelevant"]["flow_mods"] == 0
    for kind in ("neighbour", "here", "sg_rule"):
        assert by_kind[kind]["flow_mods"] > 0, kind
