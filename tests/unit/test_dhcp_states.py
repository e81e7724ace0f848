"""DHCP after a port's fixed IP changed (issue 12, item 7): RFC 2131 4.3.2 per client
state — SELECTING, INIT-REBOOT, RENEWING, REBINDING — for the old address gets DHCPNAK
and for the new one DHCPACK; RELEASE and DECLINE get no reply but are reported, logged
once and counted; and the pipeline delivers a renewal from the old source address
(unicast to the server's MAC, or broadcast) to the agent instead of dropping it, while
anything else from that address stays dropped."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from plexus.agent.dhcp import ACK, DECLINE, NAK, RELEASE, REQUEST, Responder, handle
from plexus.pipeline.compile import compile_view
from plexus.tools.evaluator import Pipeline
from tests.golden.reference import PORTS, reference_view
from tests.unit.test_dhcp import (
    BCAST, MAC, PORT, ROUTER_MAC, client_frame, ip, make_view, parse_reply,
)

OLD, NEW, SERVER = "10.0.0.5", "10.0.0.77", "10.0.0.1"
MOVED = replace(PORT, ips=(("s1", NEW),))          # the port after its fixed IP changed


def request(state: str, address: str) -> bytes:
    """A DHCPREQUEST for ``address`` as a client in ``state`` sends it (RFC 2131 4.3.2)."""
    if state == "selecting":
        return client_frame(REQUEST, options=[(50, ip(address)), (54, ip(SERVER))])
    if state == "init-reboot":
        return client_frame(REQUEST, options=[(50, ip(address))])
    if state == "renewing":     # unicast to the server, from the address held
        return client_frame(REQUEST, ciaddr=address, src=address, dst=SERVER,
                            eth_dst=ROUTER_MAC)
    assert state == "rebinding"  # broadcast, from the address held
    return client_frame(REQUEST, ciaddr=address, src=address)


STATES = ["selecting", "init-reboot", "renewing", "rebinding"]


@pytest.mark.parametrize("state", STATES)
def test_a_request_for_the_old_address_gets_a_nak(state):
    view = make_view(ports=(MOVED,))
    out = handle(request(state, OLD), MOVED, view)
    assert (out.kind, out.reply_kind, out.address, out.state) == (REQUEST, NAK, OLD, state)
    e, i, u, d, opts = parse_reply(out.reply)
    assert opts == {53: bytes([NAK]), 54: ip(SERVER)}
    # RFC 2131 4.1: a NAK is broadcast (the client may no longer use its address)
    assert (e.dst, i.src, i.dst, u.dst_port) == (MAC, SERVER, BCAST, 68)
    assert (d.yiaddr, d.ciaddr, d.siaddr) == ("0.0.0.0",) * 3


@pytest.mark.parametrize("state", STATES)
def test_a_request_for_the_new_address_gets_an_ack(state):
    view = make_view(ports=(MOVED,))
    out = handle(request(state, NEW), MOVED, view)
    assert (out.reply_kind, out.address, out.state) == (ACK, NEW, state)
    _, i, _, d, _ = parse_reply(out.reply)
    assert d.yiaddr == NEW
    assert i.dst == (NEW if state in ("renewing", "rebinding") else BCAST)


def test_release_and_decline_get_no_reply_but_are_reported():
    view = make_view()
    release = handle(client_frame(RELEASE, ciaddr=OLD, src=OLD, dst=SERVER), PORT, view)
    assert (release.kind, release.reply, release.address) == (RELEASE, None, OLD)
    decline = handle(client_frame(DECLINE, options=[(50, ip(OLD)), (54, ip(SERVER))]),
                     PORT, view)
    assert (decline.kind, decline.reply, decline.address) == (DECLINE, None, OLD)
    # from another MAC: not the port's, not reported
    other = handle(client_frame(DECLINE, mac="fa:16:3e:11:22:33",
                                options=[(50, ip(OLD))]), PORT, view)
    assert other.kind is None


def test_responder_logs_once_and_counts(caplog):
    responder, view = Responder(), make_view(ports=(MOVED,))
    with caplog.at_level(logging.INFO, logger="plexus.agent.dhcp"):
        for _ in range(3):
            assert responder(request("renewing", OLD), MOVED, view) is not None
            assert responder(client_frame(RELEASE, ciaddr=NEW, src=NEW), MOVED, view) is None
            assert responder(client_frame(DECLINE, options=[(50, ip(NEW))]), MOVED,
                             view) is None
        assert responder(request("rebinding", NEW), MOVED, view) is not None
    assert responder.counts == {"DHCPNAK": 3, "DHCPRELEASE": 3, "DHCPDECLINE": 3,
                                "DHCPACK": 1}
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert messages == [
        ("INFO", f"DHCPNAK to port p1 for {OLD} (renewing): the port holds {NEW}"),
        ("INFO", f"DHCPRELEASE of {NEW} from port p1: nothing to free, the address "
                 "stays the port's fixed IP"),
        ("WARNING", f"DHCPDECLINE of {NEW} from port p1: address conflict, another host "
                    "answers ARP for the port's address"),
    ]


def test_responder_memory_is_bounded():
    responder, view = Responder(), make_view(ports=(MOVED,))
    for n in range(Responder.REMEMBER + 10):
        responder(request("init-reboot", f"10.{n >> 8 & 255}.{n & 255}.9"), MOVED, view)
    assert len(responder._said) <= Responder.REMEMBER


# --- the pipeline: a renewal from the old address reaches the agent ----------------------

VM1 = next(p for p in PORTS if p.id == "a1-vm1")      # hv1, ofport 1, DHCP served
ROUTER = next(p for p in PORTS if p.id == "a1-router")


def dhcp_packet(src: str, dst: str, eth_dst: str, udp=(68, 67)) -> dict:
    return {"in_port": 1, "eth_src": VM1.mac, "eth_dst": eth_dst, "eth_type": 0x0800,
            "ip_proto": 17, "ipv4_src": src, "ipv4_dst": dst, "udp_src": udp[0],
            "udp_dst": udp[1]}


@pytest.mark.parametrize("packet", [
    dhcp_packet("10.0.0.99", "10.0.0.1", ROUTER.mac),          # renewing (unicast)
    dhcp_packet("10.0.0.99", BCAST, "ff:ff:ff:ff:ff:ff"),      # rebinding
    dhcp_packet("0.0.0.0", BCAST, "ff:ff:ff:ff:ff:ff"),        # discover / init-reboot
    dhcp_packet("10.0.0.11", "10.0.0.1", ROUTER.mac),          # renewing its own address
], ids=["renewing-old", "rebinding-old", "from-nowhere", "renewing-own"])
def test_dhcp_requests_from_any_source_go_to_the_agent_and_no_further(packet):
    result = Pipeline(compile_view(reference_view())).run(packet)
    assert [c for c, _ in result.controller] == ["dhcp"], result.explain()
    assert result.outputs == []


@pytest.mark.parametrize("packet", [
    dhcp_packet("10.0.0.99", "10.0.0.1", ROUTER.mac, udp=(68, 68)),
    dhcp_packet("10.0.0.99", "10.0.0.1", ROUTER.mac, udp=(67, 67)),
    {**dhcp_packet("10.0.0.99", "10.0.0.1", ROUTER.mac), "ip_proto": 6},
    {**dhcp_packet("10.0.0.99", "10.0.0.1", ROUTER.mac), "eth_src": "fa:16:3e:00:00:99"},
], ids=["not-to-67", "not-from-68", "tcp", "foreign-mac"])
def test_anything_else_from_a_foreign_address_is_still_dropped(packet):
    assert Pipeline(compile_view(reference_view())).run(packet).dropped


def test_a_port_dhcp_does_not_serve_keeps_the_narrow_allowance():
    view = reference_view()
    off = {k: replace(s, enable_dhcp=False) for k, s in view.subnets.items()}
    pipeline = Pipeline(compile_view(replace(view, subnets=off)))
    assert pipeline.run(dhcp_packet("10.0.0.99", BCAST, "ff:ff:ff:ff:ff:ff")).dropped
    assert not pipeline.run(dhcp_packet("0.0.0.0", BCAST, "ff:ff:ff:ff:ff:ff")).dropped
