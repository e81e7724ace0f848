"""Neutron's query conventions: filters, fields, sorting, pagination, tag filters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable
from urllib.parse import urlencode

from plexus.api.errors import BadRequest
from plexus.api.schemas.base import Attr, Invalid, Resource, to_bool

PAGING_KEYS = {"fields", "sort_key", "sort_dir", "limit", "marker", "page_reverse"}
TAG_KEYS = {"tags", "tags-any", "not-tags", "not-tags-any"}


@dataclass
class Query:
    """A parsed list query."""

    filters: dict[str, list[str]] = field(default_factory=dict)
    fields: list[str] = field(default_factory=list)
    sorts: list[tuple[str, bool]] = field(default_factory=list)   # (key, ascending)
    limit: int | None = None
    marker: str | None = None
    page_reverse: bool = False
    tags: dict[str, set[str]] = field(default_factory=dict)


def parse_query(resource: Resource, items: Iterable[tuple[str, str]]) -> Query:
    """Parse query-string pairs against a resource's schema (unknown filters are a 400)."""
    q = Query()
    sort_keys: list[str] = []
    sort_dirs: list[str] = []
    for key, value in items:
        if key == "fields":
            q.fields.append(value)
        elif key == "sort_key":
            sort_keys.append(value)
        elif key == "sort_dir":
            sort_dirs.append(value)
        elif key == "limit":
            try:
                q.limit = int(value)
            except ValueError:
                raise BadRequest(f"Limit must be an integer 0 or greater and not '{value}'") \
                    from None
            if q.limit < 0:
                raise BadRequest(f"Limit must be an integer 0 or greater and not '{value}'")
        elif key == "marker":
            q.marker = value
        elif key == "page_reverse":
            q.page_reverse = _bool(value)
        elif key in TAG_KEYS:
            q.tags.setdefault(key, set()).update(t for t in value.split(",") if t)
        else:
            attr = resource.attr(key)
            if (attr is None or not attr.filter) and key not in resource.extra_filters:
                raise BadRequest(f"[{key}] is invalid attribute for filtering",
                                 type_name="HTTPBadRequest")
            if key in CASE_INSENSITIVE:     # filtered as stored (Neutron converts them)
                value = value.lower()
            q.filters.setdefault(key, []).append(value)
    if sort_dirs and len(sort_dirs) != len(sort_keys):
        raise BadRequest("The number of sort_keys and sort_dirs must be same")
    for i, key in enumerate(sort_keys):
        attr = resource.attr(key)
        if attr is None or not attr.sort:
            raise BadRequest(f"{key} is invalid attribute for sort_key")
        direction = sort_dirs[i] if sort_dirs else "asc"
        if direction not in ("asc", "desc"):
            raise BadRequest(f"{direction} is invalid value for sort_dir, valid value is "
                             f"'asc' and 'desc'")
        q.sorts.append((key, direction == "asc"))
    if q.limit == 0:
        q.limit = None
    return q


# filters Neutron converts as it converts the attribute (convert_string_to_case_insensitive)
CASE_INSENSITIVE = ("dns_name", "dns_domain")


def _bool(value: str) -> bool:
    try:
        return to_bool(value)
    except Invalid as exc:
        raise BadRequest(str(exc)) from None


def _normalise(attr: Attr | None, value: str) -> Any:
    """A filter string converted to the attribute's type for comparison."""
    if attr is None:
        return value
    if attr.type == "boolean":
        return _bool(value)
    if attr.type == "integer":
        try:
            return int(value)
        except ValueError:
            return value
    return value


