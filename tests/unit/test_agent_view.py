"""The agent's pure decisions: the relevant view built from wire objects, the tunnel set,
port statuses, stray VIFs, and the model copy that refuses malformed events."""

from __future__ import annotations

import copy

import pytest

from plexus.agent.model import BadEvent, Model
from plexus.agent.relevant import (Vif, build_view, port_statuses, stray_vifs, tunnel_peers,
                                   unregistered_hosts, vif_ofports)
from plexus.pipeline.compile import compile_view

HERE = "c1"


def network(ident, key, **kw):
    return {"id": ident, "plexus:key": key, "mtu": 1450, "provider:network_type": "vxlan",
            "port_security_enabled": True, "subnets": [], **kw}


def subnet(ident, net, cidr, **kw):
    return {"id": ident, "network_id": net, "cidr": cidr, "ip_version": 4,
            "gateway_ip": cidr.rsplit(".", 1)[0] + ".1", "enable_dhcp": True,
            "dns_nameservers": [], "host_routes": [], **kw}


def port(ident, net, key, host, ip, sub, **kw):
    return {"id": ident, "network_id": net, "plexus:key": key,
            "mac_address": f"FA:16:3E:00:00:{key:02X}", "binding:host_id": host,
            "fixed_ips": [{"subnet_id": sub, "ip_address": ip}], "status": "DOWN",
            "admin_state_up": True, "port_security_enabled": True,
            "allowed_address_pairs": [], "device_owner": "compute:nova", **kw}


def agent(host, ip):
    return {"id": f"agent-{host}", "host": host, "agent_type": "Plexus agent",
            "configurations": {"tunnel_ip": ip, "bridge_mappings": {}, "gateway": False}}


def objects():
    """c1 has ports on n1 and n2; n3 is elsewhere only. c4 shares nothing with c1."""
    nets = [network("n1", 101), network("n2", 102), network("n3", 103)]
    subs = [subnet("s1", "n1", "10.0.1.0/24",
                   host_routes=[{"destination": "10.9.0.0/16", "nexthop": "10.0.1.254"}],
                   dns_nameservers=["10.0.1.2"]),
            subnet("s2", "n2", "10.0.2.0/24", enable_dhcp=False),
            subnet("s3", "n3", "10.0.3.0/24")]
    ports = [port("p1", "n1", 1, HERE, "10.0.1.11", "s1",
                  allowed_address_pairs=[{"ip_address": "10.0.1.100",
                                          "mac_address": "fa:16:3e:00:00:01"},
                                         {"ip_address": "10.0.1.128/28"}]),
             port("p2", "n1", 2, "c2", "10.0.1.12", "s1"),
             port("p3", "n2", 3, HERE, "10.0.2.11", "s2", port_security_enabled=False,
                  admin_state_up=False),
             port("p4", "n2", 4, "c3", "10.0.2.12", "s2"),
             port("p5", "n1", 5, "c9", "10.0.1.13", "s1"),      # chassis never registered
             port("r1", "n1", 6, "", "10.0.1.1", "s1", device_owner="network:router_interface"),
             port("p6", "n3", 7, "c4", "10.0.3.11", "s3"),
             port("p7", "n3", 8, "c2", "10.0.3.12", "s3")]
    agents = [agent(h, f"198.18.0.{i}") for i, h in ((11, "c1"), (12, "c2"), (13, "c3"),
                                                       (14, "c4"))]
    return {"networks": {n["id"]: n for n in nets}, "subnets": {s["id"]: s for s in subs},
            "ports": {p["id"]: p for p in ports}, "agents": {a["id"]: a for a in agents},
            "routers": {"x": {"id": "x"}}}


def view_of(objs=None, vifs=None, tunnels=None, problems=None):
    return build_view(objs or objects(), HERE, "198.18.0.11",
                      {"p1": 1, "p3": 3} if vifs is None else vifs,
                      {"c2": 100, "c3": 101, "c4": 102} if tunnels is None else tunnels,
                      problems)


def test_view_holds_only_what_ports_bound_here_need():
    view = view_of()
    assert sorted(view.networks) == ["n1", "n2"]
    assert sorted(view.subnets) == ["s1", "s2"]
    assert sorted(view.ports) == ["p1", "p2", "p3", "p4", "p5", "r1"]
    assert sorted(view.chassis_by_name) == ["c1", "c2", "c3"]      # c9 unknown, c4 unrelated
    assert view.tunnel_ofports == {"c2": 100, "c3": 101}
    assert view.vif_ofports == {"p1": 1, "p3": 3}


def test_view_converts_wire_fields():
    view = view_of()
    assert view.networks["n1"].key == 101 and view.networks["n1"].mtu == 1450
    p1, p3, r1 = view.ports["p1"], view.ports["p3"], view.ports["r1"]
    assert (p1.key, p1.mac, p1.chassis) == (1, "fa:16:3e:00:00:01", HERE)
    assert p1.ips == (("s1", "10.0.1.11"),)
    assert p1.allowed_pairs == (("10.0.1.100", "fa:16:3e:00:00:01"),
                                ("10.0.1.128/28", "fa:16:3e:00:00:01"))
    assert p3.port_security is False and p3.admin_up is False
    assert r1.device_owner == "network:router_interface" and r1.chassis == ""
    s1 = view.subnets["s1"]
    assert s1.host_routes == (("10.9.0.0/16", "10.0.1.254"),)
    assert s1.dns_nameservers == ("10.0.1.2",) and s1.gateway_ip == "10.0.1.1"
    assert view.subnets["s2"].enable_dhcp is False
    assert view.chassis_by_name["c2"].tunnel_ip == "198.18.0.12"


