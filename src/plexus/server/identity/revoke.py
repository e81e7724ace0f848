"""Token revocation as Keystone does it: revocation events in the store, matched in memory.

A change that takes access away (user disabled or deleted, password changed, role
assignment removed, project disabled or deleted, role deleted, ``DELETE
/auth/tokens``) writes one *event* in the same store transaction as the change, under
``/plexus/identity/revocations/``, leased for the token lifetime (after which no token
it could match is still valid). An event names a user, a project, a user on a project,
a role, or one token's audit id, and carries the store revision it was written at: it
revokes every matching token issued at an earlier revision. Tokens carry the revision
they were issued at, so the comparison is exact and independent of clocks.

Every server keeps an index of the events, kept current by watching the store (a
watch wakes within milliseconds of another server's write), and pruned of events
older than the token lifetime. Checking a token costs a few dictionary look-ups,
whatever the number of users, tokens or events in the cloud.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Callable

import orjson

from plexus.server.identity.tokens import TokenPayload
from plexus.store.contract import Compacted, Event, Put, Store, StoreError

LOG = logging.getLogger("plexus.identity")

IDENTITY_PREFIX = "/plexus/identity/"
REVOCATIONS_PREFIX = "/plexus/identity/revocations/"
KEYS_PREFIX = "/plexus/identity/keys/"
PRUNE_EVERY = 30.0      # seconds between prunes of the in-memory index
WATCH_WAIT = 0.5        # seconds one watch call waits for events


def revocation_put(store: Store, ttl: float, **criteria: str | None) -> Put:
    """The Put writing a revocation event (to send in the change's own transaction).

    ``criteria``: any of user_id, project_id, role_id, audit_id (None ones are left out)."""
    event = {k: v for k, v in criteria.items() if v is not None}
    if not event:
        raise ValueError("a revocation event needs at least one criterion")
    event["revoked_at"] = time.time()
    lease = store.lease_grant(ttl + 60)
    return Put(f"{REVOCATIONS_PREFIX}{uuid.uuid4().hex}", orjson.dumps(event), lease)


class RevocationIndex:
    """The revocation events of the store, by what they match: O(1) per token check.

    Each map keeps, per user / project / (user, project) / role / audit id, the newest
    event's revision and when it was written."""

    def __init__(self, ttl: float):
        self.ttl = ttl
        self._lock = threading.Lock()
        self.users: dict[str, tuple[int, float]] = {}
        self.projects: dict[str, tuple[int, float]] = {}
        self.user_projects: dict[tuple[str, str], tuple[int, float]] = {}
        self.roles: dict[str, tuple[int, float]] = {}
        self.audits: dict[str, tuple[int, float]] = {}

    def __len__(self) -> int:
        return (len(self.users) + len(self.projects) + len(self.user_projects)
                + len(self.roles) + len(self.audits))

    def add(self, event: dict, revision: int) -> None:
        """Index one event written at ``revision``."""
        at = float(event.get("revoked_at", time.time()))
        user, project = event.get("user_id"), event.get("project_id")
        if user and project:
            target, key = self.user_projects, (user, project)
        elif user:
            target, key = self.users, user
        elif project:
            target, key = self.projects, project
        elif event.get("role_id"):
            target, key = self.roles, event["role_id"]
        elif event.get("audit_id"):
            target, key = self.audits, event["audit_id"]
        else:
            return
        with self._lock:
            old = target.get(key)
            if old is None or old[0] < revision:
                target[key] = (revision, at)

    def clear(self) -> None:
        """Forget every event (before re-reading them all)."""
        with self._lock:
            for target in (self.users, self.projects, self.user_projects, self.roles, self.audits):
                target.clear()

    def revoked(self, token: TokenPayload) -> bool:
        """True when an event revokes the token."""
        rev = token.revision
        if token.audit_id in self.audits:
            return True
        hit = self.users.get(token.user_id)
        if hit is not None and hit[0] > rev:
            return True
        if token.project_id:
            hit = self.projects.get(token.project_id)
            if hit is not None and hit[0] > rev:
                return True
            hit = self.user_projects.get((token.user_id, token.project_id))
            if hit is not None and hit[0] > rev:
                return True
        for role_id, _ in token.roles:
            hit = self.roles.get(role_id)
            if hit is not None and hit[0] > rev:
                return True
        return False

    def prune(self, now: float | None = None) -> int:
        """Drop events older than the token lifetime (no valid token predates them)."""
        cutoff = (time.time() if now is None else now) - self.ttl - 60
        dropped = 0
        with self._lock:
            for target in (self.users, self.projects, self.user_projects, self.roles, self.audits):
                stale = [k for k, (_, at) in target.items() if at < cutoff]
                for k in stale:
                    del target[k]
                dropped += len(stale)
        return dropped


class IdentityWatcher:
    """A thread following ``/plexus/identity/``: revocation events into the index, and
    key changes (a rotation on another server) into ``on_keys``."""

    def __init__(self, store: Store, index: RevocationIndex,
                 on_keys: Callable[[], None] | None = None,
                 poll_keys: Callable[[], None] | None = None):
        self.store = store
        self.index = index
        self.on_keys = on_keys
        self.poll_keys = poll_keys          # e.g. re-read a key file when it changed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.revision = 0                   # the newest revision applied

    def load(self) -> int:
        """Read every event now (also done by ``start``); returns the revision read at."""
        kvs, revision = self.store.range(REVOCATIONS_PREFIX)
        self.index.clear()
        for kv in kvs:
            self.index.add(orjson.loads(kv.value), kv.create_revision)
        self.revision = revision
        return revision

    def start(self) -> "IdentityWatcher":
        """Load the events and follow the store in a daemon thread."""
        self.load()
        self._thread = threading.Thread(target=self._run, name="plexus-identity-watch",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """End the thread (the store's close also ends a pending watch)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _apply(self, events: list[Event]) -> None:
        keys_changed = False
        for ev in events:
            if ev.kv.key.startswith(REVOCATIONS_PREFIX) and ev.type == "put":
                self.index.add(orjson.loads(ev.kv.value), ev.kv.mod_revision)
            elif ev.kv.key.startswith(KEYS_PREFIX):
                keys_changed = True
        if keys_changed and self.on_keys is not None:
            self.on_keys()

    def _run(self) -> None:
        pruned = time.monotonic()
        resync = False
        while not self._stop.is_set():
            try:
                if resync:
                    self.load()
                    if self.on_keys is not None:
                        self.on_keys()
                    resync = False
                result = self.store.watch(IDENTITY_PREFIX, self.revision + 1, timeout=WATCH_WAIT)
                self._apply(result.events)
                self.revision = max(self.revision, result.next_revision - 1)
                if self.poll_keys is not None:
                    self.poll_keys()
            except Compacted:
                resync = True
            except (StoreError, ValueError, OSError) as exc:
                if self._stop.is_set():
                    return
                LOG.warning("identity watch: %s; retrying", exc)
                self._stop.wait(0.5)
            if time.monotonic() - pruned > PRUNE_EVERY:
                self.index.prune()
                pruned = time.monotonic()
