"""The relevant view: from every model object the agent has seen, only what matters to
one chassis — the ports bound to it, their networks and subnets, the other ports on
those networks and the chassis hosting them, the security groups of its ports and the
members of the groups their rules name — as the compiler's ``View``. Also the
other pure decisions of the agent: which tunnels to have, which port statuses to
report, which VIFs get nothing, which conntrack zones to flush. No I/O: each function's result depends only on its
arguments, so they are tested with plain dictionaries.

``objects`` is the model as the southbound stream carries it: collection name → object
id → object in Neutron's wire format, with the hidden ``plexus:key`` on networks and
ports. Chassis come from the ``agents`` collection (host, configurations.tunnel_ip),
security groups (their rules in full) from ``security-groups``."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from plexus.pipeline.security import GROUPS, security_view, to_group
from plexus.pipeline.view import (ChassisView, NetworkView, PortView, SecurityGroupView,
                                  SubnetView, View)

KEY = "plexus:key"
Objects = Mapping[str, Mapping[str, Mapping[str, Any]]]


class BadObject(ValueError):
    """A model object the agent cannot use (missing or malformed fields)."""


# --- wire objects → view values ------------------------------------------------------

def _get(obj: Mapping, name: str, kind: type):
    value = obj.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise BadObject(f"{name}={value!r} is not {kind.__name__}")
    return value


def to_network(obj: Mapping) -> NetworkView:
    """A network object as the compiler sees it."""
    key = _get(obj, KEY, int)
    if not 0 < key < 2 ** 24:
        raise BadObject(f"{KEY}={key} is not a valid datapath key")
    mtu = obj.get("mtu")
    return NetworkView(id=_get(obj, "id", str), key=key,
                       network_type=obj.get("provider:network_type") or "vxlan",
                       mtu=mtu if isinstance(mtu, int) and not isinstance(mtu, bool) else 1450,
                       port_security_enabled=obj.get("port_security_enabled") is not False)


def to_subnet(obj: Mapping) -> SubnetView:
    """A subnet object as the compiler and the DHCP responder see it."""
    cidr = _get(obj, "cidr", str)
    try:
        net = ipaddress.ip_network(cidr)
        gateway = obj.get("gateway_ip")
        if gateway is not None:
            ipaddress.ip_address(gateway)
        dns = tuple(str(ipaddress.ip_address(d)) for d in obj.get("dns_nameservers") or ())
        routes = tuple((str(ipaddress.ip_network(r["destination"])),
                        str(ipaddress.ip_address(r["nexthop"])))
                       for r in obj.get("host_routes") or ())
    except (ValueError, TypeError, KeyError) as exc:
        raise BadObject(str(exc)) from None
    return SubnetView(id=_get(obj, "id", str), network_id=_get(obj, "network_id", str),
                      cidr=str(net), ip_version=net.version, gateway_ip=gateway,
                      enable_dhcp=obj.get("enable_dhcp") is not False,
                      dns_nameservers=dns, host_routes=routes)


def to_port(obj: Mapping) -> PortView:
    """A port object as the compiler sees it (binding:host_id → chassis)."""
    key = _get(obj, KEY, int)
    if not 0 < key < 0xFFFF:
        raise BadObject(f"{KEY}={key} is not a valid port key")
    try:
        ips = tuple((str(ip["subnet_id"]), str(ipaddress.ip_address(ip["ip_address"])))
                    for ip in obj.get("fixed_ips") or ())
        pairs = tuple(_pair(p, obj["mac_address"]) for p in obj.get("allowed_address_pairs")
                      or ())
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise BadObject(f"bad address: {exc}") from None
    return PortView(id=_get(obj, "id", str), key=key, network_id=_get(obj, "network_id", str),
                    mac=_get(obj, "mac_address", str).lower(), ips=ips,
                    chassis=obj.get("binding:host_id") or "",
                    device_owner=obj.get("device_owner") or "",
                    port_security=obj.get("port_security_enabled") is not False,
                    allowed_pairs=pairs, admin_up=obj.get("admin_state_up") is not False)


def _pair(pair: Mapping, port_mac: str) -> tuple[str, str]:
    """An allowed address pair as (address or CIDR, MAC); the MAC defaults to the port's."""
    address = str(pair["ip_address"])
    address = (str(ipaddress.ip_network(address, strict=False)) if "/" in address
               else str(ipaddress.ip_address(address)))
    return address, str(pair.get("mac_address") or port_mac).lower()


def to_chassis(obj: Mapping) -> ChassisView:
    """A registered chassis (a Neutron agent object) as the compiler sees it."""
    config = obj.get("configurations")
    if not isinstance(config, Mapping):
        raise BadObject("configurations is not an object")
    try:
        tunnel_ip = str(ipaddress.ip_address(config.get("tunnel_ip")))
    except ValueError:
        raise BadObject(f"tunnel_ip={config.get('tunnel_ip')!r} is not an address") from None
    return ChassisView(name=_get(obj, "host", str), tunnel_ip=tunnel_ip)


