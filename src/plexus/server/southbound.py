"""The southbound stream agents use (and nothing else of the server's state):
a consistent snapshot at a revision, ordered change events resumable from a revision
(both per chassis, served by the process' ``stream.Hub`` from the event loop),
the status reports agents send back (ports, routers, floating IPs), and the SNAT port
blocks chassis lease on routers' gateway addresses."""

from __future__ import annotations

import asyncio
import ipaddress
import logging

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from plexus.api import errors
from plexus.api.http import JSON, call, context, endpoint, json_body
from plexus.api.services.base import MODEL
from plexus.model import dns
from plexus.server.stream import MAX_EVENTS, Hub
from plexus.store import Compacted, Event

MAX_WAIT = 30.0
READY_WAIT = 30.0
HEARTBEAT = 10.0          # seconds between empty lines of an idle streaming watch
MIN_HEARTBEAT, MAX_HEARTBEAT = 0.05, 300.0
SEND_TIMEOUT = 60.0       # a stream whose client reads nothing for this long is dropped
RECHECK = 1.0             # seconds between re-validations of a stream's token
NDJSON = b"application/x-ndjson"
DEFAULT_TTL = 10.0
LOG = logging.getLogger("plexus.server.southbound")


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


async def _disconnected(receive) -> None:
    """Returns when the client goes away."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in ("1", "true", "yes")


async def _batch(hub: Hub, chassis: str | None,
                 start: int) -> tuple[bytes | None, int, bool]:
    """The answer to a watch from ``start`` as it stands: (body, next, whether more may be
    waiting already), body None while there is nothing for ``chassis`` yet.
    ``Compacted`` when ``start`` is older than the hub's log (without a chassis: older
    than the store's history, which is read instead)."""
    while True:
        try:
            events, nxt = await hub.served(hub.read, chassis, start)
        except Compacted:
            if chassis is not None:
                raise
            # every event, from before this server started: the store's history
            result = await call(hub.store.watch, MODEL, start, 0.0)
            if result.events:
                hub.stats["delivered"] += len(result.events)
                return orjson.dumps({"events": [event_body(e) for e in result.events],
                                     "next": result.next_revision}), \
                    result.next_revision, True
            start = max(start, result.next_revision)
            if start < hub.floor:
                return None, start, False
            continue
        if not events:
            return None, nxt, False
        hub.stats["delivered"] += len(events)
        return _events_bytes(events, nxt), nxt, len(events) >= MAX_EVENTS


