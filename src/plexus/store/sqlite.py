"""The embedded store backend: SQLite in WAL mode, shared by threads and processes.

Every write runs in one ``BEGIN IMMEDIATE`` transaction, so the revision counter,
the compares and the lease checks are evaluated under SQLite's write lock and stay
correct when several processes open the same file. Within a process, threads share
one connection under a lock: measured under CPython, a connection per thread let
readers starve writers of the GIL (4 readers cut write throughput by 6x) while a
shared connection kept writes fast and its page cache warm. A watch of this process is
woken only by a write of this process that touched its prefix (so a watcher of keys
nobody writes costs nothing per write: no wake-up, no read under the connection's
lock); other processes' writes are seen by polling.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from typing import Iterable, Iterator, Sequence

from plexus.store.contract import (
    Compacted, Compare, Delete, Event, KeyValue, LeaseNotFound, Op, Put, Store, StoreError,
    TxnResult, Unavailable, WatchResult,
)

POLL_INTERVAL = 0.02    # seconds between looks for other processes' writes while a watch waits
SWEEP_INTERVAL = 0.25   # seconds between sweeps for expired leases
PAGE_SIZE = 16384       # rows of ~1 KB values stay inside their b-tree page (no overflow chains)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY, value BLOB NOT NULL, create_revision INTEGER NOT NULL,
    mod_revision INTEGER NOT NULL, version INTEGER NOT NULL, lease INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_lease ON kv (lease) WHERE lease != 0;
CREATE TABLE IF NOT EXISTS history (
    revision INTEGER NOT NULL, seq INTEGER NOT NULL, key TEXT NOT NULL, type TEXT NOT NULL,
    value BLOB NOT NULL, create_revision INTEGER NOT NULL, version INTEGER NOT NULL,
    lease INTEGER NOT NULL, prev_value BLOB, prev_create_revision INTEGER,
    prev_mod_revision INTEGER, prev_version INTEGER, prev_lease INTEGER,
    PRIMARY KEY (revision, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    revision INTEGER NOT NULL, compact_revision INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta VALUES (0, 0, 0);
CREATE TABLE IF NOT EXISTS leases (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ttl REAL NOT NULL, expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_expiry ON leases (expires_at);
"""

_KV_COLUMNS = "key, value, create_revision, mod_revision, version, lease"
_EVENT_COLUMNS = ("revision, type, key, value, create_revision, version, lease, prev_value, "
                  "prev_create_revision, prev_mod_revision, prev_version, prev_lease")


def _prefix_end(prefix: str) -> str | None:
    """The least string above every string starting with ``prefix`` (None: unbounded)."""
    while prefix:
        last = ord(prefix[-1])
        if last < 0x10FFFF:
            return prefix[:-1] + chr(0xE000 if last + 1 == 0xD800 else last + 1)
        prefix = prefix[:-1]
    return None


def _key_range(prefix: str) -> tuple[str, tuple[str, ...]]:
    """SQL condition and parameters selecting the keys that start with ``prefix``."""
    end = _prefix_end(prefix)
    if end is None:
        return "key >= ?", (prefix,)
    return "key >= ? AND key < ?", (prefix, end)


def _event(row: tuple) -> Event:
    """An Event from a history row (columns as in ``_EVENT_COLUMNS``)."""
    rev, kind, key, value, create, version, lease, p_value, p_create, p_mod, p_version, p_lease = row
    prev = None if p_value is None else KeyValue(key, p_value, p_create, p_mod, p_version, p_lease)
    return Event(kind, KeyValue(key, value, create, rev, version, lease), prev)


