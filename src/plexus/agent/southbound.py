"""The agent's client of the server's southbound API: snapshot, watch, chassis
registration and heartbeats, port status reports. Several server URLs may be given;
a call that cannot reach one (or gets a 5xx) tries the next. Tokens come from the
built-in identity service and are renewed on 401.

The watch is a stream: one open ``/southbound/v1/watch?stream=1`` answer per server
(and chassis), read a line per ``watch()`` call; it is reopened from the revision asked
for when it breaks or when the caller asks for another revision than the one it last
returned. A server that answers 400 to ``stream=1`` (older than streams) is long-polled.

This is the server boundary of the agent: tests replace it with a fake that keeps the
same methods."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from urllib.parse import quote

import httpx
import orjson

LOG = logging.getLogger(__name__)
WATCH_WAIT = 25.0
HEARTBEAT = 10.0          # the server sends an empty line this often on an idle stream
STREAM_IDLE = 3.5         # ... and after this many heartbeats without a line, it is dead


class Unavailable(ConnectionError):
    """No server URL answered."""


class Compacted(RuntimeError):
    """The watch's start revision was compacted: take a new snapshot."""


class LeaseLost(RuntimeError):
    """The chassis' liveness lease expired: register again."""


class _Stream:
    """One open streaming watch: where it goes, its lines, the revision it is at."""

    def __init__(self, url: str, response: httpx.Response, start: int):
        self.url = url
        self.response = response
        self.lines = response.aiter_lines()
        self.next = start

    async def close(self) -> None:
        await self.response.aclose()


