"""The one error type of the allocation logic."""

from __future__ import annotations

from typing import Literal

Kind = Literal["invalid", "overlap", "gateway_conflict", "conflict"]


class IpamError(ValueError):
    """A rejected input: ``kind`` says which (invalid → 400, overlap/gateway_conflict → 409).

    ``message`` is Neutron's wording; ``neutron_type`` is the Neutron exception name the
    API layer can answer with (``InvalidAllocationPool``, ``OverlappingAllocationPools``...).
    """

    def __init__(self, message: str, *, kind: Kind = "invalid",
                 neutron_type: str | None = None):
        super().__init__(message)
        self.message = message
        self.kind: Kind = kind
        self.neutron_type = neutron_type
