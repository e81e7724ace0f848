"""The agent's client of the server's southbound API: snapshot, long-poll watch, chassis
registration and heartbeats, port status reports. Several server URLs may be given;
a call that cannot reach one (or gets a 5xx) tries the next. Tokens come from the
built-in identity service and are renewed on 401.

This is the server boundary of the agent: tests replace it with a fake that keeps the
same methods."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from urllib.parse import quote

import httpx

LOG = logging.getLogger(__name__)
WATCH_WAIT = 25.0


class Unavailable(ConnectionError):
    """No server URL answered."""


class Compacted(RuntimeError):
    """The watch's start revision was compacted: take a new snapshot."""


class LeaseLost(RuntimeError):
    """The chassis' liveness lease expired: register again."""


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
                 chassis: str | None = None):
        if not urls:
            raise ValueError("at least one server URL is needed")
        self.urls = [u.rstrip("/") for u in urls]
        self.credentials = credentials
        self.chassis = chassis          # given: the server sends only this chassis' objects
        self._only = f"chassis={quote(chassis, safe='')}" if chassis else ""
        self._current = 0
        self._token: str | None = None
        self._auth_lock = asyncio.Lock()
        self._client = httpx.AsyncClient(timeout=timeout, transport=transport)

    @property
    def url(self) -> str:
        """The server URL in use."""
        return self.urls[self._current]

    async def close(self) -> None:
        """Close connections."""
        await self._client.aclose()

    # --- the API ---------------------------------------------------------------------
    async def snapshot(self) -> tuple[int, dict]:
        """The model at one revision: (revision, {collection: [objects]}); with a chassis,
        the objects in its scopes only."""
        query = f"?{self._only}" if self._only else ""
        body = await self._call("GET", f"/southbound/v1/snapshot{query}")
        return int(body["revision"]), body.get("objects") or {}

    async def watch(self, start: int, wait: float = WATCH_WAIT) -> tuple[list, int]:
        """Events from revision ``start`` on, waiting up to ``wait`` s: (events, next);
        with a chassis, its events only (and the puts and deletes that follow from its
        scopes growing or shrinking)."""
        query = f"from={start}&timeout={wait}" + (f"&{self._only}" if self._only else "")
        body = await self._call("GET", f"/southbound/v1/watch?{query}", timeout=wait + 10)
        events = body.get("events")
        return (events if isinstance(events, list) else []), int(body["next"])

    async def register(self, chassis: str, tunnel_ip: str, bridge_mappings: dict[str, str],
                       gateway: bool, ttl: float) -> tuple[int, float]:
        """Register the chassis; returns (lease, ttl)."""
        body = await self._call("PUT", f"/southbound/v1/chassis/{chassis}", json={
            "tunnel_ip": tunnel_ip, "bridge_mappings": bridge_mappings, "gateway": gateway,
            "ttl": ttl})
        return int(body["lease"]), float(body["ttl"])

    async def heartbeat(self, chassis: str, lease: int) -> None:
        """Keep the chassis alive; raises ``LeaseLost`` once its lease expired."""
        await self._call("PUT", f"/southbound/v1/chassis/{chassis}/heartbeat",
                         json={"lease": lease})

    async def unregister(self, chassis: str, lease: int) -> None:
        """End the chassis' liveness now (a clean stop)."""
        await self._call("DELETE", f"/southbound/v1/chassis/{chassis}?lease={lease}")

    async def port_status(self, port_id: str, status: str, chassis: str) -> None:
        """Report a port bound here ACTIVE (plugged) or DOWN."""
        await self._call("PUT", f"/southbound/v1/ports/{port_id}/status",
                         json={"status": status, "host": chassis})

    async def lease_snat_blocks(self, router_id: str, chassis: str, count: int) -> list[dict]:
        """Hold at least ``count`` SNAT port blocks on the router's gateway address;
        returns every block the chassis holds there."""
        body = await self._call("POST", f"/southbound/v1/routers/{router_id}/snat-blocks",
                                json={"chassis": chassis, "count": count})
        return list(body["snat_blocks"])

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
