"""``plexus status`` and ``plexus topology`` (the real command, as a process) against a
real server: what chassis report shows, the picture is valid SVG naming the demo's
objects, and neither works for a non-admin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

from plexus.lab import demo
from tests.api.helpers import raw, register_chassis

PLEXUS = str(Path(sys.executable).with_name("plexus"))


def plexus(server, *args, cloud="devstack-admin"):
    env = dict(os.environ, OS_CLIENT_CONFIG_FILE=str(server.clouds))
    env.pop("PLEXUS_LAB_NAME", None)
    return subprocess.run([PLEXUS, *args, "--os-cloud", cloud], env=env, capture_output=True,
                          text=True, timeout=120)


def test_status_shows_chassis_health_version_and_lag(server, admin):
    name = f"cli-{uuid.uuid4().hex[:6]}"
    lease = register_chassis(server, admin, name)
    rev = server.app.state.services.store.revision()
    assert raw(server, admin, "PUT", f"/southbound/v1/chassis/{name}/heartbeat",
               {"lease": lease, "revision": rev, "version": "1.2.3"}).status_code == 200
    proc = plexus(server, "status", "--json")
    body = json.loads(proc.stdout)
    mine = [c for c in body["chassis"] if c["chassis"] == name][0]
    assert mine["alive"] and mine["version"] == "1.2.3" and mine["applied_revision"] == rev
    assert mine["lag"] == max(body["store"]["model_revision"] - rev, 0)
    table = plexus(server, "status")
    assert name in table.stdout and "1.2.3" in table.stdout, table.stdout + table.stderr
    # a dead chassis: listed as such, and the command says so with its exit status
    raw(server, admin, "DELETE", f"/southbound/v1/chassis/{name}?lease={lease}")
    proc = plexus(server, "status", "--json")
    assert proc.returncode == 1
    assert [c["alive"] for c in json.loads(proc.stdout)["chassis"]
            if c["chassis"] == name] == [False]
    denied = plexus(server, "status", cloud="devstack")
    assert denied.returncode == 1 and "403" in denied.stdout
    admin.network.delete_agent(mine["id"])


def test_topology_is_an_svg_naming_the_demo_objects(server, admin, tmp_path):
    made = []
    names = {}
    for name, project, cidr in demo.NETWORKS:
        owner = admin.identity.find_project(project, ignore_missing=False).id
        net = admin.network.create_network(name=name, project_id=owner)
        admin.network.create_subnet(network_id=net.id, cidr=cidr, ip_version=4,
                                    project_id=owner)
        made.append(net)
        names[name] = net
    router = admin.network.create_router(name=demo.ROUTER[0])
    for network in demo.ROUTER[2]:
        admin.network.add_interface_to_router(router, subnet_id=admin.network.get_network(
            names[network]).subnet_ids[0])
    vm_ports = [admin.network.create_port(network_id=names[net].id, name=f"{vm}-port",
                                          binding_host_id=chassis)
                for vm, net, chassis in demo.VMS]
    host = f"topo-{uuid.uuid4().hex[:6]}"
    lease = register_chassis(server, admin, host)
    bound = admin.network.create_port(network_id=names["demo-net"].id, name="bound-port",
                                      binding_host_id=host)
    out = tmp_path / "topo.svg"
    proc = plexus(server, "topology", "-o", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert str(out) in proc.stdout.replace("\n", "")
    root = ET.parse(out).getroot()                    # well-formed XML
    assert root.tag.endswith("svg")
    text = " ".join(t.text or "" for t in root.iter() if t.tag.endswith("text"))
    for name, _, cidr in demo.NETWORKS:
        assert name in text and cidr in text
    assert demo.ROUTER[0] in text
    for vm, _, _ in demo.VMS:
        assert f"{vm}-port" in text
    assert host in text and "alive" in text
    # the edges join what they should: network–port, router–network, port–chassis
    edges = {t.text for g in root.iter() if g.get("class") == "edge"
             for t in g if t.tag.endswith("title")}
    for p in vm_ports + [bound]:
        assert f"network_{p.network_id}--port_{p.id}" in edges
    for network in demo.ROUTER[2]:
        assert f"router_{router.id}--network_{names[network].id}" in edges
    assert f"port_{bound.id}--chassis_{host}" in edges
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert out.with_suffix(".dot").read_text().startswith("graph plexus {")
    for p in vm_ports + [bound]:
        admin.network.delete_port(p)
    raw(server, admin, "DELETE", f"/southbound/v1/chassis/{host}?lease={lease}")
    admin.network.delete_agent(next(a for a in admin.network.agents(host=host)))
    for network in demo.ROUTER[2]:
        admin.network.remove_interface_from_router(router, subnet_id=admin.network.get_network(
            names[network]).subnet_ids[0])
    admin.network.delete_router(router)
    for net in made:
        admin.network.delete_network(net)
