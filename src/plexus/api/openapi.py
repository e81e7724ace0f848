"""The OpenAPI document, generated from the resource schemas so it cannot drift."""

from __future__ import annotations

from plexus.api import policy
from plexus.api.schemas.base import REQUIRED, Resource

_ERROR = {"description": "Neutron error", "content": {"application/json": {"schema": {
    "$ref": "#/components/schemas/NeutronError"}}}}


def _schema(resource: Resource, mode: str) -> dict:
    props = {}
    required = []
    for attr in resource.attrs:
        if mode == "create" and not attr.post or mode == "update" and not attr.put:
            continue
        if mode == "show" and not attr.visible:
            continue
        prop: dict = {"type": attr.type} if attr.type != "string" else {"type": "string"}
        if attr.type == "array":
            prop["items"] = {}
        if attr.doc:
            prop["description"] = attr.doc
        action = {"create": "create", "update": "update"}.get(mode, "get")
        if policy.admin_only(action, resource.name, attr.name):
            prop["description"] = (prop.get("description", "") + " (admin only)").strip()
        props[attr.name] = prop
        if mode == "create" and attr.default is REQUIRED:
            required.append(attr.name)
    out = {"type": "object", "properties": props}
    if required:
        out["required"] = required
    return out


def document(resources: list[Resource], version: str = "2.0") -> dict:
    """OpenAPI 3.1 for the given resources' CRUD operations."""
    paths: dict = {}
    schemas: dict = {"NeutronError": {"type": "object", "properties": {"NeutronError": {
        "type": "object", "properties": {"type": {"type": "string"},
                                         "message": {"type": "string"},
                                         "detail": {"type": "string"}}}}}}
    for res in resources:
        title = res.name.title().replace("_", "")
        for mode in ("show", "create", "update"):
            schemas[f"{title}{mode.title()}"] = _schema(res, mode)

        def body(mode: str, many: bool = False) -> dict:
            ref = {"$ref": f"#/components/schemas/{title}{mode.title()}"}
            key = res.collection.replace("-", "_") if many else res.name
            inner = {"type": "array", "items": ref} if many else ref
            return {"content": {"application/json": {"schema": {
                "type": "object", "properties": {key: inner}}}}}
        errors = {str(c): _ERROR for c in (400, 401, 403, 404, 409, 412)}
        paths[f"/v2.0/{res.path}"] = {
            "get": {"summary": f"List {res.collection}", "tags": [res.collection],
                    "responses": {"200": {"description": "OK", **body("show", True)},
                                  **errors}},
            "post": {"summary": f"Create {res.name} (or several, atomically)",
                     "tags": [res.collection], "requestBody": body("create"),
                     "responses": {"201": {"description": "Created", **body("show")},
                                   **errors}},
        }
        param = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
        paths[f"/v2.0/{res.path}/{{id}}"] = {
            "parameters": param,
            "get": {"summary": f"Show {res.name}", "tags": [res.collection],
                    "responses": {"200": {"description": "OK", **body("show")}, **errors}},
            "put": {"summary": f"Update {res.name}", "tags": [res.collection],
                    "requestBody": body("update"),
                    "responses": {"200": {"description": "OK", **body("show")}, **errors}},
            "delete": {"summary": f"Delete {res.name}", "tags": [res.collection],
                       "responses": {"204": {"description": "Deleted"}, **errors}},
        }
    return {"openapi": "3.1.0",
            "info": {"title": "Plexus — OpenStack Networking API", "version": version},
            "components": {"schemas": schemas,
                           "securitySchemes": {"token": {"type": "apiKey", "in": "header",
                                                         "name": "X-Auth-Token"}}},
            "security": [{"token": []}],
            "paths": paths}