@endpoint
async def watch(request: Request) -> Response:
    """Changes after a snapshot: ``?from=REV&timeout=S[&chassis=X]`` (with a chassis, its
    events only, and the puts and deletes its scopes' changes bring); 410 when the
    revision is older than the history kept. A long poll waits on the event loop for the
    hub to route an event to it, and ends as soon as the client disconnects.

    With ``&stream=1`` the answer stays open instead: newline-delimited JSON, one
    ``{"events": [...], "next": N}`` line (a long poll's body) as soon as the hub has
    events for the chassis, an empty one every ``heartbeat`` s (default 10) so both ends
    notice a dead peer, and a last ``{"error": "Compacted", ...}`` line if the log
    overtakes the stream. One authentication per stream, not per event."""
    await _require_admin(request)
    try:
        start = int(request.query_params.get("from", "0"))
        timeout = min(float(request.query_params.get("timeout", "0")), MAX_WAIT)
        heartbeat = float(request.query_params.get("heartbeat", HEARTBEAT))
    except ValueError:
        raise errors.BadRequest("from must be an integer, timeout and heartbeat "
                                "numbers") from None
    if start < 0:
        raise errors.BadRequest("from must not be negative")
    streaming = _flag(request, "stream")
    if streaming and not MIN_HEARTBEAT <= heartbeat <= MAX_HEARTBEAT:
        raise errors.BadRequest(f"heartbeat must be between {MIN_HEARTBEAT} and "
                                f"{MAX_HEARTBEAT} seconds")
    chassis = _chassis(request)
    hub = await _hub(request)
    if timeout <= 0 and not streaming:
        await hub.sync()
    start = start or hub.next                     # 0: from the next change on
    if streaming:
        try:
            first, start, _ = await _batch(hub, chassis, start)   # 410 before any line
        except Compacted as exc:
            return _compacted(exc)
        return _Stream(hub, chassis, start, first, heartbeat,
                       recheck=lambda: _require_admin(request))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    gone: asyncio.Future | None = None
    try:
        while True:
            waiter = hub.waiter(chassis)          # before reading: no wake-up is missed
            try:
                try:
                    body, start, _ = await _batch(hub, chassis, start)
                except Compacted as exc:
                    return _compacted(exc)
                remaining = deadline - loop.time()
                if body is not None or remaining <= 0 or start < hub.floor:
                    return _raw_json(body or _events_bytes([], start))
                if gone is None:
                    gone = asyncio.ensure_future(_disconnected(request.receive))
                await asyncio.wait((waiter, gone), timeout=remaining,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                hub.forget(chassis, waiter)
            if gone.done():
                return Response(status_code=499)
    finally:
        if gone is not None:
            gone.cancel()


class _Stream:
    """The ASGI answer of a streaming watch: lines until the client goes, the log
    overtakes it, it stops reading for ``SEND_TIMEOUT`` s, or its token stops being valid
    (``recheck`` raises; checked every ``RECHECK`` s, so a revoked or expired token or a
    lost admin role ends the stream within about a second and the agent must log in
    again to reopen it)."""

    def __init__(self, hub: Hub, chassis: str | None, start: int, first: bytes | None,
                 heartbeat: float, recheck):
        self.hub, self.chassis, self.start = hub, chassis, start
        self.first, self.heartbeat = first, heartbeat
        self.recheck = recheck
        self.stuck = False

    async def _still_allowed(self) -> bool:
        try:
            await self.recheck()
            return True
        except errors.NeutronError as exc:
            LOG.info("southbound stream of %s ended: its token is no longer valid (%s)",
                     self.chassis, exc.message)
            return False

    async def __call__(self, scope, receive, send) -> None:
        hub, chassis, start = self.hub, self.chassis, self.start
        loop = asyncio.get_running_loop()
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", NDJSON), (b"cache-control", b"no-store")]})
        gone = asyncio.ensure_future(_disconnected(receive))
        hub.streams += 1
        try:
            if self.first is not None and not await self._line(send, self.first):
                return
            beat = loop.time() + self.heartbeat
            check = loop.time() + RECHECK
            while not gone.done():
                if loop.time() >= check:
                    if not await self._still_allowed():
                        return
                    check = loop.time() + RECHECK
                waiter = hub.waiter(chassis)      # before reading: no wake-up is missed
                try:
                    try:
                        body, start, more = await _batch(hub, chassis, start)
                    except Compacted as exc:
                        await self._line(send, orjson.dumps({
                            "error": "Compacted", "message": str(exc),
                            "compact_revision": exc.compact_revision}))
                        return
                    now = loop.time()
                    if body is None and now >= beat:
                        body = _events_bytes([], start)           # the heartbeat
                    if body is not None:
                        if not await self._line(send, body):
                            return
                        beat = now + self.heartbeat
                        if more or waiter.done():     # more came meanwhile: read again
                            continue
                    # the waiter, registered before the read, is woken by what comes after
                    await asyncio.wait((waiter, gone),
                                       timeout=min(beat, check) - loop.time(),
                                       return_when=asyncio.FIRST_COMPLETED)
                finally:
                    hub.forget(chassis, waiter)
        finally:
            hub.streams -= 1
            gone.cancel()
            if not self.stuck:                    # (a stuck one is closed by the server)
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _line(self, send, body: bytes) -> bool:
        """Write one line; False when the client has read nothing for too long."""
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                await send({"type": "http.response.body", "body": body + b"\n",
                            "more_body": True})
            return True
        except TimeoutError:
            LOG.warning("southbound stream of %s: the client reads nothing; dropped",
                        self.chassis)
            self.stuck = True
            return False


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


MAX_STATUS_REPORTS = 1000      # ports one status report may carry


@endpoint
async def port_statuses(request: Request) -> Response:
    """An agent reports several ports' statuses at once: ``{"host": <chassis>, "ports":
    [{"id", "status"}, ...]}`` (the ports one reconcile made ACTIVE or DOWN). Answers
    ``{"ports": [...]}`` in the same order: ``{"id", "status"}`` for a port recorded,
    ``{"id", "code", "error": <NeutronError body>}`` for one that does not exist (404)
    or is bound elsewhere (409); the others are recorded all the same. A malformed body
    or status is a 400 and records nothing."""
    await _require_admin(request)
    body = await json_body(request)
    items = body.get("ports") if isinstance(body, dict) else None
    if not isinstance(items, list) or not isinstance(body.get("host"), str) \
            or not body["host"] or not all(
                isinstance(i, dict) and isinstance(i.get("id"), str)
                and isinstance(i.get("status"), str) for i in items):
        raise errors.InvalidInput("body must be {\"host\": <chassis>, \"ports\": "
                                  "[{\"id\": ..., \"status\": ...}, ...]}")
    if len(items) > MAX_STATUS_REPORTS:
        raise errors.InvalidInput(f"at most {MAX_STATUS_REPORTS} ports per report")
    ports = request.app.state.services["ports"]
    results = await call(ports.set_statuses, [(i["id"], i["status"]) for i in items],
                         body["host"])
    return JSON({"ports": results})


def _report(body) -> tuple[str, str, int | None]:
    """(status, host, revision_number) of an L3 status report."""
    if not isinstance(body, dict) or not isinstance(body.get("status"), str) \
            or not isinstance(body.get("host"), str) or not body["host"]:
        raise errors.InvalidInput("body must be {\"status\": ..., \"host\": ..., "
                                  "\"revision_number\": <optional int>}")
    return body["status"], body["host"], body.get("revision_number")


@endpoint
async def vip_owner(request: Request) -> Response:
    """``{"ip", "host"}``: the port, bound to ``host``, announced the shared VIP ``ip``
    (a gratuitous ARP); it becomes the VIP's owner (written only if that changes)."""
    await _require_admin(request)
    body = await json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("ip"), str):
        raise errors.InvalidInput("body must be {\"ip\": <VIP>, \"host\": <chassis>}")
    owners = request.app.state.services.vip_owners
    owner, written = await call(owners.report, request.path_params["id"], body["ip"],
                                body.get("host"))
    return JSON({"vip_owner": owner, "written": written})


