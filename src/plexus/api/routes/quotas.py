"""Routes of /v2.0/quotas (Neutron's quotas, quota_details and quota-check-limit
extensions); the quota service does the work and the policy checks."""

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from plexus.api import errors
from plexus.api.http import JSON, call, context, endpoint, json_body
from plexus.api.routes.discovery import register_extension

register_extension("quotas", "Quota management support",
                   "Expose functions for quotas management per project")
register_extension("quota_details", "Quota details management support",
                   "Expose functions for quotas usage statistics per project")
register_extension("quota-check-limit", "Quota engine limit check",
                   "Support for checking the resource usage before applying a new quota limit")


class NotImplementedHere(errors.NeutronError):
    """501, as Neutron answers a POST to /v2.0/quotas."""

    status = 501
    type_name = "HTTPNotImplemented"


def quotas(request: Request):
    """The quota service."""
    return request.app.state.services.quotas


@endpoint
async def index(request: Request) -> Response:
    """``GET /v2.0/quotas``: projects with non-default quotas (admin)."""
    ctx = await context(request)
    return JSON({"quotas": await call(quotas(request).list, ctx)})


@endpoint
async def create(request: Request) -> Response:
    """``POST /v2.0/quotas``: not supported, as in Neutron."""
    await context(request)
    raise NotImplementedHere("POST requests are not supported on this resource.")


@endpoint
async def project(request: Request) -> Response:
    """``GET /v2.0/quotas/project`` (and the deprecated ``/tenant``): the caller's project."""
    ctx = await context(request)
    key = request.url.path.rstrip("/").rsplit("/", 1)[1]
    return JSON({key: {f"{key}_id": ctx.project_id}})


@endpoint
async def show(request: Request) -> Response:
    """``GET /v2.0/quotas/{project_id}``."""
    ctx = await context(request)
    return JSON({"quota": await call(quotas(request).show, ctx,
                                     request.path_params["project_id"])})


@endpoint
async def default(request: Request) -> Response:
    """``GET /v2.0/quotas/{project_id}/default``."""
    ctx = await context(request)
    return JSON({"quota": await call(quotas(request).default, ctx,
                                     request.path_params["project_id"])})


@endpoint
async def details(request: Request) -> Response:
    """``GET /v2.0/quotas/{project_id}/details``: used, limit and reserved per resource."""
    ctx = await context(request)
    return JSON({"quota": await call(quotas(request).details, ctx,
                                     request.path_params["project_id"])})


@endpoint
async def update(request: Request) -> Response:
    """``PUT /v2.0/quotas/{project_id}``."""
    ctx = await context(request)
    body = await json_body(request)
    return JSON({"quota": await call(quotas(request).update, ctx,
                                     request.path_params["project_id"], body)})


@endpoint
async def delete(request: Request) -> Response:
    """``DELETE /v2.0/quotas/{project_id}``: back to the defaults."""
    ctx = await context(request)
    await call(quotas(request).delete, ctx, request.path_params["project_id"])
    return Response(status_code=204)


ROUTES = [
    Route("/v2.0/quotas", index, methods=["GET"]),
    Route("/v2.0/quotas", create, methods=["POST"]),
    Route("/v2.0/quotas/project", project, methods=["GET"]),
    Route("/v2.0/quotas/tenant", project, methods=["GET"]),
    Route("/v2.0/quotas/{project_id}", show, methods=["GET"]),
    Route("/v2.0/quotas/{project_id}", update, methods=["PUT"]),
    Route("/v2.0/quotas/{project_id}", delete, methods=["DELETE"]),
    Route("/v2.0/quotas/{project_id}/default", default, methods=["GET"]),
    Route("/v2.0/quotas/{project_id}/details", details, methods=["GET"]),
]
