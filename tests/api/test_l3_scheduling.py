"""Gateway scheduling: the pure planner's promises, then through the real clients on a
server of this module's own — routers spread over the gateway chassis, follow them as
they register and are deleted, show as Neutron's l3-agent views (sdk and CLI), and
admins pin and unpin them; the schedule is on the southbound stream."""

from __future__ import annotations

import itertools
import random
import threading
from collections import Counter

import pytest

from plexus.api.services.l3_scheduling import Chassis, Intent, ha_states, schedule
from tests.api.helpers import raw, register_chassis
from tests.api.l3 import connect, error, fresh_server, run_cli

GC = "plexus:gateway_chassis"


# ---- the pure planner ------------------------------------------------------------------


def _firsts(plan: dict) -> Counter:
    return Counter(v[0] for v in plan.values() if v)


def test_new_routers_spread_over_alive_chassis():
    chassis = [Chassis("a"), Chassis("b"), Chassis("c"), Chassis("dead", alive=False)]
    plan = schedule([Intent(f"r{i}", True) for i in range(9)], chassis)
    assert _firsts(plan) == {"a": 3, "b": 3, "c": 3}
    for lst in plan.values():      # every gateway chassis, alive ones before dead ones
        assert sorted(lst) == ["a", "b", "c", "dead"] and lst[-1] == "dead"
    # seconds spread too (rendezvous order), so a failed chassis' routers spread
    seconds = Counter(lst[1] for lst in plan.values())
    assert len(seconds) > 1


def test_plan_is_pure_and_order_independent():
    chassis = [Chassis(n, alive=n != "d") for n in "abcde"]
    routers = [Intent(f"r{i}", i % 4 != 0, current=("b", "a") if i % 3 == 0 else (),
                      pinned=("c",) if i == 5 else ()) for i in range(20)]
    want = schedule(routers, chassis, limit=3)
    for seed in range(5):
        rng = random.Random(seed)
        shuffled_r, shuffled_c = routers[:], chassis[:]
        rng.shuffle(shuffled_r)
        rng.shuffle(shuffled_c)
        assert schedule(shuffled_r, shuffled_c, limit=3) == want
    assert all(len(v) == 3 for k, v in want.items() if int(k[1:]) % 4 != 0)
    assert all(v == () for k, v in want.items() if int(k[1:]) % 4 == 0)   # no gateway


def test_balanced_schedules_do_not_move_and_a_new_chassis_takes_a_share():
    chassis = [Chassis("a"), Chassis("b")]
    plan = schedule([Intent(f"r{i}", True) for i in range(6)], chassis)
    again = schedule([Intent(k, True, current=v) for k, v in plan.items()], chassis)
    assert again == plan                                      # stable: nothing moves
    grown = schedule([Intent(k, True, current=v) for k, v in plan.items()],
                     chassis + [Chassis("c")])
    assert _firsts(grown) == {"a": 2, "b": 2, "c": 2}
    moved = [k for k in plan if grown[k][0] != plan[k][0]]
    assert len(moved) == 2                                     # the fewest moves
    assert all(grown[k][:2] == plan[k] for k in plan if k not in moved)  # appended at the end


def test_pins_go_first_and_are_never_rebalanced_exclusions_stay_off():
    chassis = [Chassis("a"), Chassis("b")]
    routers = [Intent(f"r{i}", True, current=("a", "b"), pinned=("a",)) for i in range(4)]
    routers.append(Intent("x", True, current=("a", "b"), excluded=("a",)))
    plan = schedule(routers, chassis)
    assert all(plan[f"r{i}"] == ("a", "b") for i in range(4))
    assert plan["x"] == ("b",)
    # a pin on a router without a gateway is kept (and is all it has); unknown pins go
    assert schedule([Intent("y", False, pinned=("b", "gone"))], chassis) == {"y": ("b",)}


def test_ha_states():
    assert ha_states(["a", "b", "c"], {"b", "c"}) == {"a": "unknown", "b": "active",
                                                      "c": "standby"}
    assert ha_states(["a"], set()) == {"a": "unknown"}


