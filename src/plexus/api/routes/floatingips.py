"""Routes of /v2.0/floatingips."""

from plexus.api.routes.common import crud_routes
from plexus.api.routes.discovery import register_extension

register_extension("fip-port-details", "Floating IP Port Details Extension",
                   "Add port_details attribute to Floating IP resource")

ROUTES = crud_routes("floatingips")
