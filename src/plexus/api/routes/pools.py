"""Routes of /v2.0/subnetpools (with the add_prefixes / remove_prefixes actions) and
/v2.0/address-scopes (no tags: address scopes are not standard-attribute resources),
and the extensions they implement."""

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from plexus.api.http import JSON, call, context, endpoint, json_body
from plexus.api.routes.common import crud_routes, service
from plexus.api.routes.discovery import register_extension

register_extension("subnet_allocation", "Subnet Allocation",
                   "Enables allocation of subnets from a subnet pool")
register_extension("default-subnetpools", "Default Subnetpools",
                   "Provides ability to mark and use a subnetpool as the default.")
register_extension("subnetpool-prefix-ops", "Subnet Pool Prefix Operations",
                   "Provides support for adjusting the prefix list of subnet pools")
register_extension("address-scope", "Address scope",
                   "Address scopes extension.")
register_extension("rbac-subnetpool", "Add subnetpool type to RBAC",
                   "Add subnetpool type to network RBAC")
register_extension("rbac-address-scope", "Add address_scope type to RBAC",
                   "Add address_scope type to RBAC")


async def _prefixes(request: Request, add: bool) -> Response:
    ctx = await context(request)
    body = await json_body(request)
    svc = service(request, "subnetpools")
    return JSON(await call(svc.change_prefixes, ctx, request.path_params["id"], body, add))


@endpoint
async def add_prefixes(request: Request) -> Response:
    """``PUT /v2.0/subnetpools/{id}/add_prefixes``."""
    return await _prefixes(request, add=True)


@endpoint
async def remove_prefixes(request: Request) -> Response:
    """``PUT /v2.0/subnetpools/{id}/remove_prefixes``."""
    return await _prefixes(request, add=False)


ROUTES = crud_routes("subnetpools") + [
    Route("/v2.0/subnetpools/{id}/add_prefixes", add_prefixes, methods=["PUT"]),
    Route("/v2.0/subnetpools/{id}/remove_prefixes", remove_prefixes, methods=["PUT"]),
] + [route for route in crud_routes("address-scopes") if "/tags" not in route.path]
