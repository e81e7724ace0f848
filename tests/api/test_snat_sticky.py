"""Sticky SNAT port blocks (issue 12, item 2), on both store backends (SQLite and a
one-member etcd): a chassis whose liveness lease runs out keeps its blocks (the gateways
keep their return flows); another chassis cannot take them before the quarantine
(``network.snat_quarantine``) and can after it; the owner registering again keeps them
and restarts the quarantine from zero; a server restart (every lease gone) keeps them
and the owner gets the same blocks back; deleting the agent releases them at once; and
marking many dead owners stays within etcd's 128 operations per transaction."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest

from plexus.api.services.snat import orphan_key
from plexus.config import Config
from plexus.server.runner import ThreadedServer, write_clouds_yaml
from tests.api.helpers import raw, register_chassis
from tests.api.l3 import connect, error

TTL = 1.0          # liveness lease of the chassis that die (etcd makes it at least 2 s)
QUARANTINE = 4.0   # seconds; the default is 7260


@pytest.fixture(params=["sqlite", "etcd"])
def store_url(request, tmp_path: Path):
    """A store URL of each backend (etcd: one member on loopback, skipped without it)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/plexus.db"
        return
    from tests.ha.conftest import running_etcd
    with running_etcd(tmp_path / "etcd", size=1) as cluster:
        yield cluster.url


@contextlib.contextmanager
def server(store_url: str, tmp: Path, **network):
    """A server on ``store_url`` (a restart is a second one on the same store)."""
    config = Config()
    config.server.port = 0
    config.store.url = store_url
    config.network.snat_quarantine = QUARANTINE
    for name, value in network.items():
        setattr(config.network, name, value)
    with ThreadedServer(config) as srv:
        srv.clouds = write_clouds_yaml(tmp / "clouds.yaml", srv.url, config)
        srv.admin = connect(srv)
        yield srv


def lease(srv, router_id: str, chassis: str, count: int):
    return raw(srv, srv.admin, "POST", f"/southbound/v1/routers/{router_id}/snat-blocks",
               {"chassis": chassis, "count": count})


def starts(resp) -> list[int]:
    assert resp.status_code == 200, resp.text
    return [b["port_min"] for b in resp.json()["snat_blocks"]]


def owners(srv, router_id: str) -> dict[int, str]:
    """port_min → owner of the router's blocks, as every chassis sees them on the stream."""
    snap = raw(srv, srv.admin, "GET", "/southbound/v1/snapshot").json()
    return {b["port_min"]: b["chassis"] for b in snap["objects"].get("snat_blocks", [])
            if b["router_id"] == router_id}


def alive(srv, chassis: str) -> bool:
    return any(a.host == chassis and a.is_alive for a in srv.admin.network.agents())


