"""Version discovery (``GET /``, ``GET /v2.0``) and the extensions that are really
implemented (``GET /v2.0/extensions``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from plexus.api import errors
from plexus.api.http import JSON, context, endpoint
from plexus.api.routes.common import base_url

UPDATED = "2026-11-01T00:00:00-00:00"

# alias -> (name, description). Only what Plexus implements end to end belongs here.
EXTENSIONS: dict[str, tuple[str, str]] = {
    "external-net": ("Neutron external network", "Adds external network attribute to "
                     "network resource."),
    "provider": ("Provider Network", "Expose mapping of virtual networks to physical "
                 "networks"),
    "net-mtu": ("Network MTU", "Provides MTU attribute for a network resource."),
    "net-mtu-writable": ("Network MTU (writable)", "Provides a writable MTU attribute for a "
                         "network resource."),
    "port-security": ("Port Security", "Provides port security"),
    "binding": ("Port Binding", "Expose port bindings of a virtual port to external "
                "application"),
    "allowed-address-pairs": ("Allowed Address Pairs", "Provides allowed address pairs"),
    "standard-attr-description": ("standard-attr-description", "Extension to add "
                                  "descriptions to standard attributes"),
    "standard-attr-revisions": ("Resource revision numbers", "This extension will display "
                                "the revision number of neutron resources."),
    "standard-attr-timestamp": ("Resource timestamps", "Adds created_at and updated_at "
                                "fields to all Neutron resources that have Neutron standard "
                                "attributes."),
    "standard-attr-tag": ("Tag support for resources with standard attribute: subnet, "
                          "trunk, network_segment_range, router, network, policy, "
                          "subnetpool, port, security_group, floatingip",
                          "Enables to set tag on resources with standard attribute."),
    "tag-creation": ("Tag support for resources during creation",
                     "Enables to set tags on resources during creation"),
    "project-id": ("project_id field enabled", "Extension that indicates that project_id "
                   "field is enabled."),
    "revision-if-match": ("If-Match constraints based on revision_number", "Extension "
                          "indicating that If-Match based on revision_number is supported."),
    "filter-validation": ("Filter parameters validation", "Provides validation on filter "
                          "parameters."),
    "sorting": ("Sorting support", "Enables sorting support"),
    "agent": ("agent", "The agent management extension."),
    "pagination": ("Pagination support", "Enables pagination support"),
}


def extension_body(alias: str) -> dict:
    """One extension as Neutron writes it."""
    name, description = EXTENSIONS[alias]
    return {"alias": alias, "name": name, "description": description, "updated": UPDATED,
            "links": []}


def register_extension(alias: str, name: str, description: str) -> None:
    """Advertise an extension (called by the module that implements it)."""
    EXTENSIONS[alias] = (name, description)


@endpoint
async def root(request: Request) -> Response:
    """``GET /``: the API versions."""
    url = base_url(request)
    return JSON({"versions": [{"id": "v2.0", "status": "CURRENT",
                               "links": [{"href": f"{url}/v2.0/", "rel": "self"}]}]})


@endpoint
async def v2(request: Request) -> Response:
    """``GET /v2.0``: the collections this API serves."""
    await context(request)
    url = base_url(request)
    services = request.app.state.services.by_collection.values()
    return JSON({"resources": [
        {"name": s.resource.name, "collection": s.resource.collection,
         "links": [{"href": f"{url}/v2.0/{s.resource.collection}", "rel": "self"}]}
        for s in services]})


@endpoint
async def extensions(request: Request) -> Response:
    """``GET /v2.0/extensions``."""
    await context(request)
    return JSON({"extensions": [extension_body(a) for a in sorted(EXTENSIONS)]})


@endpoint
async def extension(request: Request) -> Response:
    """``GET /v2.0/extensions/{alias}``."""
    await context(request)
    alias = request.path_params["alias"]
    if alias not in EXTENSIONS:
        raise errors.ResourceNotFound(f"Extension with alias {alias} does not exist")
    return JSON({"extension": extension_body(alias)})


ROUTES = [
    Route("/", root, methods=["GET"]),
    Route("/v2.0", v2, methods=["GET"]),
    Route("/v2.0/", v2, methods=["GET"]),
    Route("/v2.0/extensions", extensions, methods=["GET"]),
    Route("/v2.0/extensions/{alias}", extension, methods=["GET"]),
]
