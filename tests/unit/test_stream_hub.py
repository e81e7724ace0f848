"""The server's southbound hub over a real SQLite store: per-chassis snapshots and event
streams, backfill and pruning when a chassis' scopes change, resuming from the log, and
the property that a chassis that applies its snapshot and its events holds exactly what
the relevance rules select for it from the whole model."""

from __future__ import annotations

import asyncio
import threading
import time

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plexus.api.services.base import MODEL
from plexus.model import keys
from plexus.model.catalog import Catalog
from plexus.model.relevance import select, subscriptions
from plexus.server.stream import Hub
from plexus.store import Compacted, Delete, Put
from plexus.store.sqlite import SqliteStore

CHASSIS = ("c1", "c2", "c3")


# --- wire objects ----------------------------------------------------------------------

def network(i: int) -> dict:
    return {"id": f"n{i}", keys.KEY: i + 1, "mtu": 1450, "router:external": i == 3}


def subnet(i: int) -> dict:
    return {"id": f"s{i}", "network_id": f"n{i}", "cidr": f"10.{i}.0.0/24",
            "gateway_ip": f"10.{i}.0.1", "ip_version": 4}


def port(i: int, net: int, chassis: str = "", device: str = "", owner: str = "",
         groups=(), rev: int = 1) -> dict:
    return {"id": f"p{i}", keys.KEY: i + 1, "network_id": f"n{net}",
            "mac_address": f"fa:16:3e:00:00:{i:02x}",
            "fixed_ips": [{"subnet_id": f"s{net}", "ip_address": f"10.{net}.0.{i + 10}"}],
            "binding:host_id": chassis, "device_id": device, "device_owner": owner,
            "security_groups": list(groups), "revision_number": rev}


def router(i: int, candidates=(), gw_port: str | None = None) -> dict:
    return {"id": f"r{i}", keys.GATEWAY_CHASSIS: list(candidates), "gw_port_id": gw_port}


def group(i: int, remote: int | None = None) -> dict:
    rules = [{"id": f"g{i}-rule", "direction": "ingress", "ethertype": "IPv4",
              "remote_group_id": f"g{remote}" if remote is not None else None}]
    return {"id": f"g{i}", "security_group_rules": rules}


def floatingip(i: int, router_id: str | None, port_id: str | None, fport: str) -> dict:
    return {"id": f"f{i}", "floating_ip_address": f"203.0.113.{i + 1}",
            "floating_network_id": "n3", "floating_port_id": fport, "router_id": router_id,
            "port_id": port_id, "fixed_ip_address": None}


def snat(router_id: str, chassis: str) -> dict:
    return {"id": f"{router_id}:1024", "router_id": router_id, "chassis": chassis, "ip": "203.0.113.100",
            "port_min": 1024, "port_max": 1087}


def agent(chassis: str) -> dict:
    return {"id": f"a-{chassis}", "host": chassis,
            "configurations": {"tunnel_ip": "192.0.2.1"}}


def key(collection: str, ident: str) -> str:
    return f"{MODEL}{collection}/{ident}"


def put(store, collection: str, obj: dict, ident: str | None = None) -> int:
    return store.put(key(collection, ident or obj["id"]), orjson.dumps(obj))


# --- a chassis' copy of its objects, from its snapshot and events -----------------------

class Mirror:
    """What an agent holds: its snapshot, then its events applied."""

    def __init__(self, hub: Hub, chassis: str):
        self.hub, self.chassis = hub, chassis
        revision, objects = hub.snapshot(chassis)
        wire = {coll: [orjson.loads(o) for o in items] for coll, items in objects.items()}
        self.catalog, problems = Catalog.from_wire(wire)
        assert not problems
        self.next = revision + 1
        self.events: list[dict] = []

    def catch_up(self) -> list[dict]:
        events, self.next = self.hub.read(self.chassis, self.next)
        got = [orjson.loads(e) for e in events]
        for e in got:
            self.catalog.apply_wire(e["collection"], e["id"], e["object"])
        self.events += got
        return got

    def ids(self) -> dict[str, set[str]]:
        return {c: set(self.catalog.objects[c]) for c in keys.COLLECTIONS}


