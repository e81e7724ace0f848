"""Wire schema of trunks (``trunk``, ``trunk-details``), as Neutron's API definition
(``neutron_lib.api.definitions.trunk``): a parent port and VLAN-tagged subports."""

from __future__ import annotations

from plexus.api.schemas.base import (
    REQUIRED, Attr, Invalid, Resource, dict_of, list_of, standard_attrs, to_bool, to_int,
    to_uuid,
)

SEGMENTATION_TYPES = ("vlan",)


def segmentation_type(value) -> str:
    """``vlan`` (the only type a VIF carries here; ``inherit`` needs a provider VLAN)."""
    if value not in SEGMENTATION_TYPES:
        raise Invalid(f"Invalid segmentation type {value!r}: one of {list(SEGMENTATION_TYPES)}")
    return value


SUBPORT = dict_of({"port_id": to_uuid(), "segmentation_type": segmentation_type,
                   "segmentation_id": to_int(1, 4094)},
                  required=("port_id", "segmentation_type", "segmentation_id"))
SUBPORT_REF = dict_of({"port_id": to_uuid(), "segmentation_type": segmentation_type,
                       "segmentation_id": to_int(1, 4094)}, required=("port_id",))

TRUNK = Resource("trunk", "trunks", (
    *standard_attrs(),
    Attr("port_id", convert=to_uuid(), default=REQUIRED, put=False,
         doc="the parent port (its VIF carries the subports' VLANs)"),
    Attr("admin_state_up", type="boolean", convert=to_bool, default=True,
         doc="false: subports can be neither added nor removed (409 `TrunkDisabled`)"),
    Attr("status", post=False, put=False,
         doc="`ACTIVE` while the parent port is, else `DOWN` (computed when read)"),
    Attr("sub_ports", type="array", convert=list_of(SUBPORT), default=lambda ctx, body: [],
         put=False, filter=False, sort=False,
         doc="`{port_id, segmentation_type: vlan, segmentation_id: 1..4094}`"),
))