# ---- through the API -------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A server of this module's own, its clients, and an external network."""
    with fresh_server(tmp_path_factory.mktemp("l3sched")) as srv:
        admin, demo = connect(srv), connect(srv, "devstack")
        ext = admin.network.create_network(name="public", is_router_external=True)
        admin.network.create_subnet(network_id=ext.id, cidr="172.24.4.0/24", ip_version=4)
        yield {"server": srv, "admin": admin, "demo": demo, "ext": ext}


@pytest.fixture
def fresh(lab):
    """The lab with no chassis and no routers left from other tests."""
    admin = lab["admin"]
    yield lab
    for router in admin.network.routers():
        admin.network.delete_router(router)
    for agent in admin.network.agents():
        admin.network.delete_agent(agent)


def schedules(lab, routers) -> dict[str, list[str]]:
    """Each router's gateway chassis, as the southbound stream carries them."""
    snap = raw(lab["server"], lab["admin"], "GET", "/southbound/v1/snapshot").json()
    stored = {r["id"]: r for r in snap["objects"].get("routers", [])}
    return {r.name: stored[r.id][GC] for r in routers}


def agent(lab, host: str):
    [found] = [a for a in lab["admin"].network.agents() if a.host == host]
    return found


def test_spread_and_reschedule_on_register_and_delete(fresh):
    lab = fresh
    srv, admin, demo, ext = lab["server"], lab["admin"], lab["demo"], lab["ext"]
    register_chassis(srv, admin, "gw-1", gateway=True)
    register_chassis(srv, admin, "gw-2", gateway=True)
    register_chassis(srv, admin, "compute-1", gateway=False)
    routers = [demo.network.create_router(name=f"s{i}",
                                          external_gateway_info={"network_id": ext.id})
               for i in range(6)]
    plain = demo.network.create_router(name="no-gateway")
    lists = schedules(lab, routers + [plain])
    assert lists.pop("no-gateway") == []
    assert all(sorted(v) == ["gw-1", "gw-2"] for v in lists.values())
    assert Counter(v[0] for v in lists.values()) == {"gw-1": 3, "gw-2": 3}

    # a third gateway chassis joins every list, and takes a fair share of first choices
    register_chassis(srv, admin, "gw-3", gateway=True)
    grown = schedules(lab, routers)
    assert all(sorted(v) == ["gw-1", "gw-2", "gw-3"] for v in grown.values())
    assert Counter(v[0] for v in grown.values()) == {"gw-1": 2, "gw-2": 2, "gw-3": 2}
    assert sum(grown[k][0] != lists[k][0] for k in lists) == 2

    # re-registering (an agent restart) changes nothing
    register_chassis(srv, admin, "gw-2", gateway=True)
    assert schedules(lab, routers) == grown

    # a deleted gateway chassis leaves every list; its routers spread over the rest
    admin.network.delete_agent(agent(lab, "gw-1"))
    shrunk = schedules(lab, routers)
    assert all(sorted(v) == ["gw-2", "gw-3"] for v in shrunk.values())
    assert Counter(v[0] for v in shrunk.values()) == {"gw-2": 3, "gw-3": 3}

    # a chassis that stops being gateway-capable leaves too
    register_chassis(srv, admin, "gw-3", gateway=False)
    assert all(v == ["gw-2"] for v in schedules(lab, routers).values())


def test_gateway_set_and_clear_schedule(fresh):
    lab = fresh
    srv, admin, demo, ext = lab["server"], lab["admin"], lab["demo"], lab["ext"]
    register_chassis(srv, admin, "gw-a", gateway=True)
    router = demo.network.create_router(name="toggle")
    assert schedules(lab, [router])["toggle"] == []
    demo.network.update_router(router, external_gateway_info={"network_id": ext.id})
    assert schedules(lab, [router])["toggle"] == ["gw-a"]
    revision = demo.network.get_router(router.id).revision_number
    register_chassis(srv, admin, "gw-b", gateway=True)
    assert schedules(lab, [router])["toggle"] == ["gw-a", "gw-b"]
    # rescheduling is not a change of the Neutron resource: If-Match keeps working
    assert demo.network.get_router(router.id).revision_number == revision
    demo.network.update_router(router, external_gateway_info={})
    assert schedules(lab, [router])["toggle"] == []
    assert list(admin.network.routers_hosting_l3_agents(router)) == []