def full_catalog(store) -> Catalog:
    catalog = Catalog()
    for kv in store.range(MODEL)[0]:
        collection, _, ident = kv.key[len(MODEL):].partition("/")
        catalog.apply_wire(collection, ident, orjson.loads(kv.value))
    return catalog


def expected(catalog: Catalog, chassis: str) -> dict[str, set[str]]:
    chosen = select(catalog, subscriptions(catalog, chassis))
    return {c: set(chosen[c]) for c in keys.COLLECTIONS}


@pytest.fixture
def store():
    s = SqliteStore(":memory:")
    yield s
    s.close()


def loaded(store, log_records: int = 1000) -> Hub:
    hub = Hub(store, log_records=log_records)
    hub.load()
    return hub


# --- behaviour -------------------------------------------------------------------------

def two_networks(store) -> None:
    for i in (0, 1):
        put(store, "networks", network(i))
        put(store, "subnets", subnet(i))
    put(store, "ports", port(0, 0, "c1"))
    put(store, "ports", port(1, 1, "c2"))


def test_each_chassis_gets_its_own_networks_only(store):
    two_networks(store)
    hub = loaded(store)
    one, two = Mirror(hub, "c1"), Mirror(hub, "c2")
    assert one.ids()["networks"] == {"n0"} and one.ids()["ports"] == {"p0"}
    assert two.ids()["networks"] == {"n1"} and two.ids()["subnets"] == {"s1"}
    revision, everything = hub.snapshot_all()
    assert revision == store.revision() and len(everything["ports"]) == 2
    # an update of c2's port reaches c2 only
    put(store, "ports", port(1, 1, "c2", rev=2))
    hub.poll()
    assert one.catch_up() == []
    assert [e["id"] for e in two.catch_up()] == ["p1"]


def test_binding_backfills_the_network_and_unbinding_prunes_it(store):
    two_networks(store)
    put(store, "ports", port(2, 0, "c1"))
    put(store, "agents", agent("c1"))
    put(store, "liveness", {"host": "c1"}, "a-c1")
    hub = loaded(store)
    new = Mirror(hub, "c3")                       # never seen: holds nothing yet
    assert not any(new.ids().values())
    revision = put(store, "ports", port(3, 0, "c3"))
    hub.poll()
    got = new.catch_up()
    assert {e["revision"] for e in got} == {revision}
    assert got[0]["id"] == "p3" and got[0]["type"] == "put"
    assert new.ids()["ports"] == {"p0", "p2", "p3"}
    assert new.ids()["networks"] == {"n0"} and new.ids()["subnets"] == {"s0"}
    assert new.ids()["agents"] == {"a-c1"} and new.ids()["liveness"] == {"a-c1"}
    # the chassis already there learns of the new host, nothing else
    assert hub.subscriptions_of("c1") >= {("chassis", "c3")}
    put(store, "ports", port(3, 0, ""))           # unbound: c3 needs nothing any more
    hub.poll()
    got = new.catch_up()
    assert {(e["type"], e["id"]) for e in got} >= {("delete", "p3"), ("delete", "n0"),
                                                   ("delete", "a-c1")}
    assert not any(new.ids().values())
    assert "c3" not in hub.subs


def test_a_router_interface_brings_the_routed_network(store):
    two_networks(store)
    put(store, "routers", router(0))
    put(store, "ports", port(5, 0, device="r0", owner=keys.INTERFACE_OWNER))
    hub = loaded(store)
    one = Mirror(hub, "c1")
    assert one.ids()["routers"] == {"r0"} and one.ids()["networks"] == {"n0"}
    put(store, "ports", port(6, 1, device="r0", owner=keys.INTERFACE_OWNER))
    hub.poll()
    one.catch_up()
    assert one.ids()["networks"] == {"n0", "n1"}
    assert one.ids()["ports"] == {"p0", "p1", "p5", "p6"}
    assert ("chassis", "c2") in hub.subscriptions_of("c1")
    assert one.ids() == expected(full_catalog(store), "c1")


