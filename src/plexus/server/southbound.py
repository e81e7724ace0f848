"""The southbound stream agents use (and nothing else of the server's state):
a consistent snapshot at a revision, ordered change events resumable from a revision
(both per chassis, served by the process' ``stream.Hub`` from the event loop),
the status reports agents send back (ports, routers, floating IPs), and the SNAT port
blocks chassis lease on routers' gateway addresses."""

from __future__ import annotations

import asyncio
import ipaddress

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from plexus.api import errors
from plexus.api.http import JSON, call, context, endpoint, json_body
from plexus.api.services.base import MODEL
from plexus.server.stream import Hub
from plexus.store import Compacted, Event

MAX_WAIT = 30.0
READY_WAIT = 30.0
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


def _snapshot_bytes(revision: int, objects: dict[str, list[bytes]]) -> bytes:
    parts = [orjson.dumps(coll) + b":[" + b",".join(items) + b"]"
             for coll, items in objects.items()]
    return b'{"revision":%d,"objects":{' % revision + b",".join(parts) + b"}}"


def _events_bytes(events: list[bytes], nxt: int) -> bytes:
    return b'{"events":[' + b",".join(events) + b'],"next":%d}' % nxt


def _raw_json(body: bytes) -> Response:
    return Response(body, media_type="application/json")


def _compacted(exc: Compacted) -> Response:
    body = errors.NeutronError(str(exc), type_name="Compacted").body()
    body["NeutronError"]["compact_revision"] = exc.compact_revision
    return JSON(body, status_code=410)


async def _hub(request: Request) -> Hub:
    """The server's hub, started and holding the model."""
    hub: Hub = request.app.state.hub
    hub.start()
    if not hub.ready.is_set() and not await hub.ready_async(READY_WAIT):
        raise errors.ServiceUnavailable("The southbound stream is not ready yet")
    return hub


def _chassis(request: Request) -> str | None:
    return request.query_params.get("chassis") or None


@endpoint
async def snapshot(request: Request) -> Response:
    """The model at one revision, grouped by collection: with ``?chassis=X`` only the
    objects in X's scopes (``plexus.model.relevance``), without it every object."""
    await _require_admin(request)
    chassis = _chassis(request)
    hub = await _hub(request)
    await hub.sync()
    if chassis is None:
        return _raw_json(await call(lambda: _snapshot_bytes(*hub.snapshot_all())))
    return _raw_json(_snapshot_bytes(*await hub.served(hub.snapshot, chassis)))


