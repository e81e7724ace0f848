"""IPv6 through the compiled pipeline (reference topology, seen from hv1): the ND
responder answers solicitations for known addresses in place, IPv6 port security
(fixed addresses, link-local, allowed pairs, ND spoofing, RAs from VMs), and delivery
across chassis."""

import pytest

from plexus.pipeline.compile import compile_view
from plexus.pipeline.stages.common import link_local
from plexus.tools.evaluator import Pipeline
from tests.golden.reference import PORTS, TUNNELS, VIF_OFPORTS, reference_view

PORT = {p.id: p for p in PORTS}
HV2 = TUNNELS["hv2"]
VM1 = PORT["a1-vm1"]
NO_MAC = "00:00:00:00:00:00"


@pytest.fixture(scope="module")
def pipeline():
    return Pipeline(compile_view(reference_view()))


def icmp6(src: str, kind: int, **fields) -> dict:
    """An ICMPv6 message of ``kind`` from port ``src`` (from its EUI-64 link-local)."""
    s = PORT[src]
    return {"in_port": VIF_OFPORTS[src], "eth_src": s.mac, "eth_dst": "33:33:00:00:00:01",
            "eth_type": 0x86DD, "ipv6_src": link_local(s.mac), "ipv6_dst": "ff02::1",
            "ip_proto": 58, "icmpv6_type": kind, "icmpv6_code": 0, **fields}


def solicit(src: str, target: str, **fields) -> dict:
    return icmp6(src, 135, **{"ipv6_nd_target": target, "ipv6_nd_sll": PORT[src].mac,
                              "eth_dst": "33:33:ff:00:00:01", **fields})


def test_a_solicitation_for_a_remote_vms_link_local_is_answered_here(pipeline):
    target = link_local(PORT["a1-vm3"].mac)             # a1-vm3 is on hv2
    result = pipeline.run(solicit("a1-vm1", target))
    assert result.ports == [VIF_OFPORTS["a1-vm1"]]      # back out of the in-port only
    na = result.outputs[0][1]
    assert na["icmpv6_type"] == 136 and na["ipv6_src"] == target
    assert na["eth_src"] == na["ipv6_nd_tll"] == PORT["a1-vm3"].mac
    assert na["eth_dst"] == VM1.mac and na["ipv6_dst"] == link_local(VM1.mac)
    assert na["nd_options_type"] == 2 and na["nd_reserved"] == 0x60000000


def test_a_router_port_answers_with_the_router_flag(pipeline):
    router = PORT["a1-router"]
    na = pipeline.run(solicit("a1-vm1", link_local(router.mac))).outputs[0][1]
    assert na["eth_src"] == router.mac and na["nd_reserved"] == 0xE0000000


def test_a_solicitation_for_a_fixed_ipv6_address_is_answered(pipeline):
    result = pipeline.run(solicit("a1-vm2", "fd00:a1::11",
                                  ipv6_src=link_local(PORT["a1-vm2"].mac)))
    assert result.outputs[0][1]["ipv6_nd_tll"] == VM1.mac


def test_duplicate_address_detection_is_not_answered_but_flooded(pipeline):
    result = pipeline.run(solicit("a1-vm1", "fd00:a1::11", ipv6_src="::", ipv6_nd_sll=NO_MAC))
    assert HV2 in result.ports and not any(p == VIF_OFPORTS["a1-vm1"] for p in result.ports)


def test_link_local_multicast_reaches_the_sharing_chassis(pipeline):
    assert HV2 in pipeline.run(icmp6("a1-vm1", 128)).ports      # ping6 ff02::1


def test_spoofed_solicitations_and_advertisements_drop(pipeline):
    other = PORT["a1-vm2"].mac
    assert pipeline.run(solicit("a1-vm1", "fd00:a1::99", ipv6_nd_sll=other)).dropped
    assert pipeline.run(solicit("a1-vm1", "fd00:a1::99", ipv6_src="fd00:a1::12")).dropped
    na = icmp6("a1-vm1", 136, ipv6_nd_target="fd00:a1::11", ipv6_nd_tll=VM1.mac)
    assert not pipeline.run(na).dropped
    assert pipeline.run({**na, "ipv6_nd_target": "fd00:a1::100"}).dropped   # not its own
    assert pipeline.run({**na, "ipv6_nd_tll": other}).dropped


def test_router_advertisements_from_a_vm_drop(pipeline):
    assert pipeline.run(icmp6("a1-vm1", 134)).dropped


def test_allowed_pair_ipv6_may_send_and_advertise(pipeline):
    vm2 = PORT["a1-vm2"]                                # pair fd00:a1::100 with its MAC
    packet = {"in_port": VIF_OFPORTS["a1-vm2"], "eth_src": vm2.mac, "eth_dst": VM1.mac,
              "eth_type": 0x86DD, "ipv6_src": "fd00:a1::100", "ipv6_dst": "fd00:a1::11",
              "ip_proto": 17, "udp_src": 1, "udp_dst": 2}
    assert pipeline.run(packet).ports == [VIF_OFPORTS["a1-vm1"]]
    na = icmp6("a1-vm2", 136, ipv6_nd_target="fd00:a1::100", ipv6_nd_tll=vm2.mac)
    assert not pipeline.run(na).dropped


def test_port_security_off_lets_a_router_advertisement_through(pipeline):
    off = [p for p in PORTS if not p.port_security and p.id in VIF_OFPORTS]
    if not off:
        pytest.skip("no local port without port security in the reference topology")
    assert not pipeline.run(icmp6(off[0].id, 134)).dropped
