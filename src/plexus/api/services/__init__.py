"""The service layer: validation, allocation, store writes and Neutron's semantics."""

from plexus.api.services.address_groups import AddressGroupService
from plexus.api.services.agents import AgentService
from plexus.api.services.availability_zones import AvailabilityZoneService
from plexus.api.services.base import Services
from plexus.api.services.floatingips import FloatingIPService
from plexus.api.services.ip_availability import IpAvailability
from plexus.api.services.lbaas import LbaasService
from plexus.api.services.networks import NetworkService
from plexus.api.services.pools import AddressScopeService, SubnetPoolService
from plexus.api.services.port_forwardings import PortForwardingService
from plexus.api.services.ports import PortService
from plexus.api.services.qos import QosPolicyService
from plexus.api.services.quotas import QuotaService
from plexus.api.services.rbac import RbacService
from plexus.api.services.routers import RouterService
from plexus.api.services.security_groups import (
    DefaultSecurityGroupRuleService, SecurityGroupRuleService, SecurityGroupService,
)
from plexus.api.services.subnets import SubnetService
from plexus.api.services.trunks import TrunkService
from plexus.api.services.vips import VipOwners

# Every resource service, in the order /v2.0 lists them. A new resource adds its class here.
SERVICE_CLASSES = [NetworkService, SubnetService, PortService, SecurityGroupService,
                   SecurityGroupRuleService, RouterService, FloatingIPService, AgentService,
                   SubnetPoolService, AddressScopeService, RbacService, AddressGroupService,
                   DefaultSecurityGroupRuleService, AvailabilityZoneService, QosPolicyService,
                   TrunkService]


def build_services(store, config) -> Services:
    """All resource services over one store, and the quotas and list limits that every
    transaction of theirs is checked against."""
    services = Services(store, config)
    for cls in SERVICE_CLASSES:
        cls(services)
    QuotaService(services)
    PortForwardingService(services)
    services.vip_owners = VipOwners(services)
    services.ip_availability = IpAvailability(services)
    services.lbaas = LbaasService(services)
    return services
