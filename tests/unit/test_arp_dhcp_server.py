"""The ARP responder answers for the DHCP server identifier where no port holds it (a
subnet without a router interface), with the MAC the agent's DHCP replies come from,
only on overlay networks; unicast DHCP to that MAC goes to the agent."""

from __future__ import annotations

from dataclasses import replace

from plexus.agent import dhcp as responder
from plexus.pipeline.compile import compile_view
from plexus.pipeline.stages.arp import compile_arp_responder
from plexus.pipeline.stages.dhcp import SERVER_MAC
from plexus.tools.evaluator import Pipeline
from tests.golden.reference import reference_view

VM = "fa:16:3e:b1:00:01"        # b1-vm1 (10.0.0.11, ofport of the reference view) on net-b1


def arp_request(view, port_id: str, target: str) -> dict:
    port = view.ports[port_id]
    ip = next(ip for _, ip in port.ips if ":" not in ip)
    return {"in_port": view.vif_ofports[port_id], "eth_src": port.mac,
            "eth_dst": "ff:ff:ff:ff:ff:ff", "eth_type": 0x0806, "arp_op": 1,
            "arp_sha": port.mac, "arp_spa": ip, "arp_tha": "00:00:00:00:00:00",
            "arp_tpa": target}


def server_answers(flows) -> dict[str, tuple[int, str]]:
    """cookie → (net key, address) of the DHCP server address answers."""
    return {f.cookie: (dict(f.match)["net"], dict(f.match)["arp_tpa"]) for f in flows
            if f.cookie.startswith("subnet:")}


def test_routerless_subnet_gateway_is_answered_with_the_dhcp_server_mac():
    view = reference_view()
    # net-b1 (10.0.0.0/24, gateway 10.0.0.1) has no router; net-a1's router holds .1
    assert server_answers(compile_arp_responder(view)) == {"subnet:sub-b1": (201, "10.0.0.1")}
    result = Pipeline(compile_view(view)).run(arp_request(view, "b1-vm1", "10.0.0.1"))
    assert [p for p, _ in result.outputs] == [view.vif_ofports["b1-vm1"]]
    reply = result.outputs[0][1]
    assert reply["arp_op"] == 2 and reply["arp_sha"] == SERVER_MAC == reply["eth_src"]
    assert reply["arp_spa"] == "10.0.0.1" and reply["eth_dst"] == VM
    # on net-a1 the router interface answers with its own MAC, not the server's
    routed = Pipeline(compile_view(view)).run(arp_request(view, "a1-vm1", "10.0.0.1"))
    assert routed.outputs[0][1]["arp_sha"] == view.ports["a1-router"].mac


def test_the_answer_is_the_address_and_mac_the_dhcp_replies_come_from():
    view = reference_view()
    from os_ken.lib.packet import dhcp, ethernet, ipv4, packet, udp
    port = view.ports["b1-vm1"]
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst="ff:ff:ff:ff:ff:ff", src=port.mac))
    pkt.add_protocol(ipv4.ipv4(src="0.0.0.0", dst="255.255.255.255", proto=17))
    pkt.add_protocol(udp.udp(src_port=68, dst_port=67))
    pkt.add_protocol(dhcp.dhcp(op=1, chaddr=port.mac, options=dhcp.options(
        [dhcp.option(53, bytes([responder.DISCOVER]))])))
    pkt.serialize()
    offer = packet.Packet(responder.respond(bytes(pkt.data), port, view))
    assert offer.get_protocol(ethernet.ethernet).src == SERVER_MAC
    assert offer.get_protocol(ipv4.ipv4).src == "10.0.0.1"


def test_no_answer_without_dhcp_or_where_a_port_holds_the_address():
    view = reference_view()
    off = {k: replace(s, enable_dhcp=False) if k == "sub-b1" else s
           for k, s in view.subnets.items()}
    assert server_answers(compile_arp_responder(replace(view, subnets=off))) == {}
    # a VM holding the gateway address: its own answer, not the server's
    b1 = replace(view.ports["b1-vm2"], ips=(("sub-b1", "10.0.0.1"),))
    held = replace(view, ports={**view.ports, "b1-vm2": b1})
    assert server_answers(compile_arp_responder(held)) == {}
    # a tenant's own router holding the gateway as an allowed-address-pair VIP (VRRP),
    # exactly or within a range: its holder answers, the server never does
    for pair in ("10.0.0.1", "10.0.0.0/29"):
        vip = replace(view.ports["b1-vm2"], allowed_pairs=((pair, ""),))
        vrrp = replace(view, ports={**view.ports, "b1-vm2": vip})
        assert server_answers(compile_arp_responder(vrrp)) == {}, pair


def test_without_a_gateway_the_first_unused_host_is_answered():
    view = reference_view()
    subnets = {**view.subnets, "sub-b1": replace(view.subnets["sub-b1"], gateway_ip=None)}
    flows = compile_arp_responder(replace(view, subnets=subnets))
    # .1 is free (no router, no port): the server identifier the responder uses too
    assert server_answers(flows) == {"subnet:sub-b1": (201, "10.0.0.1")}
    assert responder.server_ip(subnets["sub-b1"], view) == "10.0.0.1"


def test_provider_networks_are_never_answered_for():
    """Their gateway may be a physical router the model does not know."""
    view = reference_view()
    for kind in ({"network_type": "vlan", "physical_network": "physnet1",
                  "segmentation_id": 100},
                 {"network_type": "flat", "physical_network": "physnet1"},
                 {"external": True}):
        nets = {**view.networks, "net-b1": replace(view.networks["net-b1"], **kind)}
        assert server_answers(compile_arp_responder(replace(view, networks=nets))) == {}, kind


def test_unicast_dhcp_to_the_server_mac_goes_to_the_agent():
    view = reference_view()
    port = view.ports["b1-vm1"]
    packet = {"in_port": view.vif_ofports["b1-vm1"], "eth_src": port.mac,
              "eth_dst": SERVER_MAC, "eth_type": 0x0800, "ip_proto": 17,
              "ipv4_src": "10.0.0.11", "ipv4_dst": "10.0.0.1", "ip_ttl": 64,
              "udp_src": 68, "udp_dst": 67}
    result = Pipeline(compile_view(view)).run(packet)
    assert [u for u, _ in result.controller] == ["dhcp"] and not result.outputs
    # anything else to the server MAC goes nowhere (no port has it)
    other = Pipeline(compile_view(view)).run({**packet, "udp_src": 5000, "udp_dst": 53})
    assert other.dropped, other.explain()
