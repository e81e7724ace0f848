"""Routes of /v2.0/qos/policies (tags also under /v2.0/policies), their rules
(/v2.0/qos/policies/{id}/{bandwidth_limit,dscp_marking,minimum_bandwidth}_rules) and
/v2.0/qos/rule-types, and the extensions they implement."""

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from plexus.api import errors
from plexus.api.http import JSON, call, context, endpoint, json_body
from plexus.api.query import parse_query
from plexus.api.routes.common import crud_routes, service
from plexus.api.routes.discovery import register_extension
from plexus.api.schemas.qos import RULE_TYPE, RULE_TYPES

register_extension("qos", "Quality of Service",
                   "The Quality of Service extension.")
register_extension("qos-bw-limit-direction", "Direction for QoS bandwidth limit rule",
                   "Allow to configure QoS bandwidth limit rule with specific direction: "
                   "ingress or egress")
register_extension("qos-default", "QoS default policy",
                   "Expose the QoS default policy per project")
register_extension("qos-rule-type-details", "Details of QoS rule types",
                   "Expose details about QoS rule types supported by loaded backend drivers")
register_extension("qos-rule-type-filter", "QoS rule type filter",
                   "Add filters to the rule type list: all_rules, all_supported")
register_extension("rbac-qos", "Add qos_policy type to RBAC",
                   "Add qos_policy type to RBAC")

PREFIX = "/v2.0/qos/policies/{id}"


def _rule_routes(kind: str) -> list[Route]:
    res = RULE_TYPES[kind]
    one, many = res.name, res.collection

    @endpoint
    async def index(request: Request) -> Response:
        ctx = await context(request)
        q = parse_query(res, list(request.query_params.multi_items()))
        svc = service(request, "qos-policies")
        return JSON({many: await call(svc.list_rules, ctx, request.path_params["id"],
                                      kind, q)})

    async def rule_body(request: Request):
        body = await json_body(request)
        if not isinstance(body, dict) or one not in body or len(body) != 1:
            raise errors.BadRequest(f"Unable to find '{one}' in request body")
        return body[one]

    @endpoint
    async def create(request: Request) -> Response:
        ctx = await context(request)
        body = await rule_body(request)
        svc = service(request, "qos-policies")
        rule = await call(svc.create_rule, ctx, request.path_params["id"], kind, body)
        return JSON({one: rule}, status_code=201)

    @endpoint
    async def show(request: Request) -> Response:
        ctx = await context(request)
        svc = service(request, "qos-policies")
        fields = request.query_params.getlist("fields")
        return JSON({one: await call(svc.show_rule, ctx, request.path_params["id"],
                                     kind, request.path_params["rule_id"], fields or None)})

    @endpoint
    async def update(request: Request) -> Response:
        ctx = await context(request)
        body = await rule_body(request)
        svc = service(request, "qos-policies")
        return JSON({one: await call(svc.update_rule, ctx, request.path_params["id"],
                                     kind, request.path_params["rule_id"], body)})

    @endpoint
    async def delete(request: Request) -> Response:
        ctx = await context(request)
        svc = service(request, "qos-policies")
        await call(svc.delete_rule, ctx, request.path_params["id"], kind,
                   request.path_params["rule_id"])
        return Response(status_code=204)

    return [
        Route(f"{PREFIX}/{many}", index, methods=["GET"]),
        Route(f"{PREFIX}/{many}", create, methods=["POST"]),
        Route(f"{PREFIX}/{many}/{{rule_id}}", show, methods=["GET"]),
        Route(f"{PREFIX}/{many}/{{rule_id}}", update, methods=["PUT"]),
        Route(f"{PREFIX}/{many}/{{rule_id}}", delete, methods=["DELETE"]),
    ]


@endpoint
async def rule_types(request: Request) -> Response:
    """``GET /v2.0/qos/rule-types`` (qos-rule-type-filter: ``all_rules``,
    ``all_supported``)."""
    ctx = await context(request)
    flags = {k: request.query_params.get(k) for k in ("all_rules", "all_supported")}
    q = parse_query(RULE_TYPE, [(k, v) for k, v in request.query_params.multi_items()
                                if k not in flags])
    svc = service(request, "qos-policies")
    return JSON({"rule_types": await call(svc.rule_types, ctx, q, **flags)})


@endpoint
async def rule_type(request: Request) -> Response:
    """``GET /v2.0/qos/rule-types/{type}`` (qos-rule-type-details)."""
    ctx = await context(request)
    svc = service(request, "qos-policies")
    return JSON({"rule_type": await call(svc.rule_type, ctx, request.path_params["type"])})


ROUTES = [
    Route("/v2.0/qos/rule-types", rule_types, methods=["GET"]),
    Route("/v2.0/qos/rule-types/{type}", rule_type, methods=["GET"]),
    *crud_routes("qos-policies", path="qos/policies", plural="policies"),
    # Neutron's tag extension files a policy's tags under its collection's bare name
    # (/v2.0/policies/{id}/tags), where openstacksdk sends them
    *[r for r in crud_routes("qos-policies", path="policies", plural="policies")
      if "/tags" in r.path],
    *[route for kind in RULE_TYPES for route in _rule_routes(kind)],
]
