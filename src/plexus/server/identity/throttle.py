"""Login abuse resistance: lockout with backoff per user and per source address, and
password hashing in a small bounded pool off the event loop.

Lockout follows Keystone's semantics (``lockout_failure_attempts``): after N failed
logins a user name is refused for ``lockout_duration`` seconds, and each further
failure after a lockout ends doubles the interval (up to ``lockout_max_duration``).
A refused attempt is answered 401 at once, without running the password hash and
without counting. The same applies per source address, with its own, higher,
threshold, so spraying one guess at many user names is throttled too. Failures are
forgotten ``lockout_window`` seconds after the last one; a success clears the user's
count (not the source's). Counts are per server, in memory.

Unknown user names count like known ones and are hashed against a dummy hash, so
neither the answer, its timing, nor the lockout reveals whether a name exists.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import time
from dataclasses import dataclass

from plexus.config import IdentityConfig

_MAX_TRACKED = 100_000      # entries per table before old ones are swept


@dataclass
class _Record:
    failures: int = 0
    last: float = 0.0
    locked_until: float = 0.0


class _Table:
    """Failure records for one kind of key (user names or source addresses)."""

    def __init__(self, threshold: int, duration: float, max_duration: float, window: float):
        self.threshold = threshold
        self.duration = duration
        self.max_duration = max_duration
        self.window = window
        self.records: dict[str, _Record] = {}

    def locked(self, key: str, now: float) -> float:
        """Seconds the key stays locked (0 when it may try)."""
        record = self.records.get(key)
        if record is None or self.threshold <= 0:
            return 0.0
        return max(0.0, record.locked_until - now)

    def fail(self, key: str, now: float) -> None:
        if self.threshold <= 0:
            return
        record = self.records.get(key)
        if record is None or now - record.last > self.window:
            if len(self.records) >= _MAX_TRACKED:
                self.sweep(now)
            record = self.records[key] = _Record()
        record.failures += 1
        record.last = now
        over = record.failures - self.threshold
        if over >= 0:
            record.locked_until = now + min(self.max_duration, self.duration * 2 ** min(over, 32))

    def clear(self, key: str) -> None:
        self.records.pop(key, None)

    def sweep(self, now: float) -> None:
        stale = [k for k, r in self.records.items()
                 if now - r.last > self.window and r.locked_until <= now]
        for k in stale:
            del self.records[k]
        if len(self.records) >= _MAX_TRACKED:       # a flood of distinct keys: keep the locked
            self.records = {k: r for k, r in self.records.items() if r.locked_until > now}


class LoginThrottle:
    """Per-user and per-source failure counting with exponential lockout."""

    def __init__(self, config: IdentityConfig, clock=time.monotonic):
        self.clock = clock
        window = config.lockout_window
        self.users = _Table(config.lockout_failure_attempts, config.lockout_duration,
                            config.lockout_max_duration, window)
        self.sources = _Table(config.lockout_source_failure_attempts, config.lockout_duration,
                              config.lockout_max_duration, window)
        self._lock = threading.Lock()
        self.refused = 0        # attempts answered without hashing, for the benchmark

    def check(self, user_key: str, source: str) -> float:
        """Seconds to wait before this user/source may try again (0: go ahead)."""
        now = self.clock()
        with self._lock:
            wait = max(self.users.locked(user_key, now), self.sources.locked(source, now))
            if wait:
                self.refused += 1
            return wait

    def check_source(self, source: str) -> float:
        """Seconds the source address stays locked (0: go ahead)."""
        now = self.clock()
        with self._lock:
            wait = self.sources.locked(source, now)
            if wait:
                self.refused += 1
            return wait

    def failed(self, user_key: str, source: str, exempt_user: bool = False) -> None:
        """Count a failed login (``exempt_user``: Keystone's ignore_lockout_failure_attempts)."""
        now = self.clock()
        with self._lock:
            if not exempt_user:
                self.users.fail(user_key, now)
            self.sources.fail(source, now)

    def succeeded(self, user_key: str) -> None:
        """A successful login clears the user's failures."""
        with self._lock:
            self.users.clear(user_key)


class Overloaded(Exception):
    """More password checks are queued than the pool accepts (HTTP 503)."""


class HashPool:
    """Runs password hashing in ``workers`` threads with at most ``queue`` waiting.

    hashlib's scrypt releases the GIL, so the event loop and the API's threads keep
    running; the bound keeps a flood from queueing unbounded work (and memory: scrypt
    takes 16 MiB per running hash)."""

    def __init__(self, workers: int, queue: int):
        workers = workers or max(1, (os.cpu_count() or 2) // 2)
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, workers), thread_name_prefix="plexus-hash")
        self.limit = max(1, workers) + max(0, queue)
        self.pending = 0
        self.hashed = 0
        self.rejected = 0
        self._lock = threading.Lock()

    async def run(self, fn, *args):
        """``fn(*args)`` in the pool; raises Overloaded when the pool is full."""
        with self._lock:
            if self.pending >= self.limit:
                self.rejected += 1
                raise Overloaded("too many logins in progress")
            self.pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
        finally:
            with self._lock:
                self.pending -= 1
                self.hashed += 1

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
