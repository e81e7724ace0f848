"""The store contract: every backend must pass these tests (see conftest.BACKENDS)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from plexus.store import (
    Compacted, Compare, Delete, KeyValue, LeaseNotFound, Put, Store, TxnResult, Unavailable,
    open_store,
)


def wait_for(predicate, timeout: float = 3.0) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def watch_all(store: Store, prefix: str, from_revision: int) -> list[tuple[str, str, int]]:
    """(type, key, mod_revision) of every event under ``prefix`` from ``from_revision``."""
    return [(e.type, e.kv.key, e.kv.mod_revision) for e in store.watch(prefix, from_revision).events]


def cas_increment(store: Store, key: str) -> int:
    """Increment the integer at ``key`` with compare-and-swap, retrying; returns attempts."""
    attempts = 0
    while True:
        attempts += 1
        kv = store.get(key)
        value, guard = (int(kv.value), kv.mod_revision) if kv else (0, 0)
        if store.txn([Compare(key, guard)], [Put(key, str(value + 1).encode())]).succeeded:
            return attempts


# Keys, values and revisions.

def test_empty_store(store):
    assert store.revision() == 0
    assert store.get("/k") is None
    assert store.range("/") == ([], 0)


def test_put_get_delete(store):
    assert store.put("/k", b"v1") == 1
    assert store.get("/k") == KeyValue("/k", b"v1", 1, 1, 1, 0)
    assert store.delete("/k") == 2
    assert store.get("/k") is None
    assert store.revision() == 2


def test_delete_of_absent_key_does_not_bump_revision(store):
    store.put("/k", b"v")
    assert store.delete("/absent") == 1
    assert store.txn([], [Delete("/a"), Delete("/b")]).revision == 1
    assert store.revision() == 1
    assert watch_all(store, "/", 1) == [("put", "/k", 1)]


def test_per_key_revisions_and_version(store):
    store.put("/a", b"1")                   # rev 1
    store.put("/b", b"1")                   # rev 2
    store.put("/a", b"2")                   # rev 3
    assert store.get("/a") == KeyValue("/a", b"2", 1, 3, 2, 0)
    assert store.get("/b") == KeyValue("/b", b"1", 2, 2, 1, 0)
    store.delete("/a")                      # rev 4
    store.put("/a", b"3")                   # rev 5: a new life, version restarts
    assert store.get("/a") == KeyValue("/a", b"3", 5, 5, 1, 0)


def test_txn_writes_share_one_revision(store):
    store.put("/x/old", b"o")
    result = store.txn([], [Put("/x/2", b"b"), Put("/x/1", b"a"), Delete("/x/old"), Delete("/x/none")])
    assert result.succeeded and result.revision == 2 == store.revision()
    items, _ = store.range("/x/")
    assert [(kv.key, kv.mod_revision) for kv in items] == [("/x/1", 2), ("/x/2", 2)]
    # one event per change, in the order of the ops
    assert watch_all(store, "/x/", 2) == [("put", "/x/2", 2), ("put", "/x/1", 2), ("delete", "/x/old", 2)]


def test_txn_rejects_a_key_twice(store):
    with pytest.raises(ValueError):
        store.txn([], [Put("/k", b"1"), Delete("/k")])
    assert store.revision() == 0


# Range.

def test_range_is_sorted_and_exact_prefix(store):
    for key in ["/b", "/a/2", "/ab", "/a/1", "/a", "/a/10"]:
        store.put(key, key.encode())
    items, revision = store.range("/a/")
    assert [kv.key for kv in items] == ["/a/1", "/a/10", "/a/2"]
    assert [kv.value for kv in items] == [b"/a/1", b"/a/10", b"/a/2"]
    assert revision == 6
    assert [kv.key for kv in store.range("")[0]] == sorted(["/b", "/a/2", "/ab", "/a/1", "/a", "/a/10"])
    assert [kv.key for kv in store.range("/a")[0]] == ["/a", "/a/1", "/a/10", "/a/2", "/ab"]
    assert store.range("/c") == ([], 6)


def test_range_treats_sql_wildcards_literally(store):
    for key in ["/p%/x", "/p%x", "/p_/y", "/pa/z", "/pab", "/p\\/w"]:
        store.put(key, b"")
    assert [kv.key for kv in store.range("/p%/")[0]] == ["/p%/x"]
    assert [kv.key for kv in store.range("/p%")[0]] == ["/p%/x", "/p%x"]
    assert [kv.key for kv in store.range("/p_")[0]] == ["/p_/y"]
    assert [kv.key for kv in store.range("/p\\")[0]] == ["/p\\/w"]
    assert [e.kv.key for e in store.watch("/p_", 1).events] == ["/p_/y"]


def test_range_prefix_ending_in_highest_code_point(store):
    top = "\U0010ffff"
    for key in [f"/u{top}", f"/u{top}/a", "/v", "/u"]:
        store.put(key, b"")
    assert [kv.key for kv in store.range(f"/u{top}")[0]] == [f"/u{top}", f"/u{top}/a"]


# Compare-and-swap.

def test_cas_create_if_absent(store):
    assert store.txn([Compare("/k", 0)], [Put("/k", b"first")]).succeeded
    result = store.txn([Compare("/k", 0)], [Put("/k", b"second")])
    assert result == TxnResult(False, 1)
    assert store.get("/k").value == b"first"


def test_cas_mod_revision_guard(store):
    store.put("/k", b"v1")
    store.put("/other", b"")
    kv = store.get("/k")
    assert store.txn([Compare("/k", kv.mod_revision)], [Put("/k", b"v2")]).succeeded
    stale = store.txn([Compare("/k", kv.mod_revision)], [Put("/k", b"v3")])
    assert not stale.succeeded and stale.revision == 3 == store.revision()
    assert store.get("/k").value == b"v2"


def test_failed_txn_changes_nothing(store):
    store.put("/a", b"a1")
    store.put("/b", b"b1")
    lease = store.lease_grant(5)
    result = store.txn(
        [Compare("/a", 1), Compare("/b", 2), Compare("/c", 99)],
        [Put("/a", b"a2"), Delete("/b"), Put("/c", b"c1", lease)])
    assert result.succeeded is False and result.revision == 2
    assert store.get("/a").value == b"a1" and store.get("/b").value == b"b1" and store.get("/c") is None
    assert store.revision() == 2
    assert store.watch("/", 3).events == []


def test_concurrent_cas_increments(store):
    threads, per_thread = 8, 40
    workers = [threading.Thread(target=lambda: [cas_increment(store, "/counter") for _ in range(per_thread)])
               for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert int(store.get("/counter").value) == threads * per_thread
    assert store.get("/counter").version == threads * per_thread
    assert store.revision() == threads * per_thread


# Watch.

def test_watch_events_with_prev_values(store):
    store.put("/w/k", b"v1")                # rev 1
    store.put("/elsewhere", b"")            # rev 2
    store.put("/w/k", b"v2")                # rev 3
    store.delete("/w/k")                    # rev 4
    result = store.watch("/w/", 1)
    assert result.next_revision == 5
    first, second, third = result.events
    assert (first.type, first.kv, first.prev) == ("put", KeyValue("/w/k", b"v1", 1, 1, 1), None)
    assert (second.type, second.kv) == ("put", KeyValue("/w/k", b"v2", 1, 3, 2))
    assert second.prev == KeyValue("/w/k", b"v1", 1, 1, 1)
    assert third.type == "delete"
    assert (third.kv.key, third.kv.value, third.kv.mod_revision) == ("/w/k", b"", 4)
    assert third.prev == KeyValue("/w/k", b"v2", 1, 3, 2)
    assert [e.kv.mod_revision for e in store.watch("/w/", 3).events] == [3, 4]


def test_watch_without_events_resumes_after_current_revision(store):
    assert store.watch("/", 1).next_revision == 1
    store.put("/a", b"")
    store.put("/b", b"")
    result = store.watch("/b", 3)
    assert result.events == [] and result.next_revision == 3
    result = store.watch("/zzz", 1)
    assert result.events == [] and result.next_revision == 3


def test_watch_from_zero_starts_at_next_write(store):
    store.put("/a", b"old")
    assert store.watch("/", 0).events == []
    threading.Timer(0.1, store.put, ("/a", b"new")).start()
    result = store.watch("/", 0, timeout=5)
    assert [(e.kv.value, e.kv.mod_revision) for e in result.events] == [(b"new", 2)]


def test_watch_resumes_without_loss_or_duplication(store):
    total = 200

    def writer():
        for i in range(total):
            if i % 3 == 2:
                store.txn([], [Put(f"/r/{i}", b"x"), Put(f"/r/{i}b", b"y")])
            else:
                store.put(f"/r/{i}", str(i).encode())
            store.put("/noise", b"")

    thread = threading.Thread(target=writer)
    thread.start()
    seen, revision = [], 1
    while thread.is_alive() or revision <= store.revision():
        result = store.watch("/r/", revision, timeout=0.5)
        seen += [(e.kv.key, e.kv.mod_revision) for e in result.events]
        assert result.next_revision >= revision
        revision = result.next_revision
    thread.join()
    expected = [(e.kv.key, e.kv.mod_revision) for e in store.watch("/r/", 1).events]
    assert seen == expected
    assert len(seen) == total + total // 3
    assert len(set(seen)) == len(seen)


def test_watch_blocks_until_another_thread_writes(store):
    start = store.revision() + 1
    threading.Timer(0.3, store.put, ("/b/k", b"v")).start()
    began = time.monotonic()
    result = store.watch("/b/", start, timeout=5)
    elapsed = time.monotonic() - began
    assert [e.kv.key for e in result.events] == ["/b/k"]
    assert 0.2 <= elapsed < 3


def test_watch_times_out_empty(store):
    store.put("/t/k", b"")
    threading.Timer(0.1, store.put, ("/other", b"")).start()
    began = time.monotonic()
    result = store.watch("/t/", 2, timeout=0.4)
    assert time.monotonic() - began >= 0.39
    assert result.events == [] and result.next_revision == 3


def test_compacted_history(store):
    for i in range(5):
        store.put("/c", str(i).encode())   # revs 1..5
    store.compact(3)
    with pytest.raises(Compacted) as info:
        store.watch("/c", 3)
    assert info.value.compact_revision == 3
    with pytest.raises(Compacted):
        store.watch("/c", 1)
    assert [e.kv.value for e in store.watch("/c", 4).events] == [b"3", b"4"]
    assert store.get("/c") == KeyValue("/c", b"4", 1, 5, 5)
    assert store.watch("/c", 6).next_revision == 6


# Leases.

def test_lease_keepalive_keeps_keys_past_ttl(store):
    lease = store.lease_grant(0.5)
    assert lease > 0
    store.put("/l/k", b"v", lease)
    assert store.get("/l/k").lease == lease
    for _ in range(8):                      # 1.2 s: more than twice the TTL
        assert 0.5 <= store.lease_keepalive(lease) <= 2     # etcd grants whole seconds
        time.sleep(0.15)
    assert store.get("/l/k") is not None


def test_lease_expiry_deletes_keys_with_events(store):
    lease = store.lease_grant(0.3)
    store.put("/e/a", b"a", lease)
    store.put("/e/b", b"b", lease)
    store.put("/e/keep", b"k")
    assert wait_for(lambda: store.get("/e/a") is None, timeout=3)
    assert store.get("/e/b") is None and store.get("/e/keep") is not None
    deletes = [e for e in store.watch("/e/", 4).events if e.type == "delete"]
    assert [e.kv.key for e in deletes] == ["/e/a", "/e/b"]
    assert len({e.kv.mod_revision for e in deletes}) == 1
    assert deletes[0].prev.lease == lease
    with pytest.raises(LeaseNotFound):
        store.lease_keepalive(lease)


def test_lease_revoke(store):
    lease = store.lease_grant(10)
    store.txn([], [Put("/v/a", b"", lease), Put("/v/b", b"", lease), Put("/v/c", b"")])
    store.lease_revoke(lease)
    assert [kv.key for kv in store.range("/v/")[0]] == ["/v/c"]
    assert watch_all(store, "/v/", 2) == [("delete", "/v/a", 2), ("delete", "/v/b", 2)]
    with pytest.raises(LeaseNotFound):
        store.lease_revoke(lease)
    with pytest.raises(LeaseNotFound):
        store.lease_keepalive(lease)


def test_put_with_unknown_lease_writes_nothing(store):
    store.put("/n/a", b"old")
    with pytest.raises(LeaseNotFound):
        store.put("/n/b", b"", lease=424242)
    with pytest.raises(LeaseNotFound):
        store.txn([], [Put("/n/a", b"new"), Put("/n/c", b"", lease=424242)])
    assert store.revision() == 1
    assert store.get("/n/a").value == b"old" and store.get("/n/b") is None and store.get("/n/c") is None


# Clients sharing one store (other processes, other nodes).

def test_clients_see_each_others_writes_and_watches(store, open_client):
    other = open_client()
    store.put("/s/a", b"from-first")
    assert other.get("/s/a").value == b"from-first"
    assert other.range("/s/") == store.range("/s/")
    threading.Timer(0.2, store.put, ("/s/b", b"later")).start()
    began = time.monotonic()
    result = other.watch("/s/", 2, timeout=5)
    assert [(e.kv.key, e.kv.value) for e in result.events] == [("/s/b", b"later")]
    assert time.monotonic() - began < 2     # woken by the write, not by the timeout
    assert not other.txn([Compare("/s/a", 0)], [Put("/s/a", b"x")]).succeeded
    lease = other.lease_grant(10)
    store.put("/s/leased", b"", lease)
    other.lease_revoke(lease)
    assert store.get("/s/leased") is None
    assert store.revision() == other.revision() == 4


def test_processes_cas_one_counter(store_url, open_client):
    open_client().put("/p/counter", b"0")
    script = ("import sys; from plexus.store import open_store, Compare, Put\n"
              "s = open_store(sys.argv[1])\n"
              "for _ in range(100):\n"
              "    while True:\n"
              "        kv = s.get('/p/counter')\n"
              "        if s.txn([Compare(kv.key, kv.mod_revision)],\n"
              "                 [Put(kv.key, str(int(kv.value) + 1).encode())]).succeeded: break\n"
              "s.close()\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, store_url]) for _ in range(3)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    assert open_client().get("/p/counter").value == b"300"


# Opening stores by URL.

def test_open_store_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    relative = open_store("sqlite:///state/dir/plexus.db")
    relative.put("/k", b"v")
    relative.close()
    assert (tmp_path / "state" / "dir" / "plexus.db").is_file()
    again = open_store(f"sqlite:///{tmp_path}/state/dir/plexus.db")
    assert again.get("/k").value == b"v"
    again.close()
    for url in ("memory://", "sqlite:///:memory:"):
        memory = open_store(url)
        assert memory.revision() == 0
        memory.close()
    nowhere = open_store("etcd://127.0.0.1:1,127.0.0.1:2")     # opening does not connect
    with pytest.raises(Unavailable):
        nowhere.revision()
    nowhere.close()
    with pytest.raises(ValueError):
        open_store("etcd://")
    with pytest.raises(ValueError):
        open_store("redis://localhost")
