"""The Keystone v3 subset real clients use, with Keystone's JSON shapes and status codes.

``identity_routes`` returns routes that carry the ``/identity`` prefix themselves:
add them to the application's top-level route list.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from plexus.api import errors
from plexus.api.http import read_body
from plexus.config import IdentityConfig
from plexus.server.identity.context import Unauthorized
from plexus.server.identity.service import DEFAULT_DOMAIN, IdentityError, IdentityService, NotFound
from plexus.server.identity.throttle import HashPool, LoginThrottle, Overloaded
from plexus.server.identity.tokens import TokenPayload

V3_UPDATED = "2020-04-07T00:00:00Z"
TARPIT = 0.5        # at most this many seconds before a locked-out login is answered
_AUTH_MESSAGE = "The request you have made requires authentication."
_FIELDS = {
    "projects": ("name", "description", "enabled", "tags", "options"),
    "users": ("name", "password", "enabled", "default_project_id", "description", "email",
              "options"),
    "roles": ("name", "description", "options"),
}


class JSONResponse(Response):
    """A JSON response rendered with orjson."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        """The body as JSON bytes."""
        return orjson.dumps(content)


class Forbidden(Exception):
    """The caller is authenticated but lacks the role for the action (HTTP 403)."""


class BadRequest(IdentityError):
    """The request body or parameters are invalid (HTTP 400)."""


class LockedOut(Unauthorized):
    """Too many failed logins for the user or source: refused without checking (HTTP 401)."""

    def __init__(self, wait: float):
        super().__init__("locked out")
        self.wait = wait


def error_response(status: int, title: str, message: str,
                   headers: dict | None = None) -> JSONResponse:
    """Keystone's error body: ``{"error": {"code", "message", "title"}}``."""
    return JSONResponse({"error": {"code": status, "message": message, "title": title}},
                        status_code=status, headers=headers)


def keystone_time(ts: float) -> str:
    """A timestamp in Keystone's format, e.g. ``2026-11-26T08:00:00.000000Z``."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _flag(request: Request, name: str) -> bool:
    """Keystone's query flags: present means true unless the value is 0/false/no."""
    if name not in request.query_params:
        return False
    return request.query_params[name].lower() not in ("0", "false", "no", "off")


