"""RBAC policies (``rbac-policies``): who else may use a network, a security group (and,
through the object-type table in ``services/rbac.py``, any shareable object)."""

from __future__ import annotations

from plexus.api.schemas.base import REQUIRED, Attr, Resource, Invalid, project_id, string, to_uuid

ACCESS_SHARED = "access_as_shared"
ACCESS_EXTERNAL = "access_as_external"
WILDCARD = "*"


def target_tenant(value) -> str:
    """A project id or ``*`` (every project); never empty or null (Neutron: 400)."""
    if value is None:
        raise Invalid("'None' is not a valid string")
    value = string(255)(value)
    if not value:
        raise Invalid("'' is not a valid project id")
    return value


RBAC_POLICY = Resource("rbac_policy", "rbac-policies", (
    Attr("id", post=False, put=False, convert=to_uuid()),
    Attr("project_id", post=True, put=False, convert=project_id,
         default=lambda ctx, body: body.get("tenant_id") or ctx.project_id),
    Attr("tenant_id", post=True, put=False, convert=project_id,
         default=lambda ctx, body: body.get("project_id") or ctx.project_id),
    Attr("object_type", convert=string(255), default=REQUIRED, put=False,
         doc="`network`, `security_group`, `subnetpool` or `address_scope` (the "
             "object-type table of services/rbac.py)"),
    Attr("object_id", convert=to_uuid(), default=REQUIRED, put=False),
    Attr("action", convert=string(255), default=REQUIRED, put=False,
         doc="`access_as_shared`; `access_as_external` (networks)"),
    Attr("target_tenant", convert=target_tenant, default=REQUIRED,
         doc="the project given access, or `*` (admin only) for every project"),
))
