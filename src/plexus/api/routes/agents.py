"""Routes of /v2.0/agents (chassis as Neutron agents; admin only, no create)."""

from plexus.api.routes.common import crud_routes

ROUTES = [r for r in crud_routes("agents") if "POST" not in (r.methods or ())
          and "/tags" not in r.path]
