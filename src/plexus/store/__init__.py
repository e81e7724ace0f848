"""The store: the contract every backend implements, and ``open_store`` to pick one by URL."""

from __future__ import annotations

from pathlib import Path

from plexus.store.contract import (
    Compacted, Compare, Delete, Event, KeyValue, LeaseNotFound, Op, Put, Store, StoreError,
    TxnResult, Unavailable, WatchResult,
)

__all__ = [
    "Compacted", "Compare", "Delete", "Event", "KeyValue", "LeaseNotFound", "Op", "Put",
    "Store", "StoreError", "TxnResult", "Unavailable", "WatchResult", "open_store",
]


def open_store(url: str) -> Store:
    """The backend named by ``url``.

    ``sqlite:///relative/path`` or ``sqlite:////absolute/path`` (parent directories are
    created), ``sqlite:///:memory:`` or ``memory://`` (in memory), ``etcd://host:port,...``."""
    if url in ("memory://", "sqlite:///:memory:"):
        from plexus.store.sqlite import SqliteStore
        return SqliteStore(":memory:")
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        from plexus.store.sqlite import SqliteStore
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteStore(str(path))
    if url.startswith("etcd://"):
        raise NotImplementedError("etcd backend: see issue 7")
    raise ValueError(f"unknown store URL {url!r}: expected sqlite:///path, memory:// or etcd://...")
