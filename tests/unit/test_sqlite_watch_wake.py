"""The SQLite store wakes a waiting watch only for writes of this process under its
prefix: a watcher of keys nobody writes (the identity watcher beside a busy API) does
no read under the connection's lock per write, and a watch still sees every event of
its prefix, including those written while it was reading."""

from __future__ import annotations

import threading

from plexus.store import Put
from plexus.store.sqlite import SqliteStore


def _counting(store: SqliteStore, counts: dict[str, int]) -> None:
    """Count the read transactions each thread opens."""
    reading = store._reading

    def counted():
        name = threading.current_thread().name
        counts[name] = counts.get(name, 0) + 1
        return reading()
    store._reading = counted


def test_writes_elsewhere_do_not_wake_a_watch():
    store = SqliteStore()        # in memory: no other process, so no polling either
    try:
        counts: dict[str, int] = {}
        _counting(store, counts)
        started = threading.Event()
        out = []

        def watch():
            started.set()
            out.append(store.watch("/quiet/", 0, timeout=30))
        t = threading.Thread(target=watch, name="quiet-watch")
        t.start()
        started.wait()
        for i in range(50):
            store.txn([], [Put(f"/busy/{i}", b"x")])
        store.txn([], [Put("/quiet/k", b"v")])
        t.join(30)
        assert not t.is_alive()
        [result] = out
        assert [e.kv.key for e in result.events] == ["/quiet/k"]
        # one read before the first wait, at most one more after the write it waits for
        assert counts["quiet-watch"] <= 3
    finally:
        store.close()


def test_watch_sees_every_event_under_concurrent_writers():
    store = SqliteStore()
    try:
        written: list[int] = []

        def writer(n: int):
            for i in range(100):
                r = store.txn([], [Put(f"/w/{n}/{i}", b"v"), Put(f"/other/{n}/{i}", b"o")])
                written.append(r.revision)
        writers = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for t in writers:
            t.start()
        seen: list[str] = []
        start = 1
        while len(seen) < 400:
            result = store.watch("/w/", start, timeout=30)
            assert result.events, "a watch timed out while writes were pending"
            seen += [e.kv.key for e in result.events]
            start = result.next_revision
        for t in writers:
            t.join()
        assert sorted(seen) == sorted(f"/w/{n}/{i}" for n in range(4) for i in range(100))
    finally:
        store.close()


def test_close_ends_a_waiting_watch():
    store = SqliteStore()
    done = threading.Event()

    def watch():
        try:
            store.watch("/x/", 0, timeout=60)
        except Exception:   # noqa: BLE001 - "store is closed" is the expected end
            pass
        done.set()
    t = threading.Thread(target=watch)
    t.start()
    while not store._watches:
        threading.Event().wait(0.01)
    store.close()
    t.join(30)
    assert done.is_set()