class _Write:
    """The changes made inside one SQLite write transaction; each batch takes the next revision."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self.keys: list[str] = []     # keys changed (for waking the watches they concern)
        self.start = self.revision = conn.execute("SELECT revision FROM meta").fetchone()[0]

    def holds(self, compares: Iterable[Compare]) -> bool:
        """Whether every compare holds now."""
        for c in compares:
            row = self.conn.execute("SELECT mod_revision FROM kv WHERE key = ?", (c.key,)).fetchone()
            if (row[0] if row else 0) != c.mod_revision:
                return False
        return True

    def check_leases(self, leases: Iterable[int]) -> None:
        """Raise LeaseNotFound unless every lease exists."""
        for lease in leases:
            if not self.conn.execute("SELECT 1 FROM leases WHERE id = ?", (lease,)).fetchone():
                raise LeaseNotFound(f"lease {lease} not found")

    def apply(self, ops: Iterable[Op]) -> None:
        """Apply ``ops`` at the next revision, logging one event per change (none: no revision)."""
        rev, seq = self.revision + 1, 0
        for op in ops:
            old = self.conn.execute(f"SELECT {_KV_COLUMNS} FROM kv WHERE key = ?", (op.key,)).fetchone()
            if isinstance(op, Put):
                create, version = (old[2], old[4] + 1) if old else (rev, 1)
                self.conn.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?, ?, ?, ?)",
                                  (op.key, op.value, create, rev, version, op.lease))
                change = ("put", op.value, create, version, op.lease)
            elif old:
                self.conn.execute("DELETE FROM kv WHERE key = ?", (op.key,))
                change = ("delete", b"", 0, 0, 0)
            else:
                continue
            prev = old[1:] if old else (None,) * 5
            self.conn.execute("INSERT INTO history VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                              (rev, seq, op.key, *change, *prev))
            seq += 1
            self.keys.append(op.key)
        if seq:
            self.revision = rev

    def revoke(self, leases: list[int]) -> None:
        """Forget ``leases`` and delete their keys, all at one revision."""
        marks = ", ".join("?" * len(leases))
        keys = self.conn.execute(     # "lease != 0" lets SQLite use the partial index kv_lease
            f"SELECT key FROM kv WHERE lease IN ({marks}) AND lease != 0 ORDER BY key", leases)
        self.apply([Delete(key) for key, in keys.fetchall()])
        self.conn.execute(f"DELETE FROM leases WHERE id IN ({marks})", leases)

    def expire(self, now: float) -> None:
        """Revoke every lease whose TTL ran out by ``now``."""
        due = self.conn.execute("SELECT id FROM leases WHERE expires_at <= ?", (now,)).fetchall()
        if due:
            self.revoke([lease for lease, in due])


class SqliteStore(Store):
    """The store contract over one SQLite database file (or ``:memory:``)."""

    def __init__(self, path: str = ":memory:"):
        self._path = path
        self._lock = threading.Lock()             # guards the connection: one transaction at a time
        self._watches_lock = threading.Lock()
        self._watches: dict[threading.Event, str] = {}   # waiting watch → its prefix
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None
        self._sweeper_lock = threading.Lock()
        self._closed = False
        # Other processes' writes are only seen by polling; in memory there are none.
        self._poll = None if path == ":memory:" else POLL_INTERVAL
        if path != ":memory:":
            _private_files(path)
        self._conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self._conn.execute(f"PRAGMA page_size={PAGE_SIZE}")      # only takes effect on a new database
        self._conn.execute("PRAGMA journal_mode=WAL")            # ignored (stays "memory") in memory
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")

    # Transactions.

    def _connection(self) -> sqlite3.Connection:
        """The connection, for a caller holding ``_lock``."""
        if self._closed:
            raise StoreError("store is closed")
        return self._conn

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees one snapshot."""
        with self._lock, _busy_is_unavailable():
            conn = self._connection()
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")

    @contextlib.contextmanager
    def _writing(self) -> Iterator[_Write]:
        """A write transaction holding SQLite's write lock; expired leases are revoked first."""
        with self._lock, _busy_is_unavailable():
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                write = _Write(conn)
                write.expire(time.time())
                yield write
                if write.revision != write.start:
                    conn.execute("UPDATE meta SET revision = ?", (write.revision,))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        if write.revision != write.start:
            self._wake(write.keys)

    def _wake(self, changed: list[str]) -> None:
        """Wake the watches whose prefix one of the ``changed`` keys starts with."""
        with self._watches_lock:
            for flag, prefix in self._watches.items():
                if not flag.is_set() and any(key.startswith(prefix) for key in changed):
                    flag.set()

    # The contract.

    def get(self, key: str) -> KeyValue | None:
        """The key's current value, or None."""
        with self._reading() as conn:
            row = conn.execute(f"SELECT {_KV_COLUMNS} FROM kv WHERE key = ?", (key,)).fetchone()
        return KeyValue(*row) if row else None

    def range(self, prefix: str) -> tuple[list[KeyValue], int]:
        """All keys starting with ``prefix``, sorted by key, and the revision they were read at."""
        where, params = _key_range(prefix)
        with self._reading() as conn:
            rows = conn.execute(f"SELECT {_KV_COLUMNS} FROM kv WHERE {where} ORDER BY key", params).fetchall()
            revision = conn.execute("SELECT revision FROM meta").fetchone()[0]
        return [KeyValue(*row) for row in rows], revision

    def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        """Apply ``ops`` atomically iff every compare holds; one revision for all writes."""
        if len({op.key for op in ops}) != len(ops):
            raise ValueError("a transaction may touch each key only once")
        with self._writing() as write:
            if not write.holds(compares):
                return TxnResult(False, write.revision)
            write.check_leases({op.lease for op in ops if isinstance(op, Put) and op.lease})
            write.apply(ops)
        return TxnResult(True, write.revision)

    def revision(self) -> int:
        """The current global revision (0 for an empty, never-written store)."""
        with self._reading() as conn:
            return conn.execute("SELECT revision FROM meta").fetchone()[0]

    def watch(self, prefix: str, from_revision: int, timeout: float = 0.0) -> WatchResult:
        """Events under ``prefix`` with revision >= ``from_revision`` (0: from the next write on).

        Waits up to ``timeout`` seconds for at least one event; ``next_revision`` is one
        past the newest revision examined. Raises ``Compacted`` for compacted history."""
        if from_revision < 0:
            raise ValueError("from_revision must be >= 0")
        self._start_sweeper()
        where, params = _key_range(prefix)
        deadline = time.monotonic() + timeout
        start = from_revision
        flag = threading.Event()      # set by a write of this process under ``prefix``
        with self._watches_lock:
            self._watches[flag] = prefix
        try:
            return self._watch(flag, where, params, start, deadline)
        finally:
            with self._watches_lock:
                del self._watches[flag]

    def _watch(self, flag: threading.Event, where: str, params: tuple, start: int,
               deadline: float) -> WatchResult:
        while True:
            flag.clear()              # before the read: a write after it sets the flag again
            with self._reading() as conn:
                current, compacted = conn.execute(
                    "SELECT revision, compact_revision FROM meta").fetchone()
                start = start or current + 1
                if start <= compacted:
                    raise Compacted(start, compacted)
                rows = conn.execute(f"SELECT {_EVENT_COLUMNS} FROM history WHERE revision >= ? "
                                    f"AND {where} ORDER BY revision, seq", (start, *params)).fetchall()
            start = max(start, current + 1)
            remaining = deadline - time.monotonic()
            if rows or remaining <= 0:
                return WatchResult([_event(row) for row in rows], start)
            if not self._closed:
                flag.wait(remaining if self._poll is None else min(remaining, self._poll))

    def compact(self, revision: int) -> None:
        """Forget history at and below ``revision`` (current values are kept)."""
        with self._writing() as write:
            if revision > write.revision:
                raise ValueError(f"cannot compact to {revision}: the store is at {write.revision}")
            compacted = write.conn.execute("SELECT compact_revision FROM meta").fetchone()[0]
            if revision > compacted:
                write.conn.execute("DELETE FROM history WHERE revision <= ?", (revision,))
                write.conn.execute("UPDATE meta SET compact_revision = ?", (revision,))

    def lease_grant(self, ttl: float) -> int:
        """Create a lease of ``ttl`` seconds; returns its id (> 0)."""
        if ttl <= 0:
            raise ValueError("a lease needs a positive TTL")
        self._start_sweeper()
        with self._writing() as write:
            cur = write.conn.execute("INSERT INTO leases (ttl, expires_at) VALUES (?, ?)",
                                     (ttl, time.time() + ttl))
        return cur.lastrowid

    def lease_keepalive(self, lease: int) -> float:
        """Renew the lease to its full TTL; returns the TTL. Raises ``LeaseNotFound``."""
        self._start_sweeper()
        with self._writing() as write:
            row = write.conn.execute("SELECT ttl FROM leases WHERE id = ?", (lease,)).fetchone()
            if row is None:
                raise LeaseNotFound(f"lease {lease} not found")
            write.conn.execute("UPDATE leases SET expires_at = ? WHERE id = ?", (time.time() + row[0], lease))
        return row[0]

    def lease_revoke(self, lease: int) -> None:
        """End the lease now, deleting its keys. Raises ``LeaseNotFound``."""
        with self._writing() as write:
            write.check_leases((lease,))
            write.revoke([lease])

    def close(self) -> None:
        """Stop the lease sweeper and close the connection; the store is unusable afterwards."""
        self._stop.set()
        with self._sweeper_lock:
            sweeper = self._sweeper
        if sweeper is not None:
            sweeper.join()
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()
        with self._watches_lock:
            for flag in self._watches:
                flag.set()

    # Lease expiry.

    def _start_sweeper(self) -> None:
        """Start the background lease sweeper once (lazily: only stores that use leases or watch)."""
        with self._sweeper_lock:
            if self._sweeper is None and not self._stop.is_set():
                self._sweeper = threading.Thread(
                    target=self._sweep_loop, name=f"plexus-store-sweeper:{self._path}", daemon=True)
                self._sweeper.start()

    def _sweep_loop(self) -> None:
        """Revoke expired leases every SWEEP_INTERVAL until closed."""
        while not self._stop.wait(SWEEP_INTERVAL):
            with contextlib.suppress(Unavailable):
                self._sweep()

    def _sweep(self) -> None:
        """Revoke expired leases, taking the write lock only when one is due."""
        with self._reading() as conn:
            due = conn.execute("SELECT 1 FROM leases WHERE expires_at <= ? LIMIT 1", (time.time(),)).fetchone()
        if due:
            with self._writing():
                pass    # _writing revokes expired leases before anything else


def _private_files(path: str) -> None:
    """Create the database file mode 0600 (SQLite gives its -wal and -shm files the
    database's mode), and take group/other access away from existing ones we own."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    for name in (path, path + "-wal", path + "-shm", path + "-journal"):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            if os.stat(name).st_mode & 0o077:
                os.chmod(name, 0o600)


@contextlib.contextmanager
def _busy_is_unavailable() -> Iterator[None]:
    """Turn SQLite's 'database is busy/locked' (after the busy timeout) into ``Unavailable``."""
    try:
        yield
    except sqlite3.OperationalError as e:
        if getattr(e, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            raise Unavailable(str(e)) from e
        raise
