"""What ``plexus status`` reads (admin only): the store's revision and, per chassis, its
health (alive: holds its liveness lease; the last heartbeat), its agent's version and
how far the revision its agent has applied to its flows is behind the store.

An agent sends the revision it has applied with each heartbeat (``agent.Agent`` keeps
it: the watch position once every relevant event before it is in its flows), so the lag
is at most a heartbeat interval (a third of the lease TTL) stale."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from plexus.api import errors
from plexus.api.http import JSON, call, context, endpoint


def status_body(services, hub) -> dict:
    """The status document (blocking: reads the store)."""
    revision = services.store.revision()
    chassis = services["agents"].health()
    for c in chassis:
        applied = c["applied_revision"]
        c["lag"] = None if applied is None else max(revision - applied, 0)
    return {"store": {"revision": revision,
                      "hub_revision": max(hub.next - 1, 0) if hub.ready.is_set() else None},
            "chassis": chassis,
            "leases": {"held": sum(1 for c in chassis if c["alive"]),
                       "expired": sum(1 for c in chassis if not c["alive"])}}


@endpoint
async def status(request: Request) -> Response:
    """``GET /operator/v1/status``: the document of ``status_body``."""
    ctx = await context(request)
    if not ctx.is_admin:
        raise errors.PolicyNotAuthorized("operator status")
    return JSON(await call(status_body, request.app.state.services, request.app.state.hub))


ROUTES = [Route("/operator/v1/status", status, methods=["GET"])]
