"""Routes of /v2.0/network-ip-availabilities (read only, admin only)."""

import json

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from plexus.api.http import call, context, endpoint
from plexus.api.routes.discovery import register_extension

register_extension("network-ip-availability", "Network IP Availability",
                   "Provides IP availability data for each network and subnet.")

PATH = "/v2.0/network-ip-availabilities"


def _json(body: dict) -> Response:
    """The stdlib encoder: an IPv6 pool holds more than 2**64 addresses, which Neutron
    reports exactly (orjson stops at 64 bits)."""
    return Response(json.dumps(body).encode(), media_type="application/json")


def _service(request: Request):
    return request.app.state.services.ip_availability


@endpoint
async def index(request: Request) -> Response:
    ctx = await context(request)
    filters: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        if key != "fields":
            filters.setdefault(key, []).append(value)
    items = await call(_service(request).list, ctx, filters)
    fields = request.query_params.getlist("fields")
    if fields:
        items = [{k: v for k, v in item.items() if k in fields} for item in items]
    return _json({"network_ip_availabilities": items})


@endpoint
async def show(request: Request) -> Response:
    ctx = await context(request)
    item = await call(_service(request).show, ctx, request.path_params["id"])
    fields = request.query_params.getlist("fields")
    if fields:
        item = {k: v for k, v in item.items() if k in fields}
    return _json({"network_ip_availability": item})


ROUTES = [Route(PATH, index, methods=["GET"]), Route(PATH + "/{id}", show, methods=["GET"])]
