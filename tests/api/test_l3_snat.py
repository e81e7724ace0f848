"""SNAT port blocks through the southbound API: aligned blocks unique under 8 chassis
asking at once, idempotent per chassis, on the stream with their owners, released by
the chassis, dropped with the gateway address, kept across an agent restart and after the
owning chassis' lease expires (test_snat_sticky.py: the quarantine), freed for reuse when
its agent is deleted."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

from plexus.api.services.snat import generation_key, layout
from plexus.config import NetworkConfig
from tests.api.helpers import raw, register_chassis
from tests.api.l3 import commit_paused, connect, error, fresh_server, in_thread

MISSING = "5f0f7f6c-1111-4c3c-9c6e-000000000000"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A server of this module's own, an external network and a router on it."""
    with fresh_server(tmp_path_factory.mktemp("l3snat")) as srv:
        admin, demo = connect(srv), connect(srv, "devstack")
        ext = admin.network.create_network(name="public", is_router_external=True)
        sub = admin.network.create_subnet(network_id=ext.id, cidr="172.24.4.0/24",
                                          ip_version=4)
        register_chassis(srv, admin, "gw", gateway=True, ttl=60)
        yield {"server": srv, "admin": admin, "demo": demo, "ext": ext, "sub": sub}


@pytest.fixture
def router(lab):
    r = lab["demo"].network.create_router(
        name="snat", external_gateway_info={"network_id": lab["ext"].id})
    yield r
    lab["demo"].network.delete_router(r, ignore_missing=True)


def lease(lab, router_id: str, chassis: str, count: int):
    return raw(lab["server"], lab["admin"], "POST",
               f"/southbound/v1/routers/{router_id}/snat-blocks",
               {"chassis": chassis, "count": count})


@contextlib.contextmanager
def slow_claims(server, seconds: float = 0.05):
    """Hold every SNAT claim a moment before it commits, so that concurrent claims are
    all planned on the same reads and must collide; yields the count of refused ones."""
    store = server.app.state.services.store
    real, refused = store.txn, [0]

    def txn(compares, ops):
        if any("/snat_blocks/" in getattr(o, "key", "") for o in ops):
            time.sleep(seconds)
        result = real(compares, ops)
        refused[0] += not result.succeeded
        return result
    store.txn = txn
    try:
        yield refused
    finally:
        del store.txn


def on_stream(lab) -> list[dict]:
    snap = raw(lab["server"], lab["admin"], "GET", "/southbound/v1/snapshot").json()
    return snap["objects"].get("snat_blocks", [])


def test_layout():
    assert list(layout((1024, 65535), 64))[:2] == [1024, 1088]
    assert len(layout((1024, 65535), 64)) == (65536 - 1024) // 64
    assert list(layout((1000, 1200), 64)) == [1024, 1088]    # aligned, wholly inside
    for bad in (((1024, 65535), 48), ((0, 100), 64), ((1030, 1050), 64)):
        with pytest.raises(ValueError):
            layout(*bad)


