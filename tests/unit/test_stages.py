"""Behaviour of the compiled pipeline, through the one evaluator, on the reference
topology (tests/golden/reference.py, seen from hv1)."""

import pytest

from plexus.pipeline.compile import compile_view
from plexus.tools.evaluator import Pipeline
from tests.golden.reference import PORTS, TUNNELS, VIF_OFPORTS, reference_view

PORT = {p.id: p for p in PORTS}
BROADCAST = "ff:ff:ff:ff:ff:ff"
HV2, HV3, HV4 = TUNNELS["hv2"], TUNNELS["hv3"], TUNNELS["hv4"]


@pytest.fixture(scope="module")
def pipeline():
    return Pipeline(compile_view(reference_view()))


def ip(src: str, dst: str, *, eth_src=None, eth_dst=None, in_port=None, **extra) -> dict:
    """An IPv4 packet from port ``src`` to port ``dst`` (ids), fields overridable."""
    s, d = PORT[src], PORT.get(dst)
    return {"in_port": VIF_OFPORTS.get(src) if in_port is None else in_port,
            "eth_src": eth_src or s.mac, "eth_dst": eth_dst or d.mac, "eth_type": 0x0800,
            "ipv4_src": s.addresses()[0], "ipv4_dst": d.addresses()[0] if d else "10.0.0.99",
            "ip_proto": 6, "tcp_src": 40000, "tcp_dst": 22, **extra}


def arp_request(src: str, target: str, **extra) -> dict:
    """A broadcast ARP request from port ``src`` for ``target``."""
    s = PORT[src]
    return {"in_port": VIF_OFPORTS[src], "eth_src": s.mac, "eth_dst": BROADCAST,
            "eth_type": 0x0806, "arp_op": 1, "arp_sha": s.mac, "arp_spa": s.addresses()[0],
            "arp_tha": "00:00:00:00:00:00", "arp_tpa": target, **extra}


def dhcp(src: str, **extra) -> dict:
    """A DHCPDISCOVER from port ``src``."""
    return {"in_port": VIF_OFPORTS[src], "eth_src": PORT[src].mac, "eth_dst": BROADCAST,
            "eth_type": 0x0800, "ipv4_src": "0.0.0.0", "ipv4_dst": "255.255.255.255",
            "ip_proto": 17, "udp_src": 68, "udp_dst": 67, **extra}


def from_tunnel(ofport: int, vni: int, packet: dict) -> dict:
    """The packet as it arrives from a tunnel port with a VNI."""
    return {**packet, "in_port": ofport, "tunnel_id": vni}


# unicast ------------------------------------------------------------------------------

def test_to_a_remote_port_leaves_by_the_tunnel_to_its_chassis_with_its_vni(pipeline):
    result = pipeline.run(ip("a1-vm1", "a1-vm3"))
    assert result.ports == [HV2], result.explain()
    sent = result.outputs[0][1]
    assert sent["tunnel_id"] == 101
    assert (sent["eth_src"], sent["eth_dst"]) == (PORT["a1-vm1"].mac, PORT["a1-vm3"].mac)
    assert pipeline.run(ip("a1-vm1", "a1-vm4")).ports == [HV3]
    b = pipeline.run(ip("b1-vm1", "b1-vm2"))
    assert b.ports == [HV2] and b.outputs[0][1]["tunnel_id"] == 201


def test_local_delivery(pipeline):
    result = pipeline.run(ip("a1-vm1", "a1-vm2"))
    assert result.ports == [VIF_OFPORTS["a1-vm2"]], result.explain()
    assert "tunnel_id" not in result.outputs[0][1]


def test_from_a_tunnel_to_a_local_port(pipeline):
    packet = from_tunnel(HV2, 101, ip("a1-vm3", "a1-vm1", in_port=HV2))
    assert pipeline.run(packet).ports == [VIF_OFPORTS["a1-vm1"]]


def test_no_transit_from_a_tunnel_to_another_tunnel(pipeline):
    packet = from_tunnel(HV2, 101, ip("a1-vm3", "a1-vm4", in_port=HV2))
    assert pipeline.run(packet).dropped


def test_unknown_unicast_is_dropped(pipeline):
    assert pipeline.run(ip("a1-vm1", "a1-vm2", eth_dst="fa:16:3e:99:99:99")).dropped


# port security ------------------------------------------------------------------------

def test_spoofed_source_ip_is_dropped(pipeline):
    assert pipeline.run(ip("a1-vm1", "a1-vm3", ipv4_src="10.0.0.13")).dropped


