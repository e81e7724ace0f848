"""The southbound stream of one server process: a ``Hub`` follows the store's model with
one watcher and serves every agent its own snapshot and event stream.

The hub keeps the whole model twice over: typed, in a ``Catalog`` (for the relevance
rules of ``model.relevance``), and as the stored JSON bytes (so snapshots and events are
served without encoding anything again). For each chassis it keeps the scopes it
subscribes to, and the inverse (scope → chassis), so routing a store event costs what
the event touches:

- the event goes to the chassis whose subscriptions meet the scopes of the object
  before and after it (a chassis always subscribes its own ``host`` and ``chassis``
  scopes, so one never seen before is found when the first port is bound to it);
- a *structural* change (``relevance.structural``) makes those chassis, and only
  those, recompute their subscriptions; a chassis whose scopes grew gets "put" events
  of the objects newly in scope, one whose scopes shrank "delete" events of those in
  none of its scopes any more, all at the event's revision. A chassis that received
  the event but for which the object left every scope gets a "delete" instead.

Every routed event is kept in a bounded log (revision, the event, its recipients, the
synthetic events of each chassis), so a watch resumes from any revision still in the
log; older ones are answered like compacted history (the agent takes a new snapshot).

One thread does the store watching and the routing; the event loop serving the HTTP
long polls is woken with ``call_soon_threadsafe`` for just the chassis an event
concerns. Nothing here blocks on the store from the event loop."""

from __future__ import annotations

import asyncio
import bisect
import logging
import threading
import time
from dataclasses import dataclass
from typing import Iterable

import orjson

from plexus.api.services.base import MODEL
from plexus.model import keys
from plexus.model.catalog import Catalog
from plexus.model.objects import BadObject
from plexus.model.relevance import Scope, change_scopes, scopes, select, structural, \
    subscriptions
from plexus.store import Compacted, Event, KeyValue, Store, WatchResult

LOG = logging.getLogger("plexus.server.stream")

LOG_RECORDS = 50_000      # events kept for resuming watches
LOG_BYTES = 256 << 20     # ... and about as many bytes, synthetic events and recipients
WATCH_STEP = 2.0          # seconds one store watch of the hub waits
RETRY = 0.5               # pause after a store failure
MAX_EVENTS = 20_000       # events in one watch answer (cut at a revision boundary)
LOOKUP_WAIT = 2.0         # seconds an API index lookup waits for the hub to catch up
_NOBODY: frozenset[str] = frozenset()


@dataclass(slots=True)
class Record:
    """One store event as routed: who gets it, and who gets what else because of it."""

    revision: int
    body: bytes                                  # the event, as every watcher sees it
    to: frozenset[str]                           # chassis that get ``body``
    extra: dict[str, list[bytes]] | None         # chassis → synthetic events after it
    size: int = 0                                # about what it holds, in bytes

    def __post_init__(self) -> None:
        self.size = len(self.body) + 64 + 16 * len(self.to) + (sum(
            64 + sum(len(b) for b in events) for events in self.extra.values())
            if self.extra else 0)


def event_bytes(kind: str, collection: str, ident: str, revision: int,
                raw: bytes | None) -> bytes:
    """The wire form of one event (``plexus.server.southbound.event_body``'s format)
    around the stored bytes of the object."""
    return b"".join((b'{"type":"', kind.encode(), b'","collection":', orjson.dumps(collection),
                     b',"id":', orjson.dumps(ident), b',"revision":', str(revision).encode(),
                     b',"object":', raw if raw is not None else b"null", b"}"))


def _own(chassis: str) -> frozenset[Scope]:
    """The scopes every chassis subscribes to, hosting anything or not."""
    return frozenset({("host", chassis), ("chassis", chassis)})