def test_unique_under_eight_concurrent_chassis(lab, router):
    srv, admin = lab["server"], lab["admin"]
    names = [f"cn-{i}" for i in range(8)]
    for name in names:
        register_chassis(srv, admin, name, ttl=60)
    gateway_ip = router.external_gateway_info["external_fixed_ips"][0]["ip_address"]
    results, barrier = {}, threading.Barrier(len(names))

    def ask(name: str) -> None:
        barrier.wait()
        results[name] = lease(lab, router.id, name, 3)
    with slow_claims(srv) as refused:
        threads = [threading.Thread(target=ask, args=(n,)) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert refused[0] > 0          # the claims did collide, and were planned again
    starts = []
    for name, resp in results.items():
        assert resp.status_code == 200, resp.text
        blocks = resp.json()["snat_blocks"]
        assert len(blocks) == 3 and resp.json()["block_size"] == 64
        for b in blocks:
            assert b["chassis"] == name and b["ip"] == gateway_ip
            assert b["router_id"] == router.id and b["id"] == f"{router.id}:{b['port_min']}"
            assert b["port_min"] % 64 == 0 and b["port_max"] == b["port_min"] + 63
            assert 1024 <= b["port_min"] and b["port_max"] <= 65535
        starts += [b["port_min"] for b in blocks]
    assert len(starts) == len(set(starts)) == 24
    # every chassis (and the active gateway) sees who owns which block on the stream
    stream = {b["port_min"]: b["chassis"] for b in on_stream(lab)
              if b["router_id"] == router.id}
    assert stream == {b["port_min"]: n for n, r in results.items()
                      for b in r.json()["snat_blocks"]}
    # idempotent: asking again returns the same blocks; asking for more adds to them
    again = lease(lab, router.id, "cn-0", 3).json()["snat_blocks"]
    assert again == results["cn-0"].json()["snat_blocks"]
    more = lease(lab, router.id, "cn-0", 5).json()["snat_blocks"]
    assert len(more) == 5 and all(b in more for b in again)
    assert len({b["port_min"] for b in on_stream(lab)}) == 26
    # the listing, per router and per chassis
    listed = raw(srv, admin, "GET", f"/southbound/v1/routers/{router.id}/snat-blocks"
                                    f"?chassis=cn-0").json()["snat_blocks"]
    assert listed == more


def test_release_and_blocks_kept_after_lease_expiry(lab, router):
    srv, admin = lab["server"], lab["admin"]
    register_chassis(srv, admin, "short", ttl=1.0)
    held = lease(lab, router.id, "short", 2).json()["snat_blocks"]
    assert [b["port_min"] for b in held] == [1024, 1088]
    rev = raw(srv, admin, "GET", "/southbound/v1/snapshot").json()["revision"]
    deadline = time.monotonic() + 10                 # no heartbeat: the lease runs out
    while any(a.host == "short" and a.is_alive for a in admin.network.agents()):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    # sticky: the blocks stay the dead chassis' (sessions through them live on)
    assert [b for b in on_stream(lab) if b["chassis"] == "short"] == held
    events = raw(srv, admin, "GET", f"/southbound/v1/watch?from={rev + 1}").json()["events"]
    assert not [e for e in events if e["collection"] == "snat_blocks"]
    # a dead chassis cannot lease; another chassis gets free blocks, not the quarantined
    error(lease(lab, router.id, "short", 1), 409, "ChassisNotAlive")
    register_chassis(srv, admin, "heir", ttl=60)
    reused = [b["port_min"] for b in lease(lab, router.id, "heir", 2).json()["snat_blocks"]]
    assert len(reused) == 2 and not set(reused) & {1024, 1088}
    first, second = reused
    r = raw(srv, admin, "DELETE", f"/southbound/v1/routers/{router.id}/snat-blocks"
                                  f"?chassis=heir&port_min={first}")
    assert r.status_code == 204
    assert [b["port_min"] for b in on_stream(lab) if b["chassis"] == "heir"] == [second]
    error(raw(srv, admin, "DELETE", f"/southbound/v1/routers/{router.id}/snat-blocks"
                                    f"?chassis=heir&port_min={first}"),
          404, "SnatPortBlockNotFound")
    assert raw(srv, admin, "DELETE", f"/southbound/v1/routers/{router.id}/snat-blocks"
                                     f"?chassis=heir").status_code == 204
    assert not [b for b in on_stream(lab) if b["chassis"] == "heir"]


def test_restarted_agent_keeps_its_blocks(lab, router):
    srv, admin = lab["server"], lab["admin"]
    register_chassis(srv, admin, "restarts", ttl=1.0)
    held = lease(lab, router.id, "restarts", 2).json()["snat_blocks"]
    new_lease = register_chassis(srv, admin, "restarts", ttl=60)   # before the old one ends
    time.sleep(2.5)                                                # the old lease is gone
    store = srv.app.state.services.store
    kept = [b for b in on_stream(lab) if b["chassis"] == "restarts"]
    assert kept == held and new_lease
    # on no liveness lease at all: nothing but a release, a delete or a claim after the
    # quarantine takes them away
    assert {store.get(f"/plexus/model/snat_blocks/{b['id']}").lease for b in kept} == {0}
    assert lease(lab, router.id, "restarts", 2).json()["snat_blocks"] == held


def test_deleted_agent_gives_its_blocks_back(lab, router):
    srv, admin = lab["server"], lab["admin"]
    register_chassis(srv, admin, "doomed", ttl=60)
    assert lease(lab, router.id, "doomed", 1).status_code == 200
    [agent] = [a for a in admin.network.agents() if a.host == "doomed"]
    admin.network.delete_agent(agent)
    assert not [b for b in on_stream(lab) if b["chassis"] == "doomed"]


@contextlib.contextmanager
def txn_sizes(server):
    """Record the size of every store transaction (etcd refuses more than 128 operations
    or compares in one)."""
    store = server.app.state.services.store
    real, sizes = store.txn, []

    def txn(compares, ops):
        sizes.append(max(len(compares), len(ops)))
        return real(compares, ops)
    store.txn = txn
    try:
        yield sizes
    finally:
        del store.txn


def test_gateway_changes_drop_blocks(lab, router):
    srv, admin, demo = lab["server"], lab["admin"], lab["demo"]
    register_chassis(srv, admin, "cn-g", ttl=60)
    register_chassis(srv, admin, "cn-h", ttl=60)
    with txn_sizes(srv) as sizes:
        assert lease(lab, router.id, "cn-g", 48).status_code == 200
        assert lease(lab, router.id, "cn-h", 40).status_code == 200
        # a new gateway address: the blocks were on the old one (swept in batches)
        admin.network.update_router(router, external_gateway_info={
            "network_id": lab["ext"].id,
            "external_fixed_ips": [{"ip_address": "172.24.4.77"}]})
    assert not [b for b in on_stream(lab) if b["router_id"] == router.id]
    assert max(sizes) <= 128
    blocks = lease(lab, router.id, "cn-g", 1).json()["snat_blocks"]
    assert blocks[0]["ip"] == "172.24.4.77"
    # SNAT switched off: blocks dropped, and no more are leased
    admin.network.update_router(router, external_gateway_info={
        "network_id": lab["ext"].id, "enable_snat": False})
    assert not [b for b in on_stream(lab) if b["router_id"] == router.id]
    error(lease(lab, router.id, "cn-g", 1), 409, "SnatDisabled")
    # no gateway at all
    demo.network.update_router(router, external_gateway_info={})
    error(lease(lab, router.id, "cn-g", 1), 409, "RouterHasNoGateway")
    # a router deleted with blocks leaves none behind
    demo.network.update_router(router, external_gateway_info={"network_id": lab["ext"].id})
    assert lease(lab, router.id, "cn-g", 1).status_code == 200
    demo.network.delete_router(router)
    assert not [b for b in on_stream(lab) if b["router_id"] == router.id]


def test_claim_racing_a_new_gateway_address_does_not_survive_it(lab, router):
    srv, admin = lab["server"], lab["admin"]
    register_chassis(srv, admin, "racer", ttl=60)
    assert lease(lab, router.id, "racer", 1).status_code == 200     # the generation exists
    with commit_paused(srv, generation_key(router.id), seconds=0.5) as planned:
        thread, out = in_thread(lambda: raw(srv, admin, "PUT", f"/v2.0/routers/{router.id}", {
            "router": {"external_gateway_info": {
                "network_id": lab["ext"].id,
                "external_fixed_ips": [{"ip_address": "172.24.4.88"}]}}}).status_code)
        assert planned.wait(10)
        raced = lease(lab, router.id, "racer", 2)        # planned on the old address
        thread.join()
    assert out["value"] == 200 and raced.status_code == 200
    assert {b["ip"] for b in on_stream(lab) if b["router_id"] == router.id} <= {"172.24.4.88"}
    again = lease(lab, router.id, "racer", 2).json()["snat_blocks"]
    assert {b["ip"] for b in again} == {"172.24.4.88"}


def test_bad_requests(lab, router):
    srv, admin, demo = lab["server"], lab["admin"], lab["demo"]
    register_chassis(srv, admin, "cn-b", ttl=60)
    path = f"/southbound/v1/routers/{router.id}/snat-blocks"
    for body in ({"chassis": "cn-b", "count": 0}, {"chassis": "cn-b", "count": "2"},
                 {"chassis": "cn-b", "count": True}, {"count": 1}, {"chassis": ""},
                 {"chassis": "cn-b", "count": NetworkConfig().snat_max_blocks + 1}):
        error(raw(srv, admin, "POST", path, body), 400, "InvalidInput")
    error(raw(srv, admin, "POST", f"/southbound/v1/routers/{MISSING}/snat-blocks",
              {"chassis": "cn-b", "count": 1}), 404, "RouterNotFound")
    error(lease(lab, router.id, "never-registered", 1), 409, "ChassisNotAlive")
    assert raw(srv, demo, "POST", path, {"chassis": "cn-b", "count": 1}).status_code == 403
    error(raw(srv, admin, "DELETE", path), 400, "InvalidInput")
    error(raw(srv, admin, "DELETE", path + "?chassis=cn-b&port_min=x"), 400, "InvalidInput")


def test_exhaustion_is_all_or_nothing(tmp_path):
    with fresh_server(tmp_path, snat_port_range=(1000, 1300), snat_block_size=64) as srv:
        admin = connect(srv)
        ext = admin.network.create_network(name="public", is_router_external=True)
        admin.network.create_subnet(network_id=ext.id, cidr="172.24.4.0/24", ip_version=4)
        router = admin.network.create_router(external_gateway_info={"network_id": ext.id})
        for name in ("one", "two"):
            register_chassis(srv, admin, name, ttl=60)
        lab = {"server": srv, "admin": admin}
        got = lease(lab, router.id, "one", 3).json()
        assert [b["port_min"] for b in got["snat_blocks"]] == [1024, 1088, 1152]
        before = on_stream(lab)
        body = error(lease(lab, router.id, "two", 2), 409, "SnatPortBlocksExhausted")
        assert body["message"] == (f"Only 1 of the 2 SNAT port blocks asked for are free on "
                                   f"router {router.id}.")
        assert on_stream(lab) == before
        assert [b["port_min"] for b in lease(lab, router.id, "two", 1).json()["snat_blocks"]] \
            == [1216]
