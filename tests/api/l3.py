"""Helpers for the router and floating IP tests: Neutron error checks, and a commit
held back at the store boundary to open a race window on purpose."""

from __future__ import annotations

import contextlib
import threading
import time

from plexus.store import Delete


def error(resp, status: int, kind: str) -> dict:
    """Assert a Neutron error response; returns its body."""
    assert resp.status_code == status, resp.text
    body = resp.json()["NeutronError"]
    assert body["type"] == kind, body
    return body


@contextlib.contextmanager
def commit_paused(server, key: str, seconds: float = 0.2):
    """Delay (once) the store transaction that deletes ``key``; yields an Event set when
    that transaction has been planned and is waiting to commit."""
    store = server.app.state.services.store
    real, planned = store.txn, threading.Event()

    def txn(compares, ops):
        if not planned.is_set() and any(isinstance(o, Delete) and o.key == key for o in ops):
            planned.set()
            time.sleep(seconds)
        return real(compares, ops)
    store.txn = txn
    try:
        yield planned
    finally:
        del store.txn


def in_thread(fn) -> tuple[threading.Thread, dict]:
    """Run ``fn`` in a thread; its result lands in the returned dict under "value"."""
    out: dict = {}
    thread = threading.Thread(target=lambda: out.update(value=fn()))
    thread.start()
    return thread, out
