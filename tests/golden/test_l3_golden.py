"""Golden flows of every chassis of the L3 reference topology (tests/golden/l3_reference.py):
the routing, floating IP and SNAT compilers' specification, and what they add to
classify, L2 lookup and output. All stages, stage by stage; compared exactly; rewritten
only with PLEXUS_REGEN_GOLDEN=1 (then review the diff)."""

import os
from pathlib import Path

import pytest

from plexus.pipeline.compile import by_stage, compile_view
from plexus.pipeline.flows import dump
from plexus.model.keys import ADDRESS_SCOPE_KEY, PORT_FORWARDINGS
from tests.golden.l3_reference import CHASSIS, EXT, changed, ip, objects, view

GOLDEN = Path(__file__).parent / "l3"
REGEN = os.environ.get("PLEXUS_REGEN_GOLDEN") == "1"


def chassis_text(chassis: str) -> str:
    """Every stage's flows on one chassis, stage by stage."""
    stages = by_stage(compile_view(view(chassis)))
    return "".join(f"# {name}\n" + dump(flows) for name, flows in stages.items())


@pytest.mark.parametrize("chassis", CHASSIS)
def test_chassis_matches_golden(chassis):
    matches(chassis_text(chassis), GOLDEN / f"{chassis}.flows")


def scoped_objects() -> dict:
    """The reference objects with address scopes: sub-a and the external subnet in
    "red", sub-b in "blue"."""
    objs = objects()
    for subnet, scope in (("sub-a", "red"), ("sub-b", "blue"), ("sub-ext", "red")):
        objs = changed(objs, "subnets", subnet, **{ADDRESS_SCOPE_KEY: scope})
    return objs


@pytest.mark.parametrize("chassis", ["hv1", "gw1"])
def test_scoped_router_stages_match_golden(chassis):
    """The router stages with address scopes: l3_route's drops between scopes, l3_snat's
    way out without SNAT for red, l3_input's way back in."""
    stages = by_stage(compile_view(view(chassis, scoped_objects())))
    text = "".join(f"# {name}\n" + dump(stages[name])
                   for name in ("l3_input", "l3_route", "l3_snat"))
    matches(text, GOLDEN.parent / "scopes" / f"{chassis}.flows")


def matches(text: str, path: Path) -> None:
    """``text`` equals the golden at ``path`` (rewritten with PLEXUS_REGEN_GOLDEN=1)."""
    chassis = path.stem
    if REGEN:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with PLEXUS_REGEN_GOLDEN=1 and review it"
    assert text == path.read_text(), (
        f"{chassis} differs from {path.name}; if intended, rerun with PLEXUS_REGEN_GOLDEN=1 "
        "and review the diff")


def forwarded_objects() -> dict:
    """The reference objects with two floating IPs of r1 that forward ports (no port
    association): fip-pf forwards TCP 8080 and UDP 5353 to a-vm2 (hv1: its only chassis,
    so hv1 owns it); fip-multi forwards TCP 2201 to a-vm2 (hv1), TCP 2202 and the N-N
    range 3000-3003 -> 4000-4003 to b-vm1 (hv2), and SCTP (accepted, not forwarded) — on
    two chassis, so r1's active gateway gw1 owns it and steers by tunnel."""
    objs = objects()
    pf_ports = {"fip-pf": ("203.0.113.150", "e0:96"), "fip-multi": ("203.0.113.151", "e0:97")}
    forwardings = {
        "fip-pf": [("pf-web", "tcp", (8080, 8080), "a-vm2", (80, 80)),
                   ("pf-dns", "udp", (5353, 5353), "a-vm2", (53, 53))],
        "fip-multi": [("pf-ssh1", "tcp", (2201, 2201), "a-vm2", (22, 22)),
                      ("pf-ssh2", "tcp", (2202, 2202), "b-vm1", (22, 22)),
                      ("pf-range", "tcp", (3000, 3003), "b-vm1", (4000, 4003)),
                      ("pf-sctp", "sctp", (9000, 9000), "b-vm1", (9000, 9000))]}
    ports, fips = dict(objs["ports"]), dict(objs["floatingips"])
    for fid, (addr, suffix) in pf_ports.items():
        ports[f"{fid}-port"] = {
            "id": f"{fid}-port", "plexus:key": 3 + len(ports), "network_id": EXT,
            "mac_address": f"fa:16:3e:00:{suffix}", "binding:host_id": "",
            "fixed_ips": [{"subnet_id": "sub-ext", "ip_address": addr}],
            "device_owner": "network:floatingip", "device_id": fid,
            "port_security_enabled": True, "admin_state_up": True,
            "allowed_address_pairs": []}
        fips[fid] = {"id": fid, "floating_ip_address": addr, "floating_network_id": EXT,
                     "floating_port_id": f"{fid}-port", "port_id": None,
                     "fixed_ip_address": None, "router_id": "r1", "status": "DOWN",
                     PORT_FORWARDINGS: [
                         {"id": pid, "protocol": proto, "external": list(ext),
                          "internal_port_id": port, "internal_ip_address": ip(port),
                          "internal": list(internal), "description": ""}
                         for pid, proto, ext, port, internal in forwardings[fid]]}
    return {**objs, "ports": ports, "floatingips": fips}


@pytest.mark.parametrize("chassis", ["hv1", "hv2", "gw1", "gw2"])
def test_forwarding_stages_match_golden(chassis):
    """Port forwarding: the owner's ARP answer and its DNAT (or tunnel), the DNAT of what
    the owner steers to a chassis, the reverse SNAT where the port is plugged, the guard
    letting the floating IP out, and classify taking the gateway's tunnel."""
    stages = by_stage(compile_view(view(chassis, forwarded_objects())))
    text = "".join(f"# {name}\n" + dump(stages[name])
                   for name in ("classify", "l3_input", "l3_snat", "snat_guard"))
    matches(text, GOLDEN.parent / "forwarding" / f"{chassis}.flows")
