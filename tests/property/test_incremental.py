"""The incremental control path equals the full recompute, after every step of random
event sequences over the L3 reference world (routers, floating IPs, SNAT blocks,
security groups with remote groups, liveness):

- the catalog kept by applying events equals a catalog parsed afresh from the objects,
  indexes included;
- a chassis that receives only the events of its relevance scopes (and, when its scopes
  grow or shrink, the objects that come into or go out of them — what the server's
  per-chassis stream sends) ends with the same subscriptions and the same view as one
  built from the whole model;
- the incremental compiler's flows equal ``compile_view`` of that view.

QoS is in the world too: policies whose rules change, and ports and networks that take,
change and drop them."""

from __future__ import annotations

import copy
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from plexus.agent import view as views
from plexus.model import keys, relevance
from plexus.model.catalog import Catalog
from plexus.pipeline.compile import compile_view
from plexus.pipeline.incremental import IncrementalCompiler
from plexus.pipeline.stages.metadata import METADATA_OFPORT
from tests.golden.l3_reference import (
    CHASSIS, PATCH, TUNNEL, TUNNEL_IP, UPSTREAM, mac, objects, subnet_of,
)

STEPS = settings(max_examples=30, deadline=None)
NETS = ["net-a", "net-b", "net-c", "ext-net", "ext-vlan"]   # VMs on the external (flat,
# VLAN) networks too: bridged where they have a local port
HOSTS = CHASSIS + [""]
GROUPS = ["sg-web", "sg-app", "sg-db"]


def world() -> dict:
    """The reference objects plus security groups and liveness."""
    objs = objects()
    objs["security-groups"] = {
        "sg-web": {"id": "sg-web", "security_group_rules": [
            {"id": "w1", "direction": "ingress", "protocol": "tcp", "port_range_min": 80,
             "port_range_max": 80, "ethertype": "IPv4"}]},
        "sg-app": {"id": "sg-app", "security_group_rules": [
            {"id": "a1", "direction": "ingress", "ethertype": "IPv4",
             "remote_group_id": "sg-web"},
            {"id": "a2", "direction": "egress", "ethertype": "IPv4"}]},
        "sg-db": {"id": "sg-db", "security_group_rules": [
            {"id": "d1", "direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
             "port_range_min": 5432, "port_range_max": 5432, "remote_group_id": "sg-app"}]}}
    for pid, port in objs["ports"].items():
        if port["device_owner"].startswith("compute"):
            port["security_groups"] = (["sg-db"] if pid.startswith("c-") else
                                       ["sg-app"] if pid.endswith("1") else ["sg-web"])
    objs["liveness"] = {f"agent-{c}": {"host": c} for c in CHASSIS}
    objs["vip_owners"] = {}
    objs["qos-policies"] = {q: qos_policy(q, random.Random(i)) for i, q in enumerate(QOS)}
    return objs


QOS = ["qos-1", "qos-2"]


def qos_policy(ident: str, rnd: random.Random) -> dict:
    """A QoS policy with a random subset of rules (as the API stores them)."""
    rules = []
    for direction in ("egress", "ingress"):
        if rnd.random() < 0.6:
            rules.append({"id": f"{ident}-{direction}", "type": "bandwidth_limit",
                          "direction": direction, "max_kbps": rnd.choice([1000, 8000]),
                          "max_burst_kbps": rnd.choice([0, 100])})
    if rnd.random() < 0.5:
        rules.append({"id": f"{ident}-dscp", "type": "dscp_marking",
                      "dscp_mark": rnd.choice([10, 26, 46])})
    if rnd.random() < 0.3:
        rules.append({"id": f"{ident}-min", "type": "minimum_bandwidth",
                      "direction": "egress", "min_kbps": 500})
    return {"id": ident, "rules": rules}


