"""Routes of /v2.0/rbac-policies (no tags, as in Neutron) and the extensions they give."""

from plexus.api.routes.common import crud_routes
from plexus.api.routes.discovery import register_extension

register_extension("rbac-policies", "RBAC Policies",
                   "Allows creation and modification of policies that control tenant access "
                   "to resources.")
register_extension("rbac-security-groups", "RBAC Security Groups",
                   "Add security_group type to network RBAC")

ROUTES = [route for route in crud_routes("rbac-policies") if "/tags" not in route.path]
