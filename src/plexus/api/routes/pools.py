"""Routes of /v2.0/subnetpools (with the add_prefixes / remove_prefixes actions) and
/v2.0/address-scopes (no tags: address scopes are not standard-attribute resources),
and the extensions they implement."""

from plexus.api.routes.common import action_routes, crud_routes
from plexus.api.routes.discovery import register_extension

register_extension("subnet_allocation", "Subnet Allocation",
                   "Enables allocation of subnets from a subnet pool")
register_extension("default-subnetpools", "Default Subnetpools",
                   "Provides ability to mark and use a subnetpool as the default.")
register_extension("subnetpool-prefix-ops", "Subnet Pool Prefix Operations",
                   "Provides support for adjusting the prefix list of subnet pools")
register_extension("address-scope", "Address scope",
                   "Address scopes extension.")
register_extension("rbac-subnetpool", "Add subnetpool type to RBAC",
                   "Add subnetpool type to network RBAC")
register_extension("rbac-address-scope", "Add address_scope type to RBAC",
                   "Add address_scope type to RBAC")


ROUTES = crud_routes("subnetpools") + action_routes(
    "subnetpools", "change_prefixes", ("add_prefixes", "remove_prefixes")) + [
    route for route in crud_routes("address-scopes") if "/tags" not in route.path]
