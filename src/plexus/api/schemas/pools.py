"""Wire schemas of subnet pools (``subnet_allocation``, ``default-subnetpools``,
``subnetpool-prefix-ops``) and address scopes (``address-scope``), as Neutron's API
definitions (``neutron_lib.api.definitions.subnetpool`` / ``address_scope``)."""

from __future__ import annotations

from plexus.api.schemas.base import (
    REQUIRED, Attr, Resource, cidr, list_of, project_id, standard_attrs, string, to_bool,
    to_int, to_uuid,
)

SUBNETPOOL = Resource("subnetpool", "subnetpools", (
    *standard_attrs(),
    Attr("prefixes", type="array", convert=list_of(cidr), default=REQUIRED, sort=False,
         doc="compacted on write (overlapping and adjacent prefixes merged); an update "
             "must keep every existing prefix"),
    Attr("ip_version", type="integer", post=False, put=False,
         doc="from the prefixes"),
    Attr("default_prefixlen", type="integer", convert=to_int(0, 128, nullable=True),
         default=None, doc="default: min_prefixlen"),
    Attr("min_prefixlen", type="integer", convert=to_int(0, 128, nullable=True),
         default=None, doc="default: 8 (IPv4), 64 (IPv6)"),
    Attr("max_prefixlen", type="integer", convert=to_int(0, 128, nullable=True),
         default=None, doc="default: 32 (IPv4), 128 (IPv6)"),
    Attr("default_quota", type="integer", convert=to_int(0, nullable=True), default=None,
         doc="per-project prefix space, in /32s (IPv4) or /64s (IPv6); null: unlimited"),
    Attr("is_default", type="boolean", convert=to_bool, default=False,
         doc="the pool `use_default_subnetpool` takes; one per IP version"),
    Attr("shared", type="boolean", convert=to_bool, default=False, put=False),
    Attr("address_scope_id", convert=to_uuid(nullable=True), default=None),
))

ADDRESS_SCOPE = Resource("address_scope", "address-scopes", (
    Attr("id", post=False, put=False, convert=to_uuid()),
    Attr("name", convert=string(255), default=""),
    Attr("project_id", post=True, put=False, convert=project_id,
         default=lambda ctx, body: body.get("tenant_id") or ctx.project_id),
    Attr("tenant_id", post=True, put=False, convert=project_id,
         default=lambda ctx, body: body.get("project_id") or ctx.project_id),
    Attr("ip_version", type="integer", convert=to_int(4, 6), default=REQUIRED, put=False),
    Attr("shared", type="boolean", convert=to_bool, default=False,
         doc="a shared scope cannot be unshared"),
))
