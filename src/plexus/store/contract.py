"""The store contract: etcd's shape, implemented by every backend.

Keys are strings (``/plexus/...``), values are bytes. Every successful write
bumps one global revision; a transaction's writes all carry the same revision.
``watch`` returns the events of a prefix from a revision on, and raises
``Compacted`` when that revision's history is gone, so the watcher re-lists.
Leases expire after their TTL unless kept alive; expiry deletes the keys
attached to them (and those deletions are events like any other).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Literal, Sequence


class StoreError(Exception):
    """Base class of store failures."""


class Compacted(StoreError):
    """The requested revision is older than the oldest kept history."""

    def __init__(self, requested: int, compact_revision: int):
        super().__init__(
            f"revision {requested} has been compacted (oldest kept history starts after "
            f"{compact_revision}); re-list and watch from the list's revision")
        self.requested = requested
        self.compact_revision = compact_revision


class LeaseNotFound(StoreError):
    """The lease does not exist (never granted, revoked, or expired)."""


class Unavailable(StoreError):
    """The backend cannot serve the request now; the caller may retry."""


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One key at one revision."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Compare:
    """Guard: the key's mod_revision must equal ``mod_revision`` (0 = key absent)."""

    key: str
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Put:
    """Write ``value`` at ``key``, optionally attached to a lease."""

    key: str
    value: bytes
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete ``key`` (a no-op when absent)."""

    key: str


Op = Put | Delete


@dataclass(frozen=True, slots=True)
class TxnResult:
    """Outcome of a transaction: whether the guards held, and the store revision after it."""

    succeeded: bool
    revision: int


@dataclass(frozen=True, slots=True)
class Event:
    """A change to one key. For a delete, ``kv.value`` is empty and ``kv.mod_revision``
    is the revision of the deletion; ``prev`` is the value before the change, if any."""

    type: Literal["put", "delete"]
    kv: KeyValue
    prev: KeyValue | None = None


@dataclass(frozen=True, slots=True)
class WatchResult:
    """Events in revision order, and the revision to resume the watch from."""

    events: list[Event] = field(default_factory=list)
    next_revision: int = 0


class Store(abc.ABC):
    """A transactional, watchable key-value store with leases (etcd's shape)."""

    @abc.abstractmethod
    def get(self, key: str) -> KeyValue | None:
        """The key's current value, or None."""

    @abc.abstractmethod
    def range(self, prefix: str) -> tuple[list[KeyValue], int]:
        """All keys starting with ``prefix``, sorted by key, and the revision they were read at."""

    @abc.abstractmethod
    def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        """Apply ``ops`` atomically iff every compare holds; one revision for all writes.

        A transaction whose ops change nothing (only deletes of absent keys) does not
        bump the revision."""

    @abc.abstractmethod
    def revision(self) -> int:
        """The current global revision (0 for an empty, never-written store)."""

    @abc.abstractmethod
    def watch(self, prefix: str, from_revision: int, timeout: float = 0.0) -> WatchResult:
        """Events under ``prefix`` with revision >= ``from_revision``.

        Waits up to ``timeout`` seconds for at least one event. ``next_revision`` is
        where the caller resumes (one past the newest revision examined). Raises
        ``Compacted`` if ``from_revision`` is at or below the compacted revision."""

    @abc.abstractmethod
    def compact(self, revision: int) -> None:
        """Forget history at and below ``revision`` (current values are kept)."""

    @abc.abstractmethod
    def lease_grant(self, ttl: float) -> int:
        """Create a lease of ``ttl`` seconds; returns its id (> 0)."""

    @abc.abstractmethod
    def lease_keepalive(self, lease: int) -> float:
        """Renew the lease to its full TTL; returns the TTL. Raises ``LeaseNotFound``.

        The TTL is the one granted, which may be above the one asked for (etcd grants
        whole seconds, and no less than its minimum)."""

    @abc.abstractmethod
    def lease_revoke(self, lease: int) -> None:
        """End the lease now, deleting its keys. Raises ``LeaseNotFound``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release resources; the store is unusable afterwards."""

    # Conveniences built on the primitives above.

    def put(self, key: str, value: bytes, lease: int = 0) -> int:
        """Unconditional put; returns the new revision."""
        return self.txn((), (Put(key, value, lease),)).revision

    def delete(self, key: str) -> int:
        """Unconditional delete; returns the revision after it."""
        return self.txn((), (Delete(key),)).revision
