"""Address groups end to end (security-groups-remote-address-group): a 2-chassis lab,
a VM whose group admits TCP from an address group, and real traffic — a VM whose
address is in the group gets in, one outside does not; adding its address through the
API lets it in, removing it shuts it out again. The lab's inventory tears everything
down, failed or not."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import running_lab, wait_for

pytestmark = pytest.mark.e2e

NO = dict(size=4096, timeout=2)          # a TCP check expected to fail: short timeouts


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A 2-chassis lab whose agents are up and registered."""
    with running_lab(tmp_path_factory.mktemp("ag"), chassis=2, gateways=1) as fixture:
        yield fixture


def tcp(src, dst, port: int, **kw) -> bool:
    """Whether ``src`` can send a payload to the TCP checker of ``dst`` on ``port``."""
    return src.tcp_client(dst.ip, port, **({"size": 64 << 10} | kw))["ok"]


def test_remote_address_group_admits_its_addresses_and_follows_changes(lab):
    api = lab.api.network
    net = lab.network("ag-net", "10.76.0.0/24")
    ports = {name: api.create_port(network_id=net.id, name=name)
             for name in ("ag-in", "ag-out")}
    inside = ports["ag-in"].fixed_ips[0]["ip_address"]
    outside = ports["ag-out"].fixed_ips[0]["ip_address"]
    ag = api.create_address_group(name="ag-clients", addresses=[inside, "192.0.2.0/24"])
    db = api.create_security_group(name="ag-db")
    api.create_security_group_rule(security_group_id=db.id, direction="ingress",
                                   ethertype="IPv4", protocol="tcp", port_range_min=5432,
                                   port_range_max=5432, remote_address_group_id=ag.id)
    srv_port = api.create_port(network_id=net.id, name="ag-srv", security_groups=[db.id])
    srv = lab.vm("ag-srv", net, chassis="c2", port=srv_port.id)
    a = lab.vm("ag-in", net, chassis="c1", port=ports["ag-in"].id)
    b = lab.vm("ag-out", net, chassis="c1", port=ports["ag-out"].id)
    srv.tcp_server(5432)
    srv.tcp_server(5433)
    wait_for(lambda: tcp(a, srv, 5432, **NO), 20, "a VM in the address group reaches db")
    assert tcp(a, srv, 5432, size=1 << 20)
    assert not tcp(a, srv, 5433, **NO), "only the rule's port"
    assert not tcp(b, srv, 5432, **NO), "a VM outside the address group"
    api.add_addresses_to_address_group(ag, [outside])
    wait_for(lambda: tcp(b, srv, 5432, **NO), 20, "the added address reaches db")
    api.remove_addresses_from_address_group(ag, [inside])
    wait_for(lambda: not tcp(a, srv, 5432, **NO), 20, "the removed address is refused")
    assert tcp(b, srv, 5432)
