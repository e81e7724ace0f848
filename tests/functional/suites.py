"""Which modules of the shipped functional suites run against Plexus (the resources
Plexus implements); the rest cover resources it does not offer."""

SDK = "openstack.tests.functional.network.v2"
OSC = "openstackclient.tests.functional.network.v2"

MODULES = [
    f"{SDK}.test_network",
    f"{SDK}.test_subnet",
    f"{SDK}.test_port",
    f"{SDK}.test_router",
    f"{SDK}.test_router_add_remove_interface",
    f"{SDK}.test_floating_ip",
    f"{SDK}.test_security_group",
    f"{SDK}.test_security_group_rule",
    f"{SDK}.test_extension",
    f"{SDK}.test_agent",
    f"{SDK}.test_subnet_pool",
    f"{SDK}.test_subnet_from_subnet_pool",
    f"{SDK}.test_address_scope",

    f"{SDK}.test_rbac_policy",
    f"{SDK}.test_network_ip_availability",
    f"{SDK}.test_address_group",
    f"{SDK}.test_default_security_group_rule",
    f"{SDK}.test_availability_zone",
    f"{SDK}.test_port_forwarding",
    f"{SDK}.test_qos_policy",
    f"{SDK}.test_qos_bandwidth_limit_rule",
    f"{SDK}.test_qos_dscp_marking_rule",
    f"{SDK}.test_qos_minimum_bandwidth_rule",
    f"{SDK}.test_qos_rule_type",
    f"{OSC}.test_network",
    f"{OSC}.test_subnet",
    f"{OSC}.test_port",
    f"{OSC}.test_router",
    f"{OSC}.test_floating_ip",
    f"{OSC}.test_security_group",
    f"{OSC}.test_security_group_rule",
    f"{OSC}.test_network_agent",
    f"{OSC}.test_subnet_pool",
    f"{OSC}.test_address_scope",

    f"{OSC}.test_network_rbac",
    f"{OSC}.test_ip_availability",
    f"{OSC}.test_address_group",
    f"{OSC}.test_default_security_group_rule",
    f"{OSC}.test_network_qos_policy",
    f"{OSC}.test_network_qos_rule",
    f"{OSC}.test_network_qos_rule_type",
]
