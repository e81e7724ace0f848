"""Routes of /v2.0/trunks (with add_subports / remove_subports / get_subports) and the
extensions they implement."""

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from plexus.api.http import JSON, call, context, endpoint, json_body
from plexus.api.routes.common import crud_routes, service
from plexus.api.routes.discovery import register_extension

register_extension("trunk", "Trunk Extension", "Provides support for trunk ports")
register_extension("trunk-details", "Trunk port details",
                   "Expose trunk port details")


async def _change(request: Request, add: bool) -> Response:
    ctx = await context(request)
    body = await json_body(request)
    svc = service(request, "trunks")
    return JSON(await call(svc.change_subports, ctx, request.path_params["id"], body, add))


@endpoint
async def add_subports(request: Request) -> Response:
    """``PUT /v2.0/trunks/{id}/add_subports``."""
    return await _change(request, add=True)


@endpoint
async def remove_subports(request: Request) -> Response:
    """``PUT /v2.0/trunks/{id}/remove_subports``."""
    return await _change(request, add=False)


@endpoint
async def get_subports(request: Request) -> Response:
    """``GET /v2.0/trunks/{id}/get_subports``."""
    ctx = await context(request)
    svc = service(request, "trunks")
    return JSON(await call(svc.subports, ctx, request.path_params["id"]))


ROUTES = crud_routes("trunks") + [
    Route("/v2.0/trunks/{id}/add_subports", add_subports, methods=["PUT"]),
    Route("/v2.0/trunks/{id}/remove_subports", remove_subports, methods=["PUT"]),
    Route("/v2.0/trunks/{id}/get_subports", get_subports, methods=["GET"]),
]
