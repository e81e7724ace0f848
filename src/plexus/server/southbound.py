"""The southbound stream agents use (and nothing else of the server's state):
a consistent snapshot at a revision, ordered change events resumable from a revision,
and the status reports agents send back (port up/down)."""

from __future__ import annotations

import ipaddress

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from plexus.api import errors
from plexus.api.http import JSON, call, context, endpoint, json_body
from plexus.api.services.base import MODEL
from plexus.store import Compacted, Event

MAX_WAIT = 30.0
DEFAULT_TTL = 10.0


async def _require_admin(request: Request):
    ctx = await context(request)
    if not ctx.is_admin:
        raise errors.PolicyNotAuthorized("southbound")
    return ctx


def event_body(event: Event) -> dict:
    """One change as agents see it: collection, id, revision, the object (None on delete)."""
    collection, _, ident = event.kv.key[len(MODEL):].partition("/")
    obj = orjson.loads(event.kv.value) if event.type == "put" else None
    return {"type": event.type, "collection": collection, "id": ident,
            "revision": event.kv.mod_revision, "object": obj}


@endpoint
async def snapshot(request: Request) -> Response:
    """Every model object, grouped by collection, read at one revision."""
    await _require_admin(request)
    store = request.app.state.services.store
    kvs, revision = await call(store.range, MODEL)
    objects: dict[str, list] = {}
    for kv in kvs:
        collection = kv.key[len(MODEL):].partition("/")[0]
        objects.setdefault(collection, []).append(orjson.loads(kv.value))
    return JSON({"revision": revision, "objects": objects})


@endpoint
async def watch(request: Request) -> Response:
    """Changes after a snapshot: ``?from=REV&timeout=S``; 410 when history was compacted."""
    await _require_admin(request)
    try:
        start = int(request.query_params.get("from", "0"))
        timeout = min(float(request.query_params.get("timeout", "0")), MAX_WAIT)
    except ValueError:
        raise errors.BadRequest("from must be an integer and timeout a number") from None
    store = request.app.state.services.store
    try:
        result = await call(store.watch, MODEL, start, timeout)
    except Compacted as exc:
        body = errors.NeutronError(str(exc), type_name="Compacted").body()
        body["NeutronError"]["compact_revision"] = exc.compact_revision
        return JSON(body, status_code=410)
    return JSON({"events": [event_body(e) for e in result.events],
                 "next": result.next_revision})


@endpoint
async def port_status(request: Request) -> Response:
    """An agent reports a port ACTIVE (plugged on its chassis) or DOWN."""
    await _require_admin(request)
    body = await json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("status"), str):
        raise errors.InvalidInput("body must be {\"status\": ..., \"host\": ...}")
    ports = request.app.state.services["ports"]
    port = await call(ports.set_status, request.path_params["id"], body["status"],
                      body.get("host"))
    return JSON({"port": {"id": port["id"], "status": port["status"]}})


def _chassis_body(body) -> tuple[str, dict, bool, float]:
    if not isinstance(body, dict):
        raise errors.InvalidInput("body must be an object")
    try:
        tunnel_ip = str(ipaddress.ip_address(body.get("tunnel_ip")))
    except ValueError:
        raise errors.InvalidInput(f"'{body.get('tunnel_ip')}' is not a valid IP address") \
            from None
    mappings = body.get("bridge_mappings") or {}
    if not isinstance(mappings, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in mappings.items()):
        raise errors.InvalidInput("bridge_mappings must map physical network names to bridges")
    ttl = body.get("ttl", DEFAULT_TTL)
    if not isinstance(ttl, (int, float)) or not 1 <= ttl <= 300:
        raise errors.InvalidInput("ttl must be a number of seconds between 1 and 300")
    return tunnel_ip, mappings, bool(body.get("gateway", False)), float(ttl)


@endpoint
async def register_chassis(request: Request) -> Response:
    """A chassis registers (or re-registers) and gets a liveness lease to keep alive."""
    await _require_admin(request)
    name = request.path_params["name"]
    tunnel_ip, mappings, gateway, ttl = _chassis_body(await json_body(request))
    agents = request.app.state.services["agents"]
    agent, lease = await call(agents.register, name, tunnel_ip, mappings, gateway, ttl)
    return JSON({"agent": agent, "lease": lease, "ttl": ttl})


@endpoint
async def chassis_heartbeat(request: Request) -> Response:
    """Keep a chassis alive; 404 once its lease expired (the agent re-registers)."""
    await _require_admin(request)
    body = await json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("lease"), int):
        raise errors.InvalidInput("body must be {\"lease\": <int>}")
    agents = request.app.state.services["agents"]
    ttl = await call(agents.heartbeat, request.path_params["name"], body["lease"])
    return JSON({"ttl": ttl})


@endpoint
async def unregister_chassis(request: Request) -> Response:
    """A chassis stopping cleanly: its liveness ends at once."""
    await _require_admin(request)
    try:
        lease = int(request.query_params.get("lease", ""))
    except ValueError:
        raise errors.InvalidInput("lease query parameter required") from None
    await call(request.app.state.services["agents"].unregister, request.path_params["name"],
               lease)
    return Response(status_code=204)


ROUTES = [
    Route("/southbound/v1/chassis/{name}", register_chassis, methods=["PUT"]),
    Route("/southbound/v1/chassis/{name}", unregister_chassis, methods=["DELETE"]),
    Route("/southbound/v1/chassis/{name}/heartbeat", chassis_heartbeat, methods=["PUT"]),
    Route("/southbound/v1/snapshot", snapshot, methods=["GET"]),
    Route("/southbound/v1/watch", watch, methods=["GET"]),
    Route("/southbound/v1/ports/{id}/status", port_status, methods=["PUT"]),
]