def test_concurrent_creates_then_reschedule_balance(fresh):
    lab = fresh
    srv, admin, demo, ext = lab["server"], lab["admin"], lab["demo"], lab["ext"]
    register_chassis(srv, admin, "gw-x", gateway=True)
    register_chassis(srv, admin, "gw-y", gateway=True)
    made, lock = [], threading.Lock()

    def create(i: int) -> None:
        r = raw(srv, demo, "POST", "/v2.0/routers", {"router": {
            "name": f"c{i}", "external_gateway_info": {"network_id": ext.id}}})
        assert r.status_code == 201, r.text
        with lock:
            made.append(demo.network.get_router(r.json()["router"]["id"]))
    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lists = schedules(lab, made)
    assert all(sorted(v) == ["gw-x", "gw-y"] for v in lists.values())
    register_chassis(srv, admin, "gw-x", gateway=True)      # any registration rebalances
    firsts = Counter(v[0] for v in schedules(lab, made).values())
    assert firsts == {"gw-x": 4, "gw-y": 4}


def test_l3_agent_views_sdk_and_cli(fresh):
    lab = fresh
    srv, admin, demo, ext = lab["server"], lab["admin"], lab["demo"], lab["ext"]
    leases = {name: register_chassis(srv, admin, name, gateway=True)
              for name in ("gw-p", "gw-q")}
    router = demo.network.create_router(name="viewed",
                                        external_gateway_info={"network_id": ext.id})
    order = schedules(lab, [router])["viewed"]
    hosting = list(admin.network.routers_hosting_l3_agents(router))
    assert [(a.host, a.ha_state, a.is_alive) for a in hosting] == [
        (order[0], "active", True), (order[1], "standby", True)]
    listed = run_cli(srv, "network", "agent", "list", "--router", router.id, "--long",
                     "-f", "json")
    assert [(a["Host"], a["HA State"]) for a in listed] == [(order[0], "active"),
                                                             (order[1], "standby")]
    for host in order:
        hosted = run_cli(srv, "router", "list", "--agent", agent(lab, host).id, "-f", "json")
        assert [r["Name"] for r in hosted] == ["viewed"]
    shown = run_cli(srv, "router", "show", router.id, "-f", "json")
    assert shown["status"] == "BUILD" and shown["external_gateway_info"]["network_id"] == ext.id
    # the active chassis stops: the next one becomes active, the dead one "unknown"
    raw(srv, admin, "DELETE", f"/southbound/v1/chassis/{order[0]}?lease={leases[order[0]]}")
    hosting = list(admin.network.routers_hosting_l3_agents(router))
    assert [(a.host, a.ha_state, a.is_alive) for a in hosting] == [
        (order[0], "unknown", False), (order[1], "active", True)]
    # admin only
    error(raw(srv, demo, "GET", f"/v2.0/routers/{router.id}/l3-agents"),
          403, "PolicyNotAuthorized")
    error(raw(srv, demo, "GET", f"/v2.0/agents/{agent(lab, order[1]).id}/l3-routers"),
          403, "PolicyNotAuthorized")
    error(raw(srv, admin, "GET", "/v2.0/routers/5f0f7f6c-1111-4c3c-9c6e-000000000000/"
                                 "l3-agents"), 404, "RouterNotFound")
    ext_aliases = {e["alias"] for e in raw(srv, demo, "GET", "/v2.0/extensions")
                   .json()["extensions"]}
    assert "l3_agent_scheduler" in ext_aliases


