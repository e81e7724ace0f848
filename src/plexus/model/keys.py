"""Names shared by the server and the agents, defined here and nowhere else: the hidden
keys the server stores on objects, the device owners that give ports a meaning, the
southbound collections and the IP protocol names of security group rules."""

from __future__ import annotations

KEY = "plexus:key"                                  # datapath key of networks and ports
GATEWAY_CHASSIS = "plexus:gateway_chassis"          # a router's ordered gateway candidates
ADDRESS_SCOPE_KEY = "plexus:address_scope"          # a subnet's address scope (its pool's)
PORT_FORWARDINGS = "plexus:port_forwardings"        # a floating IP's port forwardings
# a trunk's subport: {"parent": parent port id, "vlan": its segmentation id}; a trunk's
# parent port: the trunk's id (its VIF then carries only untagged frames as the parent's)
SUBPORT_KEY = "plexus:subport"
TRUNK_KEY = "plexus:trunk"
SUBPORT_OWNER = "trunk:subport"

INTERFACE_OWNER = "network:router_interface"
INTERFACE_OWNERS = (INTERFACE_OWNER, "network:router_interface_distributed",
                    "network:ha_router_replicated_interface")
GATEWAY_OWNER = "network:router_gateway"
FLOATINGIP_OWNER = "network:floatingip"
DHCP_OWNER = "network:dhcp"
ROUTER_OWNERS = INTERFACE_OWNERS + (GATEWAY_OWNER,)
SERVICE_OWNERS = ROUTER_OWNERS + (FLOATINGIP_OWNER,)
EXTERNAL_OWNERS = (GATEWAY_OWNER, FLOATINGIP_OWNER)

# southbound collections (the store's model/<collection>/<id> keys)
NETWORKS, SUBNETS, PORTS = "networks", "subnets", "ports"
AGENTS, LIVENESS = "agents", "liveness"
GROUPS = "security-groups"
ADDRESS_GROUPS = "address-groups"
ROUTERS, FLOATINGIPS, SNAT_BLOCKS = "routers", "floatingips", "snat_blocks"
VIP_OWNERS = "vip_owners"       # the port that last announced a shared VIP (id net:ip)
QOS = "qos-policies"            # QoS policies with their rules
LOADBALANCERS = "loadbalancers"     # a load balancer's whole tree (api.services.lbaas)
COLLECTIONS = (NETWORKS, SUBNETS, PORTS, AGENTS, GROUPS, ROUTERS, FLOATINGIPS, SNAT_BLOCKS,
               LIVENESS, VIP_OWNERS, ADDRESS_GROUPS, QOS, LOADBALANCERS)
# a member's health as the chassis that checks it last reported it (ONLINE / ERROR),
# kept on the member inside its load balancer's tree
HEALTH_KEY = "plexus:health"

PROTOCOLS = {"ah": 51, "dccp": 33, "egp": 8, "esp": 50, "gre": 47, "hopopt": 0, "icmp": 1,
             "igmp": 2, "ip": 0, "ipip": 4, "ipv6-encap": 41, "ipv6-frag": 44,
             "ipv6-icmp": 58, "icmpv6": 58, "ipv6-nonxt": 59, "ipv6-opts": 60,
             "ipv6-route": 43, "ospf": 89, "pgm": 113, "rsvp": 46, "sctp": 132, "tcp": 6,
             "udp": 17, "udplite": 136, "vrrp": 112}


def protocol_number(name: str | None) -> int | None:
    """The IP protocol number of a stored protocol value (a name or a number)."""
    if name is None:
        return None
    return PROTOCOLS.get(name, None if not name.isdigit() else int(name))