@endpoint
async def member_health(request: Request) -> Response:
    """The chassis hosting a load balancer member reports its health check's verdict
    (ONLINE / ERROR); kept on the member in its load balancer (written only when it
    changes), so the clients' chassis take it out of (or back into) the selection."""
    await _require_admin(request)
    status, host, _ = _report(await json_body(request))
    lbaas = request.app.state.services.lbaas
    written = await call(lbaas.report_health, request.path_params["id"], status, host)
    return JSON({"member": {"id": request.path_params["id"], "operating_status": status},
                 "written": written})


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
    return JSON({"snat_blocks": blocks, "block_size": snat.size,
                 "max_blocks": snat.max_count})


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


DATAPATH_TYPES = ("netdev", "system")


def _chassis_body(body) -> tuple[str, dict, bool, float, str, str]:
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
    datapath = body.get("datapath_type", "netdev")
    if datapath not in DATAPATH_TYPES:
        raise errors.InvalidInput(f"datapath_type must be one of {DATAPATH_TYPES}")
    zone = body.get("availability_zone", "nova")
    if not isinstance(zone, str) or not 0 < len(zone) <= 255 or "/" in zone:
        raise errors.InvalidInput("availability_zone must be a name of 1 to 255 characters "
                                  "without '/'")
    return tunnel_ip, mappings, bool(body.get("gateway", False)), float(ttl), datapath, zone


@endpoint
async def register_chassis(request: Request) -> Response:
    """A chassis registers (or re-registers) and gets a liveness lease to keep alive, and
    the cloud's DNS domain (``network.dns_domain``) its DHCP gives the ports."""
    await _require_admin(request)
    name = request.path_params["name"]
    tunnel_ip, mappings, gateway, ttl, datapath, zone = _chassis_body(await json_body(request))
    agents = request.app.state.services["agents"]
    agent, lease = await call(agents.register, name, tunnel_ip, mappings, gateway, ttl,
                              datapath, zone)
    request.app.state.metrics.registrations.inc()
    return JSON({"agent": agent, "lease": lease, "ttl": ttl,
                 "dns_domain": _dns_domain(request)})


@endpoint
async def chassis_heartbeat(request: Request) -> Response:
    """Keep a chassis alive; 404 once its lease expired (the agent re-registers). The
    body may also say which store revision the agent has applied to its flows
    (``revision``) and its ``version``: kept with the heartbeat's time, for
    ``plexus status`` (one store write per heartbeat, as before). The answer says the
    cloud's DNS domain again, so agents follow a server restarted with another."""
    await _require_admin(request)
    body = await json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("lease"), int):
        raise errors.InvalidInput("body must be {\"lease\": <int>}")
    revision, version = body.get("revision"), body.get("version")
    if revision is not None and (not isinstance(revision, int) or isinstance(revision, bool)
                                 or revision < 0):
        raise errors.InvalidInput("revision must be a non-negative integer")
    if version is not None and (not isinstance(version, str) or len(version) > 64):
        raise errors.InvalidInput("version must be a string of at most 64 characters")
    agents = request.app.state.services["agents"]
    try:
        ttl = await call(agents.heartbeat, request.path_params["name"], body["lease"],
                         revision, version)
    except errors.NotFound:
        request.app.state.metrics.lease_expired.inc()
        raise
    return JSON({"ttl": ttl, "dns_domain": _dns_domain(request)})


def _dns_domain(request: Request) -> str:
    """The cloud's DNS domain as agents name ports in it (a final dot, or '')."""
    return dns.domain_setting(request.app.state.config.network.dns_domain)


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
    Route("/southbound/v1/ports/status", port_statuses, methods=["PUT"]),
    Route("/southbound/v1/ports/{id}/status", port_status, methods=["PUT"]),
    Route("/southbound/v1/ports/{id}/vip-owner", vip_owner, methods=["PUT"]),
    Route("/southbound/v1/routers/{id}/status", router_status, methods=["PUT"]),
    Route("/southbound/v1/lbaas/members/{id}/health", member_health, methods=["PUT"]),
    Route("/southbound/v1/floatingips/{id}/status", floatingip_status, methods=["PUT"]),
    Route("/southbound/v1/routers/{id}/snat-blocks", lease_snat_blocks, methods=["POST"]),
    Route("/southbound/v1/routers/{id}/snat-blocks", list_snat_blocks, methods=["GET"]),
    Route("/southbound/v1/routers/{id}/snat-blocks", release_snat_blocks,
          methods=["DELETE"]),
]
