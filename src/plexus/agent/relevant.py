"""The agent's pure decisions about what is relevant to its chassis: its view (the L2
part; ``plexus.agent.view`` builds it from the catalog), which tunnels to have, which
port statuses to report, which VIFs get nothing, which conntrack zones to flush. No
I/O: each function's result depends only on its arguments.

Functions that read the model take the agent's ``Catalog`` (typed objects with
indexes, ``plexus.model``); tests and tools may hand in wire objects instead
(collection → id → object in Neutron's format with the hidden keys), which are parsed
into a catalog first — the reference path that the incremental one is compared with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from plexus.agent import view as views
from plexus.model import keys
from plexus.model.catalog import Catalog
from plexus.pipeline.view import ChassisView, View

KEY = keys.KEY
Objects = Mapping[str, Mapping[str, Mapping[str, Any]]]


def catalog_of(model: Catalog | Objects, problems: list | None = None) -> Catalog:
    """``model`` itself when it is a catalog, else a catalog parsed from wire objects
    (what cannot be parsed is reported in ``problems``)."""
    if isinstance(model, Catalog):
        return model
    catalog, bad = Catalog.from_wire(model)
    if problems is not None:
        problems.extend(bad)
    return catalog


def registered_chassis(model: Catalog | Objects,
                       problems: list | None = None) -> dict[str, ChassisView]:
    """Every registered chassis by name."""
    catalog = catalog_of(model, problems)
    return {a.host: a.chassis for _, a in sorted(catalog.objects[keys.AGENTS].items())}


def alive_chassis(model: Catalog | Objects) -> set[str]:
    """Chassis whose liveness lease the store holds (collection ``liveness``: host)."""
    return catalog_of(model).alive()


def build_view(model: Catalog | Objects, chassis: str, tunnel_ip: str,
               vif_ofports: Mapping[str, int], tunnel_ofports: Mapping[str, int],
               problems: list | None = None) -> View:
    """The L2 part of the compiler input of ``chassis`` (``plexus.agent.view``).
    Objects that cannot be used are left out and, when ``problems`` is a list, reported
    there as (collection, id, reason)."""
    return views.local_view(catalog_of(model, problems), chassis, tunnel_ip, vif_ofports,
                            tunnel_ofports)


def tunnel_peers(view: View) -> dict[str, str]:
    """Remote chassis that share a network with a port bound here: name → tunnel IP.

    Ports bound here count before they are plugged, so a tunnel is ready when the VIF
    appears; chassis that are not registered (no tunnel IP) are left out."""
    networks = {p.network_id for p in view.ports.values() if p.chassis == view.chassis}
    out = {}
    for port in view.ports.values():
        if port.network_id in networks and port.chassis and port.chassis != view.chassis:
            found = view.chassis_by_name.get(port.chassis)
            if found is not None:
                out[found.name] = found.tunnel_ip
    return dict(sorted(out.items()))


def unregistered_hosts(view: View) -> dict[str, list[str]]:
    """Ports of the view bound to a chassis that never registered: chassis → port ids."""
    out: dict[str, list[str]] = {}
    for port in sorted(view.ports.values(), key=lambda p: p.id):
        if port.chassis and port.chassis not in view.chassis_by_name:
            out.setdefault(port.chassis, []).append(port.id)
    return out


# --- VIFs and port status --------------------------------------------------------------

@dataclass(frozen=True)
class Vif:
    """An interface on br-int that names a Neutron port (external_ids:iface-id)."""

    name: str
    iface_id: str
    ofport: int            # <= 0: not (yet) usable


def vif_ofports(vifs: Iterable[Vif]) -> dict[str, int]:
    """Port id → ofport of plugged, usable VIFs (the lowest ofport wins a duplicate)."""
    out: dict[str, int] = {}
    for vif in sorted(vifs, key=lambda v: (v.ofport, v.name)):
        if vif.ofport > 0:
            out.setdefault(vif.iface_id, vif.ofport)
    return out


def with_subports(model: Catalog | Objects, chassis: str,
                  plugged: Mapping[str, int]) -> dict[str, int]:
    """``plugged`` (port id → ofport) and the trunk subports bound here whose parent is
    plugged: a subport rides its parent's VIF (in its VLAN). Cost: the subports of the
    plugged ports (an index lookup each)."""
    catalog = catalog_of(model)
    ports = catalog.objects[keys.PORTS]
    out = dict(plugged)
    for parent, ofport in plugged.items():
        for sub in catalog.subports_by_parent.of(parent):
            port = ports.get(sub)
            if port is not None and port.chassis == chassis:
                out.setdefault(sub, ofport)
    return out


def gone_zones(before: Iterable[Vif], after: Iterable[Vif]) -> list[int]:
    """Conntrack zones to flush: the ofports of usable VIFs in ``before`` that are not in
    ``after`` as the same interface for the same port (a zone is its VIF's ofport)."""
    still = {v for v in after if v.ofport > 0}
    return sorted({v.ofport for v in before if v.ofport > 0 and v not in still})


def stray_vifs(model: Catalog | Objects, chassis: str,
               vifs: Iterable[Vif]) -> list[tuple[Vif, str]]:
    """VIFs that get no connectivity, with why: unknown port, or bound elsewhere."""
    ports = catalog_of(model).objects[keys.PORTS]
    out = []
    for vif in sorted(vifs, key=lambda v: v.name):
        port = ports.get(vif.iface_id)
        if port is None:
            out.append((vif, "names no known port"))
        elif port.chassis != chassis:
            out.append((vif, f"is for a port bound to {port.chassis or 'no'!r} "
                             f"chassis, not this one"))
    return out


def unbridged_ports(model: Catalog | Objects, chassis: str,
                    mappings: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """Ports bound here on a flat or VLAN network whose physical network this chassis has
    no bridge mapping for: port id → (network id, physical network). They cannot be
    bridged here (docs/provider-networks.md); cost: the ports bound here."""
    catalog = catalog_of(model)
    out = {}
    for port in catalog.each(keys.PORTS, catalog.ports_by_chassis.of(chassis)):
        net = catalog.get(keys.NETWORKS, port.network_id)
        if (net is not None and net.network_type in ("flat", "vlan")
                and net.physical_network not in mappings):
            out[port.id] = (net.id, net.physical_network or "")
    return out


def port_statuses(model: Catalog | Objects, chassis: str, vifs: Iterable[Vif],
                  mappings: Mapping[str, str] | None = None) -> dict[str, str]:
    """Status each port bound here should have: ACTIVE when plugged (and admin up),
    else DOWN; ERROR (not programmable) for a port on a flat or VLAN network whose
    physical network has no bridge mapping here, when ``mappings`` are given. Only
    ports whose recorded status differs are returned."""
    catalog = catalog_of(model)
    plugged = with_subports(catalog, chassis, vif_ofports(vifs))
    unbridged = unbridged_ports(catalog, chassis, mappings) if mappings is not None else {}
    out = {}
    for port in catalog.each(keys.PORTS, catalog.ports_by_chassis.of(chassis)):
        want = "ACTIVE" if port.id in plugged and port.admin_up else "DOWN"
        if port.id in unbridged:
            want = "ERROR"
        if port.status != want:
            out[port.id] = want
    return out
