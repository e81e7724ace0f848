"""The agent's copy of the model: the typed catalog it compiles from (``plexus.model``),
filled by a southbound snapshot and kept current by watch events, and the wire form of
each object as it arrived (for logs, tests and the DHCP responder's few extra fields).
Each object is parsed once, when it arrives; a malformed or unusable event is refused
(``BadEvent``) and changes nothing, so the caller logs it and goes on."""

from __future__ import annotations

from typing import Any, Mapping

from plexus.model import keys
from plexus.model.catalog import Catalog, Change
from plexus.model.objects import BadObject

COLLECTIONS = keys.COLLECTIONS


class BadEvent(ValueError):
    """A southbound event the agent cannot apply."""


class Model:
    """Model objects by collection and id (typed in ``catalog``, as received in
    ``objects``), and the revision they are current at."""

    def __init__(self) -> None:
        self.catalog = Catalog()
        self.objects: dict[str, dict[str, dict]] = {c: {} for c in COLLECTIONS}
        self.revision = 0          # the snapshot's revision, then each applied event's
        self.loaded = False        # a snapshot has been taken

    def reset(self, revision: int, objects: Mapping[str, Any]) -> list[tuple[str, str, str]]:
        """Replace everything with a snapshot; returns the objects left out, and why."""
        catalog, problems = Catalog.from_wire(objects)
        fresh: dict[str, dict[str, dict]] = {c: {} for c in COLLECTIONS}
        agent_ids = {a.host: a.id for a in catalog.objects[keys.AGENTS].values()}
        for collection in COLLECTIONS:
            items = objects.get(collection) or []
            for obj in items if isinstance(items, list) else []:
                if not isinstance(obj, Mapping):
                    continue
                ident = obj.get("id") if collection != keys.LIVENESS else \
                    obj.get("id") or agent_ids.get(obj.get("host"))
                if ident in catalog.objects[collection]:
                    fresh[collection][ident] = dict(obj)
        self.catalog, self.objects = catalog, fresh
        self.revision, self.loaded = int(revision), True
        return problems

    def apply(self, event: Any) -> Change | None:
        """Apply one watch event; the change it made to a collection the agent uses (None
        if it changed nothing there).

        Raises ``BadEvent`` (and changes nothing) for a malformed or unusable event."""
        if not isinstance(event, Mapping):
            raise BadEvent("event is not an object")
        kind, collection = event.get("type"), event.get("collection")
        ident, revision = event.get("id"), event.get("revision")
        if kind not in ("put", "delete"):
            raise BadEvent(f"unknown event type {kind!r}")
        if not isinstance(collection, str) or not isinstance(ident, str) or not ident:
            raise BadEvent("event without collection or id")
        if not isinstance(revision, int) or isinstance(revision, bool):
            raise BadEvent(f"revision {revision!r} is not an integer")
        self.revision = max(self.revision, revision)
        table = self.objects.get(collection)
        if table is None:
            return None
        if kind == "delete":
            table.pop(ident, None)
            return self.catalog.delete(collection, ident)
        obj = event.get("object")
        if not isinstance(obj, Mapping) or obj.get("id", ident) != ident:
            raise BadEvent(f"{collection}/{ident}: object missing or for another id")
        try:
            change = self.catalog.apply_wire(collection, ident, obj)
        except BadObject as exc:
            raise BadEvent(f"{collection}/{ident}: {exc}") from None
        table[ident] = dict(obj)
        return change