def mutate(objs: dict, rnd: random.Random, n: int) -> tuple[str, str, dict | None]:
    """Change one object of ``objs`` at random; returns (collection, id, new wire or None)."""
    ports = objs["ports"]
    vms = sorted(p for p, o in ports.items() if o["device_owner"].startswith("compute"))
    kind = rnd.randrange(18)
    if kind == 0 and vms:                                  # a VM moves (or is unbound)
        pid = rnd.choice(vms)
        return "ports", pid, dict(ports[pid], **{"binding:host_id": rnd.choice(HOSTS)})
    if kind == 1:                                          # a new VM port
        net = rnd.choice(NETS)
        pid = f"x{n}"
        return "ports", pid, {
            "id": pid, "plexus:key": 100 + n, "network_id": net,
            "mac_address": f"fa:16:3e:77:{n // 256:02x}:{n % 256:02x}",
            "binding:host_id": rnd.choice(HOSTS), "device_owner": "compute:nova",
            "device_id": f"vm{n}", "admin_state_up": True, "allowed_address_pairs": [],
            "fixed_ips": [{"subnet_id": subnet_of(net), "ip_address": f"10.9.0.{n % 3 + 5}"}],
            "security_groups": rnd.sample(GROUPS, rnd.randrange(3))}
    if kind == 2 and vms:                                  # a VM port goes away
        return "ports", rnd.choice(vms), None
    if kind == 3 and vms:                                  # its groups change
        pid = rnd.choice(vms)
        return "ports", pid, dict(ports[pid], security_groups=rnd.sample(
            GROUPS + ["sg-gone"], rnd.randrange(3)))
    if kind == 4:                                          # a router interface comes or goes
        if "r1-b" in ports and rnd.random() < 0.5:
            return "ports", "r1-b", None
        return "ports", "r1-b", {
            "id": "r1-b", "plexus:key": 1, "network_id": "net-b",
            "mac_address": mac("r1-b"), "binding:host_id": "",
            "fixed_ips": [{"subnet_id": "sub-b", "ip_address": "10.2.0.1"}],
            "device_owner": "network:router_interface", "device_id": rnd.choice(["r1", "r2"]),
            "admin_state_up": True, "allowed_address_pairs": []}
    if kind == 5:                                          # gateway candidates change
        rid = rnd.choice(["r1", "r2"])
        cands = rnd.sample(["gw1", "gw2", "hv1", "hv3"], rnd.randrange(1, 4))
        return "routers", rid, dict(objs["routers"][rid], **{keys.GATEWAY_CHASSIS: cands})
    if kind == 6:                                          # a remote-group rule changes
        rules = [{"id": "a2", "direction": "egress", "ethertype": "IPv4"}]
        if rnd.random() < 0.6:
            rules.append({"id": "a1", "direction": "ingress", "ethertype": "IPv4",
                          "remote_group_id": rnd.choice(GROUPS)})
        return "security-groups", "sg-app", {"id": "sg-app", "security_group_rules": rules}
    if kind == 7:                                          # a floating IP moves
        fip = dict(objs["floatingips"]["fip-a1"])
        on_a = [p for p in vms if ports[p]["network_id"] == "net-a"]
        if on_a and rnd.random() < 0.7:
            pid = rnd.choice(on_a)
            fip.update(port_id=pid, router_id="r1",
                       fixed_ip_address=ports[pid]["fixed_ips"][0]["ip_address"])
        else:
            fip.update(port_id=None, router_id=None, fixed_ip_address=None)
        return "floatingips", "fip-a1", fip
    if kind == 8:                                          # a chassis' liveness
        c = rnd.choice(CHASSIS)
        if f"agent-{c}" in objs["liveness"]:
            return "liveness", f"agent-{c}", None
        return "liveness", f"agent-{c}", {"host": c}
    if kind == 9:                                          # a SNAT block
        ident = f"r1:{3000 + n}"
        return "snat_blocks", ident, {"id": ident, "router_id": "r1",
                                      "chassis": rnd.choice(CHASSIS), "ip": "203.0.113.10",
                                      "port_min": 3000 + n * 64, "port_max": 3063 + n * 64}
    if kind == 10:                # not structural: DNS servers, or the subnet's scope
        sid = rnd.choice(["sub-a", "sub-b", "sub-c", "sub-ext"])
        if rnd.random() < 0.5:                             # its pool changed scope
            return "subnets", sid, dict(objs["subnets"][sid], **{
                keys.ADDRESS_SCOPE_KEY: rnd.choice([None, "red", "blue"])})
        return "subnets", sid, dict(objs["subnets"][sid],
                                    dns_nameservers=[f"10.0.0.{rnd.randrange(1, 9)}"])
    if kind == 11 and vms:                                 # a shared VIP listed or not
        pid = rnd.choice(vms)
        return "ports", pid, dict(ports[pid], allowed_address_pairs=rnd.choice(
            [[], [{"ip_address": "10.9.0.250"}], [{"ip_address": "10.9.0.251/32"}]]))
    if kind == 12 and vms:                                 # a VIP's learned owner moves
        pid = rnd.choice(vms)
        net, ip = ports[pid]["network_id"], rnd.choice(["10.9.0.250", "10.9.0.251"])
        ident = f"{net}:{ip}"
        if ident in objs["vip_owners"] and rnd.random() < 0.3:
            return "vip_owners", ident, None
        return "vip_owners", ident, {"id": ident, "network_id": net, "ip": ip,
                                     "port_id": pid, "chassis": ports[pid]["binding:host_id"]}
    if kind == 13:                                         # a group's own rule comes or goes
        gid = rnd.choice(GROUPS)
        group = objs["security-groups"][gid]
        rules = list(group["security_group_rules"])
        if rules and rnd.random() < 0.4:
            rules.pop(rnd.randrange(len(rules)))
        else:
            proto = rnd.choice([None, "tcp", "udp", "icmp"])
            rule = {"id": f"{gid}-r{n}", "direction": rnd.choice(["ingress", "egress"]),
                    "ethertype": "IPv4", "protocol": proto}
            if proto in ("tcp", "udp"):
                low = rnd.choice([22, 80, 1000, 5432])
                rule.update(port_range_min=low, port_range_max=low + rnd.choice([0, 0, 9]))
            if rnd.random() < 0.4:
                rule["remote_ip_prefix"] = rnd.choice(["10.1.0.0/24", "0.0.0.0/0",
                                                       "10.9.0.5/32"])
            rules.insert(rnd.randrange(len(rules) + 1), rule)
        return "security-groups", gid, dict(group, security_group_rules=rules)
    if kind == 14:                                         # a QoS policy's rules change
        ident = rnd.choice(QOS)
        return "qos-policies", ident, qos_policy(ident, rnd)
    if kind == 15 and vms:                                 # a port takes or drops a policy
        pid = rnd.choice(vms)
        return "ports", pid, dict(ports[pid], qos_policy_id=rnd.choice(QOS + [None]))
    if kind == 16:                                         # a network's policy
        net = rnd.choice(NETS)
        return "networks", net, dict(objs["networks"][net],
                                     qos_policy_id=rnd.choice(QOS + [None]))
    pid = rnd.choice(sorted(ports))                        # a status report
    return "ports", pid, dict(ports[pid], status=rnd.choice(["ACTIVE", "DOWN"]))