def to_security_group(obj: Mapping) -> SecurityGroupView:
    """A security group with its rules, as the ACL stages see it (``BadObject`` for a
    rule they cannot enforce, so a bad group is refused when its event arrives)."""
    try:
        return to_group(obj)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BadObject(f"unusable rule: {exc}") from None


CONVERTERS = {"networks": to_network, "subnets": to_subnet, "ports": to_port,
              "agents": to_chassis, GROUPS: to_security_group}


def check(collection: str, obj: Any) -> None:
    """Raise ``BadObject`` unless the agent can use ``obj`` (collections it ignores pass)."""
    if not isinstance(obj, Mapping):
        raise BadObject("not an object")
    convert = CONVERTERS.get(collection)
    if convert is not None:
        convert(obj)


# --- relevance -------------------------------------------------------------------------

def _converted(objects: Objects, collection: str, problems: list | None):
    for ident, obj in sorted((objects.get(collection) or {}).items()):
        try:
            yield CONVERTERS[collection](obj)
        except (BadObject, AttributeError, TypeError) as exc:
            if problems is not None:
                problems.append((collection, ident, str(exc)))


def registered_chassis(objects: Objects, problems: list | None = None) -> dict[str, ChassisView]:
    """Every registered chassis by name."""
    return {c.name: c for c in _converted(objects, "agents", problems)}


def alive_chassis(objects: Objects) -> set[str]:
    """Chassis whose liveness lease the store holds (collection ``liveness``: host)."""
    return {obj["host"] for obj in (objects.get("liveness") or {}).values()
            if isinstance(obj, Mapping) and isinstance(obj.get("host"), str)}


def bound_ports(objects: Objects, chassis: str) -> list[Mapping]:
    """Port objects whose binding:host_id is this chassis, by id."""
    return [p for _, p in sorted((objects.get("ports") or {}).items())
            if isinstance(p, Mapping) and p.get("binding:host_id") == chassis]


def build_view(objects: Objects, chassis: str, tunnel_ip: str,
               vif_ofports: Mapping[str, int], tunnel_ofports: Mapping[str, int],
               problems: list | None = None) -> View:
    """The compiler input of ``chassis``: only objects relevant to the ports bound to it.

    Security comes from every port (members of a remote group may be anywhere in the
    cloud) and the groups of the ports bound here. Objects that cannot be used are left
    out and, when ``problems`` is a list, reported there as (collection, id, reason)."""
    ports = list(_converted(objects, "ports", problems))
    local = [p for p in ports if p.chassis == chassis]
    network_ids = {p.network_id for p in local}
    networks = {n.id: n for n in _converted(objects, "networks", problems)
                if n.id in network_ids}
    on_networks = {p.id: p for p in ports if p.network_id in networks}
    subnets = {s.id: s for s in _converted(objects, "subnets", problems)
               if s.network_id in networks}
    hosting = {p.chassis for p in on_networks.values() if p.chassis} | {chassis}
    known = {name: c for name, c in registered_chassis(objects, problems).items()
             if name in hosting}
    known[chassis] = ChassisView(chassis, tunnel_ip)
    return View(chassis=chassis, tunnel_ip=tunnel_ip, networks=networks, subnets=subnets,
                ports=on_networks, chassis_by_name=known,
                vif_ofports={pid: ofport for pid, ofport in vif_ofports.items()
                             if pid in on_networks and on_networks[pid].chassis == chassis},
                tunnel_ofports={name: ofport for name, ofport in tunnel_ofports.items()
                                if name in known and name != chassis},
                security=security_view(objects, [p.id for p in local], problems))


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


def gone_zones(before: Iterable[Vif], after: Iterable[Vif]) -> list[int]:
    """Conntrack zones to flush: the ofports of usable VIFs in ``before`` that are not in
    ``after`` as the same interface for the same port (a zone is its VIF's ofport)."""
    still = {v for v in after if v.ofport > 0}
    return sorted({v.ofport for v in before if v.ofport > 0 and v not in still})


def stray_vifs(objects: Objects, chassis: str, vifs: Iterable[Vif]) -> list[tuple[Vif, str]]:
    """VIFs that get no connectivity, with why: unknown port, or bound elsewhere."""
    ports = objects.get("ports") or {}
    out = []
    for vif in sorted(vifs, key=lambda v: v.name):
        port = ports.get(vif.iface_id)
        if not isinstance(port, Mapping):
            out.append((vif, "names no known port"))
        elif port.get("binding:host_id") != chassis:
            out.append((vif, f"is for a port bound to {port.get('binding:host_id') or 'no'!r} "
                             f"chassis, not this one"))
    return out


def port_statuses(objects: Objects, chassis: str, vifs: Iterable[Vif]) -> dict[str, str]:
    """Status each port bound here should have: ACTIVE when plugged (and admin up),
    else DOWN. Only ports whose recorded status differs are returned."""
    plugged = vif_ofports(vifs)
    out = {}
    for port in bound_ports(objects, chassis):
        want = "ACTIVE" if port.get("id") in plugged and port.get("admin_state_up") is not False \
            else "DOWN"
        if port.get("status") != want:
            out[port["id"]] = want
    return out