def test_pin_and_unpin(fresh):
    lab = fresh
    srv, admin, demo, ext = lab["server"], lab["admin"], lab["demo"], lab["ext"]
    for name in ("gw-m", "gw-n"):
        register_chassis(srv, admin, name, gateway=True)
    register_chassis(srv, admin, "cn-1", gateway=False)
    routers = [demo.network.create_router(name=f"p{i}",
                                          external_gateway_info={"network_id": ext.id})
               for i in range(4)]
    m, n = agent(lab, "gw-m"), agent(lab, "gw-n")
    on_n = [r for r in routers if schedules(lab, [r])[r.name][0] == "gw-n"]
    target = on_n[0]
    admin.network.add_router_to_agent(m, target)               # pinned first
    assert schedules(lab, [target])[target.name] == ["gw-m", "gw-n"]
    admin.network.add_router_to_agent(m, target)               # again: no change
    # a pinned router is not rebalanced away when another chassis joins
    register_chassis(srv, admin, "gw-o", gateway=True)
    assert schedules(lab, [target])[target.name][0] == "gw-m"
    # removing takes the chassis off the router's list (and keeps it off)
    admin.network.remove_router_from_agent(m, target)
    assert "gw-m" not in schedules(lab, [target])[target.name]
    assert target.id not in [r.id for r in admin.network.agent_hosted_routers(m)]
    register_chassis(srv, admin, "gw-m", gateway=True)
    assert "gw-m" not in schedules(lab, [target])[target.name]
    error(raw(srv, admin, "DELETE", f"/v2.0/agents/{m.id}/l3-routers/{target.id}"),
          409, "RouterNotHostedByL3Agent")
    # the CLI adds it back (first) and removes it
    run_cli(srv, "network", "agent", "add", "router", "--l3", m.id, target.id)
    assert schedules(lab, [target])[target.name][0] == "gw-m"
    run_cli(srv, "network", "agent", "remove", "router", "--l3", n.id, target.id)
    assert "gw-n" not in schedules(lab, [target])[target.name]
    # a router without a gateway may be pinned: it is then listed on that chassis
    plain = demo.network.create_router(name="plain")
    admin.network.add_router_to_agent(n, plain)
    assert [(a.host, a.ha_state) for a in admin.network.routers_hosting_l3_agents(plain)] \
        == [("gw-n", None)]
    # refusals
    compute = agent(lab, "cn-1")
    error(raw(srv, admin, "POST", f"/v2.0/agents/{compute.id}/l3-routers",
              {"router_id": target.id}), 404, "InvalidL3Agent")
    error(raw(srv, admin, "POST", f"/v2.0/agents/{m.id}/l3-routers",
              {"router_id": "5f0f7f6c-1111-4c3c-9c6e-000000000000"}), 404, "RouterNotFound")
    error(raw(srv, admin, "POST", "/v2.0/agents/5f0f7f6c-1111-4c3c-9c6e-000000000000/"
                                  "l3-routers", {"router_id": target.id}), 404, "AgentNotFound")
    error(raw(srv, admin, "POST", f"/v2.0/agents/{m.id}/l3-routers", {}), 400, "BadRequest")
    error(raw(srv, admin, "POST", f"/v2.0/agents/{m.id}/l3-routers",
              {"router_id": target.id, "ha_chassis_priority": 3}), 400, "InvalidInput")
    error(raw(srv, demo, "POST", f"/v2.0/agents/{m.id}/l3-routers",
              {"router_id": target.id}), 403, "PolicyNotAuthorized")
    # a disabled chassis is not a gateway candidate any more
    admin.network.update_agent(agent(lab, "gw-o"), is_admin_state_up=False)
    assert all("gw-o" not in v for v in schedules(lab, routers).values())
    error(raw(srv, admin, "POST", f"/v2.0/agents/{agent(lab, 'gw-o').id}/l3-routers",
              {"router_id": target.id}), 404, "InvalidL3Agent")


def test_two_servers_agree(fresh):
    """Two servers on one store compute the same schedule (it is a pure function of
    the store), so an agent-triggered reschedule on either converges."""
    lab = fresh
    srv, admin, demo, ext = lab["server"], lab["admin"], lab["demo"], lab["ext"]
    for name in ("gw-1", "gw-2", "gw-3"):
        register_chassis(srv, admin, name, gateway=True)
    routers = [demo.network.create_router(name=f"t{i}",
                                          external_gateway_info={"network_id": ext.id})
               for i in range(5)]
    services = srv.app.state.services
    scheduler = services["routers"].scheduler
    assert scheduler.reschedule() == 0                     # already what it would write
    from plexus.api.services import build_services
    other = build_services(services.store, services.config)["routers"].scheduler
    assert other.reschedule() == 0
    for a, b in itertools.combinations(schedules(lab, routers).values(), 2):
        assert sorted(a) == sorted(b) == ["gw-1", "gw-2", "gw-3"]
