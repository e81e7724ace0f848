"""Routes of /v2.0/availability_zones (list only, as Neutron), and the extensions of
availability zones on networks and routers."""

from plexus.api.routes.common import crud_routes
from plexus.api.routes.discovery import register_extension

register_extension("availability_zone", "Availability Zone",
                   "The availability zone extension.")
register_extension("network_availability_zone", "Network Availability Zone",
                   "Availability zone support for network.")
register_extension("router_availability_zone", "Router Availability Zone",
                   "Availability zone support for router.")

ROUTES = [route for route in crud_routes("availability_zones")
          if route.path == "/v2.0/availability_zones" and "GET" in route.methods]