class Hub:
    """One per server process: the model, each chassis' subscriptions, the event log."""

    def __init__(self, store: Store, log_records: int = LOG_RECORDS,
                 step: float = WATCH_STEP, log_bytes: int = LOG_BYTES):
        self.store = store
        self.max_log = log_records
        self.max_bytes = log_bytes
        self.log_size = 0                                # bytes the log holds, about
        self.step = step
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self.catalog = Catalog()
        self.raw: dict[str, dict[str, bytes]] = {}       # collection → id → stored bytes
        self.unparsed: dict[str, set[str]] = {}          # collection → ids the catalog lacks
        self.subs: dict[str, frozenset[Scope]] = {}      # chassis hosting or routing anything
        self.by_scope: dict[Scope, set[str]] = {}
        self.log: list[Record] = []
        self.revs: list[int] = []                        # revision of each log record
        self.floor = 0        # the oldest revision a watch may resume from
        self.next = 0         # one past the newest revision applied
        self.ready = threading.Event()
        self.stats = {"events": 0, "synthetic": 0, "rebuilds": 0, "seconds": 0.0,
                      "reads_off_loop": 0, "recomputed": 0, "delta": 0,
                      "lookups": 0, "lookups_missed": 0}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[str | None, set[asyncio.Future]] = {}    # on the loop only
        self._revision_waiters: list[tuple[int, asyncio.Future]] = []
        self.streams = 0      # streaming watches open now (on the loop only)

    # --- running -------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> "Hub":
        """Bind the event loop to wake and start following the store (idempotent)."""
        self.bind(loop or asyncio.get_running_loop())
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="plexus-southbound",
                                                daemon=True)
                self._thread.start()
        return self

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wake waiters on ``loop`` (kept while the bound loop is alive)."""
        if self._loop is None or (self._loop is not loop and self._loop.is_closed()):
            self._loop = loop

    def stop(self) -> None:
        """Ask the watcher thread to end (``join`` waits for it)."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the watcher thread to end."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        load = True
        while not self._stop.is_set():
            try:
                if load:
                    self.load()
                    load = False
                else:
                    self.poll(self.step)
            except Compacted as exc:
                LOG.warning("southbound hub fell behind compaction (%s); re-reading", exc)
                load = True
            except Exception as exc:  # noqa: BLE001 - the store may fail; the hub retries
                if self._stop.is_set():
                    break
                LOG.warning("southbound hub: store failed (%s); retrying", exc)
                self._stop.wait(RETRY)

    def load(self) -> None:
        """Read the whole model and start over from its revision (at start, and when the
        history to resume from was compacted: watches from before answer 410)."""
        kvs, revision = self.store.range(MODEL)
        self.rebuild(kvs, revision)

    def poll(self, timeout: float = 0.0) -> int:
        """Apply the store's next events (waiting up to ``timeout`` s for some); returns
        how many. ``Compacted`` when the hub fell behind the store's history."""
        with self._lock:
            start = self.next
        result = self.store.watch(MODEL, start, timeout)
        self.apply(result)
        return len(result.events)

    # --- applying ------------------------------------------------------------------------
    def rebuild(self, kvs: Iterable[KeyValue], revision: int) -> None:
        """Start over from the model as read at ``revision``."""
        began = time.perf_counter()
        catalog, raw, unparsed = Catalog(), {}, {}
        for kv in kvs:
            collection, _, ident = kv.key[len(MODEL):].partition("/")
            raw.setdefault(collection, {})[ident] = kv.value
            if collection in catalog.objects:
                try:
                    catalog.apply_wire(collection, ident, orjson.loads(kv.value))
                except (BadObject, orjson.JSONDecodeError) as exc:
                    LOG.debug("%s/%s left out of the catalog: %s", collection, ident, exc)
                    unparsed.setdefault(collection, set()).add(ident)
        with self._lock:
            self.catalog, self.raw, self.unparsed = catalog, raw, unparsed
            self.subs, self.by_scope = {}, {}
            for chassis in set(catalog.ports_by_chassis) | set(catalog.routers_by_candidate):
                self._subscribe(chassis, frozenset(subscriptions(catalog, chassis)))
            self.log, self.revs, self.log_size = [], [], 0
            self.floor = self.next = revision + 1
            self.stats["rebuilds"] += 1
            self.stats["seconds"] += time.perf_counter() - began
            self._changed.notify_all()
        self.ready.set()
        self._signal(None, everyone=True)

    def apply(self, result: WatchResult) -> None:
        """Route a batch of store events, one revision at a time (a snapshot or watch
        always sees whole revisions), then wake the watchers they concern."""
        touched: set[str] = set()
        events = result.events
        i = 0
        while i < len(events):
            revision = events[i].kv.mod_revision
            j = i
            while j < len(events) and events[j].kv.mod_revision == revision:
                j += 1
            with self._lock:
                if revision >= self.next:
                    began = time.perf_counter()
                    for event in events[i:j]:
                        self._event(event, touched)
                    self.next = revision + 1
                    self._trim()
                    self.stats["seconds"] += time.perf_counter() - began
            i = j
        with self._lock:
            self.next = max(self.next, result.next_revision)
            self._changed.notify_all()
        self._signal(touched, everyone=False, anything=bool(events))

    def advance(self, next_revision: int) -> None:
        """The store holds no model event before ``next_revision`` that the hub has not
        applied (a caller checked): move on without waiting for the watcher."""
        with self._lock:
            if next_revision <= self.next:
                return
            self.next = next_revision
            self._changed.notify_all()
        self._signal(set(), everyone=False)

    def _event(self, event: Event, touched: set[str]) -> None:
        key = event.kv.key
        if not key.startswith(MODEL):
            return
        collection, _, ident = key[len(MODEL):].partition("/")
        revision = event.kv.mod_revision
        table = self.raw.setdefault(collection, {})
        wire, value = None, None
        if event.type == "put":
            value = event.kv.value
            try:
                wire = orjson.loads(value)
            except orjson.JSONDecodeError:
                LOG.warning("%s is not JSON; left out of the stream", key)
                return
            table[ident] = value
        else:
            table.pop(ident, None)
            self.unparsed.get(collection, set()).discard(ident)
        to, extra = self._route(collection, ident, wire, revision)
        record = Record(revision, event_bytes(event.type, collection, ident, revision, value),
                        to, extra)
        self.log.append(record)
        self.revs.append(revision)
        self.log_size += record.size
        self.stats["events"] += 1
        touched |= to
        if extra:
            touched.update(extra)
            self.stats["synthetic"] += sum(len(v) for v in extra.values())

    def _route(self, collection: str, ident: str, wire, revision: int):
        """(chassis that get the event, chassis → synthetic events) of one change."""
        catalog = self.catalog
        if collection not in catalog.objects:
            return _NOBODY, None
        old = catalog.get(collection, ident)
        try:
            change = catalog.apply_wire(collection, ident, wire)
        except BadObject as exc:
            # left as it was: those who have the old object see the new one (and refuse it)
            LOG.debug("%s/%s unusable: %s", collection, ident, exc)
            self.unparsed.setdefault(collection, set()).add(ident)
            return frozenset(self._members(scopes(collection, old))), None
        if wire is not None:
            self.unparsed.get(collection, set()).discard(ident)
        if change is None:                      # nothing relevance or compilers read changed
            current = catalog.get(collection, ident)
            return frozenset(self._members(scopes(collection, current))), None
        touched = change_scopes(change)
        recipients = self._members(touched)
        if not recipients:
            return _NOBODY, None
        new_scopes = scopes(collection, change.new)
        resubscribe = structural(change)
        if not resubscribe and (change.old is None or change.new is None
                                or scopes(collection, change.old) == new_scopes):
            return frozenset(recipients), None      # everyone keeps its scopes and the object
        # who may subscribe differently now: a chassis' scopes never depend on the
        # members of the groups it only watches (just on its own ports' groups)
        moved = self._members(s for s in touched if s[0] != "member") if resubscribe else ()
        gain = self._gain(change) if resubscribe else None
        to, extra = set(), {}
        for chassis in recipients:
            before = self.subs.get(chassis) or _own(chassis)
            after = before
            gained: list[bytes] | None = None
            if chassis in moved:
                if gain is not None and chassis not in gain[2]:
                    # the port's other neighbours: at most its new host's scope to add
                    # (no set difference of their whole subscriptions either)
                    net, scope, _ = gain
                    if scope is not None and net in before and scope not in before:
                        after = before | {scope}
                        self.subs[chassis] = after
                        self.by_scope.setdefault(scope, set()).add(chassis)
                        gained = self._brought(scope, before, collection, ident, revision)
                    self.stats["delta"] += 1
                else:
                    after = frozenset(subscriptions(catalog, chassis))
                    self.stats["recomputed"] += 1
                    if after != before:
                        self._subscribe(chassis, after)
            out: list[bytes] = []
            if change.new is not None and new_scopes.isdisjoint(after):
                out.append(event_bytes("delete", collection, ident, revision, None))
            else:
                to.add(chassis)
            if gained is not None:
                out += gained
            elif after != before:
                out += self._backfill(before, after, collection, ident, revision)
            if out:
                extra[chassis] = out
        return frozenset(to), extra or None

    def _gain(self, change) -> tuple[Scope, Scope | None, frozenset[str]] | None:
        """When a port's change alters the subscriptions of the other chassis on its
        network by at most adding its new host's ``chassis`` scope — a port created or
        rebound, not a router's, nothing else of it changed, and its old host still on
        the network — (its ``net`` scope, the scope they gain or None, the chassis that
        must recompute all the same: the old and new hosts). None otherwise: everyone
        recomputes. Saves walking the network's hosts once per subscriber of it (a bind
        on a network of H hosts cost O(H²))."""
        if change.collection != keys.PORTS or change.new is None:
            return None
        new, old = change.new, change.old
        if new.device_owner in keys.ROUTER_OWNERS:
            return None
        if old is not None:
            if (old.network_id, old.device_id, old.device_owner, old.security_groups) != \
                    (new.network_id, new.device_id, new.device_owner, new.security_groups):
                return None
            if old.chassis and old.chassis != new.chassis and \
                    old.chassis not in self.catalog.hosts_by_network.get(new.network_id, ()):
                return None                     # the old host left the network: a removal
        hosts = frozenset(c for c in (new.chassis, old.chassis if old else "") if c)
        return (("net", new.network_id), ("chassis", new.chassis) if new.chassis else None,
                hosts)

    def _brought(self, scope: Scope, before: frozenset, collection: str, ident: str,
                 revision: int) -> list[bytes]:
        """Puts of the objects one new scope brings a chassis (the changed object aside)."""
        out = []
        for coll, objects in select(self.catalog, {scope}).items():
            for oid, obj in objects.items():
                if (coll != collection or oid != ident) and scopes(coll, obj).isdisjoint(before):
                    out.append(event_bytes("put", coll, oid, revision, self.raw[coll][oid]))
        return out

    def _backfill(self, before: frozenset, after: frozenset, collection: str, ident: str,
                  revision: int) -> list[bytes]:
        """Puts of the objects a chassis' new scopes bring, deletes of those it lost
        (the changed object itself is the event's business)."""
        out = []
        added, removed = after - before, before - after
        if added:
            for coll, objects in select(self.catalog, set(added)).items():
                for oid, obj in objects.items():
                    if (coll != collection or oid != ident) \
                            and scopes(coll, obj).isdisjoint(before):
                        out.append(event_bytes("put", coll, oid, revision, self.raw[coll][oid]))
        if removed:
            for coll, objects in select(self.catalog, set(removed)).items():
                for oid, obj in objects.items():
                    if (coll != collection or oid != ident) \
                            and scopes(coll, obj).isdisjoint(after):
                        out.append(event_bytes("delete", coll, oid, revision, None))
        return out

    def _members(self, scope_set: Iterable[Scope]) -> set[str]:
        """Chassis subscribing to any of the scopes."""
        out: set[str] = set()
        for scope in scope_set:
            found = self.by_scope.get(scope)
            if found:
                out |= found
            if scope[0] in ("host", "chassis") and scope[1]:
                out.add(scope[1])
        return out

    def _subscribe(self, chassis: str, scope_set: frozenset[Scope]) -> None:
        """Record a chassis' subscriptions (none kept for one that only has its own)."""
        old = self.subs.get(chassis, frozenset())
        new = scope_set if scope_set != _own(chassis) else frozenset()
        for scope in old - new:
            members = self.by_scope.get(scope)
            if members is not None:
                members.discard(chassis)
                if not members:
                    del self.by_scope[scope]
        for scope in new - old:
            self.by_scope.setdefault(scope, set()).add(chassis)
        if new:
            self.subs[chassis] = new
        else:
            self.subs.pop(chassis, None)

    def _trim(self) -> None:
        """Keep the log bounded in records and bytes, cutting between revisions."""
        if len(self.log) <= self.max_log + self.max_log // 4 \
                and self.log_size <= self.max_bytes + self.max_bytes // 4:
            return
        cut, size = max(0, len(self.log) - self.max_log), self.log_size
        size -= sum(r.size for r in self.log[:cut])
        while cut < len(self.log) and size > self.max_bytes:
            size -= self.log[cut].size
            cut += 1
        while 0 < cut < len(self.revs) and self.revs[cut] == self.revs[cut - 1]:
            size -= self.log[cut].size
            cut += 1
        if cut == 0:
            return
        self.floor = self.revs[cut - 1] + 1
        self.log_size = size
        del self.log[:cut]
        del self.revs[:cut]

    # --- reading -------------------------------------------------------------------------
    def subscriptions_of(self, chassis: str) -> frozenset[Scope]:
        """The scopes a chassis subscribes to now."""
        with self._lock:
            return self.subs.get(chassis) or _own(chassis)

    def read(self, chassis: str | None, start: int,
             limit: int = MAX_EVENTS) -> tuple[list[bytes], int]:
        """Events from revision ``start`` on for ``chassis`` (every event for None), and
        the revision to resume from. ``Compacted`` when ``start`` is older than the log."""
        with self._lock:
            if start < self.floor:
                raise Compacted(start, self.floor - 1)
            end, log = self.next, self.log
            out: list[bytes] = []
            nxt = max(start, end)
            for i in range(bisect.bisect_left(self.revs, start), len(log)):
                record = log[i]
                if record.revision >= end:
                    break
                if len(out) >= limit and record.revision != log[i - 1].revision:
                    nxt = record.revision
                    break
                if chassis is None:
                    out.append(record.body)
                    continue
                if chassis in record.to:
                    out.append(record.body)
                if record.extra:
                    more = record.extra.get(chassis)
                    if more:
                        out += more
            return out, nxt

    def snapshot(self, chassis: str) -> tuple[int, dict[str, list[bytes]]]:
        """The objects in a chassis' scopes, as stored, at the hub's revision."""
        with self._lock:
            chosen = select(self.catalog, set(self.subs.get(chassis) or _own(chassis)))
            objects = {coll: [self.raw[coll][i] for i in sorted(found)]
                       for coll, found in chosen.items() if found}
            return self.next - 1, objects

    def snapshot_all(self) -> tuple[int, dict[str, list[bytes]]]:
        """Every model object, as stored, at the hub's revision."""
        with self._lock:
            tables = {coll: list(table.items()) for coll, table in self.raw.items() if table}
            revision = self.next - 1
        return revision, {coll: [v for _, v in sorted(items)] for coll, items in tables.items()}

    async def served(self, fn, *args):
        """``fn(*args)`` (a read of the hub) on the event loop when the hub is idle; off
        it, in a worker, while the watcher thread is routing a revision (a big one can
        take a while, and the loop must not wait for it)."""
        if self._lock.acquire(blocking=False):
            try:
                return fn(*args)
            finally:
                self._lock.release()
        from plexus.api.http import call
        self.stats["reads_off_loop"] += 1
        return await call(fn, *args)

    def lookup(self, collection: str, index: str, key: str,
               timeout: float = LOOKUP_WAIT) -> list[bytes] | None:
        """The stored bytes of the objects of ``collection`` that the catalog's ``index``
        (e.g. ``ports_by_network``) files under ``key``, plus any the catalog could not
        parse (callers check the field themselves), as of the store's revision now or
        later: the API's secondary index, read-your-writes like a read of the store.
        None when the hub is not loaded or cannot catch up within ``timeout`` (the
        caller then reads the store). Blocks a thread, never the event loop; costs what
        the key holds."""
        if not self.ready.is_set() or not self.catch_up(timeout):
            self.stats["lookups_missed"] += 1
            return None
        with self._lock:
            self.stats["lookups"] += 1
            ids = getattr(self.catalog, index).of(key) | self.unparsed.get(collection, set())
            table = self.raw.get(collection, {})
            return [table[i] for i in ids if i in table]

    def catch_up(self, timeout: float) -> bool:
        """``sync`` for a thread: wait until the hub applied the store's revision of now.
        Writes outside the model do not reach the hub's watch, so when it is behind,
        one zero-timeout watch tells whether it only has to move its revision on."""
        target = self.store.revision()
        if self.next > target:
            return True
        try:
            result = self.store.watch(MODEL, self.next, 0.0)
        except Compacted:
            result = None
        if result is not None and not result.events:
            self.advance(result.next_revision)
        return self.wait_until(target, timeout)

    def wait_until(self, revision: int, timeout: float) -> bool:
        """Block (a thread, not the event loop) until the hub applied ``revision``."""
        with self._changed:
            return self._changed.wait_for(lambda: self.next > revision, timeout)

    # --- waking the event loop -----------------------------------------------------------
    def _signal(self, touched: set[str] | None, everyone: bool, anything: bool = False) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._wake, touched, everyone, anything)
        except RuntimeError:            # the loop closed meanwhile
            pass

    def _wake(self, touched: set[str] | None, everyone: bool, anything: bool) -> None:
        """On the loop: resolve the waiters of the chassis an event went to."""
        if everyone:
            groups = list(self._waiters.values())
        else:
            groups = [self._waiters[c] for c in touched or () if c in self._waiters]
            if anything and None in self._waiters:
                groups.append(self._waiters[None])
        for group in groups:
            for future in group:
                if not future.done():
                    future.set_result(None)
        if self._revision_waiters:
            for target, future in self._revision_waiters:
                if self.next > target and not future.done():
                    future.set_result(None)

    def waiter(self, chassis: str | None) -> asyncio.Future:
        """A future resolved when an event for ``chassis`` (any event for None) arrives.
        Register it before the ``read`` that may find nothing; ``forget`` it afterwards."""
        self.bind(asyncio.get_running_loop())
        future = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(chassis, set()).add(future)
        return future

    def forget(self, chassis: str | None, future: asyncio.Future) -> None:
        """Drop a waiter."""
        group = self._waiters.get(chassis)
        if group is not None:
            group.discard(future)
            if not group:
                del self._waiters[chassis]

    def watchers(self) -> int:
        """How many watches are waiting now (long polls, and streams between lines)."""
        return sum(len(g) for g in self._waiters.values())

    async def ready_async(self, timeout: float) -> bool:
        """Wait (without blocking the loop) for the first read of the model."""
        deadline = time.monotonic() + timeout
        while not self.ready.is_set():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def reached(self, revision: int, timeout: float) -> bool:
        """Wait until the hub applied ``revision`` (False after ``timeout``)."""
        if self.next > revision:
            return True
        future = asyncio.get_running_loop().create_future()
        entry = (revision, future)
        self._revision_waiters.append(entry)
        try:
            await asyncio.wait_for(future, timeout)
            return True
        except asyncio.TimeoutError:
            return self.next > revision
        finally:
            self._revision_waiters.remove(entry)

    async def sync(self, timeout: float = 5.0) -> None:
        """Catch up with the store's revision of now (read-your-writes for snapshots and
        zero-timeout watches). Writes outside the model do not reach the watcher, so when
        the hub is behind, one quick look at the store tells whether it only has to move
        its revision on."""
        from plexus.api.http import call
        target = await call(self.store.revision)
        if self.next > target:
            return
        start = self.next
        try:
            result = await call(self.store.watch, MODEL, start, 0.0)
        except Compacted:
            result = None
        if result is not None and not result.events:
            self.advance(result.next_revision)
        await self.reached(target, timeout)
