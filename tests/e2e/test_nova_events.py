"""Nova hears ``network-vif-plugged`` when a VM's port goes ACTIVE, end to end: a real
lab (server, agents, OVS), the server's ``[nova]`` section pointed at a real HTTP
endpoint standing in for Nova (it validates each request's token against the lab
server's own identity service and the body against Nova's schema). A VM plugged on a
chassis makes the agent report its port ACTIVE; the event arrives within a second of
the API showing ACTIVE. A port with another owner plugged the same way sends nothing;
deleting the VM's port sends ``network-vif-deleted``."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import running_lab, wait_for
from tests.nova_endpoint import NovaEndpoint

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def nova_lab(tmp_path_factory):
    with NovaEndpoint("http://127.0.0.1:1/identity/v3") as nova:
        with running_lab(tmp_path_factory.mktemp("nova"), chassis=2, gateways=1,
                         nova_url=nova.url) as lab:
            nova.identity_url = f"{lab.lab.url}/identity/v3"
            yield lab, nova


def active_seen(lab, port_id: str, timeout: float = 30) -> float:
    """The monotonic time the API first shows the port ACTIVE (polled every 20 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.api.network.get_port(port_id).status == "ACTIVE":
            return time.monotonic()
        time.sleep(0.02)
    raise AssertionError(f"port {port_id} never became ACTIVE")


def test_vif_plugged_within_a_second_of_active_and_nothing_for_other_ports(nova_lab):
    lab, nova = nova_lab
    net = lab.network("novanet", "10.66.0.0/24")
    other = lab.vm("probe", net, chassis="c2", static=True, device_owner="network:probe")
    vm = lab.vm("nova1", net, chassis="c1", static=True)
    port = lab.api.network.get_port(vm.port_id)
    assert port.binding_vif_type == "ovs"
    assert port.binding_vif_details["datapath_type"] == "netdev"
    seen = active_seen(lab, vm.port_id)
    wait_for(lambda: nova.arrival("network-vif-plugged", vm.port_id), 1.0,
             "network-vif-plugged within 1 s of the port showing ACTIVE")
    event = nova.received("network-vif-plugged", vm.port_id)
    assert event == [{"name": "network-vif-plugged", "server_uuid": port.device_id,
                      "tag": vm.port_id, "status": "completed"}]
    print(f"vif-plugged arrived {nova.arrival('network-vif-plugged', vm.port_id) - seen:+.3f}s "
          f"after the API showed ACTIVE")
    # the probe went ACTIVE before the VM booted: its event would have come first
    assert lab.api.network.get_port(other.port_id).status == "ACTIVE"
    assert not nova.received(tag=other.port_id)
    assert all(r["status"] == 200 for r in nova.requests), nova.requests

    lab.api.network.delete_port(vm.port_id)
    wait_for(lambda: nova.received("network-vif-deleted", vm.port_id), 10,
             "network-vif-deleted")
