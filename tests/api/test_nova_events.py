"""Nova's port events from a real server to a real HTTP endpoint standing in for Nova
(tokens checked against the server's own Keystone-compatible identity service, bodies
against Nova's schema): what is sent on status reports, address and floating IP changes
and deletes, nothing for non-compute ports, and events kept through an outage."""

from __future__ import annotations

import os
import uuid

import openstack
import pytest

from plexus.config import Config
from plexus.server.runner import ThreadedServer, free_port, write_clouds_yaml
from tests.api.helpers import raw, register_chassis
from tests.e2e.conftest import wait_for
from tests.nova_endpoint import NovaEndpoint

HOST = "nova-cn1"


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nova")
    config = Config()
    config.server.port = free_port()
    config.store.url = f"sqlite:///{tmp}/plexus.db"
    with NovaEndpoint(f"{config.server.url()}/identity/v3") as nova:
        config.nova.auth_url = f"{config.server.url()}/identity/v3"
        config.nova.username, config.nova.password = "admin", "secret"
        config.nova.project_name = "admin"
        config.nova.endpoint_override = nova.url
        config.nova.send_events_interval = 0.2
        config.nova.retry_initial = 0.1
        with ThreadedServer(config) as srv:
            clouds = write_clouds_yaml(tmp / "clouds.yaml", srv.url, config)
            os.environ["OS_CLIENT_CONFIG_FILE"] = str(clouds)
            admin = openstack.connect(cloud="devstack-admin")
            register_chassis(srv, admin, HOST)
            net = admin.network.create_network(name="nova-events")
            admin.network.create_subnet(network_id=net.id, cidr="10.77.0.0/24", ip_version=4)
            yield srv, admin, nova, net


def report(srv, admin, port_id: str, status: str) -> None:
    r = raw(srv, admin, "PUT", f"/southbound/v1/ports/{port_id}/status",
            {"status": status, "host": HOST})
    assert r.status_code == 200, r.text


def compute_port(admin, net, **extra):
    return admin.network.create_port(network_id=net.id, binding_host_id=HOST,
                                     device_owner="compute:nova",
                                     device_id=str(uuid.uuid4()), **extra)


def test_vif_details_are_what_os_vif_ovs_expects(cloud):
    srv, admin, nova, net = cloud
    port = compute_port(admin, net)
    assert port.binding_vif_type == "ovs"
    assert port.binding_vif_details == {"port_filter": True, "connectivity": "l2",
                                        "bridge_name": "br-int", "datapath_type": "netdev",
                                        "ovs_hybrid_plug": False}


def test_plugged_and_unplugged_follow_status_reports(cloud):
    srv, admin, nova, net = cloud
    port = compute_port(admin, net)
    report(srv, admin, port.id, "ACTIVE")
    plugged = wait_for(lambda: nova.received("network-vif-plugged", port.id), 10,
                       "network-vif-plugged")
    assert plugged == [{"name": "network-vif-plugged", "server_uuid": port.device_id,
                        "tag": port.id, "status": "completed"}]
    report(srv, admin, port.id, "ACTIVE")            # no transition: nothing more
    report(srv, admin, port.id, "DOWN")
    unplugged = wait_for(lambda: nova.received("network-vif-unplugged", port.id), 10,
                         "network-vif-unplugged")
    assert unplugged[0]["status"] == "completed"
    assert len(nova.received("network-vif-plugged", port.id)) == 1