async def _disconnected(request: Request) -> None:
    """Returns when the client goes away."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


@endpoint
async def watch(request: Request) -> Response:
    """Changes after a snapshot: ``?from=REV&timeout=S[&chassis=X]`` (with a chassis, its
    events only, and the puts and deletes its scopes' changes bring); 410 when the
    revision is older than the history kept. A long poll waits on the event loop for the
    hub to route an event to it, and ends as soon as the client disconnects."""
    await _require_admin(request)
    try:
        start = int(request.query_params.get("from", "0"))
        timeout = min(float(request.query_params.get("timeout", "0")), MAX_WAIT)
    except ValueError:
        raise errors.BadRequest("from must be an integer and timeout a number") from None
    if start < 0:
        raise errors.BadRequest("from must not be negative")
    chassis = _chassis(request)
    hub = await _hub(request)
    if timeout <= 0:
        await hub.sync()
    start = start or hub.next                     # 0: from the next change on
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    gone: asyncio.Future | None = None
    try:
        while True:
            waiter = hub.waiter(chassis)          # before reading: no wake-up is missed
            try:
                try:
                    events, nxt = await hub.served(hub.read, chassis, start)
                except Compacted as exc:
                    if chassis is not None:
                        return _compacted(exc)
                    # every event, from before this server started: the store's history
                    try:
                        result = await call(hub.store.watch, MODEL, start, 0.0)
                    except Compacted as gone_exc:
                        return _compacted(gone_exc)
                    if result.events:
                        return JSON({"events": [event_body(e) for e in result.events],
                                     "next": result.next_revision})
                    start = max(start, result.next_revision)
                    if start < hub.floor:
                        return _raw_json(_events_bytes([], start))
                    continue
                remaining = deadline - loop.time()
                if events or remaining <= 0:
                    return _raw_json(_events_bytes(events, nxt))
                if gone is None:
                    gone = asyncio.ensure_future(_disconnected(request))
                await asyncio.wait((waiter, gone), timeout=remaining,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                hub.forget(chassis, waiter)
            if gone.done():
                return Response(status_code=499)
    finally:
        if gone is not None:
            gone.cancel()


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


def _report(body) -> tuple[str, str, int | None]:
    """(status, host, revision_number) of an L3 status report."""
    if not isinstance(body, dict) or not isinstance(body.get("status"), str) \
            or not isinstance(body.get("host"), str) or not body["host"]:
        raise errors.InvalidInput("body must be {\"status\": ..., \"host\": ..., "
                                  "\"revision_number\": <optional int>}")
    return body["status"], body["host"], body.get("revision_number")


@endpoint
async def router_status(request: Request) -> Response:
    """A gateway chassis reports a router programmed (ACTIVE) or not (DOWN, ERROR)."""
    await _require_admin(request)
    status, host, revision = _report(await json_body(request))
    routers = request.app.state.services["routers"]
    router = await call(routers.set_status, request.path_params["id"], host, status, revision)
    return JSON({"router": {"id": router["id"], "status": router["status"]}})


@endpoint
async def floatingip_status(request: Request) -> Response:
    """The chassis hosting a floating IP's port reports it programmed (or not)."""
    await _require_admin(request)
    status, host, revision = _report(await json_body(request))
    fips = request.app.state.services["floatingips"]
    fip = await call(fips.set_status, request.path_params["id"], host, status, revision)
    return JSON({"floatingip": {"id": fip["id"], "status": fip["status"]}})


@endpoint
async def lease_snat_blocks(request: Request) -> Response:
    """``{"chassis", "count"}``: the chassis holds at least ``count`` SNAT port blocks on
    the router's gateway address afterwards; answers all the blocks it holds there."""
    await _require_admin(request)
    body = await json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("chassis"), str) \
            or not body["chassis"]:
        raise errors.InvalidInput("body must be {\"chassis\": <name>, \"count\": <int>}")
    snat = request.app.state.services["routers"].snat
    blocks = await call(snat.lease, request.path_params["id"], body["chassis"],
                        body.get("count", 1))
    return JSON({"snat_blocks": blocks, "block_size": snat.size})


@endpoint
async def list_snat_blocks(request: Request) -> Response:
    """The router's SNAT port blocks (``?chassis=`` for one chassis' only)."""
    await _require_admin(request)
    snat = request.app.state.services["routers"].snat
    blocks = await call(snat.list, request.path_params["id"],
                        request.query_params.get("chassis"))
    return JSON({"snat_blocks": blocks, "block_size": snat.size})


@endpoint
async def release_snat_blocks(request: Request) -> Response:
    """``?chassis=NAME[&port_min=N]``: give back one block, or all of the chassis' blocks."""
    await _require_admin(request)
    chassis = request.query_params.get("chassis")
    if not chassis:
        raise errors.InvalidInput("chassis query parameter required")
    try:
        raw = request.query_params.get("port_min")
        port_min = int(raw) if raw is not None else None
    except ValueError:
        raise errors.InvalidInput("port_min must be an integer") from None
    snat = request.app.state.services["routers"].snat
    await call(snat.release, request.path_params["id"], chassis, port_min)
    return Response(status_code=204)


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
    Route("/southbound/v1/routers/{id}/status", router_status, methods=["PUT"]),
    Route("/southbound/v1/floatingips/{id}/status", floatingip_status, methods=["PUT"]),
    Route("/southbound/v1/routers/{id}/snat-blocks", lease_snat_blocks, methods=["POST"]),
    Route("/southbound/v1/routers/{id}/snat-blocks", list_snat_blocks, methods=["GET"]),
    Route("/southbound/v1/routers/{id}/snat-blocks", release_snat_blocks,
          methods=["DELETE"]),
]
