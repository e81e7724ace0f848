"""Resource schemas as data: each attribute says how it is validated, whether it can be
given on create and update, and whether it can be filtered and sorted on (who may set
or read it is the policy's table, ``plexus.api.policy``). The services, the query
parser, the OpenAPI document and docs/api.md are all read from these tables."""

from __future__ import annotations

import ipaddress
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from plexus.api import policy
from plexus.api.errors import InvalidInput

REQUIRED = object()


class Invalid(ValueError):
    """A value does not validate; the message is Neutron's wording."""


Converter = Callable[[Any], Any]


@dataclass(frozen=True)
class Attr:
    """One attribute of a resource on the wire."""

    name: str
    type: str = "string"           # JSON type, for OpenAPI
    convert: Converter | None = None
    post: bool = True              # may be given on create
    put: bool = True               # may be given on update
    default: Any = None            # REQUIRED, a value, or a callable(ctx, body) -> value
    visible: bool = True           # False: input only
    filter: bool = True
    sort: bool = True
    doc: str = ""

    def value_default(self, ctx, body):
        """The default on create (calling a default factory if there is one)."""
        return self.default(ctx, body) if callable(self.default) else self.default


@dataclass(frozen=True)
class Resource:
    """A Neutron resource: names, attributes and the extensions that provide it."""

    name: str                      # "network"
    collection: str                # "networks"
    attrs: tuple[Attr, ...]
    path: str = ""                 # URL path under /v2.0, default = collection
    extra_filters: tuple[str, ...] = ()
    by_name: dict[str, Attr] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "by_name", {a.name: a for a in self.attrs})
        if not self.path:
            object.__setattr__(self, "path", self.collection)

    def attr(self, name: str) -> Attr | None:
        """The attribute called ``name``, if any."""
        return self.by_name.get(name)

    def validate_create(self, ctx, body: Any) -> dict:
        """Checked and converted create attributes, defaults filled in."""
        body = self._check_body(body)
        out: dict = {}
        for name, value in body.items():
            attr = self.by_name.get(name)
            if attr is None or not attr.post:
                raise InvalidInput(f"Attribute '{name}' not allowed in POST")
            out[name] = convert(attr, value)
        for attr in self.attrs:
            if attr.post and attr.name not in out:
                if attr.default is REQUIRED:
                    raise InvalidInput(f"Failed to parse request. Required attribute '{attr.name}' "
                                       f"not specified")
                out[attr.name] = attr.value_default(ctx, out)
        return out

    def validate_update(self, ctx, body: Any) -> dict:
        """Checked and converted update attributes (only those given)."""
        body = self._check_body(body)
        out = {}
        for name, value in body.items():
            attr = self.by_name.get(name)
            if attr is None:
                raise InvalidInput(f"Unrecognized attribute(s) '{name}'")
            if not attr.put:
                raise InvalidInput(f"Cannot update read-only attribute {name}")
            out[name] = convert(attr, value)
        return out

    def _check_body(self, body: Any) -> dict:
        if not isinstance(body, dict):
            raise InvalidInput(f"Resource body required for {self.name}")
        return body

    def explicit(self, ctx, attrs: dict) -> dict:
        """The attributes of a validated create that the request set to other than their
        default: those the policy's attribute rules apply to (as Neutron's)."""
        out = {}
        for name, value in attrs.items():
            attr = self.by_name.get(name)
            if attr is None or value is None:
                continue
            if attr.default is REQUIRED or value != attr.value_default(ctx, attrs):
                out[name] = value
        return out

    def view(self, ctx, obj: dict, fields: list[str] | None = None) -> dict:
        """The wire form of a stored object for this caller (input-only attributes and
        those the policy hides from the caller removed)."""
        out = {}
        hidden = policy.hidden(ctx, self.name)
        for attr in self.attrs:
            if not attr.visible or attr.name in hidden:
                continue
            if fields and attr.name not in fields:
                continue
            if attr.name in obj:
                out[attr.name] = obj[attr.name]
        return out


def convert(attr: Attr, value: Any) -> Any:
    """Run an attribute's converter, turning failures into Neutron's InvalidInput."""
    if attr.convert is None:
        return value
    try:
        return attr.convert(value)
    except Invalid as exc:
        raise InvalidInput(str(exc)) from None


# ---- converters -------------------------------------------------------------------


