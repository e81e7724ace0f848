"""The typed model of every object one process knows (all of them on a server, the
relevant ones on an agent), with the indexes that keep each question a lookup: ports by
network, chassis, device, security group, QoS policy and DNS name; networks by QoS policy; the
chassis hosting each network; routers by network and by gateway candidate; floating IPs
and SNAT blocks by router, floating IPs by the internal ports of their port forwardings;
groups by
the remote groups their rules name; agents and liveness by host.

``put`` and ``delete`` update the indexes in time proportional to the one object; each
returns the ``Change`` (old and new object) or None when nothing changed."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping

from plexus.model import keys
from plexus.model.objects import BadObject, parse


@dataclass(frozen=True)
class Change:
    """One object that changed: ``old`` None when created, ``new`` None when deleted."""

    collection: str
    id: str
    old: Any
    new: Any


class _Index(defaultdict):
    """key → set of ids, dropping empty sets."""

    def __init__(self) -> None:
        super().__init__(set)

    def add(self, key, ident: str) -> None:
        if key:
            self[key].add(ident)

    def remove(self, key, ident: str) -> None:
        found = self.get(key)
        if found is not None:
            found.discard(ident)
            if not found:
                del self[key]

    def of(self, key) -> set:
        """The ids under ``key`` (empty when none; never creates an entry)."""
        return self.get(key) or set()


class Catalog:
    """Typed objects by collection and id, and their indexes."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {c: {} for c in keys.COLLECTIONS}
        self.ports_by_network = _Index()
        self.ports_by_chassis = _Index()
        self.ports_by_device = _Index()
        self.ports_by_group = _Index()            # members of each security group
        self.subports_by_parent = _Index()        # a trunk parent's subports
        self.hosts_by_network: dict[str, Counter] = defaultdict(Counter)
        self.routers_by_network: dict[str, Counter] = defaultdict(Counter)   # interfaces
        self.subnets_by_network = _Index()
        self.routers_by_candidate = _Index()
        self.groups_by_remote = _Index()
        self.fips_by_router = _Index()
        self.fips_by_port = _Index()
        self.fips_by_forwarded_port = _Index()     # internal port -> floating IPs
        self.snat_by_router = _Index()
        self.vip_owners_by_network = _Index()
        self.lbs_by_network = _Index()            # load balancers by their VIP's network
        self.ports_by_qos = _Index()              # ports holding a QoS policy of their own
        self.ports_by_dns_name = _Index()         # ports with a dns_name (the API's filter)
        self.networks_by_qos = _Index()           # networks holding a QoS policy
        self.agent_by_host: dict[str, str] = {}
        self.liveness_by_host = _Index()

    # --- reading ---------------------------------------------------------------------
    def get(self, collection: str, ident: str | None):
        """One object, or None."""
        return self.objects[collection].get(ident) if ident else None

    def each(self, collection: str, idents: Iterable[str]) -> list:
        """The objects of ``idents`` that exist, in id order."""
        table = self.objects[collection]
        return [table[i] for i in sorted(idents) if i in table]

    def agent(self, host: str):
        """The registered agent of a chassis, or None."""
        return self.objects[keys.AGENTS].get(self.agent_by_host.get(host, ""))

    def alive(self) -> set[str]:
        """Chassis whose liveness lease the store holds."""
        return set(self.liveness_by_host)

    def routers_on(self, network_id: str) -> set[str]:
        """Routers with an interface on a network."""
        counts = self.routers_by_network.get(network_id)
        return set(counts) if counts else set()

    def hosts_on(self, network_id: str) -> set[str]:
        """Chassis hosting (having bound) a port of a network."""
        counts = self.hosts_by_network.get(network_id)
        return set(counts) if counts else set()

    # --- writing ---------------------------------------------------------------------
    def apply_wire(self, collection: str, ident: str, wire: Any) -> Change | None:
        """Parse a wire object (``BadObject`` leaves everything as it was) and put it;
        ``wire`` None deletes. Collections the model does not hold are ignored."""
        if collection not in self.objects:
            return None
        if wire is None:
            return self.delete(collection, ident)
        obj = parse(collection, wire)
        if collection in (keys.LIVENESS, keys.SNAT_BLOCKS, keys.AGENTS) and not obj.id:
            obj = replace(obj, id=ident)           # stored under its key, not carrying it
        return self.put(collection, ident, obj)

    def put(self, collection: str, ident: str, obj) -> Change | None:
        """Create or replace one typed object; None when it equals what is there."""
        table = self.objects[collection]
        old = table.get(ident)
        if old is not None and old == obj and _same_extras(old, obj):
            return None
        if old is not None:
            self._unindex(collection, ident, old)
        table[ident] = obj
        self._index(collection, ident, obj)
        return Change(collection, ident, old, obj)

    def delete(self, collection: str, ident: str) -> Change | None:
        """Remove one object; None when it was not there."""
        old = self.objects[collection].pop(ident, None)
        if old is None:
            return None
        self._unindex(collection, ident, old)
        return Change(collection, ident, old, None)

    def _index(self, collection: str, ident: str, obj) -> None:
        self._reindex(collection, ident, obj, +1)

    def _unindex(self, collection: str, ident: str, obj) -> None:
        self._reindex(collection, ident, obj, -1)

    def _reindex(self, collection: str, ident: str, obj, sign: int) -> None:
        def idx(index: _Index, key) -> None:
            (index.add if sign > 0 else index.remove)(key, ident)

        def count(counters: dict, key, value) -> None:
            counter = counters[key]
            counter[value] += sign
            if counter[value] <= 0:
                del counter[value]
                if not counter:
                    del counters[key]

        if collection == keys.PORTS:
            idx(self.ports_by_network, obj.network_id)
            idx(self.ports_by_chassis, obj.chassis)
            idx(self.ports_by_device, obj.device_id)
            idx(self.ports_by_qos, obj.qos_policy_id)
            idx(self.ports_by_dns_name, obj.dns_name)
            for group in obj.security_groups:
                idx(self.ports_by_group, group)
            if obj.parent:
                idx(self.subports_by_parent, obj.parent)
            if obj.chassis:
                count(self.hosts_by_network, obj.network_id, obj.chassis)
            if obj.device_id and obj.device_owner in keys.INTERFACE_OWNERS:
                count(self.routers_by_network, obj.network_id, obj.device_id)
        elif collection == keys.NETWORKS:
            idx(self.networks_by_qos, obj.qos_policy_id)
        elif collection == keys.SUBNETS:
            idx(self.subnets_by_network, obj.network_id)
        elif collection == keys.ROUTERS:
            for chassis in set(obj.gateway_chassis):
                idx(self.routers_by_candidate, chassis)
        elif collection == keys.GROUPS:
            for remote in obj.remote_groups():
                idx(self.groups_by_remote, remote)
        elif collection == keys.FLOATINGIPS:
            idx(self.fips_by_router, obj.router_id)
            idx(self.fips_by_port, obj.port_id)
            for pf in obj.forwardings:
                idx(self.fips_by_forwarded_port, pf.port_id)
        elif collection == keys.SNAT_BLOCKS:
            idx(self.snat_by_router, obj.router_id)
        elif collection == keys.VIP_OWNERS:
            idx(self.vip_owners_by_network, obj.network_id)
        elif collection == keys.LOADBALANCERS:
            idx(self.lbs_by_network, obj.vip_network_id)
        elif collection == keys.AGENTS:
            if sign > 0:
                self.agent_by_host[obj.host] = ident
            elif self.agent_by_host.get(obj.host) == ident:
                del self.agent_by_host[obj.host]
        elif collection == keys.LIVENESS:
            idx(self.liveness_by_host, obj.host)

    # --- building ----------------------------------------------------------------------
    @classmethod
    def from_wire(cls, objects: Mapping[str, Any]) -> tuple["Catalog", list]:
        """A catalog of wire objects (collection → list of objects, or id → object);
        returns it with the objects left out: (collection, id, reason)."""
        catalog, problems = cls(), []
        agent_ids = _agent_ids(objects.get(keys.AGENTS))
        for collection in keys.COLLECTIONS:
            items = objects.get(collection) or ()
            pairs = (list(items.items()) if isinstance(items, Mapping) else
                     [(o.get("id") if isinstance(o, Mapping) else None, o)
                      for o in items] if isinstance(items, list) else [])
            for ident, obj in sorted(pairs, key=lambda p: str(p[0])):
                if collection == keys.LIVENESS and ident is None and isinstance(obj, Mapping):
                    ident = agent_ids.get(obj.get("host"))   # keyed by agent id, no id field
                try:
                    if not isinstance(ident, str) or not ident:
                        raise BadObject("no id")
                    catalog.apply_wire(collection, ident, obj)
                except BadObject as exc:
                    problems.append((collection, str(ident), str(exc)))
        return catalog, problems


def _same_extras(old, new) -> bool:
    """Whether the fields left out of equality (status, revision) are the same too."""
    return getattr(old, "status", None) == getattr(new, "status", None) and \
        getattr(old, "revision", None) == getattr(new, "revision", None)


def _agent_ids(agents: Any) -> dict[str, str]:
    """Host → agent id in a snapshot's ``agents`` (liveness objects are stored under the
    agent's id but do not carry it; watch events do)."""
    if isinstance(agents, Mapping):
        agents = list(agents.values())
    return {a["host"]: a["id"] for a in agents if isinstance(a, Mapping)
            and isinstance(a.get("host"), str) and isinstance(a.get("id"), str)} \
        if isinstance(agents, list) else {}
