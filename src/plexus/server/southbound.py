"""The southbound stream agents use (and nothing else of the server's state):
a consistent snapshot at a revision, ordered change events resumable from a revision,
and the status reports agents send back (port up/down)."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from plexus.api import errors
from plexus.api.http import JSON, call, context, endpoint, json_body
from plexus.api.services.base import MODEL
from plexus.store import Compacted, Event

MAX_WAIT = 30.0


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


ROUTES = [
    Route("/southbound/v1/snapshot", snapshot, methods=["GET"]),
    Route("/southbound/v1/watch", watch, methods=["GET"]),
    Route("/southbound/v1/ports/{id}/status", port_status, methods=["PUT"]),
]
