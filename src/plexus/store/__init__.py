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


def open_store(url: str, *, ca_file: str | None = None, cert_file: str | None = None,
               key_file: str | None = None) -> Store:
    """The backend named by ``url``.

    ``sqlite:///relative/path`` or ``sqlite:////absolute/path`` (parent directories are
    created), ``sqlite:///:memory:`` or ``memory://`` (in memory), ``etcd://host:port,...``
    (an etcd cluster; with ``ca_file`` and optionally a client ``cert_file``/``key_file``,
    over TLS). Opening an etcd store does not connect: the first request does."""
    if url in ("memory://", "sqlite:///:memory:"):
        from plexus.store.sqlite import SqliteStore
        return SqliteStore(":memory:")
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        from plexus.store.sqlite import SqliteStore
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteStore(str(path))
    if url.startswith("etcd://"):
        from plexus.store.etcd import TLS, EtcdStore
        tls = TLS(ca_file, cert_file, key_file) if (ca_file or cert_file) else None
        return EtcdStore.from_url(url, tls)
    raise ValueError(f"unknown store URL {url!r}: expected sqlite:///path, memory:// or etcd://...")
