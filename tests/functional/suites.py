"""Which modules of the shipped functional suites run against Plexus (the resources
Plexus implements); the rest cover resources it does not offer."""

SDK = "openstack.tests.functional.network.v2"
OSC = "openstackclient.tests.functional.network.v2"

MODULES = [
    f"{SDK}.test_network",
    f"{SDK}.test_subnet",
    f"{SDK}.test_port",
    f"{SDK}.test_extension",
    f"{OSC}.test_network",
    f"{OSC}.test_subnet",
    f"{OSC}.test_port",
]
