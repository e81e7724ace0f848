"""Who is calling: the authenticated identity every API request carries."""

from __future__ import annotations

from dataclasses import dataclass


class Unauthorized(Exception):
    """The request carries no valid credentials (HTTP 401)."""


@dataclass(frozen=True)
class RequestContext:
    """The caller of one request: user, project scope and role names."""

    user_id: str
    user_name: str
    project_id: str
    project_name: str
    domain_id: str
    roles: frozenset[str]

    @property
    def is_admin(self) -> bool:
        """True when the caller holds the admin role."""
        return "admin" in self.roles

    @property
    def can_write(self) -> bool:
        """True when the caller may create, change and delete (admin or member)."""
        return "admin" in self.roles or "member" in self.roles

    @property
    def is_reader(self) -> bool:
        """True when the caller may only read (reader, without member or admin)."""
        return "reader" in self.roles and not self.can_write
