"""Routes of /v2.0/networks."""

from plexus.api.routes.common import crud_routes

ROUTES = crud_routes("networks")
