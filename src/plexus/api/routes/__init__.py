"""Thin HTTP routes, one module per resource; the service layer does the work."""

from plexus.api.routes import (
    address_groups, agents, availability_zones, discovery, floatingips, ip_availability, lbaas,
    networks, pools, port_forwardings, ports, qos, quotas, rbac, routers, security_groups,
    subnets, trunks,
)

# Every route module; a new resource adds its module here.
ROUTE_MODULES = [discovery, networks, subnets, ports, security_groups, routers, floatingips,
                 agents, quotas, pools, rbac, ip_availability, address_groups,
                 availability_zones, port_forwardings, qos, trunks, lbaas]


def all_routes() -> list:
    """The Neutron API's routes."""
    return [route for module in ROUTE_MODULES for route in module.ROUTES]
