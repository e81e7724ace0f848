"""HTTP plumbing shared by the routes: authentication, JSON in and out, Neutron errors."""

from __future__ import annotations

import functools
import logging
from typing import Any, Awaitable, Callable

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from plexus.api import errors
from plexus.server.identity.auth import IdentityUnavailable
from plexus.server.identity.context import Unauthorized
from plexus.store import StoreError, Unavailable

LOG = logging.getLogger("plexus.api")


class JSON(Response):
    """A JSON response encoded with orjson."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        """Encode the body."""
        return orjson.dumps(content)


def error_response(exc: errors.NeutronError) -> Response:
    """The wire form of a Neutron error. A 413 closes the connection: the rest of the
    body it refused is never read."""
    headers = {"Retry-After": "1"} if exc.status == 503 else None
    if exc.status == 413:
        headers = {"Connection": "close"}
    return JSON(exc.body(), status_code=exc.status, headers=headers)


async def context(request: Request):
    """The caller's RequestContext (401 when the token is missing or invalid)."""
    auth = request.app.state.authenticator
    try:
        return await auth.authenticate_async(request.headers.get("x-auth-token"))
    except Unauthorized as exc:
        raise errors.Unauthorized(str(exc) or "Authentication required") from None
    except IdentityUnavailable as exc:
        raise errors.ServiceUnavailable(f"Identity service unavailable: {exc}") from None


DEFAULT_MAX_BODY = 1024 * 1024


def _max_body(request: Request) -> int:
    """The configured body limit of the app serving ``request``."""
    services = getattr(request.app.state, "services", None)
    config = getattr(services, "config", None)
    return config.limits.max_body_bytes if config is not None else DEFAULT_MAX_BODY


def _too_large(limit: int) -> errors.RequestEntityTooLarge:
    return errors.RequestEntityTooLarge(f"Request is too large: the body exceeds the limit of "
                                        f"{limit} bytes.")


async def read_body(request: Request) -> bytes:
    """The raw request body, refused with 413 as soon as it is known to exceed the limit:
    from Content-Length before reading anything, and while reading a chunked (or lying)
    body, so at most ``limit`` bytes are ever held."""
    limit = _max_body(request)
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise errors.BadRequest("Invalid Content-Length header",
                                    type_name="HTTPBadRequest") from None
        if size > limit:
            raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def json_body(request: Request) -> Any:
    """The parsed request body (400 when it is not JSON, 413 when it is too large)."""
    raw = await read_body(request)
    if not raw:
        raise errors.BadRequest("Request body is required")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise errors.BadRequest("Malformed request body", type_name="HTTPBadRequest") from None


def if_match(request: Request) -> int | None:
    """The revision an ``If-Match: revision_number=N`` header requires, if any."""
    header = request.headers.get("if-match")
    if not header:
        return None
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "revision_number":
            try:
                return int(value)
            except ValueError:
                break
    raise errors.BadRequest(f"Invalid If-Match header '{header}': expected "
                            f"revision_number=<int>")


def endpoint(fn: Callable[..., Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a handler: Neutron errors become their bodies; store outages a 503; anything
    unexpected is logged and answered with a Neutron-format 500."""
    @functools.wraps(fn)
    async def handler(request: Request) -> Response:
        try:
            return await fn(request)
        except errors.NeutronError as exc:
            return error_response(exc)
        except Unavailable as exc:
            return error_response(errors.ServiceUnavailable(f"The store is unavailable: {exc}"))
        except StoreError as exc:
            LOG.warning("store error on %s %s: %s", request.method, request.url.path, exc)
            return error_response(errors.ServiceUnavailable(f"Store error: {exc}"))
        except Exception:  # noqa: BLE001 - the last line of defence answers, and logs
            LOG.exception("internal error on %s %s", request.method, request.url.path)
            return error_response(errors.NeutronError("Request Failed: internal server error "
                                                      "while processing your request.",
                                                      type_name="HTTPInternalServerError"))
    return handler


async def call(fn: Callable, *args, **kw) -> Any:
    """Run blocking service code off the event loop."""
    return await run_in_threadpool(fn, *args, **kw)
