"""The agent's southbound client against fake servers (httpx's mock transport): it
moves to the next URL when one is unreachable or failing, renews its token on 401,
and turns 410 and an expired lease into the exceptions the agent loop acts on."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from plexus.agent.southbound import Compacted, LeaseLost, Southbound, Unavailable


class Servers:
    """Two fake servers, A (down unless told otherwise) and B."""

    def __init__(self):
        self.up = {"a": False, "b": True}
        self.tokens_issued = 0
        self.valid = set()
        self.seen = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if not self.up[host]:
            raise httpx.ConnectError("connection refused", request=request)
        path = request.url.path
        self.seen.append((host, request.method, path))
        if path == "/identity/v3/auth/tokens":
            self.tokens_issued += 1
            token = f"t{self.tokens_issued}"
            self.valid.add(token)
            return httpx.Response(201, headers={"X-Subject-Token": token}, json={})
        if request.headers.get("X-Auth-Token") not in self.valid:
            return httpx.Response(401, json={"error": "expired"})
        if path == "/southbound/v1/watch":
            start = int(request.url.params["from"])
            if start < 5:
                return httpx.Response(410, json={"NeutronError": {"type": "Compacted"}})
            return httpx.Response(200, json={"events": [{"revision": start}], "next": start + 1})
        if path.endswith("/heartbeat"):
            return httpx.Response(404, json={"NeutronError": {"type": "AgentLeaseExpired"}})
        if path == "/southbound/v1/snapshot":
            return httpx.Response(500, json={})
        return httpx.Response(404, json={})


def client(servers):
    return Southbound(["http://a:9696", "http://b:9696"],
                      transport=httpx.MockTransport(servers))


def test_unreachable_server_moves_to_the_next_url():
    servers = Servers()
    sb = client(servers)
    events, nxt = asyncio.run(sb.watch(7, wait=0))
    assert events == [{"revision": 7}] and nxt == 8 and sb.url == "http://b:9696"


def test_token_is_renewed_on_401():
    servers = Servers()
    sb = client(servers)

    async def go():
        await sb.watch(7, wait=0)
        servers.valid.clear()                 # the server forgot (restart, expiry)
        await sb.watch(8, wait=0)
    asyncio.run(go())
    assert servers.tokens_issued == 2


def test_compaction_and_lost_lease_are_told_apart():
    sb = client(Servers())
    with pytest.raises(Compacted):
        asyncio.run(sb.watch(1, wait=0))
    with pytest.raises(LeaseLost):
        asyncio.run(sb.heartbeat("c1", 3))


def test_every_server_failing_is_unavailable():
    servers = Servers()
    sb = client(servers)
    with pytest.raises(Unavailable, match="HTTP 500"):         # B answers 5xx, A is down
        asyncio.run(sb.snapshot())
    servers.up = {"a": False, "b": False}
    with pytest.raises(Unavailable, match="connection refused"):
        asyncio.run(sb.watch(7, wait=0))
