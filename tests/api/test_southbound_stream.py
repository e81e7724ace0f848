"""The per-chassis southbound stream through a real server: each chassis' snapshot and
events hold what it needs only, binding and unbinding move networks in and out, long
polls wait on the event loop (the Neutron API keeps answering under hundreds of them)
and a client that goes away is dropped at once."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid

import httpx
import pytest

from plexus.agent.southbound import Credentials, Southbound
from plexus.config import Config
from plexus.server.runner import ThreadedServer
from tests.api.helpers import raw, register_chassis


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def snapshot(server, admin, chassis: str | None = None) -> dict:
    query = f"?chassis={chassis}" if chassis else ""
    r = raw(server, admin, "GET", f"/southbound/v1/snapshot{query}")
    assert r.status_code == 200, r.text
    return r.json()


def watch(server, admin, start: int, chassis: str, timeout: float = 0) -> dict:
    r = raw(server, admin, "GET",
            f"/southbound/v1/watch?from={start}&timeout={timeout}&chassis={chassis}")
    assert r.status_code == 200, r.text
    return r.json()


def ids(snap: dict, collection: str) -> set[str]:
    return {o["id"] for o in snap["objects"].get(collection, [])}


def hub(server):
    return server.app.state.hub


@pytest.fixture
def two(admin):
    """Two chassis, each with one port on a network of its own (and no security group:
    the default group names itself as a remote group, which would share its members)."""
    made = []
    chassis = (name("ca"), name("cb"))
    nets = []
    for i, host in enumerate(chassis):
        net = admin.network.create_network(name=f"stream{i}")
        sub = admin.network.create_subnet(network_id=net.id, cidr=f"10.{60 + i}.0.0/24",
                                          ip_version=4)
        p = admin.network.create_port(network_id=net.id, binding_host_id=host,
                                      security_group_ids=[])
        made += [p, sub, net]
        nets.append((net, sub, p))
    yield chassis, nets
    for obj in made:
        getattr(admin.network, f"delete_{type(obj).__name__.lower()}")(obj)


def test_each_chassis_sees_only_its_own_objects(server, admin, two):
    (ca, cb), ((net_a, sub_a, port_a), (net_b, sub_b, port_b)) = two
    a, b = snapshot(server, admin, ca), snapshot(server, admin, cb)
    assert ids(a, "networks") == {net_a.id} and ids(b, "networks") == {net_b.id}
    assert ids(a, "subnets") == {sub_a.id} and ids(b, "subnets") == {sub_b.id}
    assert port_a.id in ids(a, "ports") and port_b.id not in ids(a, "ports")
    assert port_b.id in ids(b, "ports") and port_a.id not in ids(b, "ports")
    everything = snapshot(server, admin)
    assert {net_a.id, net_b.id} <= ids(everything, "networks")
    assert a["revision"] == everything["revision"] or a["revision"] < everything["revision"]
    # an update on b's network reaches b, not a
    start = a["revision"] + 1
    admin.network.update_port(port_b, name="renamed")
    assert [e["id"] for e in watch(server, admin, start, cb)["events"]] == [port_b.id]
    assert watch(server, admin, start, ca)["events"] == []


def test_binding_backfills_and_unbinding_prunes(server, admin, two):
    (ca, _), ((net_a, sub_a, port_a), _) = two
    newcomer = name("cn")
    start = snapshot(server, admin, newcomer)["revision"] + 1
    assert snapshot(server, admin, newcomer)["objects"] == {}
    p = admin.network.create_port(network_id=net_a.id, security_group_ids=[])
    admin.network.update_port(p, binding_host_id=newcomer)
    body = watch(server, admin, start, newcomer)
    got = {(e["type"], e["collection"], e["id"]) for e in body["events"]}
    assert {("put", "ports", p.id), ("put", "networks", net_a.id),
            ("put", "subnets", sub_a.id), ("put", "ports", port_a.id)} <= got
    # the snapshot agrees with what the events built
    snap = snapshot(server, admin, newcomer)
    assert ids(snap, "ports") == {p.id, port_a.id} and ids(snap, "networks") == {net_a.id}
    admin.network.update_port(p, binding_host_id="")
    body = watch(server, admin, body["next"], newcomer)
    got = {(e["type"], e["collection"], e["id"]) for e in body["events"]}
    assert {("delete", "ports", p.id), ("delete", "networks", net_a.id),
            ("delete", "subnets", sub_a.id), ("delete", "ports", port_a.id)} <= got
    assert snapshot(server, admin, newcomer)["objects"] == {}
    admin.network.delete_port(p)


def test_a_router_interface_brings_the_routed_network(server, admin, two):
    (ca, cb), ((net_a, sub_a, port_a), (net_b, sub_b, port_b)) = two
    router = admin.network.create_router(name="stream-r")
    try:
        admin.network.add_interface_to_router(router, subnet_id=sub_a.id)
        start = snapshot(server, admin, ca)["revision"] + 1
        assert router.id in ids(snapshot(server, admin, ca), "routers")
        assert net_b.id not in ids(snapshot(server, admin, ca), "networks")
        admin.network.add_interface_to_router(router, subnet_id=sub_b.id)
        got = {(e["collection"], e["id"]) for e in watch(server, admin, start, ca)["events"]}
        assert {("networks", net_b.id), ("subnets", sub_b.id), ("ports", port_b.id)} <= got
        assert {net_a.id, net_b.id} <= ids(snapshot(server, admin, ca), "networks")
        admin.network.remove_interface_from_router(router, subnet_id=sub_b.id)
        assert net_b.id not in ids(snapshot(server, admin, ca), "networks")
        admin.network.remove_interface_from_router(router, subnet_id=sub_a.id)
    finally:
        admin.network.delete_router(router)


def test_resume_from_a_revision(server, admin, two):
    (ca, _), ((_, _, port_a), _) = two
    first = snapshot(server, admin, ca)["revision"] + 1
    admin.network.update_port(port_a, name="one")
    middle = watch(server, admin, first, ca)["next"]
    admin.network.update_port(port_a, name="two")
    events = watch(server, admin, middle, ca)["events"]
    assert [e["object"]["name"] for e in events] == ["two"]
    assert [e["object"]["name"] for e in watch(server, admin, first, ca)["events"]] == \
        ["one", "two"]


def test_watch_returns_on_a_relevant_write_only(server, admin, two):
    (ca, _), ((_, _, port_a), (_, _, port_b)) = two
    start = snapshot(server, admin, ca)["revision"] + 1

    def later(port, label):
        time.sleep(0.5)
        admin.network.update_port(port, name=label)

    writer = threading.Thread(target=later, args=(port_b, "elsewhere"))
    writer.start()
    began = time.monotonic()
    body = watch(server, admin, start, ca, timeout=3)
    writer.join()
    assert body["events"] == [] and time.monotonic() - began >= 2.9
    writer = threading.Thread(target=later, args=(port_a, "here"))
    writer.start()
    began = time.monotonic()
    body = watch(server, admin, body["next"], ca, timeout=10)
    writer.join()
    assert [e["object"]["name"] for e in body["events"]] == ["here"]
    assert time.monotonic() - began < 5


def test_registering_reaches_the_chassis_sharing_a_network(server, admin, two):
    (ca, cb), ((net_a, _, _), _) = two
    p = admin.network.create_port(network_id=net_a.id, binding_host_id=cb,
                                  security_group_ids=[])
    try:
        start = snapshot(server, admin, ca)["revision"] + 1
        register_chassis(server, admin, cb)
        got = {(e["collection"], e["object"].get("host")) for e in
               watch(server, admin, start, ca)["events"] if e["type"] == "put"}
        assert ("agents", cb) in got and ("liveness", cb) in got
    finally:
        admin.network.delete_port(p)


@pytest.fixture
def small(tmp_path):
    """A server of its own whose hub keeps a short log."""
    config = Config()
    config.server.port = 0
    config.store.url = f"sqlite:///{tmp_path}/small.db"
    srv = ThreadedServer(config)
    srv.app.state.hub.max_log = 4
    with srv:
        yield srv


def test_410_when_the_revision_is_older_than_the_log(small):
    token = _token(small.url)
    http = httpx.Client(base_url=small.url, headers={"X-Auth-Token": token}, timeout=30)
    start = http.get("/southbound/v1/snapshot?chassis=c1").json()["revision"] + 1
    for i in range(12):
        assert http.post("/v2.0/networks", json={"network": {"name": f"n{i}"}}).status_code == 201
    r = http.get(f"/southbound/v1/watch?from={start}&chassis=c1")
    assert r.status_code == 410
    assert r.json()["NeutronError"]["type"] == "Compacted"
    assert r.json()["NeutronError"]["compact_revision"] >= start
    # every event, without a chassis, still comes from the store's own history
    r = http.get(f"/southbound/v1/watch?from={start}")
    assert r.status_code == 200 and len(r.json()["events"]) >= 12
    http.close()


def _token(url: str) -> str:
    r = httpx.post(f"{url}/identity/v3/auth/tokens", timeout=30, json={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": "secret"}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
    r.raise_for_status()
    return r.headers["X-Subject-Token"]


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_api_answers_under_300_long_polls_and_gone_watchers_are_dropped(server, admin):
    token = admin.session.get_token()
    rev = snapshot(server, admin)["revision"]
    count, wait = 300, 20

    async def scenario():
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        async with httpx.AsyncClient(base_url=server.url, headers={"X-Auth-Token": token},
                                     timeout=60, limits=limits) as http:
            polls = [asyncio.create_task(http.get(
                f"/southbound/v1/watch?from={rev + 1}&timeout={wait}&chassis=idle{i}"))
                for i in range(count)]
            assert await asyncio.to_thread(_wait, lambda: hub(server).watchers() >= count, 15)
            began = time.monotonic()
            r = await asyncio.to_thread(
                raw, server, admin, "POST", "/v2.0/networks", {"network": {"name": "busy"}})
            served = time.monotonic() - began
            assert r.status_code == 201
            assert served < wait and not any(p.done() for p in polls)
            assert hub(server).watchers() == count
            for p in polls:                      # the clients go away
                p.cancel()
            await asyncio.gather(*polls, return_exceptions=True)
        return r.json()["network"]["id"], served

    net, served = asyncio.run(scenario())
    assert _wait(lambda: hub(server).watchers() == 0, 5), hub(server).watchers()
    admin.network.delete_network(net)


def test_a_disconnected_watcher_is_dropped(server, admin):
    token = admin.session.get_token()
    host, port = server.url.removeprefix("http://").split(":")
    before = hub(server).watchers()
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(f"GET /southbound/v1/watch?from=0&timeout=30&chassis=gone HTTP/1.1\r\n"
                     f"Host: {host}\r\nX-Auth-Token: {token}\r\n\r\n".encode())
        assert _wait(lambda: hub(server).watchers() == before + 1, 5)
    assert _wait(lambda: hub(server).watchers() == before, 2)


def test_the_agent_client_sends_its_chassis():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        if request.url.path.endswith("/snapshot"):
            return httpx.Response(200, json={"revision": 3, "objects": {}})
        return httpx.Response(200, json={"events": [], "next": 4})

    async def go():
        sb = Southbound(["http://s:9696"], credentials=Credentials(None), chassis="cn 1",
                        transport=httpx.MockTransport(handler))
        await sb.snapshot()
        await sb.watch(4, wait=0)
        await sb.close()
    asyncio.run(go())
    assert [u.params.get("chassis") for u in seen] == ["cn 1", "cn 1"]