def test_resume_from_a_revision_and_410_past_the_log(store):
    two_networks(store)
    hub = loaded(store, log_records=8)
    start = hub.next
    revisions = [put(store, "ports", port(0, 0, "c1", rev=r)) for r in range(2, 6)]
    hub.poll()
    events, nxt = hub.read("c1", revisions[2])
    assert [orjson.loads(e)["revision"] for e in events] == revisions[2:]
    assert nxt == revisions[-1] + 1
    assert hub.read("c2", start) == ([], nxt)
    for r in range(6, 30):
        put(store, "ports", port(0, 0, "c1", rev=r))
    hub.poll()
    with pytest.raises(Compacted) as exc:
        hub.read("c1", start)
    assert exc.value.compact_revision == hub.floor - 1
    assert len(hub.log) <= 10 and hub.read("c1", hub.floor)[0]


def test_compacted_store_history_rebuilds_the_hub(store):
    two_networks(store)
    hub = loaded(store)
    start = hub.next
    put(store, "ports", port(0, 0, "c1", rev=2))
    store.compact(store.revision())
    with pytest.raises(Compacted):
        hub.poll()
    hub.load()
    with pytest.raises(Compacted):
        hub.read("c1", start)
    assert Mirror(hub, "c1").ids() == expected(full_catalog(store), "c1")


def test_a_transaction_is_seen_whole(store):
    put(store, "networks", network(0))
    hub = loaded(store)
    mirror = Mirror(hub, "c1")
    revision = store.txn((), [Put(key("subnets", "s0"), orjson.dumps(subnet(0))),
                              Put(key("ports", "p0"), orjson.dumps(port(0, 0, "c1")))]).revision
    hub.poll()
    got = mirror.catch_up()
    assert {e["revision"] for e in got} == {revision}
    assert mirror.ids()["subnets"] == {"s0"} and mirror.ids()["networks"] == {"n0"}


def test_the_thread_follows_the_store_and_wakes_the_right_watchers(store):
    two_networks(store)

    async def scenario():
        hub = Hub(store, step=0.5).start()
        assert await hub.ready_async(5)
        one, two = hub.waiter("c1"), hub.waiter("c2")
        everyone = hub.waiter(None)
        assert hub.watchers() == 3
        revision = await asyncio.to_thread(put, store, "ports", port(0, 0, "c1", rev=2))
        await asyncio.wait_for(one, 5)
        await asyncio.wait_for(everyone, 5)
        assert not two.done()
        assert await hub.reached(revision, 5)
        for chassis, future in (("c1", one), ("c2", two), (None, everyone)):
            hub.forget(chassis, future)
        assert hub.watchers() == 0
        hub.stop()
        return hub

    hub = asyncio.run(scenario())
    store.close()
    hub.join(5)
    assert not hub._thread.is_alive()


def test_sync_moves_past_writes_outside_the_model(store):
    put(store, "networks", network(0))

    async def scenario():
        hub = Hub(store, step=30).start()
        assert await hub.ready_async(5)
        await asyncio.sleep(0.1)                   # the watcher is waiting on the store
        revision = await asyncio.to_thread(store.put, "/plexus/alloc/x", b"1")
        began = time.monotonic()
        await hub.sync()
        assert hub.next > revision and time.monotonic() - began < 2
        hub.stop()
        return hub

    hub = asyncio.run(scenario())
    store.close()
    hub.join(5)


# --- the property ----------------------------------------------------------------------

