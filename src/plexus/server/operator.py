"""What ``plexus status`` reads (admin only): the store's revision and, per chassis, its
health (alive: holds its liveness lease; the last heartbeat), its agent's version and
how far the revision its agent has applied to its flows is behind the store.

An agent sends the revision it has applied with each heartbeat (``agent.Agent`` keeps
it: the watch position once every relevant event before it is in its flows), so the lag
is at most a heartbeat interval (a third of the lease TTL) stale; an agent learns of
revisions that concern none of its objects from its stream's idle lines (every 10 s),
so after such a change its lag reads 0 again within about 15 s."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from plexus.api import errors
from plexus.api.http import JSON, call, context, endpoint


def status_body(services, hub) -> dict:
    """The status document (blocking: reads the store). An agent's lag counts the
    revisions between what it applied and the newest change *of the model* (writes
    outside it, such as heartbeats, change no flow and are no lag)."""
    revision = services.store.revision()
    revs = hub.revs
    model = revs[-1] if revs else max(hub.floor - 1, 0)
    chassis = services["agents"].health()
    for c in chassis:
        applied = c["applied_revision"]
        c["lag"] = None if applied is None else max(model - applied, 0)
    return {"store": {"revision": revision, "model_revision": model},
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
