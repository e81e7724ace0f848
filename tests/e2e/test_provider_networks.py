"""Provider networks end to end (issue 12, item 6): VLAN and flat networks are bridged to
their physical network on every chassis (localnet-style). A 2-chassis lab (c1 a gateway
candidate); the lab's provider segment (physnet1) carries VLAN 100, on which the
upstream router ``ext`` has 198.51.100.1 (a VLAN subinterface), and untagged the flat
external network 203.0.113.0/24 (``ext``: 203.0.113.1).

- Two VMs on the VLAN network (physnet1, segment 100) on different chassis ping and TCP
  each other over the physical network: the segment carries their frames tagged 100,
  the underlay no VXLAN for them; a 1472-byte DF ping passes (MTU 1500, reported).
- A VM on the VLAN network reaches the VLAN-tagged upstream.
- A VM on the flat external network, which a router uses as its gateway network,
  reaches the network's gateway 203.0.113.1."""

from __future__ import annotations


import pytest

from tests.e2e.conftest import capture_during, public_network, wait_for
from tests.e2e.test_l3 import vxlan_during

pytestmark = pytest.mark.e2e

VLAN_UPSTREAM = "198.51.100.1"
FLAT_UPSTREAM = "203.0.113.1"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A 2-chassis lab, c1 gateway-capable, every agent registered and alive."""
    from tests.e2e.conftest import running_lab
    with running_lab(tmp_path_factory.mktemp("provider"), chassis=2, gateways=1,
                     vlan_upstream=True) as fixture:
        yield fixture


@pytest.fixture(scope="module")
def vlan_net(lab):
    """A VLAN provider network: physnet1, segment 100, the upstream's subnet."""
    api = lab.api.network
    net = api.create_network(name="vlan100", provider_network_type="vlan",
                             provider_physical_network="physnet1",
                             provider_segmentation_id=100)
    api.create_subnet(network_id=net.id, cidr="198.51.100.0/24", ip_version=4,
                      gateway_ip=VLAN_UPSTREAM, name="vlan100-v4",
                      allocation_pools=[{"start": "198.51.100.100",
                                         "end": "198.51.100.199"}])
    return api.get_network(net.id)


@pytest.fixture(scope="module")
def public(lab):
    """The external network: flat on physnet1, the lab's untagged provider segment."""
    return public_network(lab.api.network)


def on_segment(lab, chassis: str, action) -> str:
    """What a chassis' port on the provider segment carries (tcpdump -e: link-level
    headers, VLAN tags included) while ``action()`` runs."""
    return capture_during(lab, "pn", "icmp or (vlan and icmp)", action, ifname=chassis,
                          flags=("-e",))


def test_vlan_network_mtu_is_the_physical_network_s(lab, vlan_net):
    overlay = lab.api.network.create_network(name="overlay")
    assert vlan_net.mtu == 1500
    assert lab.api.network.get_network(overlay.id).mtu == 1450


def test_vms_on_a_vlan_network_on_two_chassis_talk_over_the_physical_network(lab, vlan_net):
    a = lab.vm("va", vlan_net, chassis="c1", static=True)
    b = lab.vm("vb", vlan_net, chassis="c2", static=True)
    assert wait_for(lambda: lab.vm("va").ping(b.ip, count=1, deadline=2), 30,
                    "va pings vb on the VLAN network")
    assert lab.vm("vb").ping(a.ip)
    # frames between them are on the segment, tagged 100; none on the underlay
    under = vxlan_during(lab, lambda: lab.vm("va").ping(b.ip, count=3, deadline=3))
    assert a.ip not in under and b.ip not in under, under
    seen = on_segment(lab, "c1", lambda: lab.vm("va").ping(b.ip, count=2, deadline=3))
    tagged = [line for line in seen.splitlines() if f"{a.ip} > {b.ip}" in line]
    assert tagged and all("vlan 100" in line for line in tagged), seen
    lab.vm("vb").tcp_server(5401)
    result = lab.vm("va").tcp_client(b.ip, 5401)
    assert result["ok"], result
    # the network's MTU (1500) holds end to end: 1472 bytes of ICMP + 28 = 1500, DF
    df = lab.vm("va").exec("ping", "-n", "-c", "2", "-W", "2", "-M", "do", "-s", "1472",
                           b.ip, check=False)
    assert df.returncode == 0, df.stdout + df.stderr


def test_vm_on_a_vlan_network_reaches_the_vlan_tagged_upstream(lab, vlan_net):
    c = lab.vm("vc", vlan_net, chassis="c2")          # DHCP: answered by c2's agent
    assert c.ip.startswith("198.51.100.")
    assert wait_for(lambda: lab.vm("vc").ping(VLAN_UPSTREAM, count=1, deadline=2), 30,
                    "vc pings the upstream on VLAN 100")
    seen = on_segment(lab, "c2", lambda: lab.vm("vc").ping(VLAN_UPSTREAM, count=2,
                                                           deadline=3))
    replies = [line for line in seen.splitlines() if f"{VLAN_UPSTREAM} > {c.ip}" in line]
    assert replies and all("vlan 100" in line for line in replies), seen
    df = lab.vm("vc").exec("ping", "-n", "-c", "2", "-W", "2", "-M", "do", "-s", "1472",
                           VLAN_UPSTREAM, check=False)
    assert df.returncode == 0, df.stdout + df.stderr
    # frames from the physical network go through the VM's ingress security groups:
    # the default group lets nothing new in from the upstream until a rule does
    ext = lab.node("ext")
    assert not ext.ping(c.ip, count=2, deadline=3)
    api = lab.api.network
    group = next(g for g in api.security_groups(name="default")
                 if g.project_id == lab.api.current_project_id)
    api.create_security_group_rule(security_group_id=group.id, direction="ingress",
                                   ethertype="IPv4", protocol="icmp",
                                   remote_ip_prefix=f"{VLAN_UPSTREAM}/32")
    assert wait_for(lambda: ext.ping(c.ip, count=1, deadline=2), 20,
                    "the upstream pings vc once a rule lets it in")