def test_spoofed_source_mac_is_dropped(pipeline):
    assert pipeline.run(ip("a1-vm1", "a1-vm3", eth_src=PORT["a1-vm2"].mac)).dropped
    assert pipeline.run(ip("a1-vm1", "a1-vm3", eth_src="fa:16:3e:66:66:66")).dropped


def test_spoofed_arp_is_dropped(pipeline):
    assert pipeline.run(arp_request("a1-vm1", "10.0.0.13", arp_spa="10.0.0.12")).dropped
    assert pipeline.run(arp_request("a1-vm1", "10.0.0.13",
                                    arp_sha=PORT["a1-vm2"].mac)).dropped


def test_ipv6_from_a_foreign_address_is_dropped(pipeline):
    packet = {"in_port": 1, "eth_src": PORT["a1-vm1"].mac, "eth_dst": PORT["a1-vm3"].mac,
              "eth_type": 0x86DD, "ipv6_src": "fd00:a1::12", "ipv6_dst": "fd00:a1::13"}
    assert pipeline.run(packet).dropped
    assert pipeline.run({**packet, "ipv6_src": "fd00:a1::11"}).ports == [HV2]


def test_allowed_address_pairs(pipeline):
    vip = pipeline.run(ip("a1-vm2", "a1-vm3", ipv4_src="10.0.0.100"))
    assert vip.ports == [HV2], vip.explain()
    pair_mac = "fa:16:3e:a1:0f:0f"
    assert pipeline.run(ip("a1-vm2", "a1-vm3", eth_src=pair_mac,
                           ipv4_src="10.0.0.130")).ports == [HV2]
    # the range is allowed only with its own MAC, and only inside the range
    assert pipeline.run(ip("a1-vm2", "a1-vm3", ipv4_src="10.0.0.130")).dropped
    assert pipeline.run(ip("a1-vm2", "a1-vm3", eth_src=pair_mac,
                           ipv4_src="10.0.0.150")).dropped
    # another port may not use them
    assert pipeline.run(ip("a1-vm1", "a1-vm3", ipv4_src="10.0.0.100")).dropped


def test_port_security_off_passes_spoofed_sources(pipeline):
    packet = ip("a2-vm1", "a2-vm2", eth_src="02:00:00:00:00:01", ipv4_src="192.0.2.9")
    result = pipeline.run(packet)
    assert result.ports == [HV3] and result.outputs[0][1]["tunnel_id"] == 102


# ARP responder ------------------------------------------------------------------------

def test_arp_for_a_remote_vm_is_answered_locally(pipeline):
    asker, target = PORT["a1-vm1"], PORT["a1-vm3"]
    result = pipeline.run(arp_request("a1-vm1", "10.0.0.13"))
    assert result.ports == [VIF_OFPORTS["a1-vm1"]], result.explain()
    reply = result.outputs[0][1]
    assert reply["eth_dst"] == asker.mac and reply["eth_src"] == target.mac
    assert reply["arp_op"] == 2
    assert (reply["arp_sha"], reply["arp_spa"]) == (target.mac, "10.0.0.13")
    assert (reply["arp_tha"], reply["arp_tpa"]) == (asker.mac, "10.0.0.11")


def test_arp_for_the_gateway_is_answered_with_the_router_port_mac(pipeline):
    reply = pipeline.run(arp_request("a1-vm1", "10.0.0.1")).outputs[0][1]
    assert reply["arp_sha"] == reply["eth_src"] == PORT["a1-router"].mac


def test_arp_answers_come_from_the_askers_network(pipeline):
    """Same CIDR in two projects: each asks and gets its own network's MAC."""
    a = pipeline.run(arp_request("a1-vm1", "10.0.0.12")).outputs[0][1]
    b = pipeline.run(arp_request("b1-vm1", "10.0.0.12")).outputs[0][1]
    assert a["arp_sha"] == PORT["a1-vm2"].mac and b["arp_sha"] == PORT["b1-vm2"].mac


def test_own_address_arp_is_not_answered_but_flooded(pipeline):
    gratuitous = arp_request("a1-vm1", "10.0.0.11")
    probe = arp_request("a1-vm1", "10.0.0.11", arp_spa="0.0.0.0")
    for packet in (gratuitous, probe):
        result = pipeline.run(packet)
        assert result.ports == [VIF_OFPORTS["a1-vm2"], HV2, HV3], result.explain()


def test_arp_for_an_allowed_pair_vip_is_flooded_for_its_holder_to_answer(pipeline):
    result = pipeline.run(arp_request("a1-vm1", "10.0.0.100"))
    assert result.ports == [VIF_OFPORTS["a1-vm2"], HV2, HV3]
    assert result.outputs[0][1]["arp_op"] == 1


