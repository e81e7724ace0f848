"""The agent's streaming watch against a fake server (httpx's mock transport): lines are
read one per ``watch()`` on one open stream, which is reopened from the revision asked
for when it ends or when the caller asks for another revision; an error line is
``Compacted``; a server answering 400 to ``stream=1`` is long-polled."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest

from plexus.agent.southbound import Compacted, Credentials, Southbound


class Streamer:
    """A fake server whose stream from REV carries ``lines`` lines: one event each."""

    def __init__(self, lines: int = 3, streams: bool = True, error_at: int | None = None):
        self.lines, self.streams, self.error_at = lines, streams, error_at
        self.opened: list[int] = []
        self.polled: list[int] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        start = int(request.url.params["from"])
        if request.url.params.get("stream") == "1":
            if not self.streams:
                return httpx.Response(400, json={"NeutronError": {"type": "BadRequest"}})
            self.opened.append(start)
            out = []
            for rev in range(start, start + self.lines):
                if rev == self.error_at:
                    out.append(orjson.dumps({"error": "Compacted", "compact_revision": rev}))
                    break
                out.append(orjson.dumps({"events": [{"revision": rev}], "next": rev + 1}))
            return httpx.Response(200, content=b"\n".join(out) + b"\n",
                                  headers={"content-type": "application/x-ndjson"})
        self.polled.append(start)
        return httpx.Response(200, json={"events": [{"revision": start}], "next": start + 1})


def client(server) -> Southbound:
    return Southbound(["http://s:9696"], credentials=Credentials(None), chassis="c1",
                      transport=httpx.MockTransport(server))


def run(server, fn):
    async def go():
        sb = client(server)
        try:
            return await fn(sb)
        finally:
            await sb.close()
    return asyncio.run(go())


def test_one_stream_serves_consecutive_watches_and_is_reopened_when_it_ends():
    server = Streamer(lines=3)

    async def go(sb):
        got, start = [], 10
        for _ in range(7):
            events, start = await sb.watch(start)
            got += [e["revision"] for e in events]
        return got, start
    got, start = run(server, go)
    assert got == list(range(10, 17)) and start == 17
    assert server.opened == [10, 13, 16] and server.polled == []


def test_asking_for_another_revision_reopens_from_it():
    server = Streamer(lines=5)

    async def go(sb):
        await sb.watch(10)
        events, nxt = await sb.watch(4)               # e.g. after a new snapshot
        return events, nxt
    assert run(server, go) == ([{"revision": 4}], 5)
    assert server.opened == [10, 4]


def test_an_error_line_is_compacted():
    server = Streamer(lines=5, error_at=12)

    async def go(sb):
        assert (await sb.watch(10))[1] == 11
        assert (await sb.watch(11))[1] == 12
        with pytest.raises(Compacted):
            await sb.watch(12)
        return await sb.watch(3)                      # the next stream is a new one
    assert run(server, go) == ([{"revision": 3}], 4)
    assert server.opened == [10, 3]


def test_a_server_without_streams_is_long_polled():
    server = Streamer(streams=False)

    async def go(sb):
        out = [await sb.watch(5), await sb.watch(6)]
        return out
    assert run(server, go) == [([{"revision": 5}], 6), ([{"revision": 6}], 7)]
    assert server.opened == [] and server.polled == [5, 6]


def test_a_zero_wait_is_a_long_poll():
    server = Streamer()
    assert run(server, lambda sb: sb.watch(8, wait=0)) == ([{"revision": 8}], 9)
    assert server.polled == [8] and server.opened == []
