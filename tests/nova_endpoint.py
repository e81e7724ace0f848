"""A real HTTP endpoint standing in for Nova's ``os-server-external-events`` API.

It does what Nova does with such a request before acting on it: the ``X-Auth-Token`` is
validated against a Keystone-compatible identity service (``GET /v3/auth/tokens`` with
the token as ``X-Subject-Token``; 401 if it is not valid there), the caller must hold the
``admin`` or ``service`` role (Nova's policy; 403), and the body is validated against
Nova's JSON schema of the request (v2.1; 400). Accepted events are recorded with the
monotonic time they arrived and answered 200 with ``code: 200`` each, as Nova does.
``fail_next(n, status)`` answers the next ``n`` requests with ``status`` (outages)."""

from __future__ import annotations

import threading
import time

import httpx
import jsonschema
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from plexus.server.runner import free_port

# Nova's schema of POST /os-server-external-events (microversion 2.1)
EVENTS_SCHEMA = {
    "type": "object",
    "properties": {
        "events": {
            "type": "array", "minItems": 1,
            "items": {
                "type": "object",
                "properties": {
                    "server_uuid": {"type": "string", "format": "uuid"},
                    "name": {"type": "string", "enum": [
                        "network-changed", "network-vif-plugged",
                        "network-vif-unplugged", "network-vif-deleted"]},
                    "status": {"type": "string",
                               "enum": ["failed", "completed", "in-progress"]},
                    "tag": {"type": "string", "maxLength": 255},
                },
                "required": ["server_uuid", "name"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["events"],
    "additionalProperties": False,
}


class NovaEndpoint:
    """``with NovaEndpoint(identity_url) as nova:``; ``nova.url`` is the compute URL."""

    def __init__(self, identity_url: str):
        self.identity_url = identity_url.rstrip("/")
        self.port = free_port()
        self.events: list[tuple[float, dict]] = []      # (monotonic arrival, event)
        self.requests: list[dict] = []                    # every request's verdict
        self._fail: list[int] = []
        self._lock = threading.Lock()
        app = Starlette(routes=[Route("/v2.1/os-server-external-events", self._events,
                                      methods=["POST"])])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True,
                                       name="nova-endpoint")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v2.1"

    def fail_next(self, count: int, status: int = 503) -> None:
        with self._lock:
            self._fail.extend([status] * count)

    def received(self, name: str | None = None, tag: str | None = None) -> list[dict]:
        with self._lock:
            return [e for _, e in self.events
                    if (name is None or e["name"] == name) and (tag is None or e.get("tag") == tag)]

    def arrival(self, name: str, tag: str) -> float | None:
        with self._lock:
            return next((t for t, e in self.events if e["name"] == name and e.get("tag") == tag),
                        None)

    async def _events(self, request: Request) -> JSONResponse:
        token = request.headers.get("x-auth-token")
        with self._lock:
            fail = self._fail.pop(0) if self._fail else None
        if fail is not None:
            self.requests.append({"status": fail, "why": "outage"})
            return JSONResponse({"error": "outage"}, status_code=fail)
        if not token:
            return self._refuse(401, "no token")
        async with httpx.AsyncClient(timeout=10) as client:
            resp = await client.get(f"{self.identity_url}/auth/tokens",
                                    headers={"X-Auth-Token": token, "X-Subject-Token": token})
        if resp.status_code != 200:
            return self._refuse(401, f"identity answered {resp.status_code}")
        roles = {r["name"] for r in resp.json()["token"].get("roles", [])}
        if not roles & {"admin", "service"}:
            return self._refuse(403, f"roles {sorted(roles)}")
        body = await request.json()
        try:
            jsonschema.validate(body, EVENTS_SCHEMA,
                                format_checker=jsonschema.FormatChecker())
        except jsonschema.ValidationError as exc:
            return self._refuse(400, exc.message)
        now = time.monotonic()
        with self._lock:
            self.events.extend((now, dict(e)) for e in body["events"])
            self.requests.append({"status": 200, "events": len(body["events"])})
        return JSONResponse({"events": [dict(e, code=200, status=e.get("status", "completed"))
                                        for e in body["events"]]})

    def _refuse(self, status: int, why: str) -> JSONResponse:
        self.requests.append({"status": status, "why": why})
        return JSONResponse({"error": why}, status_code=status)

    def __enter__(self) -> "NovaEndpoint":
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("nova endpoint did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
