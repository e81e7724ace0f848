"""``plexus trace --live``'s pure parts: ofproto/trace text (real outputs of a lab's
br-int, kept in tests/unit/data_*), OVSDB interface rows, the agent's command line, the
packet in ofproto/trace's syntax; and the Fabric's ``follow`` that verify's isolation
uses."""

from __future__ import annotations

import json
from pathlib import Path

from plexus.tools.fabric import Fabric, Model
from plexus.tools.live import (
    agent_options, ofports_of_rows, ovs_flow, parse_ofproto_trace, parse_targets,
)
from plexus.tools.trace import packet_from, Probe
from tests.unit.test_verify import cloud

DATA = Path(__file__).parent


def test_parse_a_trace_through_conntrack_to_a_tunnel():
    got = parse_ofproto_trace((DATA / "data_ofproto_trace_c1.txt").read_text())
    tables = [s.table for s in got.steps]
    assert tables[:6] == [0, 10, 20, 30, 35, 40]
    assert 45 in tables and tables.index(45) > tables.index(40)     # after the recirculation
    first = got.steps[0]
    assert (first.priority, first.cookie) == (100, 0x33d237f5860831af)
    assert first.match == "in_port=2"
    assert first.actions[:2] == ["set_field:0x245c->metadata", "set_field:0xc6d3->reg6"]
    assert got.outputs == [(3, 0x245c)]                 # the tunnel, with the VNI set
    assert got.controller == []


def test_parse_a_trace_that_a_deleted_flow_ends():
    got = parse_ofproto_trace((DATA / "data_ofproto_trace_deleted.txt").read_text())
    last = got.steps[-1]
    assert (last.table, last.priority) == (75, 0)       # the table's default: drop
    assert got.outputs == [] and got.controller == []
    assert got.steps[0].match.startswith("tun_id=0x245c,in_port=2")


def test_interfaces_by_kind():
    rows = json.loads((DATA / "data_ovs_interfaces.json").read_text())
    ports = ofports_of_rows(rows)
    assert ports.patches == {"physnet1": 1}
    assert ports.tunnels == {"c1": 2}
    assert ports.vifs == {"bd5fb829-f97c-4ff2-a5d9-132920d7ce86": 3}
    assert ports.name_of(2) == ("tunnel", "c1")
    rows["data"].append(["new", ["set", []], ["map", [["iface-id", "x"]]]])   # no ofport yet
    assert "x" not in ofports_of_rows(rows).vifs


def test_agent_options_from_a_systemd_unit():
    unit = """[Service]
EnvironmentFile=/etc/plexus/agent.env
ExecStart=/opt/plexus/.venv/bin/plexus-agent \\
  --server https://10.0.0.1:9696 \\
  --chassis compute-1 --tunnel-ip 192.0.2.21 \\
  --ovsdb unix:/run/openvswitch/db.sock --ovs-rundir=/run/openvswitch \\
  --bridge-mappings physnet1:br-ex
Restart=always
"""
    assert agent_options(unit) == {"chassis": "compute-1",
                                   "ovsdb": "unix:/run/openvswitch/db.sock",
                                   "rundir": "/run/openvswitch"}
    assert agent_options("nothing here") == {}


def test_targets():
    got = parse_targets(["c1=/run/ovs", "c2=/srv/c2/run,tcp:10.0.0.2:6640"])
    assert got["c1"].db == "unix:/run/ovs/db.sock" and got["c1"].mgmt() == \
        "unix:/run/ovs/br-int.mgmt"
    assert got["c2"].db == "tcp:10.0.0.2:6640"
    for bad in ("c1", "=x", "c1="):
        try:
            parse_targets([bad])
        except ValueError:
            continue
        raise AssertionError(bad)


def test_the_packet_in_ofproto_trace_syntax():
    fabric = Fabric(Model(cloud()))
    _, pkt = packet_from(fabric, "a-vm1", Probe("tcp", "b-vm1", dport=22, flags="syn+ack"))
    flow = ovs_flow(pkt)
    assert flow.startswith("tcp,")
    assert "tcp_dst=22" in flow and "tcp_flags=0x012" in flow and "nw_ttl=64" in flow
    assert "dl_src=" in flow and "nw_src=" in flow and "eth_type" not in flow


def test_send_follows_only_the_chassis_asked():
    fabric = Fabric(Model(cloud()))
    chassis, pkt = packet_from(fabric, "a-vm1", Probe("tcp", "b-vm1", dport=22))
    whole = fabric.send(chassis, pkt, fresh=True)
    assert len(whole.visits) == 2 and whole.unfollowed() == []
    cut = fabric.send(chassis, pkt, fresh=True, follow=lambda c: False)
    assert len(cut.visits) == 1
    assert [h.kind for h in cut.unfollowed()] == ["tunnel"]
    assert cut.unfollowed()[0].packet.get("tunnel_id")
