"""Neutron's error types: each carries the HTTP status and the NeutronError body fields."""

from __future__ import annotations


class NeutronError(Exception):
    """An error answered as ``{"NeutronError": {"type", "message", "detail"}}``."""

    status = 500
    type_name: str | None = None

    def __init__(self, message: str, *, type_name: str | None = None, detail: str = ""):
        super().__init__(message)
        self.message = message
        self.detail = detail
        if type_name:
            self.type_name = type_name

    def body(self) -> dict:
        """The wire body of this error."""
        return {"NeutronError": {"type": self.type_name or type(self).__name__,
                                 "message": self.message, "detail": self.detail}}


class BadRequest(NeutronError):
    """400 with Neutron's generic type."""

    status = 400
    type_name = "HTTPBadRequest"


def bad_request(resource: str, message: str) -> BadRequest:
    """Neutron's ``exceptions.BadRequest(resource=..., msg=...)``: type BadRequest,
    message "Bad <resource> request: <msg>."."""
    return BadRequest(f"Bad {resource} request: {message}.", type_name="BadRequest")


class InvalidInput(BadRequest):
    """400: the request body or query does not validate."""

    type_name = "InvalidInput"

    def __init__(self, message: str, **kw):
        super().__init__(f"Invalid input for operation: {message}.", **kw)


class Unauthorized(NeutronError):
    """401: no or invalid token."""

    status = 401
    type_name = "HTTPUnauthorized"


class PolicyNotAuthorized(NeutronError):
    """403: the policy forbids the action."""

    status = 403
    type_name = "PolicyNotAuthorized"

    def __init__(self, action: str, **kw):
        super().__init__(f"({action}) is disallowed by policy", **kw)


class NotFound(NeutronError):
    """404: the object does not exist or is not visible to the caller."""

    status = 404

    def __init__(self, kind: str, ident: str, **kw):
        label = {"network": "Network", "subnet": "Subnet", "port": "Port", "router": "Router",
                 "floatingip": "Floating IP", "security_group": "Security group",
                 "security_group_rule": "Security group rule", "agent": "Agent",
                 "subnetpool": "Subnet pool", "address_scope": "Address scope",
                 "address_group": "Address group", "qos_policy": "QoS policy"}.get(kind, kind)
        if kind == "subnetpool":
            kw.setdefault("type_name", "SubnetPoolNotFound")
        type_name = kw.pop("type_name", None) or (
            "".join(p.capitalize() for p in kind.split("_")) + "NotFound")
        super().__init__(f"{label} {ident} could not be found.", type_name=type_name, **kw)


class ResourceNotFound(NeutronError):
    """404 for a URL that names no collection or action."""

    status = 404
    type_name = "HTTPNotFound"


class MethodNotAllowed(NeutronError):
    """405."""

    status = 405
    type_name = "HTTPMethodNotAllowed"


class Conflict(NeutronError):
    """409: in use, duplicate, overlap, address taken."""

    status = 409


class OverQuota(Conflict):
    """409: the create would take the project over its quota."""

    type_name = "OverQuota"


class RequestEntityTooLarge(NeutronError):
    """413: the request body is larger than the configured limit."""

    status = 413
    type_name = "HTTPRequestEntityTooLarge"


class PreconditionFailed(NeutronError):
    """412: If-Match revision mismatch."""

    status = 412
    type_name = "RevisionNumberConstraintFailed"


class ServiceUnavailable(NeutronError):
    """503: the store cannot serve now; retry later."""

    status = 503
    type_name = "ServiceUnavailable"
