"""Routes of /v2.0/ports, and the port extensions they implement."""

from plexus.api.routes.common import crud_routes
from plexus.api.routes.discovery import register_extension

register_extension("ip-substring-filtering", "IP address substring filtering",
                   "Provides IP address substring filtering when listing ports")
register_extension("port-mac-address-regenerate", "Neutron Port MAC address regenerate",
                   "Network port MAC address regenerate")
register_extension("extra_dhcp_opt", "Neutron Extra DHCP options",
                   "Extra options configuration for DHCP. For example PXE boot options to "
                   "DHCP clients can be specified (e.g. tftp-server, server-ip-address, "
                   "bootfile-name)")
register_extension("dns-integration", "DNS Integration", "Provides integration with DNS.")
register_extension("dns-domain-ports", "dns_domain for ports",
                   "Allows the DNS domain to be specified for a network port.")
register_extension("tag-ports-during-bulk-creation", "Tag Ports During Bulk Creation",
                   "Allow to tag ports during bulk creation")

ROUTES = crud_routes("ports")
