"""Routes of /v2.0/address-groups (with the add_addresses / remove_addresses actions;
no tags, as in Neutron), and the extensions they implement."""

from plexus.api.routes.common import action_routes, crud_routes
from plexus.api.routes.discovery import register_extension

register_extension("address-group", "Address group",
                   "Support address group")
register_extension("security-groups-remote-address-group",
                   "Remote address group id field for security group rules",
                   "Add new field of remote address group id in security group rules")

ROUTES = [route for route in crud_routes("address-groups") if "/tags" not in route.path] + \
    action_routes("address-groups", "change_addresses", ("add_addresses", "remove_addresses"))
