"""Routes of /v2.0/subnets."""

from plexus.api.routes.common import crud_routes

ROUTES = crud_routes("subnets")
