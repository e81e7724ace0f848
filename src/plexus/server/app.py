"""Assembling the server: store, services, identity, Neutron routes, southbound stream
(whose hub follows the store for the life of the app)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import Route

from plexus.api import errors
from plexus.api.http import JSON, error_response
from plexus.api.openapi import document
from plexus.api.routes import all_routes
from plexus.api.services import build_services
from plexus.config import Config
from plexus.server import southbound
from plexus.server.identity.auth import Authenticator
from plexus.server.identity.keys import check_identity_config
from plexus.server.identity.routes import identity_routes
from plexus.server.identity.service import IdentityService
from plexus.server.stream import Hub
from plexus.store import Store, open_store

LOG = logging.getLogger("plexus.server")


def build_app(config: Config, store: Store | None = None) -> Starlette:
    """The ASGI application of one stateless server (any number may share a store)."""
    if config.identity.mode == "builtin":
        check_identity_config(config)
    owned = store is None
    store = store or open_store(config.store.url, ca_file=config.store.ca_file,
                                cert_file=config.store.cert_file, key_file=config.store.key_file)
    services = build_services(store, config)
    notifier = None
    if config.nova.auth_url:
        from plexus.server.nova import NovaNotifier
        notifier = NovaNotifier(config.nova, services)
    hub = Hub(store)
    services.index = hub          # the API's secondary indexes (``Services.where``)
    identity = IdentityService(store, config.identity)
    if config.identity.mode == "builtin":
        try:
            identity.codec      # the signing keys: generated on first start; InvalidKeys if too short
        except Exception:
            if owned:
                store.close()
            raise
    if config.identity.mode in ("builtin", "none"):
        identity.seed(config.identity)
    authenticator = Authenticator(config.identity, identity)
    routes = all_routes() + southbound.ROUTES
    if config.identity.mode == "builtin":
        routes += identity_routes(identity, config.identity, config.server.url())
    spec = document([s.resource for s in services.by_collection.values()])

    async def openapi(request: Request) -> JSON:
        return JSON(spec)
    routes.append(Route("/openapi.json", openapi, methods=["GET"]))

    async def http_error(request: Request, exc: HTTPException):
        if exc.status_code == 404:
            return error_response(errors.ResourceNotFound("The resource could not be found."))
        if exc.status_code == 405:
            return error_response(errors.MethodNotAllowed(
                f"The method {request.method} is not allowed for this resource."))
        return error_response(errors.NeutronError(str(exc.detail), type_name="HTTPError"))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        hub.start(asyncio.get_running_loop())
        if notifier is not None:
            notifier.start()
        if config.identity.mode == "builtin":
            identity.start()    # revocation events and key rotations from every server
        yield
        if notifier is not None:
            notifier.stop()
        hub.stop()
        identity.stop()
        authenticator.close()
        store.close()                 # also ends the hub's wait on the store
        hub.join(timeout=5)

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error},
                    lifespan=lifespan)
    app.state.services = services
    app.state.hub = hub
    app.state.authenticator = authenticator
    app.state.identity = identity
    app.state.config = config
    app.state.nova = notifier
    return app
