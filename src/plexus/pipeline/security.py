"""Security groups as the ACL stages see them: the groups of the ports bound to a
chassis, and the member addresses of every group those groups' rules name as a remote
group (members are ports anywhere in the cloud: their fixed IPs and allowed-address-pair
addresses), and the CIDRs of every address group they name, read from a catalog through
its indexes. Pure: nothing here does I/O."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from plexus.model import keys
from plexus.model.catalog import Catalog
from plexus.model.objects import ADDRESS_GROUP
from plexus.model.objects import to_rule, to_security_group  # noqa: F401 (re-exported)
from plexus.pipeline.view import SecurityView

GROUPS = keys.GROUPS
Objects = Mapping[str, Mapping[str, Mapping[str, Any]]]
to_group = to_security_group


def security(catalog: Catalog, port_ids: Iterable[str]) -> SecurityView:
    """What the ACL stages need for the ports ``port_ids`` bound to a chassis."""
    ports, groups = catalog.objects[keys.PORTS], catalog.objects[keys.GROUPS]
    port_groups = {pid: tuple(g for g in ports[pid].security_groups if g in groups)
                   for pid in sorted(port_ids) if pid in ports}
    used = sorted({g for gs in port_groups.values() for g in gs})
    wanted = sorted({r for g in used for r in groups[g].remote_groups()})
    members = {}
    for gid in wanted:
        found: set[str] = set()
        for pid in catalog.ports_by_group.of(gid):
            found |= ports[pid].member_addresses()
        members[gid] = tuple(sorted(found))
    address_groups = catalog.objects[keys.ADDRESS_GROUPS]
    for aid in sorted({a for g in used for a in groups[g].remote_address_groups()}):
        found_ag = address_groups.get(aid)
        members[ADDRESS_GROUP + aid] = found_ag.addresses if found_ag is not None else ()
    return SecurityView(groups={g: groups[g] for g in used}, port_groups=port_groups,
                        members=members)


def security_view(objects: Objects, port_ids: Iterable[str],
                  problems: list | None = None) -> SecurityView:
    """``security`` over wire ``objects`` (collection → id → object; the ``ports`` and
    ``security-groups`` collections, and ``address-groups`` if rules name any). Objects that cannot be used are left out and, when
    ``problems`` is a list, reported there as (collection, id, reason); a port whose group
    is missing keeps its other groups (a missing group allows nothing)."""
    catalog, bad = Catalog.from_wire({c: objects.get(c) or {}
                                      for c in (keys.PORTS, GROUPS, keys.ADDRESS_GROUPS)})
    if problems is not None:
        problems.extend(bad)
    ids = list(port_ids)
    view = security(catalog, ids)
    # a port bound here that could not be parsed still has a (groupless) entry
    missing = {pid: () for pid in ids if pid not in view.port_groups}
    if missing:
        view = SecurityView(groups=view.groups,
                            port_groups=dict(sorted({**view.port_groups, **missing}.items())),
                            members=view.members)
    return view
