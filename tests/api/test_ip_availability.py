"""network-ip-availability through the real openstacksdk and CLI: pool sizes, addresses
held by ports, filters, admin only."""

from __future__ import annotations

from tests.api.helpers import error, raw


def test_counts_follow_ports(server, admin, demo, cli):
    net = demo.network.create_network(name="avail-net")
    try:
        v4 = demo.network.create_subnet(network_id=net.id, cidr="10.91.0.0/24", ip_version=4,
                                        allocation_pools=[{"start": "10.91.0.10",
                                                           "end": "10.91.0.29"}])
        demo.network.create_subnet(network_id=net.id, cidr="fd91::/64", ip_version=6)
        got = admin.network.get_network_ip_availability(net.id)
        assert (got.network_name, got.project_id) == ("avail-net", demo.current_project_id)
        by_subnet = {s["subnet_id"]: s for s in got.subnet_ip_availability}
        assert by_subnet[v4.id]["total_ips"] == 20 and by_subnet[v4.id]["used_ips"] == 0
        ports = [demo.network.create_port(network_id=net.id) for _ in range(3)]
        got = admin.network.get_network_ip_availability(net.id)
        by_subnet = {s["subnet_id"]: s for s in got.subnet_ip_availability}
        assert by_subnet[v4.id]["used_ips"] == 3
        assert got.used_ips == sum(s["used_ips"] for s in got.subnet_ip_availability)
        assert got.total_ips == sum(s["total_ips"] for s in got.subnet_ip_availability)
        demo.network.delete_port(ports[0])
        got = admin.network.get_network_ip_availability(net.id)
        assert {s["subnet_id"]: s for s in got.subnet_ip_availability}[v4.id]["used_ips"] == 2
        # filters: ip_version keeps the network with only its IPv4 subnet
        listed = [a for a in admin.network.network_ip_availabilities(ip_version=4)
                  if a.network_id == net.id]
        assert [s["subnet_id"] for s in listed[0].subnet_ip_availability] == [v4.id]
        assert [a.network_id for a in admin.network.network_ip_availabilities(
            network_name="avail-net")] == [net.id]
        error(raw(server, admin, "GET", "/v2.0/network-ip-availabilities?bogus=1"),
              400, "HTTPBadRequest")
        # admin only: a project member sees none and gets 404 for its own network
        assert list(demo.network.network_ip_availabilities()) == []
        assert raw(server, demo, "GET",
                   f"/v2.0/network-ip-availabilities/{net.id}").status_code == 404
        assert raw(server, admin, "GET",
                   "/v2.0/network-ip-availabilities/" + v4.id).status_code == 404
        shown = cli("ip", "availability", "show", net.id)
        assert shown["network_id"] == net.id and shown["used_ips"] == got.used_ips == 4
    finally:
        for p in demo.network.ports(network_id=net.id):
            demo.network.delete_port(p)
        demo.network.delete_network(net)