class Refused(RuntimeError):
    """The server refused a request (4xx other than the cases above)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status


@dataclass(frozen=True)
class Credentials:
    """Who the agent authenticates as (``None`` username: no authentication)."""

    username: str | None = "admin"
    password: str = "secret"
    project: str = "admin"
    domain: str = "default"


class Southbound:
    """HTTP client of ``/southbound/v1`` on one or more servers."""

    def __init__(self, urls: list[str], credentials: Credentials = Credentials(),
                 timeout: float = 10.0, transport: httpx.AsyncBaseTransport | None = None,
                 chassis: str | None = None, stream: bool = True,
                 heartbeat: float = HEARTBEAT):
        if not urls:
            raise ValueError("at least one server URL is needed")
        self.urls = [u.rstrip("/") for u in urls]
        self.credentials = credentials
        self.chassis = chassis          # given: the server sends only this chassis' objects
        self.snat_max_blocks: int | None = None     # the server's, from the last lease
        self.dns_domain: str | None = None   # the cloud's, from the last registration
        self._only = f"chassis={quote(chassis, safe='')}" if chassis else ""
        self._current = 0
        self._token: str | None = None
        self._auth_lock = asyncio.Lock()
        self._client = httpx.AsyncClient(timeout=timeout, transport=transport)
        self.streaming = stream         # False: long polls only
        self.stream_heartbeat = heartbeat
        self.report = None      # () -> dict sent with each heartbeat (the agent's revision)
        self._stream: _Stream | None = None
        self._long_poll: set[str] = set()       # servers that refused stream=1
        self._watch_lock = asyncio.Lock()

    @property
    def url(self) -> str:
        """The server URL in use."""
        return self.urls[self._current]

    async def close(self) -> None:
        """Close connections (the open watch stream with them)."""
        await self._drop_stream()
        await self._client.aclose()

    # --- the API ---------------------------------------------------------------------
    async def snapshot(self) -> tuple[int, dict]:
        """The model at one revision: (revision, {collection: [objects]}); with a chassis,
        the objects in its scopes only."""
        query = f"?{self._only}" if self._only else ""
        body = await self._call("GET", f"/southbound/v1/snapshot{query}")
        return int(body["revision"]), body.get("objects") or {}

    async def watch(self, start: int, wait: float = WATCH_WAIT) -> tuple[list, int]:
        """Events from revision ``start`` on: (events, next); with a chassis, its events
        only (and the puts and deletes that follow from its scopes growing or
        shrinking). Over a stream: the next line, events or a heartbeat's none (``wait``
        is only the long poll's); a long poll when ``wait`` is 0, streams are off or the
        server does not have them."""
        if wait <= 0 or not self.streaming:
            return await self._poll(start, wait)
        async with self._watch_lock:
            errors = []
            for attempt in range(len(self.urls)):
                url = self.url
                if url in self._long_poll:
                    return await self._poll(start, wait)
                try:
                    return await self._next_line(url, start)
                except (httpx.HTTPError, OSError, _ServerError, _StreamBroken) as exc:
                    await self._drop_stream()
                    errors.append(f"{url}: {exc or type(exc).__name__}")
                    self._current = (self._current + 1) % len(self.urls)
                    self._token = None
                except BaseException:
                    await self._drop_stream()
                    raise
            raise Unavailable("; ".join(errors))

    async def _poll(self, start: int, wait: float) -> tuple[list, int]:
        query = f"from={start}&timeout={wait}" + (f"&{self._only}" if self._only else "")
        body = await self._call("GET", f"/southbound/v1/watch?{query}", timeout=wait + 10)
        events = body.get("events")
        return (events if isinstance(events, list) else []), int(body["next"])

    async def _next_line(self, url: str, start: int) -> tuple[list, int]:
        """The next line of the stream to ``url`` that continues from ``start`` (one
        opened if need be; a kept one that breaks is reopened once)."""
        stream = self._stream
        if stream is not None and (stream.url != url or stream.next != start):
            await self._drop_stream()
            stream = None
        for fresh in ((False, True) if stream is not None else (True,)):
            if fresh:
                stream = await self._open(url, start)
                if stream is None:                     # 400: a server without streams
                    self._long_poll.add(url)
                    return await self._poll(start, WATCH_WAIT)
                self._stream = stream
            try:
                line = ""
                while not line:
                    line = await stream.lines.__anext__()
                break
            except (StopAsyncIteration, httpx.HTTPError, OSError) as exc:
                await self._drop_stream()
                if fresh:
                    raise _StreamBroken(f"the watch stream ended: {exc!r}") from None
                LOG.info("watch stream to %s broke (%r); reopening from %d", url, exc, start)
        try:
            body = orjson.loads(line)
            if "error" in body:
                await self._drop_stream()
                if body["error"] == "Compacted":
                    raise Compacted(str(body.get("message", ""))[:200])
                raise Refused(400, str(body)[:300])
            events, nxt = body.get("events"), int(body["next"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            await self._drop_stream()
            raise _StreamBroken(f"unreadable watch line: {exc}") from None
        stream.next = nxt
        return (events if isinstance(events, list) else []), nxt

    async def _open(self, url: str, start: int) -> _Stream | None:
        """A stream from ``start``; None when the server does not stream (400)."""
        query = (f"from={start}&stream=1&heartbeat={self.stream_heartbeat}"
                 f"&timeout={WATCH_WAIT}" + (f"&{self._only}" if self._only else ""))
        timeout = httpx.Timeout(self._client.timeout.connect or 10.0,
                                read=self.stream_heartbeat * STREAM_IDLE)
        for renewed in (False, True):
            headers = {}
            token = await self._auth(url)
            if token:
                headers["X-Auth-Token"] = token
            request = self._client.build_request(
                "GET", f"{url}/southbound/v1/watch?{query}", headers=headers,
                timeout=timeout)
            r = await self._client.send(request, stream=True)
            if r.status_code == 401 and not renewed:
                await r.aclose()
                self._token = None
                continue
            break
        if r.status_code >= 400:
            text = (await r.aread())[:300].decode(errors="replace")
            await r.aclose()
            if r.status_code >= 500:
                raise _ServerError(f"HTTP {r.status_code}")
            if r.status_code == 410:
                raise Compacted(text[:200])
            if r.status_code == 400:
                LOG.info("%s does not stream watches (%s); long-polling it", url, text)
                return None
            raise Refused(r.status_code, text)
        return _Stream(url, r, start)

    async def _drop_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                await stream.close()
            except (httpx.HTTPError, OSError):
                pass

    async def register(self, chassis: str, tunnel_ip: str, bridge_mappings: dict[str, str],
                       gateway: bool, ttl: float,
                       datapath_type: str = "netdev",
                       availability_zone: str = "nova") -> tuple[int, float]:
        """Register the chassis; returns (lease, ttl). ``datapath_type`` is br-int's (the
        server puts it in the VIF details of ports bound here). The cloud's DNS domain
        the server answers with is kept in ``dns_domain`` (None until a server sent
        one)."""
        body = await self._call("PUT", f"/southbound/v1/chassis/{chassis}", json={
            "tunnel_ip": tunnel_ip, "bridge_mappings": bridge_mappings, "gateway": gateway,
            "ttl": ttl, "datapath_type": datapath_type,
            "availability_zone": availability_zone})
        self._take_dns_domain(body)
        return int(body["lease"]), float(body["ttl"])

    async def heartbeat(self, chassis: str, lease: int) -> None:
        """Keep the chassis alive; raises ``LeaseLost`` once its lease expired. The
        server's answer says the cloud's DNS domain again (``dns_domain``)."""
        extra = self.report() if self.report is not None else {}
        body = await self._call("PUT", f"/southbound/v1/chassis/{chassis}/heartbeat",
                                json={**extra, "lease": lease})
        self._take_dns_domain(body)

    def _take_dns_domain(self, body) -> None:
        domain = body.get("dns_domain") if isinstance(body, dict) else None
        if isinstance(domain, str):
            self.dns_domain = domain

    async def unregister(self, chassis: str, lease: int) -> None:
        """End the chassis' liveness now (a clean stop)."""
        await self._call("DELETE", f"/southbound/v1/chassis/{chassis}?lease={lease}")

    async def port_status(self, port_id: str, status: str, chassis: str) -> None:
        """Report a port bound here ACTIVE (plugged) or DOWN."""
        await self._call("PUT", f"/southbound/v1/ports/{port_id}/status",
                         json={"status": status, "host": chassis})

    async def port_statuses(self, reports: list[tuple[str, str]],
                            chassis: str) -> dict[str, tuple[int, str] | None]:
        """Report several ports bound here at once (one request); per port, None when
        recorded, or (HTTP status, message) when the server refused that port (gone,
        bound elsewhere). Raises ``Refused`` when it refused the whole report (404 or
        405: a server without the batch report)."""
        body = await self._call("PUT", "/southbound/v1/ports/status", json={
            "host": chassis, "ports": [{"id": p, "status": s} for p, s in reports]})
        out: dict[str, tuple[int, str] | None] = {}
        for item in body.get("ports") or ():
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                continue
            error = item.get("error")
            if error is None:
                out[item["id"]] = None
            else:
                detail = error.get("NeutronError", error) if isinstance(error, dict) else {}
                message = detail.get("message", str(error)) if isinstance(detail, dict) \
                    else str(error)
                out[item["id"]] = (int(item.get("code") or 409), str(message)[:300])
        return out

    async def vip_owner(self, port_id: str, ip: str, chassis: str) -> bool:
        """Report that a port bound here announced the shared VIP ``ip`` (its gratuitous
        ARP); True when the server recorded a new owner."""
        body = await self._call("PUT", f"/southbound/v1/ports/{port_id}/vip-owner",
                                json={"ip": ip, "host": chassis})
        return bool(body.get("written"))

    async def member_health(self, member_id: str, status: str, chassis: str) -> bool:
        """Report a load balancer member's health check verdict (ONLINE / ERROR);
        whether it changed what the server kept."""
        body = await self._call("PUT", f"/southbound/v1/lbaas/members/{member_id}/health",
                                json={"status": status, "host": chassis})
        return bool(body.get("written"))

    async def lease_snat_blocks(self, router_id: str, chassis: str, count: int) -> list[dict]:
        """Hold at least ``count`` SNAT port blocks on the router's gateway address;
        returns every block the chassis holds there."""
        body = await self._call("POST", f"/southbound/v1/routers/{router_id}/snat-blocks",
                                json={"chassis": chassis, "count": count})
        if isinstance(body.get("max_blocks"), int):
            self.snat_max_blocks = body["max_blocks"]
        return list(body["snat_blocks"])

    async def release_snat_block(self, router_id: str, chassis: str, port_min: int) -> None:
        """Give back one SNAT port block (by its first port)."""
        await self._call("DELETE", f"/southbound/v1/routers/{router_id}/snat-blocks"
                                   f"?chassis={chassis}&port_min={port_min}")

    async def l3_status(self, collection: str, ident: str, status: str, chassis: str,
                        revision: int | None) -> None:
        """Report a router or floating IP (``collection``: routers, floatingips)."""
        body = {"status": status, "host": chassis}
        if revision is not None:
            body["revision_number"] = revision
        await self._call("PUT", f"/southbound/v1/{collection}/{ident}/status", json=body)

    # --- plumbing --------------------------------------------------------------------
    async def _call(self, method: str, path: str, json=None, timeout: float | None = None):
        errors = []
        for attempt in range(len(self.urls)):
            url = self.url
            try:
                return await self._once(method, url + path, json, timeout)
            except (httpx.HTTPError, OSError, _ServerError) as exc:
                errors.append(f"{url}: {exc or type(exc).__name__}")
                self._current = (self._current + 1) % len(self.urls)
                self._token = None
        raise Unavailable("; ".join(errors))

    async def _once(self, method: str, url: str, json, timeout: float | None):
        for renewed in (False, True):
            headers = {}
            token = await self._auth(url.split("/southbound/")[0])
            if token:
                headers["X-Auth-Token"] = token
            r = await self._client.request(method, url, json=json, headers=headers,
                                           timeout=timeout or httpx.USE_CLIENT_DEFAULT)
            if r.status_code == 401 and not renewed:
                self._token = None
                continue
            break
        if r.status_code >= 500:
            raise _ServerError(f"HTTP {r.status_code}")
        if r.status_code == 410:
            raise Compacted(r.text[:200])
        if r.status_code == 404 and "/heartbeat" in url:
            raise LeaseLost(r.text[:200])
        if r.status_code >= 400:
            raise Refused(r.status_code, r.text[:300])
        return r.json() if r.content else None

    async def _auth(self, base: str) -> str | None:
        creds = self.credentials
        if creds.username is None:
            return None
        async with self._auth_lock:
            if self._token is None:
                await self._login(base)
        return self._token

    async def _login(self, base: str) -> None:
        creds = self.credentials
        r = await self._client.post(f"{base}/identity/v3/auth/tokens", json={"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": creds.username, "domain": {"id": creds.domain},
                "password": creds.password}}},
            "scope": {"project": {"name": creds.project, "domain": {"id": creds.domain}}}}})
        if r.status_code >= 500:
            raise _ServerError(f"identity: HTTP {r.status_code}")
        if r.status_code >= 400:
            raise Refused(r.status_code, f"authentication failed: {r.text[:200]}")
        self._token = r.headers["X-Subject-Token"]


class _ServerError(Exception):
    """A 5xx: try another server."""


class _StreamBroken(Exception):
    """A watch stream just opened ended or said something unreadable: try another
    server."""
