"""The agent's pure decisions: the relevant view built from wire objects (security groups
included), the tunnel set, port statuses, stray VIFs, the conntrack zones to flush, and
the model copy that refuses malformed events."""

from __future__ import annotations

import copy

import pytest

from plexus.agent.model import BadEvent, Model
from plexus.agent.relevant import (Vif, build_view, gone_zones, port_statuses, stray_vifs,
                                   tunnel_peers, unregistered_hosts, vif_ofports)
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


def test_view_without_local_ports_is_empty_and_compiles_to_the_pipeline_flows_only():
    objs = objects()
    for p in objs["ports"].values():
        if p["binding:host_id"] == HERE:
            p["binding:host_id"] = "c2"
    view = view_of(objs)
    assert not view.networks and not view.ports
    assert not view.security.groups and not view.security.port_groups
    # each table's default, and the ACL tables' connection-state flows; nothing per object
    assert {f.cookie.partition(":")[0] for f in compile_view(view)} == {"pipeline"}


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
    assert model.loaded and model.revision == 10 and "metering" not in model.objects
    changed = model.apply({"type": "put", "collection": "ports", "id": "p9", "revision": 11,
                           "object": port("p9", "n1", 9, HERE, "10.0.1.19", "s1")})
    assert changed and "p9" in model.objects["ports"]
    assert model.apply({"type": "delete", "collection": "ports", "id": "p9", "revision": 12,
                        "object": None})
    assert "p9" not in model.objects["ports"] and model.revision == 12
    assert model.apply({"type": "put", "collection": "routers", "id": "r", "revision": 13,
                        "object": {"id": "r"}})
    assert not model.apply({"type": "put", "collection": "metering", "id": "m",
                            "revision": 14, "object": {"id": "m"}})


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


# --- security groups ---------------------------------------------------------------------

def sg_rule(rid, direction, protocol=None, low=None, high=None, remote=None, prefix=None):
    return {"id": rid, "direction": direction, "ethertype": "IPv4", "protocol": protocol,
            "port_range_min": low, "port_range_max": high, "remote_ip_prefix": prefix,
            "remote_group_id": remote, "remote_address_group_id": None}


def sg(gid, *rules, stateful=True):
    return {"id": gid, "name": gid, "stateful": stateful,
            "security_group_rules": [dict(r, security_group_id=gid) for r in rules]}


def secured():
    """objects() with groups: p1 (here) in sg-web, whose rule admits sg-app; sg-app's
    members are p2 (n1, on c2) and p6 (n3 on c4: not in the view, still a member)."""
    objs = objects()
    objs["security-groups"] = {g["id"]: g for g in (
        sg("sg-web", sg_rule("web-in", "ingress", "tcp", 80, 80, remote="sg-app"),
           sg_rule("out", "egress")),
        sg("sg-app"), sg("sg-unused", sg_rule("x", "ingress")))}
    objs["ports"]["p1"]["security_groups"] = ["sg-web"]
    objs["ports"]["p2"]["security_groups"] = ["sg-app"]
    objs["ports"]["p6"]["security_groups"] = ["sg-app"]
    return objs


def test_view_carries_the_groups_of_ports_bound_here_and_members_from_anywhere():
    view = view_of(secured())
    sec = view.security
    assert sec.port_groups == {"p1": ("sg-web",), "p3": ()}     # ports bound here only
    assert sorted(sec.groups) == ["sg-web"]                     # groups of those ports
    assert [r.id for r in sec.groups["sg-web"].rules] == ["out", "web-in"]
    assert sec.members == {"sg-app": ("10.0.1.12", "10.0.3.11")}   # p6: not in the view
    assert "p6" not in view.ports
    flows = compile_view(view)
    assert any(f.cookie == "sg:sg-app:members" and ("ipv4_src", "10.0.3.11") in f.match
               for f in flows)


def test_without_groups_a_port_bound_here_allows_nothing():
    objs = objects()                      # no security-groups collection, no groups on p1
    view = view_of(objs)
    assert view.security.port_groups["p1"] == ()
    acl = [f for f in compile_view(view) if f.stage in ("egress_acl", "ingress_acl")
           and f.cookie.startswith("sg:")]
    assert acl == []


def test_a_bad_group_event_is_refused_and_the_last_good_group_stays():
    model = Model()
    snap = {c: list(v.values()) for c, v in secured().items()}
    assert model.reset(10, snap) == []
    good = copy.deepcopy(model.objects["security-groups"]["sg-web"])
    bad = sg("sg-web", sg_rule("r", "sideways"))
    with pytest.raises(BadEvent, match="security-groups/sg-web"):
        model.apply({"type": "put", "collection": "security-groups", "id": "sg-web",
                     "revision": 11, "object": bad})
    assert model.objects["security-groups"]["sg-web"] == good
    with pytest.raises(BadEvent):
        model.apply({"type": "put", "collection": "security-groups", "id": "sg-x",
                     "revision": 12, "object": sg("sg-x", sg_rule("r", "ingress", "frob"))})
    assert model.apply({"type": "put", "collection": "security-groups", "id": "sg-new",
                        "revision": 13, "object": sg("sg-new", sg_rule("r", "ingress"))})
    assert model.apply({"type": "delete", "collection": "security-groups", "id": "sg-new",
                        "revision": 14, "object": None})


def test_snapshot_skips_unusable_groups():
    snap = {c: list(v.values()) for c, v in secured().items()}
    snap["security-groups"].append(sg("sg-bad", {"id": "r", "direction": "ingress",
                                                 "ethertype": "IPv5"}))
    snap["security-groups"].append({"id": "sg-norules", "security_group_rules": "nope"})
    model = Model()
    problems = model.reset(3, snap)
    assert sorted(i for c, i, _ in problems if c == "security-groups") == ["sg-bad",
                                                                         "sg-norules"]
    assert "sg-web" in model.objects["security-groups"]


def test_gone_zones_are_the_ofports_of_vifs_that_went_away():
    a, b, c = Vif("tap1", "p1", 1), Vif("tap2", "p2", 2), Vif("tap3", "p3", -1)
    assert gone_zones([a, b, c], [a]) == [2]                  # unusable VIFs had no zone
    assert gone_zones([a, b], [a, b, Vif("tap4", "p4", 4)]) == []
    assert gone_zones([a], [Vif("tap1", "p9", 1)]) == [1]     # another port on the ofport
    assert gone_zones([a], [Vif("tap1", "p1", 7)]) == [1]     # renumbered
    assert gone_zones([a], [Vif("tap1", "p1", -1)]) == [1]    # no longer usable
    assert gone_zones([], [a]) == []
