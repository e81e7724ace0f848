"""``plexus trace`` and ``plexus verify``, the real commands against a real server: the
model comes from the southbound snapshot, with the credentials of clouds.yaml (admin);
a member's credentials are refused (exit status 2, nothing traced)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.api.helpers import register_chassis

PLEXUS = str(Path(sys.executable).with_name("plexus"))


def plexus(server, *args: str, cloud: str = "devstack-admin") -> subprocess.CompletedProcess:
    env = dict(os.environ, OS_CLIENT_CONFIG_FILE=str(server.clouds))
    return subprocess.run([PLEXUS, *args, "--os-cloud", cloud], env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def topology(server, admin, demo, alt):
    """Two chassis; project demo: two ports on one network (one per chassis) and a third
    on a second network; project alt_demo: a port on the same CIDR, no router."""
    for i, name in enumerate(("trace-hv1", "trace-hv2")):
        register_chassis(server, admin, name, ttl=300.0, tunnel_ip=f"198.18.7.{i + 1}")
    made = []
    ports = {}
    for conn, net_name, cidr, names in (
            (demo, "trace-net", "10.77.0.0/24", [("trace-a", "trace-hv1"),
                                                  ("trace-b", "trace-hv2")]),
            (alt, "trace-alt", "10.77.0.0/24", [("trace-x", "trace-hv2")])):
        net = conn.network.create_network(name=net_name)
        made.append(net)
        conn.network.create_subnet(network_id=net.id, cidr=cidr, ip_version=4)
        for pname, host in names:
            port = conn.network.create_port(network_id=net.id, name=pname)
            admin.network.update_port(port, binding_host_id=host)
            ports[pname] = port
    yield ports
    for port in ports.values():
        admin.network.delete_port(port)
    for net in made:
        admin.network.delete_network(net)


def test_trace_delivers_across_chassis_and_names_objects(server, topology):
    proc = plexus(server, "trace", "trace-a", "--icmp", "--to", "trace-b", "--json")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    report = json.loads(proc.stdout)
    assert report["delivered"] == [topology["trace-b"].id]
    assert [(h["chassis"], h["kind"]) for h in report["hops"]] == [
        ("trace-hv1", "tunnel"), ("trace-hv2", "vif")]
    objects = [o for s in report["stages"] for o in s["objects"]]
    assert any(o.startswith("port trace-a (") for o in objects)
    assert any(o.startswith("security group default") and "rule" in o for o in objects)
    # rich output for people
    proc = plexus(server, "trace", "trace-a", "--icmp", "--to", "trace-b")
    assert proc.returncode == 0 and "delivered to port trace-b" in proc.stdout, proc.stdout


def test_trace_to_another_project_is_not_delivered(server, topology):
    proc = plexus(server, "trace", "trace-a", "--tcp", "--dport", "22", "--to", "trace-x",
                  "--json")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    report = json.loads(proc.stdout)
    assert report["delivered"] == [] and report["verdict"].startswith("dropped"), report


def test_verify_finds_nothing(server, topology):
    proc = plexus(server, "verify", "--json")
    result = json.loads(proc.stdout)
    assert proc.returncode == 0 and result["ok"], result["findings"][:3]
    assert result["counts"]["ports"] >= 3


def test_member_and_unknown_port_refused(server, topology):
    proc = plexus(server, "verify", cloud="devstack")
    assert proc.returncode == 2 and "403" in proc.stdout, proc.stdout
    proc = plexus(server, "trace", "no-such-port", "--icmp", "--to", "trace-b")
    assert proc.returncode == 2 and "no port" in proc.stdout, proc.stdout