# DHCP ---------------------------------------------------------------------------------

def test_dhcp_goes_to_the_agent_on_dhcp_enabled_subnets(pipeline):
    for port in ("a1-vm1", "b1-vm1"):
        result = pipeline.run(dhcp(port))
        assert [tag for tag, _ in result.controller] == ["dhcp"] and not result.outputs
        sent = result.controller[0][1]
        assert sent["in_port"] == VIF_OFPORTS[port] and sent["reg6"] == PORT[port].key


def test_dhcp_renewal_goes_to_the_agent(pipeline):
    renew = dhcp("a1-vm1", ipv4_src="10.0.0.11", ipv4_dst="10.0.0.2",
                 eth_dst="fa:16:3e:00:00:02")
    assert [tag for tag, _ in pipeline.run(renew).controller] == ["dhcp"]


def test_nothing_goes_to_the_agent_on_dhcp_disabled_subnets(pipeline):
    result = pipeline.run(dhcp("a2-vm1"))
    assert not result.controller
    assert result.ports == [HV3]        # an ordinary broadcast on net-a2


# flooding -----------------------------------------------------------------------------

def test_broadcast_from_a_vif_reaches_local_ports_and_sharing_chassis_only(pipeline):
    a = pipeline.run(arp_request("a1-vm1", "10.0.0.77"))
    assert a.ports == [VIF_OFPORTS["a1-vm2"], HV2, HV3], a.explain()
    assert [pkt["tunnel_id"] for _, pkt in a.outputs[1:]] == [101, 101]
    b = pipeline.run(ip("b1-vm1", "b1-vm2", eth_dst=BROADCAST))
    assert b.ports == [HV2]             # not hv3 (no net-b1 there), nor b1-down, b1-lost


def test_broadcast_from_a_tunnel_reaches_only_local_ports(pipeline):
    packet = from_tunnel(HV3, 101, ip("a1-vm4", "a1-vm1", in_port=HV3, eth_dst=BROADCAST))
    assert pipeline.run(packet).ports == [VIF_OFPORTS["a1-vm1"], VIF_OFPORTS["a1-vm2"]]


def test_unknown_vni_or_tunnel_is_dropped(pipeline):
    packet = ip("a1-vm3", "a1-vm1", in_port=HV2)
    assert pipeline.run(from_tunnel(HV2, 102, packet)).dropped      # net-a2: not on hv2
    assert pipeline.run(from_tunnel(HV2, 999, packet)).dropped
    assert pipeline.run(from_tunnel(HV4, 301, packet)).dropped      # stale tunnel
    assert pipeline.run({**packet, "in_port": 77}).dropped


# isolation ----------------------------------------------------------------------------

def test_two_networks_are_isolated(pipeline):
    assert pipeline.run(ip("a1-vm1", "a2-vm1")).dropped
    assert pipeline.run(ip("a1-vm1", "a2-vm2")).dropped
    assert pipeline.run(ip("a2-vm1", "a1-vm1")).dropped


def test_same_cidr_projects_are_isolated(pipeline):
    # b1-vm2 has the address a1-vm2 has in project a: only its MAC would reach it
    assert pipeline.run(ip("a1-vm1", "b1-vm2", ipv4_dst="10.0.0.12")).dropped
    assert pipeline.run(ip("b1-vm1", "a1-vm2")).dropped
    assert pipeline.run(ip("b1-vm1", "b1-vm2")).ports == [HV2]


def test_a_vif_bound_elsewhere_gets_nothing(pipeline):
    lost = VIF_OFPORTS["b1-lost"]
    assert pipeline.run(ip("b1-lost", "b1-vm1", in_port=lost)).dropped
    assert pipeline.run(dhcp("b1-lost")).dropped
    to_it = pipeline.run(ip("b1-vm1", "b1-lost"))
    assert to_it.ports == [HV2]         # toward where it is bound, never to ofport 5
    flood = from_tunnel(HV2, 201, ip("b1-vm2", "b1-vm1", in_port=HV2, eth_dst=BROADCAST))
    assert pipeline.run(flood).ports == [VIF_OFPORTS["b1-vm1"]]


def test_an_admin_down_port_sends_and_receives_nothing(pipeline):
    assert pipeline.run(ip("b1-down", "b1-vm1")).dropped
    assert pipeline.run(ip("b1-vm1", "b1-down")).dropped


def test_trace_names_the_object_behind_each_step(pipeline):
    text = pipeline.run(ip("a1-vm1", "a1-vm3")).explain()
    assert "[port:a1-vm1]" in text and "[port:a1-vm3]" in text
