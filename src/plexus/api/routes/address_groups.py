"""Routes of /v2.0/address-groups (with the add_addresses / remove_addresses actions;
no tags, as in Neutron), and the extensions they implement."""

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from plexus.api.http import JSON, call, context, endpoint, json_body
from plexus.api.routes.common import crud_routes, service
from plexus.api.routes.discovery import register_extension

register_extension("address-group", "Address group",
                   "Support address group")
register_extension("security-groups-remote-address-group",
                   "Remote address group id field for security group rules",
                   "Add new field of remote address group id in security group rules")


async def _addresses(request: Request, add: bool) -> Response:
    ctx = await context(request)
    body = await json_body(request)
    svc = service(request, "address-groups")
    return JSON(await call(svc.change_addresses, ctx, request.path_params["id"], body, add))


@endpoint
async def add_addresses(request: Request) -> Response:
    """``PUT /v2.0/address-groups/{id}/add_addresses``."""
    return await _addresses(request, add=True)


@endpoint
async def remove_addresses(request: Request) -> Response:
    """``PUT /v2.0/address-groups/{id}/remove_addresses``."""
    return await _addresses(request, add=False)


ROUTES = [route for route in crud_routes("address-groups") if "/tags" not in route.path] + [
    Route("/v2.0/address-groups/{id}/add_addresses", add_addresses, methods=["PUT"]),
    Route("/v2.0/address-groups/{id}/remove_addresses", remove_addresses, methods=["PUT"]),
]