class FilteredChassis:
    """A chassis fed only what its relevance scopes admit, as the per-chassis stream
    feeds it: the events that meet its scopes (before or after), plus the objects that
    come into or leave its scopes when they move."""

    def __init__(self, name: str, full: Catalog):
        self.name = name
        self.subs = relevance.subscriptions(full, name)
        self.catalog = Catalog()
        self._sync(full, relevance.select(full, self.subs))
        self.compiler = IncrementalCompiler()

    def _sync(self, full: Catalog, wanted: dict) -> None:
        for collection, table in wanted.items():
            for ident, obj in table.items():
                self.catalog.put(collection, ident, obj)

    def deliver(self, change, full: Catalog) -> None:
        if not relevance.relevant(relevance.change_scopes(change), self.subs):
            return
        if change.new is None:
            self.catalog.delete(change.collection, change.id)
        else:
            self.catalog.put(change.collection, change.id, change.new)
        if relevance.structural(change):
            subs = relevance.subscriptions(full, self.name)
            if subs != self.subs:
                wanted = relevance.select(full, subs)
                for collection, table in self.catalog.objects.items():
                    for ident in [i for i in table if i not in wanted[collection]]:
                        self.catalog.delete(collection, ident)          # pruned
                self._sync(full, wanted)                                # backfilled
                self.subs = subs


