"""Operability on a real lab: each agent's /metrics and the server's (scraped over HTTP,
parsed by prometheus_client) move with what happened; ``plexus status`` shows every
chassis alive at its agent's version, caught up with the store; ``plexus flows`` shows
exactly the flows OVS holds under one object's cookie; ``plexus topology`` draws the
lab's objects."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import plexus
from plexus.lab.lab import agent_metrics_url
from plexus.lower.openflow import cookie_of
from tests.e2e.conftest import wait_for

pytestmark = pytest.mark.e2e
PLEXUS = str(Path(sys.executable).with_name("plexus"))


def scrape(url: str) -> dict:
    r = httpx.get(url, timeout=10)
    assert r.status_code == 200, r.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def plexus_cli(lab, *args):
    env = dict(os.environ)
    env.pop("PLEXUS_LAB_NAME", None)
    proc = subprocess.run([PLEXUS, *args, "--lab", lab.spec.name, "--root",
                           str(lab.lab.dir.parent)], env=env, capture_output=True, text=True,
                          timeout=120)
    return proc


def test_metrics_status_flows_and_topology_on_a_lab(lab, tmp_path):
    net = lab.network("opsnet", "10.9.0.0/24")
    a = lab.vm("a", net, chassis="c1")                  # DHCP, answered by c1's agent
    b = lab.vm("b", net, chassis="c2", static=True)
    assert lab.vm("a").ping(b.ip)

    # --- the agents' and the server's /metrics
    c1 = scrape(agent_metrics_url(lab.lab, "c1"))
    assert c1[("plexus_agent_dhcp_replies_total", ())] >= 1
    assert c1[("plexus_agent_flows_installed", ())] > 0
    assert c1[("plexus_agent_events_received_total", ())] > 0
    assert c1[("plexus_agent_reconcile_duration_seconds_count", ())] >= 1
    assert c1[("plexus_agent_openflow_connected", ())] == 1
    c2 = scrape(agent_metrics_url(lab.lab, "c2"))
    assert c2[("plexus_agent_dhcp_replies_total", ())] == 0        # b is static
    servers = [scrape(url + "/metrics") for url in lab.lab.urls]
    assert all(s[("plexus_chassis_alive", ())] == 2 for s in servers)
    assert sum(s[("plexus_southbound_streams", ())] + s[("plexus_southbound_watchers", ())]
               for s in servers) >= 2                           # one watch per agent
    assert sum(s[("plexus_southbound_events_delivered_total", ())] for s in servers) > 0
    beats = ("plexus_http_requests_total", (("method", "PUT"), (
        "route", "/southbound/v1/chassis/{name}/heartbeat"), ("status", "200")))
    wait_for(lambda: sum(scrape(url + "/metrics").get(beats, 0) for url in lab.lab.urls),
             15, "heartbeats counted under their route template")

    # --- plexus status: both alive at this version, caught up (within a heartbeat)
    def caught_up():
        proc = plexus_cli(lab, "status", "--json")
        body = json.loads(proc.stdout)
        chassis = {c["chassis"]: c for c in body["chassis"]}
        ok = proc.returncode == 0 and set(chassis) == {"c1", "c2"} and all(
            c["alive"] and c["version"] == plexus.__version__ and c["lag"] == 0
            for c in chassis.values())
        return body if ok else None
    body = wait_for(caught_up, 30, "every agent reports the store's revision as applied")
    assert body["leases"] == {"held": 2, "expired": 0}
    assert body["store"]["revision"] > 0

    # --- plexus flows: one port's flows, exactly what OVS holds under its cookie
    proc = plexus_cli(lab, "flows", "c1", "--object", a.port_id, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shown = json.loads(proc.stdout)
    assert shown and all(a.port_id in f["object"] and f["cookie"] == cookie_of(f["object"])
                         for f in shown)
    ovs = lab.lab.ovs(lab.spec.chassis_named("c1"))
    cookie = cookie_of(f"port:{a.port_id}")
    direct = [line for line in ovs.ofctl("dump-flows", "br-int",
                                         f"cookie={cookie:#x}/-1").splitlines()
              if "cookie=" in line]
    assert len([f for f in shown if f["object"] == f"port:{a.port_id}"]) == len(direct) > 0
    # b's port is remote on c1 and local on c2: c2 holds more of its flows
    on_c1 = json.loads(plexus_cli(lab, "flows", "c1", "--object", b.port_id,
                                  "--json").stdout)
    on_c2 = json.loads(plexus_cli(lab, "flows", "c2", "--object", b.port_id,
                                  "--json").stdout)
    assert len(on_c2) > len(on_c1)
    nothing = plexus_cli(lab, "flows", "c1", "--object", str(uuid.uuid4()), "--json")
    assert nothing.returncode == 1 and json.loads(nothing.stdout) == []
    everything = plexus_cli(lab, "flows", "c1")
    assert everything.returncode == 0 and "flows on c1" in everything.stdout

    # --- plexus topology: the lab's network, ports and chassis
    out = tmp_path / "lab.svg"
    proc = plexus_cli(lab, "topology", "-o", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    root = ET.parse(out).getroot()
    text = " ".join(t.text or "" for t in root.iter() if t.tag.endswith("text"))
    for word in ("opsnet", "10.9.0.0/24", "c1", "c2", a.ip, b.ip):
        assert word in text, word
