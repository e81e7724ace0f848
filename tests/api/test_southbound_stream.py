"""The per-chassis southbound stream through a real server: each chassis' snapshot and
events hold what it needs only, binding and unbinding move networks in and out, long
polls and streams wait on the event loop (the Neutron API keeps answering under hundreds
of them) and a client that goes away is dropped at once."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid

import httpx
import pytest

from plexus.agent.southbound import Compacted as AgentCompacted
from plexus.agent.southbound import Credentials, Southbound
from plexus.config import Config
from plexus.server.runner import ThreadedServer
from tests.api.helpers import raw, register_chassis
from tests.contract.test_store_contract import wait_for
from tests.ha.conftest import admin_token


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
    token = admin_token(small.url)
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
            assert await asyncio.to_thread(wait_for, lambda: hub(server).watchers() >= count, 15)
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
    assert wait_for(lambda: hub(server).watchers() == 0, 5), hub(server).watchers()
    admin.network.delete_network(net)


def test_a_disconnected_watcher_is_dropped(server, admin):
    token = admin.session.get_token()
    host, port = server.url.removeprefix("http://").split(":")
    before = hub(server).watchers()
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(f"GET /southbound/v1/watch?from=0&timeout=30&chassis=gone HTTP/1.1\r\n"
                     f"Host: {host}\r\nX-Auth-Token: {token}\r\n\r\n".encode())
        assert wait_for(lambda: hub(server).watchers() == before + 1, 5)
    assert wait_for(lambda: hub(server).watchers() == before, 2)


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


# --- streaming watches (``&stream=1``) ---------------------------------------------------

class Lines:
    """A streaming watch read on its own thread: each line with its arrival time."""

    def __init__(self, url: str, token: str, start: int, chassis: str,
                 heartbeat: float = 10.0):
        self.got: list[tuple[float, dict]] = []
        self.status = None
        self.opened = threading.Event()
        self._stop = threading.Event()
        self._path = (f"/southbound/v1/watch?from={start}&chassis={chassis}&stream=1"
                      f"&heartbeat={heartbeat}")
        self._url, self._token = url, token
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self.opened.wait(10)

    def _run(self) -> None:
        with httpx.stream("GET", self._url + self._path, timeout=30,
                          headers={"X-Auth-Token": self._token}) as r:
            self.status = r.status_code
            self.opened.set()
            for line in r.iter_lines():
                if line:
                    self.got.append((time.monotonic(), json.loads(line)))
                if self._stop.is_set():
                    break

    def events(self) -> list[dict]:
        return [e for _, body in list(self.got) for e in body.get("events", [])]

    def close(self) -> None:
        self._stop.set()


def test_a_stream_carries_its_chassis_events_promptly_and_nothing_else(server, admin, two):
    (ca, cb), ((_, _, port_a), (_, _, port_b)) = two
    token = admin.session.get_token()
    start = snapshot(server, admin, ca)["revision"] + 1
    a, b = Lines(server.url, token, start, ca), Lines(server.url, token, start, cb)
    assert a.status == b.status == 200
    assert wait_for(lambda: hub(server).streams >= 2, 5)
    sent = time.monotonic()
    admin.network.update_port(port_a, name="streamed")
    assert wait_for(lambda: a.events(), 5)
    (arrived, body), = a.got
    assert arrived - sent < 1.0
    assert [(e["id"], e["object"]["name"]) for e in body["events"]] == \
        [(port_a.id, "streamed")]
    assert body["next"] > body["events"][0]["revision"]
    admin.network.update_port(port_a, name="again")       # the same stream, next line
    assert wait_for(lambda: len(a.events()) == 2, 5)
    assert a.got[1][1]["events"][0]["revision"] >= body["next"]
    time.sleep(0.3)
    assert b.events() == []                               # c b's stream: nothing
    a.close(), b.close()
    admin.network.update_port(port_b, name="wakes b")     # the closing threads return
    admin.network.update_port(port_a, name="wakes a")


def test_an_idle_stream_sends_heartbeats(server, admin):
    token = admin.session.get_token()
    start = snapshot(server, admin)["revision"] + 1
    idle = Lines(server.url, token, start, name("idle"), heartbeat=0.2)
    assert wait_for(lambda: len(idle.got) >= 3, 5)
    idle.close()
    beats = [body for _, body in idle.got[:3]]
    assert all(b["events"] == [] for b in beats)
    assert beats[0]["next"] >= start and beats[0]["next"] <= beats[2]["next"]
    gaps = [idle.got[i + 1][0] - idle.got[i][0] for i in range(2)]
    assert all(0.1 < g < 1.0 for g in gaps), gaps


def test_a_stream_from_a_compacted_revision_is_410_or_ends_with_compacted(small):
    token = admin_token(small.url)
    http = httpx.Client(base_url=small.url, headers={"X-Auth-Token": token}, timeout=30)
    start = http.get("/southbound/v1/snapshot?chassis=c1").json()["revision"] + 1
    for i in range(12):
        assert http.post("/v2.0/networks", json={"network": {"name": f"n{i}"}}).status_code == 201
    r = http.get(f"/southbound/v1/watch?from={start}&chassis=c1&stream=1")
    assert r.status_code == 410 and r.json()["NeutronError"]["type"] == "Compacted"

    # overtaken mid-stream: the stream ends with an error line, the client raises
    async def overtaken():
        sb = Southbound([small.url], chassis="c1", heartbeat=3.0)
        try:
            now = int(http.get("/southbound/v1/snapshot?chassis=c1").json()["revision"]) + 1
            first = asyncio.create_task(sb.watch(now))
            assert await asyncio.to_thread(wait_for, lambda: small.app.state.hub.streams == 1, 5)
            for i in range(12):            # nothing for c1: its stream is not woken
                await asyncio.to_thread(http.post, "/v2.0/networks",
                                        json={"network": {"name": f"m{i}"}})
            assert small.app.state.hub.floor > now
            with pytest.raises(AgentCompacted):
                await first
        finally:
            await sb.close()
    asyncio.run(overtaken())
    assert wait_for(lambda: small.app.state.hub.streams == 0, 2)
    http.close()


def test_the_agent_client_streams_what_the_long_poll_answers(server, admin, two):
    (ca, _), ((net_a, _, port_a), _) = two
    start = snapshot(server, admin, ca)["revision"] + 1
    made = []

    async def scenario():
        sb = Southbound([server.url], chassis=ca, heartbeat=0.5)
        polled = Southbound([server.url], chassis=ca, stream=False)
        try:
            streamed, nxt, lines = [], start, 0
            first = asyncio.create_task(sb.watch(nxt))
            assert await asyncio.to_thread(wait_for, lambda: hub(server).streams >= 1, 5)

            def writes():
                admin.network.update_port(port_a, name="s1")
                p = admin.network.create_port(network_id=net_a.id, security_group_ids=[])
                made.append(p)
                admin.network.update_port(p, binding_host_id=ca)
                admin.network.update_port(port_a, name="s2")
                admin.network.update_port(p, binding_host_id="")
                admin.network.delete_port(p)
                return snapshot(server, admin, ca)["revision"]
            last = await asyncio.to_thread(writes)
            events, nxt = await first
            streamed += events
            while nxt <= last:
                events, nxt = await sb.watch(nxt)
                streamed += events
                lines += 1
            assert lines < 20
            assert hub(server).streams >= 1          # one stream all along
            polled_events, pn = [], start
            while pn <= last:
                events, pn = await polled.watch(pn)
                polled_events += events
            return streamed, polled_events
        finally:
            await sb.close()
            await polled.close()

    streamed, polled = asyncio.run(scenario())
    assert streamed == polled
    kinds = [(e["type"], e["id"]) for e in streamed]
    assert ("put", port_a.id) in kinds and ("delete", made[0].id) in kinds


def test_closing_the_agent_client_drops_its_stream(server, admin):
    before = hub(server).streams

    async def scenario():
        sb = Southbound([server.url], chassis=name("closing"), heartbeat=0.2)
        rev = snapshot(server, admin)["revision"] + 1
        events, nxt = await sb.watch(rev)            # a heartbeat, over a stream
        assert events == [] and hub(server).streams == before + 1
        events, nxt = await sb.watch(nxt)            # the same stream, still one
        assert hub(server).streams == before + 1
        await sb.close()
    asyncio.run(scenario())
    assert wait_for(lambda: hub(server).streams == before, 2), hub(server).streams


def test_api_answers_under_300_streams_and_closed_streams_are_dropped(server, admin):
    token = admin.session.get_token()
    rev = snapshot(server, admin)["revision"]
    count = 300
    before = hub(server).streams

    async def scenario():
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        async with httpx.AsyncClient(base_url=server.url, headers={"X-Auth-Token": token},
                                     timeout=60, limits=limits) as http:
            opened = []

            async def one(i):
                r = await http.send(http.build_request(
                    "GET", f"/southbound/v1/watch?from={rev + 1}&stream=1&chassis=s{i}"),
                    stream=True)
                opened.append(r)
            await asyncio.gather(*(one(i) for i in range(count)))
            assert all(r.status_code == 200 for r in opened)
            assert await asyncio.to_thread(
                wait_for, lambda: hub(server).streams >= before + count, 15)
            began = time.monotonic()
            r = await asyncio.to_thread(
                raw, server, admin, "POST", "/v2.0/networks", {"network": {"name": "busy"}})
            served = time.monotonic() - began
            assert r.status_code == 201 and served < 5, served
            assert hub(server).streams == before + count
            for s in opened:                   # the clients go away
                await s.aclose()
        return r.json()["network"]["id"]

    net = asyncio.run(scenario())
    assert wait_for(lambda: hub(server).streams == before, 5), hub(server).streams
    assert wait_for(lambda: hub(server).watchers() == 0, 5)
    admin.network.delete_network(net)
