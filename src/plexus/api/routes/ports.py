"""Routes of /v2.0/ports."""

from plexus.api.routes.common import crud_routes

ROUTES = crud_routes("ports")