def facts(catalog: Catalog, chassis: str) -> dict:
    """The agent's local facts for a chassis of the reference lab."""
    local = catalog.ports_by_chassis.of(chassis)
    return dict(vif_ofports={p: i + 1 for i, p in enumerate(sorted(local))},
                tunnel_ofports={c: TUNNEL[c] for c in CHASSIS if c != chassis},
                alive=catalog.alive(), bridge_mappings={"physnet1": "br-ex"},
                patch_ofports={"physnet1": PATCH}, external_macs=UPSTREAM,
                metadata_ofport=METADATA_OFPORT)


def indexes(catalog: Catalog) -> dict:
    """Every index of a catalog, comparable."""
    return {name: {k: (dict(v) if isinstance(v, dict) else set(v)) for k, v in value.items()}
            for name, value in vars(catalog).items() if name != "objects"}


@STEPS
@given(st.integers(0, 2 ** 32), st.integers(1, 25))
def test_incremental_equals_full_recompute(seed, steps):
    rnd = random.Random(seed)
    objs = world()
    full, problems = Catalog.from_wire(objs)
    assert not problems
    chassis = {c: FilteredChassis(c, full) for c in CHASSIS}
    for n in range(steps):
        collection, ident, wire = mutate(objs, rnd, n)
        if wire is None:
            objs[collection].pop(ident, None)
        else:
            objs[collection][ident] = copy.deepcopy(wire)
        change = full.apply_wire(collection, ident, wire)
        fresh, problems = Catalog.from_wire(objs)
        assert not problems
        assert full.objects == fresh.objects and indexes(full) == indexes(fresh)
        for name, fc in chassis.items():
            if change is not None:
                fc.deliver(change, full)
            assert fc.subs == relevance.subscriptions(full, name), (n, name, change)
            want = views.build(full, name, TUNNEL_IP[name], **facts(full, name))
            got = views.build(fc.catalog, name, TUNNEL_IP[name], **facts(full, name))
            assert got == want, (n, name, change)
            fc.compiler.compile(got)
            assert sorted(map(str, fc.compiler.flows())) == sorted(
                map(str, compile_view(want))), (n, name, change)


def test_an_irrelevant_event_is_dropped_and_a_relevant_one_is_not():
    full, _ = Catalog.from_wire(world())
    subs = relevance.subscriptions(full, "hv3")            # hv3: c-vm2 on net-c only
    far = full.apply_wire("ports", "y1", {
        "id": "y1", "plexus:key": 9, "network_id": "net-a", "mac_address": "fa:16:3e:0:0:9",
        "binding:host_id": "hv2", "fixed_ips": [], "device_owner": "compute:nova"})
    assert not relevance.relevant(relevance.change_scopes(far), subs)
    near = full.apply_wire("ports", "y2", {
        "id": "y2", "plexus:key": 10, "network_id": "net-c", "mac_address": "fa:16:3e:0:0:a",
        "binding:host_id": "hv2", "fixed_ips": [], "device_owner": "compute:nova"})
    assert relevance.relevant(relevance.change_scopes(near), subs)
    mine = full.apply_wire("ports", "y3", {
        "id": "y3", "plexus:key": 11, "network_id": "net-a", "mac_address": "fa:16:3e:0:0:b",
        "binding:host_id": "hv3", "fixed_ips": [], "device_owner": "compute:nova"})
    assert relevance.relevant(relevance.change_scopes(mine), subs)       # its own host
    assert ("net", "net-a") in relevance.subscriptions(full, "hv3")
