"""Routes of the Octavia v2 API (``/v2/lbaas/...``; ``/v2.0/lbaas/...`` too, the path
python-octaviaclient sends): load balancers (with ``/status`` and ``?cascade=true``),
listeners, pools, members under their pool, health monitors. Errors are Octavia's
``faultstring`` bodies (``services.lbaas.fault``)."""

from __future__ import annotations

import functools

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from plexus.api import errors
from plexus.api.http import JSON, call, context, endpoint, json_body
from plexus.api.query import page_links, parse_query
from plexus.api.routes.common import base_url
from plexus.api.schemas.base import to_bool, Invalid
from plexus.api.services.lbaas import RESOURCE, fault

ONE = {"loadbalancers": "loadbalancer", "listeners": "listener", "pools": "pool",
       "members": "member", "healthmonitors": "healthmonitor"}


def octavia(fn):
    """An endpoint whose errors are Octavia's bodies."""
    @functools.wraps(fn)
    async def handler(request: Request) -> Response:
        try:
            return await fn(request)
        except errors.NeutronError as exc:
            raise fault(exc) from None
    return endpoint(handler)


def svc(request: Request):
    return request.app.state.services.lbaas


def _unwrap(body, kind: str):
    one = ONE[kind]
    if not isinstance(body, dict) or one not in body or len(body) != 1:
        raise errors.BadRequest(f"Invalid input for field/attribute {one}. Value: "
                                f"'{body}'. Mandatory field missing.")
    return body[one]


def routes_for(kind: str, create) -> list[Route]:
    """list/create/show/update/delete of one collection (members: under their pool)."""
    nested = kind == "members"

    @octavia
    async def index(request: Request) -> Response:
        ctx = await context(request)
        items = list(request.query_params.multi_items())
        q = parse_query(RESOURCE[kind], items)
        pool = request.path_params.get("pool_id")
        page, more, before = await call(svc(request).list, ctx, kind, q, pool)
        body = {kind: page}
        path = f"lbaas/pools/{pool}/members" if nested else f"lbaas/{kind}"
        links = page_links(base_url(request) + "/v2", path, items, page, q, more, before)
        body[f"{kind}_links"] = links or []
        return JSON(body)

    @octavia
    async def post(request: Request) -> Response:
        ctx = await context(request)
        body = _unwrap(await json_body(request), kind)
        args = (request.path_params["pool_id"], body) if nested else (body,)
        return JSON({ONE[kind]: await call(create, svc(request), ctx, *args)},
                    status_code=201)

    @octavia
    async def show(request: Request) -> Response:
        ctx = await context(request)
        fields = request.query_params.getlist("fields") or None
        ident = request.path_params["id"]
        if nested:
            obj = await call(svc(request).member, ctx, request.path_params["pool_id"],
                             ident, fields)
        else:
            obj = await call(svc(request).show, ctx, kind, ident, fields)
        return JSON({ONE[kind]: obj})

    @octavia
    async def put(request: Request) -> Response:
        ctx = await context(request)
        body = _unwrap(await json_body(request), kind)
        ident = request.path_params["id"]
        if nested:
            await call(svc(request).in_pool, ctx, request.path_params["pool_id"], ident)
        return JSON({ONE[kind]: await call(svc(request).update, ctx, kind, ident, body)})

    @octavia
    async def delete(request: Request) -> Response:
        ctx = await context(request)
        ident = request.path_params["id"]
        cascade = False
        if kind == "loadbalancers" and "cascade" in request.query_params:
            try:
                cascade = to_bool(request.query_params["cascade"])
            except Invalid as exc:
                raise errors.BadRequest(str(exc)) from None
        if nested:
            await call(svc(request).in_pool, ctx, request.path_params["pool_id"], ident)
        await call(svc(request).delete, ctx, kind, ident, cascade)
        return Response(status_code=204)

    out = []
    for version in ("v2", "v2.0"):
        prefix = f"/{version}/lbaas/" + ("pools/{pool_id}/members" if nested else kind)
        out += [Route(prefix, index, methods=["GET"]), Route(prefix, post, methods=["POST"]),
                Route(prefix + "/{id}", show, methods=["GET"]),
                Route(prefix + "/{id}", put, methods=["PUT"]),
                Route(prefix + "/{id}", delete, methods=["DELETE"])]
    return out


@octavia
async def status(request: Request) -> Response:
    """``GET /v2/lbaas/loadbalancers/{id}/status``."""
    ctx = await context(request)
    return JSON(await call(svc(request).status_tree, ctx, request.path_params["id"]))


def _make(name):
    return lambda service, ctx, *args: getattr(service, name)(ctx, *args)


ROUTES = (
    [Route(f"/{v}/lbaas/loadbalancers/{{id}}/status", status, methods=["GET"])
     for v in ("v2", "v2.0")]
    + routes_for("loadbalancers", _make("create_loadbalancer"))
    + routes_for("listeners", _make("create_listener"))
    + routes_for("pools", _make("create_pool"))
    + routes_for("members", _make("create_member"))
    + routes_for("healthmonitors", _make("create_healthmonitor"))
)
