"""Routes of /v2.0/agents (chassis as Neutron agents; admin only, no create), and the
l3-agent scheduler's view of the routers scheduled on a gateway chassis:
``GET/POST /v2.0/agents/{id}/l3-routers``, ``DELETE /v2.0/agents/{id}/l3-routers/{router_id}``."""

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from plexus.api.http import JSON, call, context, endpoint, json_body
from plexus.api.routes.common import crud_routes, service


@endpoint
async def l3_routers(request: Request) -> Response:
    """``GET /v2.0/agents/{id}/l3-routers``: routers scheduled on this chassis."""
    ctx = await context(request)
    scheduler = service(request, "routers").scheduler
    return JSON({"routers": await call(scheduler.routers_on, ctx, request.path_params["id"])})


@endpoint
async def add_l3_router(request: Request) -> Response:
    """``POST /v2.0/agents/{id}/l3-routers {"router_id"}``: pin a router here, first."""
    ctx = await context(request)
    body = await json_body(request)
    scheduler = service(request, "routers").scheduler
    await call(scheduler.pin, ctx, request.path_params["id"], body)
    return JSON({}, status_code=201)


@endpoint
async def remove_l3_router(request: Request) -> Response:
    """``DELETE /v2.0/agents/{id}/l3-routers/{router_id}``: take a router off this chassis."""
    ctx = await context(request)
    scheduler = service(request, "routers").scheduler
    await call(scheduler.unpin, ctx, request.path_params["id"],
               request.path_params["router_id"])
    return Response(status_code=204)


ROUTES = [r for r in crud_routes("agents") if "POST" not in (r.methods or ())
          and "/tags" not in r.path] + [
    Route("/v2.0/agents/{id}/l3-routers", l3_routers, methods=["GET"]),
    Route("/v2.0/agents/{id}/l3-routers", add_l3_router, methods=["POST"]),
    Route("/v2.0/agents/{id}/l3-routers/{router_id}", remove_l3_router, methods=["DELETE"]),
]
