"""Routes of /v2.0/floatingips/{id}/port_forwardings (floating-ip-port-forwarding, with
its description and port-range extensions, and the forwardings in a floating IP's
body: expose-port-forwarding-in-fip, floating-ip-port-forwarding-detail)."""

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from plexus.api import errors
from plexus.api.http import JSON, call, context, endpoint, json_body
from plexus.api.query import page_links, parse_query
from plexus.api.routes.common import base_url
from plexus.api.routes.discovery import register_extension

register_extension("floating-ip-port-forwarding", "Floating IP Port Forwarding",
                   "Allow port forwarding from floating IP port to an internal port")
register_extension("floating-ip-port-forwarding-description",
                   "Floating IP Port Forwarding new attribute description",
                   "Add a description field to Port Forwarding rules")
register_extension("floating-ip-port-forwarding-port-ranges",
                   "Floating IP Port Forwarding support port ranges",
                   "Add suport to port ranges")
register_extension("expose-port-forwarding-in-fip", "Expose Floating IP port forwardings",
                   "Expose port forwarding fields in floating IP response")
register_extension("floating-ip-port-forwarding-detail",
                   "Floating IP port forwarding detail",
                   "Allow list floating ip return more port forwarding data, include'id' "
                   "and 'internal_port_id'")

ONE, MANY = "port_forwarding", "port_forwardings"


def _svc(request: Request):
    return request.app.state.services.port_forwardings


async def _body(request: Request):
    body = await json_body(request)
    if not isinstance(body, dict) or ONE not in body or len(body) != 1:
        raise errors.BadRequest(f"Unable to find '{ONE}' in request body")
    return body[ONE]


@endpoint
async def index(request: Request) -> Response:
    """``GET /v2.0/floatingips/{id}/port_forwardings``."""
    ctx = await context(request)
    svc = _svc(request)
    items = list(request.query_params.multi_items())
    q = parse_query(svc.resource, items)
    fip_id = request.path_params["id"]
    page, more, before = await call(svc.list, ctx, fip_id, q)
    body = {MANY: page}
    links = page_links(base_url(request), f"floatingips/{fip_id}/{MANY}", items, page, q,
                       more, before)
    if links:
        body[f"{MANY}_links"] = links
    return JSON(body)


@endpoint
async def create(request: Request) -> Response:
    """``POST /v2.0/floatingips/{id}/port_forwardings``."""
    ctx = await context(request)
    body = await _body(request)
    return JSON({ONE: await call(_svc(request).create, ctx, request.path_params["id"], body)},
                status_code=201)


@endpoint
async def show(request: Request) -> Response:
    """``GET /v2.0/floatingips/{id}/port_forwardings/{port_forwarding_id}``."""
    ctx = await context(request)
    fields = request.query_params.getlist("fields")
    return JSON({ONE: await call(_svc(request).show, ctx, request.path_params["id"],
                                 request.path_params["port_forwarding_id"], fields or None)})


@endpoint
async def update(request: Request) -> Response:
    """``PUT /v2.0/floatingips/{id}/port_forwardings/{port_forwarding_id}``."""
    ctx = await context(request)
    body = await _body(request)
    return JSON({ONE: await call(_svc(request).update, ctx, request.path_params["id"],
                                 request.path_params["port_forwarding_id"], body)})


@endpoint
async def delete(request: Request) -> Response:
    """``DELETE /v2.0/floatingips/{id}/port_forwardings/{port_forwarding_id}``."""
    ctx = await context(request)
    await call(_svc(request).delete, ctx, request.path_params["id"],
               request.path_params["port_forwarding_id"])
    return Response(status_code=204)


PREFIX = "/v2.0/floatingips/{id}/port_forwardings"
ROUTES = [
    Route(PREFIX, index, methods=["GET"]),
    Route(PREFIX, create, methods=["POST"]),
    Route(PREFIX + "/{port_forwarding_id}", show, methods=["GET"]),
    Route(PREFIX + "/{port_forwarding_id}", update, methods=["PUT"]),
    Route(PREFIX + "/{port_forwarding_id}", delete, methods=["DELETE"]),
]
