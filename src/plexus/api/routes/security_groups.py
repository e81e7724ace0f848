"""Routes of /v2.0/security-groups and /v2.0/security-group-rules (rules have no update
and no tags, as in Neutron), and the extensions they implement."""

from plexus.api.routes.common import crud_routes
from plexus.api.routes.discovery import register_extension

register_extension("security-group", "security-group", "The security groups extension.")
register_extension("stateful-security-group", "Stateful security group",
                   "Indicates if the security group is stateful or not")
register_extension("security-groups-normalized-cidr",
                   "Normalized CIDR field for security group rules",
                   "Add new field with normalized remote_ip_prefix cidr in SG rule")
register_extension("security-groups-rules-belongs-to-default-sg",
                   "Security group rule belongs to the project's default security group",
                   "Flag to determine if the security group rule belongs to the project's "
                   "default security group")

register_extension("security-groups-default-rules", "Default rules for security groups",
                   "Configure set of security group rules used as default rules for every "
                   "new security group")

ROUTES = crud_routes("security-groups") + [
    route for collection in ("security-group-rules", "default-security-group-rules")
    for route in crud_routes(collection)
    if "/tags" not in route.path and "PUT" not in route.methods]