def test_a_batch_status_report_sends_each_port_its_own_events(cloud):
    srv, admin, nova, net = cloud
    ports = [compute_port(admin, net) for _ in range(3)]
    r = raw(srv, admin, "PUT", "/southbound/v1/ports/status",
            {"host": HOST, "ports": [{"id": p.id, "status": "ACTIVE"} for p in ports]})
    assert r.status_code == 200, r.text
    for p in ports:
        plugged = wait_for(lambda p=p: nova.received("network-vif-plugged", p.id), 10,
                           "network-vif-plugged")
        assert plugged == [{"name": "network-vif-plugged", "server_uuid": p.device_id,
                            "tag": p.id, "status": "completed"}]
    r = raw(srv, admin, "PUT", "/southbound/v1/ports/status",
            {"host": HOST, "ports": [{"id": ports[0].id, "status": "ACTIVE"},
                                     {"id": ports[1].id, "status": "DOWN"}]})
    assert r.status_code == 200, r.text
    unplugged = wait_for(lambda: nova.received("network-vif-unplugged", ports[1].id), 10,
                         "network-vif-unplugged")
    assert unplugged[0]["status"] == "completed"
    assert not nova.received("network-vif-unplugged", ports[0].id)
    assert len(nova.received("network-vif-plugged", ports[0].id)) == 1


def test_addresses_floating_ips_and_delete(cloud):
    srv, admin, nova, net = cloud
    port = compute_port(admin, net)
    subnet = port.fixed_ips[0]["subnet_id"]
    admin.network.update_port(port, fixed_ips=[{"subnet_id": subnet,
                                                "ip_address": "10.77.0.200"}])
    wait_for(lambda: nova.received("network-changed", port.id), 10, "network-changed (address)")
    admin.network.update_port(port, name="renamed")          # no address change: no event
    public = admin.network.create_network(name="nova-public", is_router_external=True)
    admin.network.create_subnet(network_id=public.id, cidr="203.0.113.0/24", ip_version=4)
    router = admin.network.create_router(name="nova-r",
                                         external_gateway_info={"network_id": public.id})
    admin.network.add_interface_to_router(router, subnet_id=subnet)
    fip = admin.network.create_ip(floating_network_id=public.id, port_id=port.id)
    wait_for(lambda: len(nova.received("network-changed", port.id)) >= 2, 10,
             "network-changed (floating IP associated)")
    admin.network.delete_ip(fip)
    wait_for(lambda: len(nova.received("network-changed", port.id)) >= 3, 10,
             "network-changed (floating IP deleted)")
    admin.network.delete_port(port)
    deleted = wait_for(lambda: nova.received("network-vif-deleted", port.id), 10,
                       "network-vif-deleted")
    assert deleted == [{"name": "network-vif-deleted", "server_uuid": port.device_id,
                        "tag": port.id}]
    assert len(nova.received("network-changed", port.id)) == 3


def test_nothing_for_ports_nova_does_not_own(cloud):
    srv, admin, nova, net = cloud
    probe = admin.network.create_port(network_id=net.id, binding_host_id=HOST,
                                      device_owner="network:probe",
                                      device_id=str(uuid.uuid4()))
    no_uuid = admin.network.create_port(network_id=net.id, binding_host_id=HOST,
                                        device_owner="compute:nova", device_id="not-a-uuid")
    marker = compute_port(admin, net)
    for p in (probe, no_uuid, marker):
        report(srv, admin, p.id, "ACTIVE")
    # the marker's event was queued after the others': once it arrived, theirs would have
    wait_for(lambda: nova.received("network-vif-plugged", marker.id), 10, "marker plugged")
    assert not nova.received(tag=probe.id)
    assert not nova.received(tag=no_uuid.id)
    admin.network.delete_port(probe)
    admin.network.delete_port(no_uuid)


def test_events_survive_an_outage(cloud):
    srv, admin, nova, net = cloud
    nova.fail_next(3, 503)
    port = compute_port(admin, net)
    report(srv, admin, port.id, "ACTIVE")
    wait_for(lambda: nova.received("network-vif-plugged", port.id), 20,
             "network-vif-plugged after three refused attempts")
    assert [r["status"] for r in nova.requests if r.get("why") == "outage"] == [503] * 3
    assert srv.app.state.nova.batch.retries >= 3
    assert len(nova.received("network-vif-plugged", port.id)) == 1


def test_every_request_carried_a_valid_admin_token(cloud):
    srv, admin, nova, net = cloud
    assert nova.requests
    assert all(r["status"] in (200, 503) for r in nova.requests), nova.requests