op = st.tuples(st.integers(0, 9), st.integers(0, 9), st.integers(0, 9), st.integers(0, 9),
               st.integers(0, 9), st.integers(0, 9))


def write(step: int, o: tuple) -> list:
    """One store operation (Put or Delete ops) from six small numbers."""
    kind, a, b, c, d, e = o
    if kind == 0:                                  # a port: the most common change
        ident, net = a, b % 4
        chassis = ("", *CHASSIS)[c % 4]
        device, owner = "", ""
        if d in (1, 2):
            device, owner = f"r{e % 2}", keys.INTERFACE_OWNER
        elif d == 3:
            device, owner, net = f"r{e % 2}", keys.GATEWAY_OWNER, 3
        elif d == 4:
            device, owner, net = f"f{e % 2}", keys.FLOATINGIP_OWNER, 3
        groups = [f"g{g}" for g in range(3) if (e >> g) & 1]
        if b == 9:
            return [Delete(key("ports", f"p{ident}"))]
        return [Put(key("ports", f"p{ident}"), orjson.dumps(
            port(ident, net, chassis, device, owner, groups, rev=step)))]
    if kind == 1:
        ident = a % 4
        if b == 0:
            return [Delete(key("networks", f"n{ident}")), Delete(key("subnets", f"s{ident}"))]
        return [Put(key("networks", f"n{ident}"), orjson.dumps(network(ident))),
                Put(key("subnets", f"s{ident}"), orjson.dumps(subnet(ident)))]
    if kind == 2:
        ident = a % 2
        if b == 0:
            return [Delete(key("routers", f"r{ident}"))]
        candidates = [CHASSIS[(c + i) % 3] for i in range(d % 3)]
        return [Put(key("routers", f"r{ident}"), orjson.dumps(
            router(ident, candidates, f"p{e}" if e < 5 else None)))]
    if kind == 3:
        ident = a % 3
        if b == 0:
            return [Delete(key("security-groups", f"g{ident}"))]
        return [Put(key("security-groups", f"g{ident}"),
                    orjson.dumps(group(ident, c % 3 if c < 6 else None)))]
    if kind == 4:
        ident = a % 2
        if b == 0:
            return [Delete(key("floatingips", f"f{ident}"))]
        return [Put(key("floatingips", f"f{ident}"), orjson.dumps(floatingip(
            ident, f"r{c % 2}" if c < 7 else None, f"p{d}" if d < 7 else None, f"p{e}")))]
    if kind == 5:
        ident = f"r{a % 2}:1024"
        if b == 0:
            return [Delete(key("snat_blocks", ident))]
        return [Put(key("snat_blocks", ident), orjson.dumps(snat(f"r{a % 2}", CHASSIS[c % 3])))]
    if kind == 6:
        chassis = CHASSIS[a % 3]
        if b == 0:
            return [Delete(key("agents", f"a-{chassis}")), Delete(key("liveness", f"a-{chassis}"))]
        return [Put(key("agents", f"a-{chassis}"), orjson.dumps(agent(chassis))),
                Put(key("liveness", f"a-{chassis}"), orjson.dumps({"host": chassis}))]
    # a rebinding of a port from one chassis to another: the most structural change
    return [Put(key("ports", f"p{a}"), orjson.dumps(
        port(a, b % 3, CHASSIS[c % 3], groups=[f"g{d % 3}"], rev=step)))]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(op, min_size=1, max_size=3), min_size=1, max_size=30),
       st.integers(0, 30))