def wait_dead(srv, chassis: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while alive(srv, chassis):
        assert time.monotonic() < deadline, f"{chassis}'s liveness lease did not run out"
        time.sleep(0.2)


def router_with_gateway(srv):
    ext = srv.admin.network.create_network(name="public", is_router_external=True)
    srv.admin.network.create_subnet(network_id=ext.id, cidr="172.24.4.0/24", ip_version=4)
    return srv.admin.network.create_router(external_gateway_info={"network_id": ext.id})


def test_dead_owner_keeps_its_blocks_until_the_quarantine_ends(store_url, tmp_path):
    # three blocks in all: 1024, 1088, 1152
    with server(store_url, tmp_path, snat_port_range=(1024, 1215)) as srv:
        router = router_with_gateway(srv)
        register_chassis(srv, srv.admin, "owner", ttl=TTL)
        register_chassis(srv, srv.admin, "other", ttl=120)
        assert starts(lease(srv, router.id, "owner", 2)) == [1024, 1088]
        wait_dead(srv, "owner")
        # its liveness is gone, its blocks are not (the gateways keep their return flows)
        assert owners(srv, router.id) == {1024: "owner", 1088: "owner"}
        # another chassis gets the free block, not the dead owner's; the claim marked it
        assert starts(lease(srv, router.id, "other", 1)) == [1152]
        store = srv.app.state.services.store
        assert store.get(orphan_key("owner")) is not None
        listed = raw(srv, srv.admin, "GET",
                     f"/southbound/v1/routers/{router.id}/snat-blocks").json()["snat_blocks"]
        assert {b["port_min"] for b in listed if b.get("orphaned_since")} == {1024, 1088}
        body = error(lease(srv, router.id, "other", 2), 409, "SnatPortBlocksExhausted")
        assert body["message"].startswith("Only 0 of the 1 SNAT port blocks")
        # past the quarantine, yet the owner registers again first: it keeps its blocks,
        # its mark is gone, and a claim cannot take them
        time.sleep(QUARANTINE + 0.5)
        register_chassis(srv, srv.admin, "owner", ttl=TTL)
        assert store.get(orphan_key("owner")) is None
        assert starts(lease(srv, router.id, "owner", 2)) == [1024, 1088]
        error(lease(srv, router.id, "other", 2), 409, "SnatPortBlocksExhausted")
        # it dies again: the quarantine starts again from when a claim first sees that
        wait_dead(srv, "owner")
        error(lease(srv, router.id, "other", 2), 409, "SnatPortBlocksExhausted")
        assert owners(srv, router.id) == {1024: "owner", 1088: "owner", 1152: "other"}
        time.sleep(QUARANTINE + 0.5)
        # after it, the lowest quarantined block goes to the chassis that asks
        assert starts(lease(srv, router.id, "other", 2)) == [1024, 1152]
        assert owners(srv, router.id) == {1024: "other", 1088: "owner", 1152: "other"}
        # the owner comes back with what it still has, and asks for more in vain
        register_chassis(srv, srv.admin, "owner", ttl=120)
        assert starts(lease(srv, router.id, "owner", 1)) == [1088]
        error(lease(srv, router.id, "owner", 2), 409, "SnatPortBlocksExhausted")
        # deleting the agent through the API releases its blocks (and its mark) at once
        [agent] = [a for a in srv.admin.network.agents() if a.host == "owner"]
        srv.admin.network.delete_agent(agent)
        assert owners(srv, router.id) == {1024: "other", 1152: "other"}
        assert store.get(orphan_key("owner")) is None
        assert starts(lease(srv, router.id, "other", 3)) == [1024, 1088, 1152]


def test_server_restart_keeps_every_chassis_blocks(store_url, tmp_path):
    with server(store_url, tmp_path) as srv:
        router = router_with_gateway(srv)
        held = {}
        # registered in one order, each holding blocks of its own
        for name, count in (("c3", 1), ("c1", 2), ("c2", 1)):
            register_chassis(srv, srv.admin, name, ttl=TTL)
            held[name] = starts(lease(srv, router.id, name, count))
        every = [p for ps in held.values() for p in ps]
        assert [len(held[n]) for n in ("c3", "c1", "c2")] == [1, 2, 1]
        assert len(set(every)) == 4
    time.sleep(TTL + 2.5)            # the control plane is down: every lease runs out
    with server(store_url, tmp_path) as srv:
        for name in held:
            wait_dead(srv, name)
        assert owners(srv, router.id) == {p: n for n, ps in held.items() for p in ps}
        # they come back in another order; a newcomer asks first and gets a free block
        register_chassis(srv, srv.admin, "c4", ttl=120)
        [newcomer] = starts(lease(srv, router.id, "c4", 1))
        assert newcomer not in every
        for name in ("c1", "c2", "c3"):
            register_chassis(srv, srv.admin, name, ttl=120)
            assert starts(lease(srv, router.id, name, len(held[name]))) == held[name]
            assert srv.app.state.services.store.get(orphan_key(name)) is None


def test_a_clean_stop_marks_the_chassis_at_once(store_url, tmp_path):
    with server(store_url, tmp_path) as srv:
        router = router_with_gateway(srv)
        lease_id = register_chassis(srv, srv.admin, "stops", ttl=120)
        assert starts(lease(srv, router.id, "stops", 1)) == [1024]
        r = raw(srv, srv.admin, "DELETE", f"/southbound/v1/chassis/stops?lease={lease_id}")
        assert r.status_code in (200, 204), r.text
        assert not alive(srv, "stops")
        assert srv.app.state.services.store.get(orphan_key("stops")) is not None
        assert owners(srv, router.id) == {1024: "stops"}


def test_marking_many_dead_owners_stays_within_etcd_transaction_limits(store_url, tmp_path):
    with server(store_url, tmp_path) as srv:
        router = router_with_gateway(srv)
        names = [f"d{i:02d}" for i in range(90)]
        leases = []
        dead = set()
        for name in names:
            leases.append(register_chassis(srv, srv.admin, name, ttl=120))
            dead |= set(starts(lease(srv, router.id, name, 1)))
        store = srv.app.state.services.store
        for lease_id in leases:       # as if every lease ran out at once (no clean stop)
            store.lease_revoke(lease_id)
        register_chassis(srv, srv.admin, "asker", ttl=120)
        real, sizes = store.txn, []

        def txn(compares, ops):
            sizes.append(max(len(compares), len(ops)))
            return real(compares, ops)
        store.txn = txn
        try:
            got = starts(lease(srv, router.id, "asker", 120))
        finally:
            del store.txn
        assert len(set(got)) == 120 and not set(got) & dead       # free ones, none taken
        assert all(store.get(orphan_key(n)) is not None for n in names)
        # 90 marks in three transactions (40, 40, 10), then the claim of 120 blocks in
        # three (40 each)
        assert len(sizes) == 6 and max(sizes) <= 128, sizes
