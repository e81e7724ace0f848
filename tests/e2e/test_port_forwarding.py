"""Floating IP port forwarding end to end: a 3-chassis lab (c1 and c2 gateway-capable)
whose internet host reaches, through forwarded ports of a floating IP, a TCP server and
a UDP echo in a VM on c3 (NATed on c3, the VM's own chassis: the floating IP answers
there); ports that are not forwarded reach nothing; a deleted forwarding stops at once
while the others go on; a forwarding to a VM on another chassis (c1) moves the floating
IP to the router's active gateway, which steers each forwarding to its VM's chassis."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import public_network, running_lab, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A 3-chassis lab, c1 and c2 gateway-capable, every agent registered and alive."""
    with running_lab(tmp_path_factory.mktemp("portfwd"), chassis=3, gateways=2) as fixture:
        yield fixture


def test_forwarded_ports_reach_the_vm_and_nothing_else(lab):
    api = lab.api.network
    public = public_network(api)
    group = next(g for g in api.security_groups(name="default")
                 if g.project_id == lab.api.current_project_id)
    for proto in ("tcp", "udp"):
        api.create_security_group_rule(security_group_id=group.id, direction="ingress",
                                       ethertype="IPv4", protocol=proto,
                                       remote_ip_prefix="0.0.0.0/0")
    net = api.get_network(lab.network("pf-net", "10.64.1.0/24").id)
    router = api.create_router(name="pf-router",
                               external_gateway_info={"network_id": public.id})
    api.add_interface_to_router(router, subnet_id=net.subnet_ids[0])
    vm = lab.vm("pf-a", net, chassis="c3", static=True)
    for port in (5401, 5403):
        lab.vm("pf-a").tcp_server(port)
    lab.vm("pf-a").udp_server(5402)
    fip = api.create_ip(floating_network_id=public.id)
    address = fip.floating_ip_address
    tcp = api.create_floating_ip_port_forwarding(
        fip, internal_port_id=vm.port_id, internal_ip_address=vm.ip, internal_port=5401,
        external_port=8022, protocol="tcp")
    api.create_floating_ip_port_forwarding(
        fip, internal_port_id=vm.port_id, internal_ip_address=vm.ip, internal_port=5402,
        external_port=8053, protocol="udp")
    inet = lab.node("inet")
    assert wait_for(lambda: inet.tcp_client(address, 8022, size=1 << 12, timeout=2)["ok"],
                    30, "inet reaches the VM's TCP server through FIP:8022")
    assert inet.tcp_client(address, 8022, size=1 << 20)["ok"]
    assert inet.udp_client(address, 8053), "UDP echo through FIP:8053"
    assert wait_for(lambda: api.get_ip(fip.id).status == "ACTIVE", 10,
                    "the floating IP reported ACTIVE by c3, its owner")
    # not forwarded: the VM's other server, the internal port itself, another port
    for port in (5403, 5401, 8023):
        assert not inet.tcp_client(address, port, size=1 << 10, timeout=2)["ok"], port
    assert not inet.udp_client(address, 8054, timeout=2)
    # the floating IP answers (ARP) on c3: its agent announced it
    log = (lab.lab.dir / "c3" / "agent.log").read_text()
    assert f"announcing {address}" in log
    # deleting a forwarding stops it; the other goes on
    api.delete_floating_ip_port_forwarding(fip, tcp)
    assert wait_for(lambda: not inet.tcp_client(address, 8022, size=1 << 10,
                                                timeout=2)["ok"],
                    20, "FIP:8022 no longer reaches the VM")
    assert inet.udp_client(address, 8053)

    # a forwarding to a VM on c1: the floating IP moves to the active gateway (c1 or c2),
    # which steers each forwarding, stateless, to its VM's chassis
    other = lab.vm("pf-b", net, chassis="c1", static=True)
    lab.vm("pf-b").tcp_server(5404)
    api.create_floating_ip_port_forwarding(
        fip, internal_port_id=other.port_id, internal_ip_address=other.ip,
        internal_port=5404, external_port=8024, protocol="tcp")
    assert wait_for(lambda: inet.tcp_client(address, 8024, size=1 << 12, timeout=2)["ok"],
                    30, "inet reaches pf-b on c1 through FIP:8024")
    assert wait_for(lambda: inet.udp_client(address, 8053, timeout=2), 20,
                    "pf-a on c3 still answers through FIP:8053")
    assert inet.tcp_client(address, 8024, size=1 << 20)["ok"]
    assert not inet.tcp_client(address, 8022, size=1 << 10, timeout=2)["ok"]
    announced = [c for c in ("c1", "c2")
                 if f"announcing {address}" in (lab.lab.dir / c / "agent.log").read_text()]
    assert len(announced) == 1, announced          # the active gateway, not both
    assert wait_for(lambda: api.get_ip(fip.id).status == "ACTIVE", 10,
                    "the floating IP reported ACTIVE by its new owner")
