"""The southbound VIP owner report (issue 12, item 4): a chassis says which port
announced a shared VIP; the owner is a model object (``vip_owners``) on the stream,
written only when it changes, refused Neutron-style for a port that does not list the
VIP or is bound elsewhere, and deleted with the port."""

from __future__ import annotations

from tests.api.helpers import raw

VIP = "10.77.0.250"


def owners(server, admin) -> dict:
    snap = raw(server, admin, "GET", "/southbound/v1/snapshot").json()
    return {o["id"]: o for o in snap["objects"].get("vip_owners") or ()}


def report(server, token, port_id, body):
    return raw(server, token, "PUT", f"/southbound/v1/ports/{port_id}/vip-owner", body)


def test_a_vip_owner_is_stored_once_per_change_and_goes_with_its_port(server, admin):
    net = admin.network.create_network(name="vo")
    admin.network.create_subnet(network_id=net.id, cidr="10.77.0.0/24", ip_version=4)
    pairs = [{"ip_address": VIP}]
    a = admin.network.create_port(network_id=net.id, binding_host_id="ch-a",
                                  allowed_address_pairs=pairs)
    b = admin.network.create_port(network_id=net.id, binding_host_id="ch-b",
                                  allowed_address_pairs=[{"ip_address": f"{VIP}/32"}])
    store = server.app.state.services.store
    ident = f"{net.id}:{VIP}"
    try:
        r = report(server, admin, a.id, {"ip": VIP, "host": "ch-a"})
        assert r.status_code == 200 and r.json()["written"] is True
        assert owners(server, admin)[ident] == {"id": ident, "network_id": net.id, "ip": VIP,
                                               "port_id": a.id, "chassis": "ch-a"}
        before = store.revision()                    # a GARP storm: nothing written
        for _ in range(5):
            r = report(server, admin, a.id, {"ip": VIP, "host": "ch-a"})
            assert r.status_code == 200 and r.json()["written"] is False
        assert store.revision() == before
        r = report(server, admin, b.id, {"ip": VIP, "host": "ch-b"})    # failover
        assert r.status_code == 200 and r.json()["written"] is True
        assert owners(server, admin)[ident]["port_id"] == b.id
        # refused: bound elsewhere (409), VIP not listed (409), bad address (400),
        # no such port (404), not admin (403); nothing written
        before = store.revision()
        wrong = report(server, admin, a.id, {"ip": VIP, "host": "ch-b"})
        assert wrong.status_code == 409
        assert wrong.json()["NeutronError"]["type"] == "PortBindingMismatch"
        unlisted = report(server, admin, a.id, {"ip": "10.77.0.251", "host": "ch-a"})
        assert unlisted.status_code == 409
        assert unlisted.json()["NeutronError"]["type"] == "AddressPairNotFound"
        for body in ({"ip": "not-an-ip", "host": "ch-a"}, {"ip": VIP}, {"host": "ch-a"}, [],
                     {"ip": "fe80::1", "host": "ch-a"}):
            assert report(server, admin, a.id, body).status_code == 400, body
        assert report(server, admin, "no-such-port",
                      {"ip": VIP, "host": "ch-a"}).status_code == 404
        assert store.revision() == before
        assert owners(server, admin)[ident]["port_id"] == b.id
        # deleting the owner's port deletes the owner; another port's delete does not
        admin.network.delete_port(a)
        a = None
        assert owners(server, admin)[ident]["port_id"] == b.id
        admin.network.delete_port(b)
        b = None
        assert ident not in owners(server, admin)
    finally:
        for port in (a, b):
            if port is not None:
                admin.network.delete_port(port)
        admin.network.delete_network(net)


def test_the_vip_owner_report_needs_admin(server, admin, demo):
    net = admin.network.create_network(name="vo-demo")
    try:
        port = admin.network.create_port(network_id=net.id, binding_host_id="ch-a",
                                         allowed_address_pairs=[{"ip_address": VIP}])
        assert report(server, demo, port.id, {"ip": VIP, "host": "ch-a"}).status_code == 403
        admin.network.delete_port(port)
    finally:
        admin.network.delete_network(net)