def test_vm_on_the_flat_external_network_reaches_its_gateway(lab, public):
    # a router uses the network as its gateway network: both coexist on the chassis
    router = lab.api.network.create_router(
        name="pub-router", external_gateway_info={"network_id": public.id})
    assert router.external_gateway_info
    d = lab.vm("pd", public, chassis="c1", static=True)
    e = lab.vm("pe", public, chassis="c2", static=True)
    assert wait_for(lambda: lab.vm("pd").ping(FLAT_UPSTREAM, count=1, deadline=2), 30,
                    "a VM on the flat external network pings its gateway")
    assert wait_for(lambda: lab.vm("pe").ping(FLAT_UPSTREAM, count=1, deadline=2), 30,
                    "(the other chassis too)")
    assert lab.vm("pd").ping(e.ip)
    seen = on_segment(lab, "c2", lambda: lab.vm("pe").ping(FLAT_UPSTREAM, count=2,
                                                           deadline=3))
    assert f"{e.ip} > {FLAT_UPSTREAM}" in seen and "vlan" not in seen, seen
    # the router's gateway still answers on the same network (active gateway: c1)
    gateway = next(ip["ip_address"] for ip in
                   lab.api.network.get_router(router.id).external_gateway_info[
                       "external_fixed_ips"])
    assert wait_for(lambda: lab.node("ext").ping(gateway, count=1, deadline=2), 30,
                    "the upstream pings the router's gateway address")
    assert d.ip


def test_routed_onto_the_vlan_network_with_the_chassis_own_mac(lab, vlan_net):
    """A router with interfaces on a VXLAN network and on the VLAN network routes on the
    chassis where the packet enters it; onto the VLAN network the frame leaves by the
    physical network with the chassis' own MAC, never the router port's (which would
    appear from every chassis on the physical switch)."""
    api = lab.api.network
    inner = lab.network("routed-inner", "10.64.1.0/24")
    router = api.create_router(name="vlan-router")
    api.add_interface_to_router(router, subnet_id=api.get_network(inner.id).subnet_ids[0])
    port = api.create_port(network_id=vlan_net.id, fixed_ips=[
        {"subnet_id": vlan_net.subnet_ids[0], "ip_address": "198.51.100.254"}])
    api.add_interface_to_router(router, port_id=port.id)
    router_mac = api.get_port(port.id).mac_address
    f = lab.vm("rf", inner, chassis="c1", static=True)
    g = lab.vm("rg", vlan_net, chassis="c2", static=True)
    lab.vm("rg").exec("ip", "route", "add", "10.64.1.0/24", "via", "198.51.100.254")
    assert wait_for(lambda: lab.vm("rf").ping(g.ip, count=1, deadline=2), 30,
                    "rf (VXLAN, c1) pings rg (VLAN, c2) through the router")
    seen = on_segment(lab, "c1", lambda: lab.vm("rf").ping(g.ip, count=2, deadline=3))
    routed = [line for line in seen.splitlines() if f"{f.ip} > {g.ip}" in line]
    assert routed and all("vlan 100" in line for line in routed), seen
    assert router_mac not in seen, seen
    ttl = lab.vm("rf").exec("ping", "-n", "-c", "1", "-W", "2", g.ip, check=False).stdout
    assert "ttl=63" in ttl, ttl
    lab.vm("rg").tcp_server(5402)
    result = lab.vm("rf").tcp_client(g.ip, 5402)
    assert result["ok"], result


def test_a_port_no_chassis_can_bridge_is_reported_not_programmable(lab):
    """physnet2 (flat) is known to the server but mapped on no chassis: a VM's port there
    gets status ERROR and the agent says why, instead of silently going nowhere."""
    api = lab.api.network
    net = api.create_network(name="unmapped", provider_network_type="flat",
                             provider_physical_network="physnet2")
    api.create_subnet(network_id=net.id, cidr="10.65.1.0/24", ip_version=4,
                      is_dhcp_enabled=False, name="unmapped-v4")
    vm = lab.vm("un", net, chassis="c2", static=True)
    assert wait_for(lambda: api.get_port(vm.port_id).status == "ERROR", 20,
                    "the port reported ERROR by c2")
    log = (lab.lab.dir / "c2" / "agent.log").read_text()
    assert (f"port {vm.port_id} on network {net.id} (physical network 'physnet2'): this "
            f"chassis has no bridge mapping for 'physnet2'") in log, log[-2000:]
