"""The routes every Neutron collection has: list, create (single and bulk), show,
update, delete, and the tag sub-resource."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from plexus.api import errors
from plexus.api.http import JSON, call, context, endpoint, if_match, json_body
from plexus.api.query import page_links, parse_query
from plexus.api.services.base import ResourceService


def service(request: Request, collection: str) -> ResourceService:
    """The service that owns a collection."""
    return request.app.state.services[collection]


def base_url(request: Request) -> str:
    """Scheme, host and port the client used."""
    return f"{request.url.scheme}://{request.url.netloc}"


def crud_routes(collection: str, path: str | None = None,
                plural: str | None = None) -> list[Route]:
    """Routes for one collection, generic over its service and schema (``path``: its URL
    under /v2.0 when not the collection's name, ``plural``: its list's key in bodies)."""
    prefix = f"/v2.0/{path or collection}"
    many_key = plural or collection.replace("-", "_")

    @endpoint
    async def index(request: Request) -> Response:
        ctx = await context(request)
        svc = service(request, collection)
        items = list(request.query_params.multi_items())
        q = parse_query(svc.resource, items)
        page, more, before = await call(svc.list, ctx, q)
        body = {many_key: page}
        links = page_links(base_url(request), path or collection, items, page, q, more,
                           before)
        if links:
            body[f"{many_key}_links"] = links
        return JSON(body)

    @endpoint
    async def create(request: Request) -> Response:
        ctx = await context(request)
        svc = service(request, collection)
        body = await json_body(request)
        one, many = svc.resource.name, many_key
        if isinstance(body, dict) and len(body) == 1 and isinstance(body.get(many), list):
            if not body[many]:
                raise errors.BadRequest(f"Resources required")
            items = [b.get(one) if isinstance(b, dict) and set(b) == {one} else b
                     for b in body[many]]
            created = await call(svc.create_bulk, ctx, items)
            return JSON({many: created}, status_code=201)
        if not isinstance(body, dict) or one not in body or len(body) != 1:
            raise errors.BadRequest(f"Unable to find '{one}' in request body")
        return JSON({one: await call(svc.create, ctx, body[one])}, status_code=201)

    @endpoint
    async def show(request: Request) -> Response:
        ctx = await context(request)
        svc = service(request, collection)
        fields = request.query_params.getlist("fields")
        obj = await call(svc.show, ctx, request.path_params["id"], fields or None)
        return JSON({svc.resource.name: obj})

    @endpoint
    async def update(request: Request) -> Response:
        ctx = await context(request)
        svc = service(request, collection)
        body = await json_body(request)
        one = svc.resource.name
        if not isinstance(body, dict) or one not in body or len(body) != 1:
            raise errors.BadRequest(f"Unable to find '{one}' in request body")
        obj = await call(svc.update, ctx, request.path_params["id"], body[one],
                         if_match(request))
        return JSON({one: obj})

    @endpoint
    async def delete(request: Request) -> Response:
        ctx = await context(request)
        svc = service(request, collection)
        await call(svc.delete, ctx, request.path_params["id"], if_match(request))
        return Response(status_code=204)

    @endpoint
    async def tags(request: Request) -> Response:
        ctx = await context(request)
        svc = service(request, collection)
        ident = request.path_params["id"]
        if request.method == "GET":
            return JSON({"tags": (await call(svc.load, ctx, ident))[0].get("tags", [])})
        if request.method == "DELETE":
            await call(svc.set_tags, ctx, ident, [])
            return Response(status_code=204)
        body = await json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("tags"), list) or \
                not all(isinstance(t, str) and 0 < len(t) <= 255 for t in body["tags"]):
            raise errors.InvalidInput("Invalid tags body")
        if request.method == "POST":   # add these tags, keep the others
            obj = await call(svc.set_tags, ctx, ident, None, add=body["tags"])
            return JSON({"tags": obj["tags"]}, status_code=201)
        obj = await call(svc.set_tags, ctx, ident, body["tags"])
        return JSON({"tags": obj["tags"]})

    @endpoint
    async def tag(request: Request) -> Response:
        ctx = await context(request)
        svc = service(request, collection)
        ident, name = request.path_params["id"], request.path_params["tag"]
        if request.method == "GET":
            obj = (await call(svc.load, ctx, ident))[0]
            if name not in obj.get("tags", []):
                raise errors.NotFound("tag", name, type_name="TagNotFound")
            return Response(status_code=204)
        if request.method == "PUT":
            if len(name) > 255:
                raise errors.InvalidInput(f"'{name}' exceeds maximum length of 255")
            await call(svc.set_tags, ctx, ident, None, add=[name])
            return Response(status_code=201)
        await call(svc.set_tags, ctx, ident, None, remove=name)
        return Response(status_code=204)

    return [
        Route(prefix, index, methods=["GET"]),
        Route(prefix, create, methods=["POST"]),
        Route(prefix + "/{id}", show, methods=["GET"]),
        Route(prefix + "/{id}", update, methods=["PUT"]),
        Route(prefix + "/{id}", delete, methods=["DELETE"]),
        Route(prefix + "/{id}/tags", tags, methods=["GET", "PUT", "POST", "DELETE"]),
        Route(prefix + "/{id}/tags/{tag}", tag, methods=["GET", "PUT", "DELETE"]),
    ]


def action_routes(collection: str, method: str, actions: tuple[str, str]) -> list[Route]:
    """``PUT /v2.0/<collection>/{id}/<action>`` for an (add, remove) pair of member
    actions (``add_prefixes``/``remove_prefixes``, ``add_addresses``/...), each calling
    ``service.<method>(ctx, id, body, add)`` and answering what it returns."""
    def make(add: bool):
        @endpoint
        async def act(request: Request) -> Response:
            ctx = await context(request)
            body = await json_body(request)
            svc = service(request, collection)
            return JSON(await call(getattr(svc, method), ctx, request.path_params["id"],
                                   body, add))
        return act
    return [Route(f"/v2.0/{collection}/{{id}}/{name}", make(add), methods=["PUT"])
            for name, add in zip(actions, (True, False))]
