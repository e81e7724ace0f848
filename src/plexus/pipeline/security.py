"""Security groups as the ACL stages see them, built from the southbound objects (Neutron's
wire format: groups carry their rules in full, ports carry ``security_groups`` ids).
Pure: the agent's view builder calls ``security_view`` and puts the result in
``View.security``; nothing here does I/O.

Only what one chassis needs is kept: the groups of the ports bound here, and the member
addresses of every group those groups' rules name as a remote group (members are ports
anywhere in the cloud: their fixed IPs and allowed-address-pair addresses)."""

from __future__ import annotations

import ipaddress
from typing import Any, Iterable, Mapping

from plexus.api.schemas.security_groups import protocol_number
from plexus.pipeline.view import RuleView, SecurityGroupView, SecurityView

GROUPS = "security-groups"
Objects = Mapping[str, Mapping[str, Mapping[str, Any]]]


def to_rule(obj: Mapping) -> RuleView | None:
    """A wire rule as the compiler sees it; None for what it cannot enforce (an address
    group, which does not exist here)."""
    if obj.get("remote_address_group_id"):
        return None
    direction, ethertype = obj["direction"], obj.get("ethertype") or "IPv4"
    if direction not in ("ingress", "egress") or ethertype not in ("IPv4", "IPv6"):
        raise ValueError(f"direction {direction!r} / ethertype {ethertype!r}")
    proto = obj.get("protocol")
    number = protocol_number(str(proto).lower()) if proto not in (None, "any") else None
    if proto not in (None, "any") and number is None:
        raise ValueError(f"protocol {proto!r}")
    if ethertype == "IPv6" and number == 1:            # Neutron: icmp on IPv6 is ipv6-icmp
        number = 58
    prefix = obj.get("remote_ip_prefix")
    if prefix:
        net = ipaddress.ip_network(prefix, strict=False)
        prefix = None if net.prefixlen == 0 else str(net)
    low, high = obj.get("port_range_min"), obj.get("port_range_max")
    return RuleView(id=str(obj["id"]), direction=direction, ethertype=ethertype,
                    protocol=number, port_min=None if low is None else int(low),
                    port_max=None if high is None else int(high), remote_prefix=prefix,
                    remote_group=obj.get("remote_group_id") or None)


def to_group(obj: Mapping) -> SecurityGroupView:
    """A wire security group (with its rules) as the compiler sees it."""
    rules = [to_rule(r) for r in obj.get("security_group_rules") or ()]
    return SecurityGroupView(id=str(obj["id"]),
                             rules=tuple(sorted((r for r in rules if r), key=lambda r: r.id)),
                             stateful=obj.get("stateful") is not False)


def member_addresses(port: Mapping) -> set[str]:
    """Addresses a member port lends its groups: fixed IPs and allowed address pairs
    (a pair's CIDR as a network), as Neutron's remote-group member sets hold them."""
    out = {str(ipaddress.ip_address(ip["ip_address"])) for ip in port.get("fixed_ips") or ()}
    for pair in port.get("allowed_address_pairs") or ():
        net = ipaddress.ip_network(str(pair["ip_address"]), strict=False)
        out.add(str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net))
    return out


def security_view(objects: Objects, port_ids: Iterable[str],
                  problems: list | None = None) -> SecurityView:
    """What the ACL stages of a chassis need, for the ports ``port_ids`` bound to it.

    ``objects`` maps collection → id → wire object and must hold the ``security-groups``
    and ``ports`` collections. Objects that cannot be used are left out and, when
    ``problems`` is a list, reported there as (collection, id, reason); a port whose group
    is missing keeps its other groups (a missing group allows nothing)."""
    ports = objects.get("ports") or {}
    wire_groups = objects.get(GROUPS) or {}
    groups: dict[str, SecurityGroupView] = {}

    def group(gid: str) -> SecurityGroupView | None:
        if gid not in groups and isinstance(wire_groups.get(gid), Mapping):
            try:
                groups[gid] = to_group(wire_groups[gid])
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                if problems is not None:
                    problems.append((GROUPS, gid, f"unusable rule: {exc}"))
                return None
        return groups.get(gid)

    port_groups: dict[str, tuple[str, ...]] = {}
    for pid in sorted(set(port_ids)):
        port = ports.get(pid)
        ids = port.get("security_groups") if isinstance(port, Mapping) else None
        ids = sorted({str(g) for g in ids}) if isinstance(ids, (list, tuple)) else []
        port_groups[pid] = tuple(g for g in ids if group(g) is not None)
    wanted = {r.remote_group for gid in {g for gs in port_groups.values() for g in gs}
              for r in groups[gid].rules if r.remote_group}
    members: dict[str, set[str]] = {gid: set() for gid in wanted}
    for pid, port in sorted(ports.items()):
        if not isinstance(port, Mapping):
            continue
        these = [g for g in port.get("security_groups") or () if g in members]
        if not these:
            continue
        try:
            addresses = member_addresses(port)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if problems is not None:
                problems.append(("ports", pid, f"bad address: {exc}"))
            continue
        for gid in these:
            members[gid] |= addresses
    used = {g for gs in port_groups.values() for g in gs}
    return SecurityView(groups={g: groups[g] for g in sorted(used)},
                        port_groups=port_groups,
                        members={g: tuple(sorted(a)) for g, a in sorted(members.items())})