def to_bool(value: Any) -> bool:
    """Neutron's convert_to_boolean."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "1", "false", "0"):
        return value.lower() in ("true", "1")
    raise Invalid(f"'{value}' cannot be converted to boolean")


def string(max_len: int = 255, nullable: bool = False) -> Converter:
    """A string of at most ``max_len`` characters."""
    def check(value):
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            raise Invalid(f"'{value}' is not a valid string")
        if len(value) > max_len:
            raise Invalid(f"'{value}' exceeds maximum length of {max_len}")
        return value
    return check


def to_int(lo: int | None = None, hi: int | None = None, nullable: bool = False) -> Converter:
    """An integer (or integer string) within [lo, hi]."""
    def check(value):
        if value is None and nullable:
            return None
        if isinstance(value, bool):
            raise Invalid(f"'{value}' is not an integer")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise Invalid(f"'{value}' is not an integer") from None
        if isinstance(value, float) and value != number:
            raise Invalid(f"'{value}' is not an integer")
        if lo is not None and number < lo:
            raise Invalid(f"'{number}' is too small - must be at least '{lo}'")
        if hi is not None and number > hi:
            raise Invalid(f"'{number}' is too large - must be no larger than '{hi}'")
        return number
    return check


_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")


def to_uuid(nullable: bool = False) -> Converter:
    """A UUID (dashed or not), returned as given in lower case."""
    def check(value):
        if value is None and nullable:
            return None
        if not isinstance(value, str) or not _UUID_RE.match(value):
            raise Invalid(f"'{value}' is not a valid UUID")
        return value.lower()
    return check


def is_uuid(value: Any) -> bool:
    """Whether ``value`` is a UUID string (dashed or not)."""
    return isinstance(value, str) and bool(_UUID_RE.match(value))


def ident(nullable: bool = False) -> Converter:
    """Any id Neutron leaves unvalidated (a string): a UUID is lower-cased as ``to_uuid``
    does; anything else is kept, for the lookup to answer 404."""
    plain = string(255, nullable=nullable)

    def check(value):
        value = plain(value)
        return value.lower() if is_uuid(value) else value
    return check


def project_id(value: Any) -> str:
    """A project id: a non-empty string of at most 255 characters."""
    if not isinstance(value, str) or not value or len(value) > 255:
        raise Invalid(f"'{value}' is not a valid project id")
    return value


def ip_address(nullable: bool = False) -> Converter:
    """An IPv4 or IPv6 address in canonical form."""
    def check(value):
        if value is None and nullable:
            return None
        try:
            return str(ipaddress.ip_address(value))
        except (TypeError, ValueError):
            raise Invalid(f"'{value}' is not a valid IP address") from None
    return check


def cidr(value: Any) -> str:
    """An IP network in canonical form (host bits are dropped, as Neutron does)."""
    from plexus.ipam import IpamError, normalize_cidr
    try:
        return normalize_cidr(value)
    except (IpamError, TypeError, AttributeError) as exc:
        raise Invalid(str(getattr(exc, "message", None) or
                          f"'{value}' is not a valid IP subnet")) from None


def ip_or_cidr(value: Any) -> str:
    """An address or a network (host bits allowed for a prefix, normalised)."""
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except (TypeError, ValueError):
        raise Invalid(f"'{value}' is not a valid IP subnet") from None


def one_of(*choices: Any, nullable: bool = False) -> Converter:
    """One of a fixed set of values."""
    def check(value):
        if value is None and nullable:
            return None
        if value not in choices:
            raise Invalid(f"'{value}' is not in {list(choices)}")
        return value
    return check


def list_of(item: Converter, unique: bool = False, max_len: int | None = None) -> Converter:
    """A list whose items pass ``item``."""
    def check(value):
        if not isinstance(value, list):
            raise Invalid(f"'{value}' is not a list")
        out = [item(v) for v in value]
        if unique:
            seen = set()
            for v in out:
                key = repr(v)
                if key in seen:
                    raise Invalid(f"Duplicate items in the list: '{v}'")
                seen.add(key)
        if max_len is not None and len(out) > max_len:
            raise Invalid(f"'{value}' has more than {max_len} items")
        return out
    return check


def dict_of(spec: dict[str, Converter], required: tuple[str, ...] = (),
            name: str = "dict") -> Converter:
    """A dict with only the keys of ``spec`` (each converted), and the ``required`` ones."""
    def check(value):
        if not isinstance(value, dict):
            raise Invalid(f"'{value}' is not a dictionary")
        for key in value:
            if key not in spec:
                raise Invalid(f"Unexpected key '{key}' in {name}")
        for key in required:
            if key not in value:
                raise Invalid(f"Validation of dictionary's keys failed. Expected keys: "
                              f"{set(required)} Provided keys: {set(value)}")
        return {k: spec[k](v) for k, v in value.items()}
    return check


def dns_checked(check: Converter) -> Converter:
    """A converter from one of ``plexus.model.dns``' checks (Neutron's reasons)."""
    from plexus.model.dns import BadName

    def convert(value):
        try:
            return check(value)
        except BadName as exc:
            raise Invalid(str(exc)) from None
    return convert


def any_dict(value: Any) -> dict:
    """Any JSON object."""
    if not isinstance(value, dict):
        raise Invalid(f"'{value}' is not a dictionary")
    return value


def nullable_dict_or_empty(value: Any) -> dict:
    """A dict; None becomes {}."""
    return {} if value is None else any_dict(value)


def new_id() -> str:
    """A fresh object id (a dashed UUID, as Neutron's)."""
    return str(uuid.uuid4())


def standard_attrs(name_default: Any = "", with_name: bool = True) -> tuple[Attr, ...]:
    """Attributes every Neutron resource has (id, project, timestamps, revision, tags)."""
    attrs = [
        Attr("id", post=False, put=False, convert=to_uuid()),
        Attr("project_id", post=True, put=False, convert=project_id,
             default=lambda ctx, body: body.get("tenant_id") or ctx.project_id),
        Attr("tenant_id", post=True, put=False, convert=project_id,
             default=lambda ctx, body: body.get("project_id") or ctx.project_id),
        Attr("description", convert=string(255), default=""),
        Attr("created_at", post=False, put=False),
        Attr("updated_at", post=False, put=False),
        Attr("revision_number", type="integer", post=False, put=False),
        Attr("tags", type="array", convert=list_of(string(255), unique=True), default=lambda ctx, body: [],
             put=False, filter=False, sort=False),
    ]
    if with_name:
        attrs.insert(1, Attr("name", convert=string(255), default=name_default))
    return tuple(attrs)