def identity_routes(service: IdentityService, config: IdentityConfig,
                    public_url: str) -> list[BaseRoute]:
    """Routes serving Keystone v3 under ``/identity`` (include them at the app's top level).

    Their login throttle and password-hash pool become ``service.throttle`` and
    ``service.hash_pool`` (``service.close_routes()`` ends the pool)."""
    codec = service.codec
    throttle = LoginThrottle(config)
    pool = HashPool(config.hash_workers, config.hash_queue)
    service.throttle, service.hash_pool = throttle, pool
    root = public_url.rstrip("/")
    base = f"{root}/identity"
    v3 = f"{base}/v3"

    def version() -> dict:
        return {"id": "v3.14", "status": "stable", "updated": V3_UPDATED,
                "links": [{"rel": "self", "href": f"{v3}/"}],
                "media-types": [{"base": "application/json",
                                 "type": "application/vnd.openstack.identity-v3+json"}]}

    def catalog() -> list[dict]:
        def service_entry(kind: str, name: str, url: str) -> dict:
            return {"id": uuid.uuid5(uuid.NAMESPACE_URL, f"{kind}:{url}").hex, "type": kind,
                    "name": name, "endpoints": [
                        {"id": uuid.uuid5(uuid.NAMESPACE_URL, f"{kind}:{iface}:{url}").hex,
                         "interface": iface, "region": config.region,
                         "region_id": config.region, "url": url}
                        for iface in ("public", "internal", "admin")]}
        return [service_entry("identity", "keystone", base),
                service_entry("network", "neutron", root),
                service_entry("load-balancer", "octavia", root)]

    def domain_ref(domain_id: str) -> dict:
        try:
            return {"id": domain_id, "name": service.get_domain(domain_id)["name"]}
        except NotFound:
            return {"id": domain_id, "name": domain_id}

    def token_body(p: TokenPayload, with_catalog: bool) -> dict:
        token: dict[str, Any] = {
            "methods": list(p.methods),
            "user": {"id": p.user_id, "name": p.user_name, "domain": domain_ref(p.user_domain_id),
                     "password_expires_at": None},
            "audit_ids": [p.audit_id], "expires_at": keystone_time(p.expires_at),
            "issued_at": keystone_time(p.issued_at)}
        if p.project_id:
            token.update({
                "project": {"id": p.project_id, "name": p.project_name,
                            "domain": domain_ref(p.project_domain_id or "default")},
                "is_domain": False, "roles": [{"id": i, "name": n} for i, n in p.roles]})
            if with_catalog:
                token["catalog"] = catalog()
        return {"token": token}

    def verify(token: str | None) -> TokenPayload:
        return service.verify(token or "")

    def caller(request: Request) -> TokenPayload:
        return verify(request.headers.get("x-auth-token"))

    def admin(request: Request, action: str) -> TokenPayload:
        who = caller(request)
        if not any(name == "admin" for _, name in who.roles):
            raise Forbidden(f"You are not authorized to perform the requested action: {action}.")
        return who

    def link(kind: str, obj: dict) -> dict:
        view = {k: v for k, v in obj.items() if k != "password_hash"}
        view["links"] = {"self": f"{v3}/{kind}/{obj['id']}"}
        return view

    def listing(request: Request, kind: str, objs: list[dict]) -> JSONResponse:
        return JSONResponse({kind: [link(kind, o) for o in objs],
                             "links": {"self": str(request.url), "previous": None, "next": None}})

    def filters(request: Request, *names: str) -> dict:
        q = request.query_params
        out: dict[str, Any] = {n: q[n] for n in names if n in q}
        if "enabled" in request.query_params:
            out["enabled"] = _flag(request, "enabled")
        return out

    def endpoint(fn: Callable[..., Any], is_async: bool = False) -> Callable:
        async def handle(request: Request) -> Response:
            body: dict | None = None
            if request.method in ("POST", "PATCH"):
                try:
                    body = orjson.loads(await read_body(request) or b"{}")
                except errors.RequestEntityTooLarge as exc:
                    return error_response(413, "Request Entity Too Large", exc.message)
                except orjson.JSONDecodeError:
                    return error_response(400, "Bad Request", "Malformed request body.")
                if not isinstance(body, dict):
                    return error_response(400, "Bad Request", "Malformed request body.")
            try:
                if is_async:
                    return await fn(request, body)
                return await run_in_threadpool(fn, request, body)
            except Unauthorized as exc:
                headers = {"WWW-Authenticate": f'Keystone uri="{base}"'}
                if isinstance(exc, LockedOut):
                    headers["Retry-After"] = str(max(1, round(exc.wait)))
                return error_response(401, "Unauthorized", _AUTH_MESSAGE, headers)
            except Overloaded:
                return error_response(503, "Service Unavailable",
                                      "Too many logins in progress; retry later.",
                                      {"Retry-After": "1"})
            except Forbidden as exc:
                return error_response(403, "Forbidden", str(exc))
            except IdentityError as exc:
                return error_response(exc.status, exc.title, str(exc))
            except (KeyError, TypeError, AttributeError) as exc:
                return error_response(400, "Bad Request", f"Invalid input: {exc}.")
        return handle

    def member(body: dict | None, key: str) -> dict:
        obj = (body or {}).get(key)
        if not isinstance(obj, dict):
            raise BadRequest(f"Invalid input for field '{key}': a JSON object is required.")
        return obj

    # Version discovery.

    async def versions(request: Request) -> Response:
        return JSONResponse({"versions": {"values": [version()]}}, status_code=300)

    async def v3_root(request: Request) -> Response:
        return JSONResponse({"version": version()})

    # Tokens.

    def password_user(ref: dict) -> tuple[str, dict | None]:
        """The user a password-method reference names (None if unknown) and the key that
        counts its failures (the same kind of key whether the user exists or not)."""
        if not isinstance(ref, dict):
            raise BadRequest("Invalid input for field 'user': a JSON object is required.")
        try:
            if "id" in ref:
                user = service.get("users", str(ref["id"]))
            else:
                domain = service.resolve_domain(ref.get("domain"))
                user = service.find("users", str(ref["name"]), domain["id"])
        except NotFound:
            user = None
        if user is not None:
            return user["id"], user
        return "unknown:" + orjson.dumps({k: ref.get(k) for k in ("id", "name", "domain")},
                                         option=orjson.OPT_SORT_KEYS).decode(), None

    async def issue_token(request: Request, body: dict | None) -> Response:
        auth = member(body, "auth")
        ident = auth.get("identity") or {}
        methods = ident.get("methods") or []
        if "password" not in methods:
            return await run_in_threadpool(scoped_token, request, body, None, None)
        ref = ident["password"]["user"]
        password = ref.get("password") if isinstance(ref, dict) else None
        source = request.client.host if request.client else ""
        wait = throttle.check_source(source)            # before any store read
        if not wait:
            revision = await run_in_threadpool(service.store.revision)
            user_key, user = await run_in_threadpool(password_user, ref)
            wait = throttle.check(user_key, source)
        if wait:
            # answer late (the connection waits, no thread does): a locked-out client
            # that retries at once is slowed down instead of costing a request per RTT
            await asyncio.sleep(min(wait, TARPIT))
            raise LockedOut(wait)
        if not await pool.run(service.authenticate, user, str(password or "")):
            exempt = bool(user and (user.get("options") or {}).get(
                "ignore_lockout_failure_attempts"))
            throttle.failed(user_key, source, exempt_user=exempt)
            raise Unauthorized("bad credentials")
        throttle.succeeded(user_key)
        return await run_in_threadpool(scoped_token, request, body, user, revision)

    def scoped_token(request: Request, body: dict, user: dict | None,
                     revision: int | None) -> Response:
        """The token for an authenticated ``user`` (password), or for the token method."""
        auth = member(body, "auth")
        ident = auth.get("identity") or {}
        methods = ident.get("methods") or []
        scope = auth.get("scope")
        expires_at = None
        try:
            if user is not None:
                pass
            elif "token" in methods:
                revision = service.store.revision()
                old = verify(ident["token"]["id"])
                user, expires_at = service.get("users", old.user_id), old.expires_at
                if not user.get("enabled", True):
                    raise Unauthorized("user disabled")
            else:
                raise Unauthorized("unsupported authentication method")
            project = None
            if isinstance(scope, dict) and "project" in scope:
                ref = scope["project"]
                if "id" in ref:
                    project = service.get("projects", ref["id"])
                else:
                    domain = service.resolve_domain(ref.get("domain"))
                    project = service.find("projects", ref["name"], domain["id"])
                if project is None or not project.get("enabled", True):
                    raise Unauthorized("unknown or disabled project")
            elif isinstance(scope, dict) and scope:
                raise Unauthorized("only project scope is supported")
            elif scope is None and user.get("default_project_id"):
                # Keystone scopes to the default project when the user holds a role there.
                project = service.get("projects", user["default_project_id"])
                if not project.get("enabled", True) or not service.roles_on(project["id"],
                                                                            user["id"]):
                    project = None
        except NotFound as exc:
            raise Unauthorized("unknown user or project") from exc
        roles = service.roles_on(project["id"], user["id"]) if project else []
        if project and not roles:
            raise Unauthorized(f"User {user['id']} has no access to project {project['id']}")
        token, payload = codec.issue(
            user_id=user["id"], user_name=user["name"], user_domain_id=user["domain_id"],
            project_id=project and project["id"], project_name=project and project["name"],
            project_domain_id=project and project["domain_id"],
            roles=tuple((r["id"], r["name"]) for r in roles), methods=tuple(methods),
            expires_at=expires_at, revision=revision or 0)
        return JSONResponse(token_body(payload, not _flag(request, "nocatalog")),
                            status_code=201, headers={"X-Subject-Token": token})

    def subject(request: Request) -> tuple[TokenPayload, TokenPayload]:
        who = caller(request)
        raw = request.headers.get("x-subject-token")
        try:
            target = verify(raw)
        except Unauthorized:
            raise NotFound(f"Could not find token: {raw}.") from None
        roles = {name for _, name in who.roles}
        if who.user_id != target.user_id and not roles & {"admin", "service"}:
            raise Forbidden("You are not authorized to perform the requested action: "
                            "identity:validate_token.")
        return who, target

    def validate_token(request: Request, body: None) -> Response:
        _, target = subject(request)
        return JSONResponse(token_body(target, not _flag(request, "nocatalog")),
                            headers={"X-Subject-Token": request.headers["x-subject-token"]})

    def revoke_token(request: Request, body: None) -> Response:
        _, target = subject(request)
        service.revoke_token(target.audit_id)
        return Response(status_code=204)

    def auth_projects(request: Request, body: None) -> Response:
        return listing(request, "projects", service.projects_of(caller(request).user_id))

    def auth_catalog(request: Request, body: None) -> Response:
        caller(request)
        return JSONResponse({"catalog": catalog(), "links": {"self": str(request.url)}})

    # Domains (only Default).

    def list_domains(request: Request, body: None) -> Response:
        caller(request)
        return listing(request, "domains", service.list_domains(request.query_params.get("name")))

    def show_domain(request: Request, body: None) -> Response:
        caller(request)
        return JSONResponse({"domain": link("domains", service.get_domain(
            request.path_params["domain_id"]))})

    # Projects, users and roles share one shape.

    def make_collection(kind: str) -> tuple[Callable, Callable]:
        single = kind[:-1]

        def collection(request: Request, body: dict | None) -> Response:
            who = admin(request, f"identity:{'create' if body is not None else 'list'}_{kind}")
            if body is None:
                return listing(request, kind, service.list(kind, **filters(
                    request, "name", "domain_id")))
            obj = member(body, single)
            fields = {k: obj[k] for k in _FIELDS[kind] if k in obj and k != "name"}
            name = obj.get("name")
            if not isinstance(name, str) or not name.strip():
                raise BadRequest("Invalid input for field 'name': a non-empty string is required.")
            if kind == "roles":
                if obj.get("domain_id"):
                    raise BadRequest("Domain-specific roles are not supported.")
                created = service.create_role(name, fields.get("description"))
            elif kind == "projects":
                if obj.get("is_domain"):
                    raise BadRequest("Projects acting as domains are not supported.")
                domain = obj.get("domain_id") or who.project_domain_id or DEFAULT_DOMAIN["id"]
                fields.pop("options", None)
                created = service.create_project(name, domain, **fields)
            else:
                domain = obj.get("domain_id") or who.project_domain_id or DEFAULT_DOMAIN["id"]
                created = service.create_user(name, fields.pop("password", None), domain, **fields)
            return JSONResponse({single: link(kind, created)}, status_code=201)

        def item(request: Request, body: dict | None) -> Response:
            obj_id = request.path_params["obj_id"]
            if request.method in ("GET", "HEAD"):
                who = caller(request)
                own = {"projects": who.project_id, "users": who.user_id}.get(kind)
                if obj_id != own:
                    admin(request, f"identity:get_{single}")
                return JSONResponse({single: link(kind, service.get(kind, obj_id))})
            if request.method == "DELETE":
                admin(request, f"identity:delete_{single}")
                service.delete(kind, obj_id)
                return Response(status_code=204)
            admin(request, f"identity:update_{single}")
            obj = member(body, single)
            current = service.get(kind, obj_id)
            if obj.get("domain_id", current.get("domain_id")) != current.get("domain_id"):
                raise BadRequest("Cannot change the domain of an existing object.")
            changes = {k: obj[k] for k in _FIELDS[kind] if k in obj}
            return JSONResponse({single: link(kind, service.update(kind, obj_id, changes))})

        return collection, item

    # Role assignments.

    def grant(request: Request, body: dict | None) -> Response:
        p = request.path_params
        if request.method == "GET":
            who = caller(request)
            if who.user_id != p["user_id"]:
                admin(request, "identity:list_grants")
            return listing(request, "roles", service.roles_on(p["project_id"], p["user_id"]))
        admin(request, "identity:create_grant")
        project_id, user_id, role_id = p["project_id"], p["user_id"], p.get("role_id")
        if request.method == "PUT":
            service.grant(project_id, user_id, role_id)
        elif request.method == "DELETE":
            service.revoke(project_id, user_id, role_id)
        elif not service.has_role(project_id, user_id, role_id):
            raise NotFound(f"Could not find role assignment with role: {role_id}, user or "
                           f"group: {user_id}, project, domain, or system: {project_id}.")
        return Response(status_code=204)

    def role_assignments(request: Request, body: None) -> Response:
        q = request.query_params
        who = caller(request)
        if q.get("user.id") != who.user_id:
            admin(request, "identity:list_role_assignments")
        names = _flag(request, "include_names")
        unsupported = any(k in q for k in ("group.id", "scope.domain.id", "scope.system"))
        triples = [] if unsupported else service.assignments(
            q.get("scope.project.id"), q.get("user.id"), q.get("role.id"))
        out = []
        for project_id, user_id, role_id in triples:
            entry = {"role": {"id": role_id}, "user": {"id": user_id},
                     "scope": {"project": {"id": project_id}},
                     "links": {"assignment": f"{v3}/projects/{project_id}/users/{user_id}"
                                             f"/roles/{role_id}"}}
            if names:
                try:
                    role = service.get("roles", role_id)
                    user = service.get("users", user_id)
                    project = service.get("projects", project_id)
                except NotFound:
                    continue
                entry["role"]["name"] = role["name"]
                entry["user"].update(name=user["name"], domain=domain_ref(user["domain_id"]))
                entry["scope"]["project"].update(name=project["name"],
                                                 domain=domain_ref(project["domain_id"]))
            out.append(entry)
        return JSONResponse({"role_assignments": out,
                             "links": {"self": str(request.url), "previous": None, "next": None}})

    def user_projects(request: Request, body: None) -> Response:
        user_id = request.path_params["user_id"]
        if caller(request).user_id != user_id:
            admin(request, "identity:list_user_projects")
        service.get("users", user_id)
        return listing(request, "projects", service.projects_of(user_id))

    def not_found(request: Request, body: None) -> Response:
        raise NotFound("The resource could not be found.")

    v3_routes: list[BaseRoute] = [
        Route("/", v3_root, methods=["GET"]),
        Route("/auth/tokens", endpoint(issue_token, is_async=True), methods=["POST"]),
        Route("/auth/tokens", endpoint(validate_token), methods=["GET"]),
        Route("/auth/tokens", endpoint(revoke_token), methods=["DELETE"]),
        Route("/auth/projects", endpoint(auth_projects), methods=["GET"]),
        Route("/auth/catalog", endpoint(auth_catalog), methods=["GET"]),
        Route("/domains", endpoint(list_domains), methods=["GET"]),
        Route("/domains/{domain_id}", endpoint(show_domain), methods=["GET"]),
        Route("/role_assignments", endpoint(role_assignments), methods=["GET"]),
        Route("/users/{user_id}/projects", endpoint(user_projects), methods=["GET"]),
        Route("/projects/{project_id}/users/{user_id}/roles", endpoint(grant), methods=["GET"]),
        Route("/projects/{project_id}/users/{user_id}/roles/{role_id}", endpoint(grant),
              methods=["PUT", "HEAD", "DELETE"]),
    ]
    for kind in ("projects", "users", "roles"):
        collection, item = make_collection(kind)
        v3_routes += [Route(f"/{kind}", endpoint(collection), methods=["GET", "POST"]),
                      Route(f"/{kind}/{{obj_id}}", endpoint(item),
                            methods=["GET", "PATCH", "DELETE"])]
    v3_routes.append(Route("/{path:path}", endpoint(not_found),
                           methods=["GET", "POST", "PUT", "PATCH", "DELETE"]))
    return [
        Route("/identity", versions, methods=["GET"]),
        Route("/identity/", versions, methods=["GET"]),
        Route("/identity/v3", v3_root, methods=["GET"]),
        Mount("/identity/v3", routes=v3_routes),
    ]
