"""Chassis registration through the southbound API, shown as Neutron agents; port
binding completes only on a registered chassis."""

from __future__ import annotations

import time

from tests.api.helpers import raw, register_chassis as register


def test_agent_list_shows_alive_then_dead(server, admin, cli):
    # a long lease while the listings are read (the CLI alone can take seconds to start
    # on a loaded machine), then a short one to watch it lapse
    lease = register(server, admin, "chassis-live", ttl=60.0, gateway=True)
    agents = {a.host: a for a in admin.network.agents()}
    agent = agents["chassis-live"]
    assert agent.is_alive is True and agent.agent_type == "Plexus agent"
    assert agent.configuration["tunnel_ip"] == "198.18.0.11"
    assert agent.configuration["gateway"] is True
    listed = cli("network", "agent", "list", "--host", "chassis-live")
    assert [a["Host"] for a in listed] == ["chassis-live"] and listed[0]["Alive"] in (True, ":-)")
    lease = register(server, admin, "chassis-live", ttl=4.0, gateway=True)
    assert admin.network.get_agent(agent.id).is_alive is True      # the same agent, re-leased
    r = raw(server, admin, "PUT", "/southbound/v1/chassis/chassis-live/heartbeat",
            {"lease": lease})
    assert r.status_code == 200
    deadline = time.monotonic() + 10
    while admin.network.get_agent(agent.id).is_alive and time.monotonic() < deadline:
        time.sleep(0.2)
    assert admin.network.get_agent(agent.id).is_alive is False
    r = raw(server, admin, "PUT", "/southbound/v1/chassis/chassis-live/heartbeat",
            {"lease": lease})
    assert r.status_code == 404          # the agent must re-register
    register(server, admin, "chassis-live", ttl=5.0)
    assert admin.network.get_agent(agent.id).is_alive is True
    admin.network.delete_agent(agent)
    assert "chassis-live" not in {a.host for a in admin.network.agents()}


def test_agents_are_admin_only(server, demo):
    assert raw(server, demo, "GET", "/v2.0/agents").json()["agents"] == []
    assert raw(server, demo, "PUT", "/southbound/v1/chassis/x",
               {"tunnel_ip": "198.18.0.9"}).status_code == 403


def test_bad_registration_changes_nothing(server, admin):
    r = raw(server, admin, "PUT", "/southbound/v1/chassis/bad", {"tunnel_ip": "nope"})
    assert r.status_code == 400
    assert "bad" not in {a.host for a in admin.network.agents()}


def test_binding_fails_until_chassis_registers(server, admin):
    net = admin.network.create_network(name="bind")
    admin.network.create_subnet(network_id=net.id, cidr="10.66.0.0/24", ip_version=4)
    try:
        port = admin.network.create_port(network_id=net.id, binding_host_id="chassis-late")
        assert port.binding_vif_type == "binding_failed"
        register(server, admin, "chassis-late", ttl=5.0)
        assert admin.network.get_port(port.id).binding_vif_type == "ovs"
        admin.network.delete_port(port)
    finally:
        admin.network.delete_network(net)