def matches(resource: Resource, obj: dict, q: Query) -> bool:
    """Whether a stored object passes the query's attribute and tag filters."""
    for key, wanted in q.filters.items():
        attr = resource.attr(key)
        value = obj.get(key)
        if key == "fixed_ips":
            if not _match_fixed_ips(value or [], wanted):
                return False
            continue
        if key == "mac_address":   # Neutron compares MACs lower-cased
            if not any(str(value or "").lower() == w.lower() for w in wanted):
                return False
            continue
        if isinstance(value, list):
            if not any(w in value for w in wanted):
                return False
            continue
        if not any(_equal(value, _normalise(attr, w)) for w in wanted):
            return False
    if q.tags:
        tags = set(obj.get("tags") or ())
        if "tags" in q.tags and not q.tags["tags"] <= tags:
            return False
        if "tags-any" in q.tags and not q.tags["tags-any"] & tags:
            return False
        if "not-tags" in q.tags and q.tags["not-tags"] <= tags:
            return False
        if "not-tags-any" in q.tags and q.tags["not-tags-any"] & tags:
            return False
    return True


def _equal(value: Any, wanted: Any) -> bool:
    if value is None:
        return wanted in ("", None)
    if isinstance(value, bool) or isinstance(wanted, bool):
        return value is wanted
    return value == wanted or str(value) == str(wanted)


def _match_fixed_ips(fixed_ips: list[dict], wanted: list[str]) -> bool:
    """Neutron's ``fixed_ips=ip_address=X`` / ``subnet_id=Y`` filters (all must hold)."""
    for want in wanted:
        key, _, val = want.partition("=")
        if key == "ip_address_substr":
            if not any(val in ip.get("ip_address", "") for ip in fixed_ips):
                return False
        elif key in ("ip_address", "subnet_id"):
            if not any(ip.get(key) == val for ip in fixed_ips):
                return False
        else:
            raise BadRequest(f"Invalid fixed_ips filter '{want}'")
    return True


def sort_and_page(items: list[dict], q: Query) -> tuple[list[dict], bool, bool]:
    """Sort then cut a page; returns (page, has_more_after, has_items_before)."""
    keys = q.sorts or [("id", True)]
    if q.page_reverse:
        keys = [(k, not asc) for k, asc in keys]
    for key, ascending in reversed(keys + [("id", keys[0][1])]):
        items.sort(key=lambda o, k=key: _sort_value(o.get(k)), reverse=not ascending)
    start = 0
    if q.marker:
        for i, obj in enumerate(items):
            if obj.get("id") == q.marker:
                start = i + 1
                break
    page = items[start:]
    more = False
    if q.limit is not None:
        more = len(page) > q.limit
        page = page[:q.limit]
    if q.page_reverse:
        page.reverse()
    return page, more, start > 0


def _sort_value(v: Any) -> tuple:
    if v is None:
        return (0, "")
    if isinstance(v, bool):
        return (1, int(v))
    if isinstance(v, (int, float)):
        return (1, v)
    return (2, str(v))


def page_links(base_url: str, collection: str, raw_items: list[tuple[str, str]],
               page: list[dict], q: Query, more: bool, before: bool) -> list[dict]:
    """Neutron's ``<collection>_links`` (``api_common.get_pagination_links``): paging
    forward, ``next`` whenever the page is full (a full last page too: the next one is
    empty) and ``previous`` always; paging backward (``page_reverse``), ``previous``
    whenever the page is full and ``next`` always. ``more``/``before`` are not used:
    the links depend only on the page's size, as Neutron's."""
    if q.limit is None:
        return []
    kept = [(k, v) for k, v in raw_items if k not in ("marker", "page_reverse")]
    full = len(page) >= q.limit
    links = []
    if full or q.page_reverse:
        marker = [("marker", page[-1]["id"])] if page else []
        links.append({"rel": "next", "href": f"{base_url}/v2.0/{collection}?"
                      + urlencode(kept + marker)})
    if full or not q.page_reverse:
        marker = [("marker", page[0]["id"])] if page else []
        links.append({"rel": "previous", "href": f"{base_url}/v2.0/{collection}?"
                      + urlencode(kept + marker + [("page_reverse", "True")])})
    return links
