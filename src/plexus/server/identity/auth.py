"""Authenticating API requests: built-in signed tokens, an external Keystone, or none."""

from __future__ import annotations

import threading
import time
from datetime import datetime

import httpx
from starlette.concurrency import run_in_threadpool

from plexus.config import IdentityConfig
from plexus.server.identity.context import RequestContext, Unauthorized
from plexus.server.identity.service import IdentityService

CACHE_SECONDS = 60.0
_CACHE_LIMIT = 10_000
_ALL_ROLES = frozenset({"admin", "member", "reader"})


class IdentityUnavailable(Exception):
    """The external Keystone could not be reached or failed (HTTP 503 to the caller)."""


def parse_keystone_time(text: str) -> float:
    """Seconds since the epoch for a Keystone timestamp such as ``2026-11-26T08:00:00.000000Z``."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def context_from_token_body(token: dict) -> RequestContext:
    """The request context described by a Keystone v3 ``token`` body."""
    user, project = token["user"], token.get("project") or {}
    scope = project.get("domain") or token.get("domain") or user.get("domain") or {}
    domain = scope.get("id", "")
    return RequestContext(
        user_id=user["id"], user_name=user.get("name", ""),
        project_id=project.get("id", ""), project_name=project.get("name", ""),
        domain_id=domain, roles=frozenset(r["name"] for r in token.get("roles", [])))


class _KeystoneClient:
    """Validates tokens against an external Keystone with a service token, caching results."""

    def __init__(self, config: IdentityConfig, http: httpx.Client | None):
        if not (config.keystone_url and config.service_user and config.service_password
                and config.service_project):
            raise ValueError("keystone mode needs keystone_url and service_user/password/project")
        url = config.keystone_url.rstrip("/")
        self.tokens_url = (url if url.endswith("/v3") else url + "/v3") + "/auth/tokens"
        self.config = config
        self.http = http or httpx.Client(timeout=10.0)
        self._service_token: tuple[str, float] | None = None
        self._lock = threading.Lock()
        self.cache: dict[str, tuple[RequestContext, float]] = {}

    def cached(self, token: str) -> RequestContext | None:
        """A still-fresh cached context for ``token``, or None."""
        hit = self.cache.get(token)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        return None

    def _request(self, method: str, **kwargs) -> httpx.Response:
        try:
            response = self.http.request(method, self.tokens_url, **kwargs)
        except httpx.HTTPError as exc:
            raise IdentityUnavailable(f"Keystone at {self.tokens_url}: {exc}") from exc
        if response.status_code >= 500:
            raise IdentityUnavailable(f"Keystone answered {response.status_code}")
        return response

    def service_token(self, renew: bool = False) -> str:
        """A token for the service user, obtained (again) when missing or about to expire."""
        with self._lock:
            if not renew and self._service_token and self._service_token[1] > time.time() + 30:
                return self._service_token[0]
            c = self.config
            domain = {"name": c.service_domain}
            body = {"auth": {
                "identity": {"methods": ["password"], "password": {"user": {
                    "name": c.service_user, "password": c.service_password, "domain": domain}}},
                "scope": {"project": {"name": c.service_project, "domain": domain}}}}
            response = self._request("POST", json=body, params={"nocatalog": "1"})
            if response.status_code != 201:
                raise IdentityUnavailable(
                    f"service user {c.service_user} cannot authenticate ({response.status_code})")
            expires = parse_keystone_time(response.json()["token"]["expires_at"])
            self._service_token = (response.headers["X-Subject-Token"], expires)
            return self._service_token[0]

    def validate(self, token: str) -> RequestContext:
        """The context of a valid token; raises Unauthorized for an invalid one."""
        hit = self.cached(token)
        if hit is not None:
            return hit
        for renew in (False, True):
            headers = {"X-Auth-Token": self.service_token(renew), "X-Subject-Token": token}
            response = self._request("GET", headers=headers, params={"nocatalog": "1"})
            if response.status_code != 401:
                break
        if response.status_code in (401, 403, 404):
            raise Unauthorized("token rejected by Keystone")
        if response.status_code != 200:
            raise IdentityUnavailable(f"Keystone answered {response.status_code}")
        body = response.json()["token"]
        context = context_from_token_body(body)
        lifetime = parse_keystone_time(body["expires_at"]) - time.time()
        if lifetime > 0:
            if len(self.cache) >= _CACHE_LIMIT:
                now = time.monotonic()
                self.cache = {k: v for k, v in self.cache.items() if v[1] > now}
                if len(self.cache) >= _CACHE_LIMIT:
                    self.cache.clear()
            self.cache[token] = (context, time.monotonic() + min(lifetime, CACHE_SECONDS))
        return context


class Authenticator:
    """Turns the X-Auth-Token of a request into a RequestContext, per ``IdentityConfig.mode``."""

    def __init__(self, config: IdentityConfig, service: IdentityService | None = None,
                 http: httpx.Client | None = None):
        self.config = config
        self.mode = config.mode
        self.service = service
        if config.mode == "builtin" and service is None:
            raise ValueError("builtin mode needs the identity service (its keys and revocations)")
        self.keystone = _KeystoneClient(config, http) if config.mode == "keystone" else None
        self._noauth: RequestContext | None = None

    def authenticate(self, token: str | None) -> RequestContext:
        """The caller's context; raises Unauthorized (or IdentityUnavailable in keystone mode)."""
        if self.mode == "none":
            return self._noauth_context()
        if not token:
            raise Unauthorized("no token")
        if self.keystone is not None:
            return self.keystone.validate(token)
        return self.service.verify(token).context()

    async def authenticate_async(self, token: str | None) -> RequestContext:
        """Like ``authenticate``, without blocking the event loop on a Keystone round trip."""
        if self.keystone is not None and token:
            hit = self.keystone.cached(token)
            return hit if hit is not None else await run_in_threadpool(self.authenticate, token)
        return self.authenticate(token)

    def _noauth_context(self) -> RequestContext:
        if self._noauth is None:
            name = self.config.noauth_project
            project = self.service.find("projects", name) if self.service is not None else None
            self._noauth = RequestContext(
                user_id="noauth", user_name="noauth", project_id=project["id"] if project else name,
                project_name=name, domain_id="default", roles=_ALL_ROLES)
        return self._noauth

    def close(self) -> None:
        """Release the HTTP client of keystone mode."""
        if self.keystone is not None:
            self.keystone.http.close()