def test_view_ignores_vifs_of_ports_bound_elsewhere_and_unknown_ports():
    view = view_of(vifs={"p1": 1, "p2": 2, "nope": 9})
    assert view.vif_ofports == {"p1": 1}
    assert [p.id for p in view.local_ports()] == ["p1"]


def test_view_without_local_ports_is_empty_and_compiles_to_defaults_only():
    objs = objects()
    for p in objs["ports"].values():
        if p["binding:host_id"] == HERE:
            p["binding:host_id"] = "c2"
    view = view_of(objs)
    assert not view.networks and not view.ports
    assert {f.priority for f in compile_view(view)} == {0}


def test_malformed_objects_are_left_out_and_reported():
    objs = objects()
    objs["ports"]["p2"]["plexus:key"] = "two"
    objs["ports"]["p4"]["fixed_ips"] = [{"subnet_id": "s2", "ip_address": "not-an-ip"}]
    objs["networks"]["n2"]["plexus:key"] = None
    objs["agents"]["agent-c3"]["configurations"] = "broken"
    problems: list = []
    view = view_of(objs, problems=problems)
    assert "p2" not in view.ports and "p4" not in view.ports
    assert "n2" not in view.networks            # so p3 has no network: compiled as nothing
    assert sorted((c, i) for c, i, _ in problems) == [
        ("agents", "agent-c3"), ("networks", "n2"), ("ports", "p2"), ("ports", "p4")]
    compile_view(view)                          # still compiles


def test_tunnels_only_toward_registered_chassis_sharing_a_network():
    assert tunnel_peers(view_of()) == {"c2": "198.18.0.12", "c3": "198.18.0.13"}
    # an unplugged port bound here already counts: the tunnel is ready before the VIF
    assert tunnel_peers(view_of(vifs={})) == {"c2": "198.18.0.12", "c3": "198.18.0.13"}
    objs = objects()
    del objs["ports"]["p3"]                     # no port here on n2 any more: c3 goes
    assert tunnel_peers(view_of(objs)) == {"c2": "198.18.0.12"}


def test_ports_on_unregistered_chassis_are_named():
    assert unregistered_hosts(view_of()) == {"c9": ["p5"]}


def test_port_statuses_follow_vifs():
    objs = objects()
    vifs = [Vif("tap1", "p1", 1), Vif("tap3", "p3", 3)]
    # p1 plugged → ACTIVE; p3 plugged but admin down → stays DOWN
    assert port_statuses(objs, HERE, vifs) == {"p1": "ACTIVE"}
    objs["ports"]["p1"]["status"] = "ACTIVE"
    assert port_statuses(objs, HERE, vifs) == {}
    assert port_statuses(objs, HERE, [Vif("tap1", "p1", -1)]) == {"p1": "DOWN"}
    assert port_statuses(objs, HERE, []) == {"p1": "DOWN"}


def test_stray_vifs_are_explained():
    vifs = [Vif("tap1", "p1", 1), Vif("tap2", "p2", 2), Vif("tapx", "ghost", 5)]
    found = {v.name: why for v, why in stray_vifs(objects(), HERE, vifs)}
    assert set(found) == {"tap2", "tapx"}
    assert "no known port" in found["tapx"] and "'c2'" in found["tap2"]


def test_vif_ofports_skips_unready_and_keeps_one_per_port():
    vifs = [Vif("b", "p1", 7), Vif("a", "p1", 4), Vif("c", "p2", -1), Vif("d", "p3", 0)]
    assert vif_ofports(vifs) == {"p1": 4}


# --- the model copy ----------------------------------------------------------------------

def snapshot():
    objs = objects()
    return {c: list(v.values()) for c, v in objs.items()}


def test_model_snapshot_then_events():
    model = Model()
    assert model.reset(10, snapshot()) == []
    assert model.loaded and model.revision == 10 and "routers" not in model.objects
    changed = model.apply({"type": "put", "collection": "ports", "id": "p9", "revision": 11,
                           "object": port("p9", "n1", 9, HERE, "10.0.1.19", "s1")})
    assert changed and "p9" in model.objects["ports"]
    assert model.apply({"type": "delete", "collection": "ports", "id": "p9", "revision": 12,
                        "object": None})
    assert "p9" not in model.objects["ports"] and model.revision == 12
    assert not model.apply({"type": "put", "collection": "routers", "id": "r", "revision": 13,
                            "object": {"id": "r"}})


@pytest.mark.parametrize("event", [
    None, "put", {"type": "frob", "collection": "ports", "id": "p1", "revision": 11},
    {"type": "put", "collection": "ports", "id": "p1", "revision": "11", "object": {}},
    {"type": "put", "collection": "ports", "revision": 11, "object": {}},
    {"type": "put", "collection": "ports", "id": "p1", "revision": 11, "object": None},
    {"type": "put", "collection": "ports", "id": "p1", "revision": 11,
     "object": {"id": "p2"}},
    {"type": "put", "collection": "ports", "id": "p1", "revision": 11,
     "object": {"id": "p1", "network_id": "n1", "plexus:key": 1, "mac_address": 7}},
    {"type": "put", "collection": "networks", "id": "n1", "revision": 11,
     "object": {"id": "n1", "plexus:key": -4}},
])
def test_malformed_events_change_nothing(event):
    model = Model()
    model.reset(10, snapshot())
    before = copy.deepcopy(model.objects)
    with pytest.raises(BadEvent):
        model.apply(event)
    assert model.objects == before


def test_snapshot_skips_malformed_objects():
    snap = snapshot()
    snap["ports"].append({"id": "bad", "plexus:key": "x"})
    snap["ports"].append("not an object")
    problems = Model().reset(3, snap)
    assert [c for c, _, _ in problems] == ["ports", "ports"]
