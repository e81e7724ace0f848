"""Routes of /v2.0/routers, with the add/remove_router_interface and
add/remove_extraroutes actions, and the l3-agent scheduler view of a router's gateway
chassis (``GET /v2.0/routers/{id}/l3-agents``)."""

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from plexus.api.http import JSON, call, context, endpoint, json_body
from plexus.api.routes.common import crud_routes, service
from plexus.api.routes.discovery import register_extension

register_extension("router", "Neutron L3 Router",
                   "Router abstraction for basic L3 forwarding between L2 Neutron networks "
                   "and access to external networks via a NAT gateway.")
register_extension("ext-gw-mode", "Neutron L3 Configurable external gateway mode",
                   "Extension of the router abstraction for specifying whether SNAT should "
                   "occur on the external gateway")
register_extension("extraroute", "Neutron Extra Route",
                   "Extra routes configuration for L3 router")
register_extension("extraroute-atomic", "Atomically add/remove extra routes",
                   "Edit extra routes of a router on server side by atomically adding/removing "
                   "extra routes")
register_extension("l3_agent_scheduler", "L3 Agent Scheduler",
                   "Schedule routers among l3 agents")
# Every Plexus router is both distributed (each chassis routes for its own ports) and
# highly available (its gateway fails over between gateway chassis): the attributes say so.
register_extension("dvr", "Distributed Virtual Router",
                   "Enables configuration of Distributed Virtual Routers.")
register_extension("l3-ha", "HA Router extension", "Adds HA capability to routers.")


@endpoint
async def add_interface(request: Request) -> Response:
    """``PUT /v2.0/routers/{id}/add_router_interface``."""
    ctx = await context(request)
    body = await json_body(request)
    svc = service(request, "routers")
    return JSON(await call(svc.add_interface, ctx, request.path_params["id"], body))


@endpoint
async def remove_interface(request: Request) -> Response:
    """``PUT /v2.0/routers/{id}/remove_router_interface``."""
    ctx = await context(request)
    body = await json_body(request)
    svc = service(request, "routers")
    return JSON(await call(svc.remove_interface, ctx, request.path_params["id"], body))


@endpoint
async def add_routes(request: Request) -> Response:
    """``PUT /v2.0/routers/{id}/add_extraroutes``."""
    return await _change_routes(request, add=True)


@endpoint
async def remove_routes(request: Request) -> Response:
    """``PUT /v2.0/routers/{id}/remove_extraroutes``."""
    return await _change_routes(request, add=False)


@endpoint
async def l3_agents(request: Request) -> Response:
    """``GET /v2.0/routers/{id}/l3-agents``: the router's gateway chassis, in order, as
    agents with ``ha_state`` (admin only)."""
    ctx = await context(request)
    scheduler = service(request, "routers").scheduler
    return JSON({"agents": await call(scheduler.agents_hosting, ctx,
                                      request.path_params["id"])})


async def _change_routes(request: Request, add: bool) -> Response:
    ctx = await context(request)
    body = await json_body(request)
    svc = service(request, "routers")
    router = await call(svc.change_routes, ctx, request.path_params["id"], body, add)
    return JSON({"router": router})


ROUTES = crud_routes("routers") + [
    Route("/v2.0/routers/{id}/add_router_interface", add_interface, methods=["PUT"]),
    Route("/v2.0/routers/{id}/remove_router_interface", remove_interface, methods=["PUT"]),
    Route("/v2.0/routers/{id}/add_extraroutes", add_routes, methods=["PUT"]),
    Route("/v2.0/routers/{id}/remove_extraroutes", remove_routes, methods=["PUT"]),
    Route("/v2.0/routers/{id}/l3-agents", l3_agents, methods=["GET"]),
]