def test_snapshot_plus_events_equal_the_selection_of_the_whole_model(txns, late):
    store = SqliteStore(":memory:")
    try:
        hub = Hub(store, log_records=10_000)
        hub.load()
        eager = {c: Mirror(hub, c) for c in CHASSIS}     # catch up after every write
        lazy = {c: Mirror(hub, c) for c in CHASSIS}      # only now and then
        joined: dict[str, Mirror] = {}                   # snapshot taken midway
        for step, txn in enumerate(txns, start=2):
            ops, seen = [], set()
            for o in txn:
                for w in write(step, o):
                    if w.key not in seen:
                        seen.add(w.key)
                        ops.append(w)
            store.txn((), ops)
            hub.poll()
            if step - 2 == late:
                joined = {c: Mirror(hub, c) for c in CHASSIS}
            catalog = full_catalog(store)
            for chassis in CHASSIS:
                eager[chassis].catch_up()
                assert eager[chassis].ids() == expected(catalog, chassis), (chassis, step)
                assert hub.subscriptions_of(chassis) == subscriptions(catalog, chassis)
            if step % 7 == 0:
                for m in lazy.values():
                    m.catch_up()
        catalog = full_catalog(store)
        for mirrors in (eager, lazy, joined):
            for chassis, m in mirrors.items():
                m.catch_up()
                assert m.ids() == expected(catalog, chassis), chassis
                for coll in keys.COLLECTIONS:              # and the latest content
                    for ident, obj in m.catalog.objects[coll].items():
                        assert obj == catalog.objects[coll][ident]
                        assert getattr(obj, "revision", None) == \
                            getattr(catalog.objects[coll][ident], "revision", None)
    finally:
        store.close()


def test_the_hub_thread_stops_when_the_store_closes():
    store = SqliteStore(":memory:")
    hub = Hub(store, step=30)
    loop = asyncio.new_event_loop()
    try:
        hub.start(loop)
        assert hub.ready.wait(5)
        hub.stop()
        store.close()
        hub.join(5)
        assert not hub._thread.is_alive()
    finally:
        loop.close()
    assert threading.active_count() >= 1


def test_the_log_is_bounded_in_bytes_too(store):
    two_networks(store)
    hub = Hub(store, log_records=1000, log_bytes=20_000)
    hub.load()
    for r in range(2, 80):
        put(store, "ports", port(0, 0, "c1", rev=r))
        hub.poll()
    assert hub.log_size <= 25_000 and len(hub.log) < 78
    assert hub.log_size == sum(r.size for r in hub.log)
    events, _ = hub.read("c1", hub.floor)
    assert len(events) == len(hub.log)


def test_a_bind_adds_the_new_host_to_its_neighbours_without_recomputing_them(store):
    put(store, "networks", network(0))
    put(store, "subnets", subnet(0))
    for i, chassis in enumerate(CHASSIS):
        put(store, "ports", port(i, 0, chassis))
    put(store, "agents", agent("c9"))
    put(store, "liveness", {"host": "c9"}, "a-c9")
    hub = loaded(store)
    one = Mirror(hub, "c1")
    before = dict(hub.stats)
    put(store, "ports", port(7, 0, "c9"))             # c9 now hosts a port on n0
    hub.poll()
    # c9 recomputes; its three neighbours only gain ("chassis", "c9")
    assert hub.stats["recomputed"] - before["recomputed"] == 1
    assert hub.stats["delta"] - before["delta"] == 3
    catalog = full_catalog(store)
    for chassis in (*CHASSIS, "c9"):
        assert hub.subscriptions_of(chassis) == subscriptions(catalog, chassis)
    got = {(e["collection"], e["id"]) for e in one.catch_up()}
    assert {("ports", "p7"), ("agents", "a-c9"), ("liveness", "a-c9")} <= got
    assert one.ids() == expected(catalog, "c1")
    # a rebind that takes c9 off the network is a removal: everyone recomputes
    before = dict(hub.stats)
    put(store, "ports", port(7, 0, "c2", rev=2))
    hub.poll()
    assert hub.stats["delta"] == before["delta"]
    catalog = full_catalog(store)
    for chassis in (*CHASSIS, "c9"):
        assert hub.subscriptions_of(chassis) == subscriptions(catalog, chassis)
    one.catch_up()
    assert one.ids() == expected(catalog, "c1") and "a-c9" not in one.ids()["agents"]
