"""Shared (keepalived-style) VIPs: routed to the port learned to hold them (issue 12,
item 4): l3_neighbor's flows, port_security's copy of the VIP's ARP to the agent, the
model object and its scope, and the agent's debounce."""

from __future__ import annotations

import asyncio

from plexus.agent.vips import VipAnnouncements
from plexus.model import keys, relevance
from plexus.model.catalog import Catalog
from plexus.model.objects import BadObject, VipOwner, parse
from plexus.pipeline.flows import Controller
from plexus.pipeline.stages.port_security import VIP_ARP, compile_port_security
from tests.golden.l3_reference import changed, mac, objects, view
from tests.unit.test_l3_units import neighbour_macs, with_pairs

VIP = "10.1.0.250"


def shared(owner: str | None = None) -> dict:
    """a-vm1 and a-vm2 (both on hv1, net-a) list VIP; ``owner`` learned to hold it."""
    objs = with_pairs(objects(), **{"a-vm1": [VIP], "a-vm2": [f"{VIP}/32"]})
    objs["vip_owners"] = {} if owner is None else {f"net-a:{VIP}": {
        "id": f"net-a:{VIP}", "network_id": "net-a", "ip": VIP, "port_id": owner,
        "chassis": "hv1"}}
    return objs


def test_a_shared_vip_goes_to_its_learned_owner_and_nowhere_without_one():
    for chassis in ("hv1", "hv2"):              # the owner's chassis and another one
        net_a = view(chassis, shared()).networks["net-a"].key
        assert (net_a, VIP) not in neighbour_macs(view(chassis, shared()))
        assert neighbour_macs(view(chassis, shared("a-vm1")))[(net_a, VIP)] == mac("a-vm1")
        assert neighbour_macs(view(chassis, shared("a-vm2")))[(net_a, VIP)] == mac("a-vm2")


def test_a_stale_owner_is_ignored():
    objs = changed(shared("a-vm1"), "ports", "a-vm1", allowed_address_pairs=[])
    v = view("hv2", objs)
    # a-vm2 alone lists the VIP now: it holds it, whatever the stale owner says
    assert neighbour_macs(v)[(v.networks["net-a"].key, VIP)] == mac("a-vm2")
    objs = with_pairs(shared("a-vm1"), **{"a-vm1": [], "a-vm2": [VIP], "c-vm1": []})
    objs = changed(objs, "ports", "a-vm2", allowed_address_pairs=[])
    assert (v.networks["net-a"].key, VIP) not in neighbour_macs(view("hv2", objs))
    objs = {**shared("no-such-port")}
    assert (v.networks["net-a"].key, VIP) not in neighbour_macs(view("hv2", objs))


def test_port_security_copies_a_shared_vips_arp_to_the_agent_and_lets_it_on():
    punts = [f for f in compile_port_security(view("hv1", shared()))
             if Controller(VIP_ARP) in f.actions]
    by_port = {f.cookie: dict(f.match) for f in punts}
    assert set(by_port) == {"port:a-vm1", "port:a-vm2"}
    assert all(m["arp_spa"] == VIP and m["eth_type"] == 0x0806 for m in by_port.values())
    assert all(f.goto == "arp_responder" for f in punts)     # the ARP goes on as before
    # a VIP only one port lists is routed from the model: no copy
    single = with_pairs(objects(), **{"a-vm1": [VIP]})
    assert not [f for f in compile_port_security(view("hv1", single))
                if Controller(VIP_ARP) in f.actions]


def test_the_owner_object_rides_its_networks_scope():
    owner = parse(keys.VIP_OWNERS, {"network_id": "n1", "ip": VIP, "port_id": "p1",
                                    "chassis": "c1"})
    assert owner == VipOwner(id=f"n1:{VIP}", network_id="n1", ip=VIP, port_id="p1",
                             chassis="c1")
    assert relevance.scopes(keys.VIP_OWNERS, owner) == {("net", "n1")}
    for bad in ({"network_id": "n1", "ip": "x", "port_id": "p1"},
                {"network_id": "n1", "ip": VIP}, {"ip": VIP, "port_id": "p1"}):
        try:
            parse(keys.VIP_OWNERS, bad)
            raise AssertionError(bad)
        except BadObject:
            pass
    catalog = Catalog()
    catalog.put(keys.VIP_OWNERS, owner.id, owner)
    assert catalog.vip_owners_by_network.of("n1") == {owner.id}
    assert relevance.select(catalog, {("net", "n1")})[keys.VIP_OWNERS] == {owner.id: owner}
    assert not relevance.select(catalog, {("net", "n2")})[keys.VIP_OWNERS]
    catalog.delete(keys.VIP_OWNERS, owner.id)
    assert not catalog.vip_owners_by_network


def garp(ip: str) -> bytes:
    from os_ken.lib.packet import arp, ethernet, packet
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet("ff:ff:ff:ff:ff:ff", "fa:16:3e:00:00:01", 0x0806))
    pkt.add_protocol(arp.arp(opcode=arp.ARP_REQUEST, src_mac="fa:16:3e:00:00:01",
                             src_ip=ip, dst_mac="00:00:00:00:00:00", dst_ip=ip))
    pkt.serialize()
    return bytes(pkt.data)


class FakeSouthbound:
    def __init__(self):
        self.calls = []

    async def vip_owner(self, port_id, ip, chassis):
        self.calls.append((port_id, ip, chassis))
        return True


def test_a_garp_storm_is_reported_once_and_not_again_once_stored():
    async def go():
        sb = FakeSouthbound()
        vips = VipAnnouncements(sb, "hv1", interval=3600)
        v = view("hv1", shared())
        port = v.ports["a-vm1"]
        catalog = Catalog()
        assert vips.seen(port, garp(VIP), catalog)
        for _ in range(50):
            assert not vips.seen(port, garp(VIP), catalog)
        await asyncio.gather(*vips.tasks)
        assert sb.calls == [("a-vm1", VIP, "hv1")]
        # the other port announcing it is a change: reported
        assert vips.seen(v.ports["a-vm2"], garp(VIP), catalog)
        await asyncio.gather(*vips.tasks)
        # once the stored owner is the port, nothing is sent however long ago
        catalog.put(keys.VIP_OWNERS, f"net-a:{VIP}",
                    VipOwner(f"net-a:{VIP}", "net-a", VIP, "a-vm1", "hv1"))
        vips.recent.clear()
        assert not vips.seen(port, garp(VIP), catalog)
        assert not vips.seen(port, b"not a frame", catalog)
        assert len(sb.calls) == 2
    asyncio.run(go())
