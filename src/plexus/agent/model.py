"""The agent's copy of the model: the collections it compiles from, filled by a
southbound snapshot and kept current by watch events. Events are checked before they
are applied; a malformed or unusable one is refused (``BadEvent``) and changes nothing,
so the caller logs it and goes on."""

from __future__ import annotations

from typing import Any, Mapping

from plexus.agent.relevant import BadObject, check

# what the agent compiles from (routers, floating IPs, SNAT blocks: docs/routing.md;
# liveness: which chassis are alive)
COLLECTIONS = ("networks", "subnets", "ports", "agents", "security-groups", "routers",
               "floatingips", "snat_blocks", "liveness")


class BadEvent(ValueError):
    """A southbound event the agent cannot apply."""


class Model:
    """Model objects by collection and id, and the revision they are current at."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, dict]] = {c: {} for c in COLLECTIONS}
        self.revision = 0          # the snapshot's revision, then each applied event's
        self.loaded = False        # a snapshot has been taken

    def reset(self, revision: int, objects: Mapping[str, Any]) -> list[tuple[str, str, str]]:
        """Replace everything with a snapshot; returns the objects left out, and why."""
        fresh: dict[str, dict[str, dict]] = {c: {} for c in COLLECTIONS}
        problems = []
        agent_ids = _agent_ids(objects.get("agents"))
        for collection in COLLECTIONS:
            items = objects.get(collection) or []
            for obj in items if isinstance(items, list) else []:
                ident = obj.get("id") if isinstance(obj, Mapping) else None
                if collection == "liveness" and ident is None and isinstance(obj, Mapping):
                    ident = agent_ids.get(obj.get("host"))   # keyed by agent id, no id field
                try:
                    if not isinstance(ident, str) or not ident:
                        raise BadObject("no id")
                    check(collection, obj)
                except BadObject as exc:
                    problems.append((collection, str(ident), str(exc)))
                    continue
                fresh[collection][ident] = dict(obj)
        self.objects, self.revision, self.loaded = fresh, int(revision), True
        return problems

    def apply(self, event: Any) -> bool:
        """Apply one watch event; True if it changed a collection the agent uses.

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
            return False
        if kind == "delete":
            return table.pop(ident, None) is not None
        obj = event.get("object")
        if not isinstance(obj, Mapping) or obj.get("id", ident) != ident:
            raise BadEvent(f"{collection}/{ident}: object missing or for another id")
        try:
            check(collection, obj)
        except BadObject as exc:
            raise BadEvent(f"{collection}/{ident}: {exc}") from None
        table[ident] = dict(obj)
        return True


def _agent_ids(agents: Any) -> dict[str, str]:
    """Host → agent id in a snapshot's ``agents`` (liveness objects are stored under the
    agent's id but do not carry it; watch events do)."""
    return {a["host"]: a["id"] for a in agents if isinstance(a, Mapping)
            and isinstance(a.get("host"), str) and isinstance(a.get("id"), str)} \
        if isinstance(agents, list) else {}
