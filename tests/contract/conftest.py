"""The store backends every contract test runs against.

To add a backend, add one entry to ``BACKENDS``: how to get a fresh store's URL inside
a test's temporary directory (a context manager, for backends that need a server
running for the test), and whether two clients opened on that URL share their data
(so the cross-client tests run against it too).

etcd cannot be emptied (its revisions only grow), so each etcd test gets a fresh
single-member cluster of Debian's etcd-server on free loopback ports, with its data in
the test's temporary directory; it is stopped by pid when the test ends (about 0.1 s).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager, Iterator

import pytest

from plexus.store import Store, open_store


@dataclass(frozen=True)
class Backend:
    """A way to get a fresh, empty store for one test."""

    url: Callable[[Path], ContextManager[str]]
    shared: bool    # two clients opened on the URL see the same data


def named(url: Callable[[Path], str]) -> Callable[[Path], ContextManager[str]]:
    """A backend whose fresh store is just a new name."""
    return lambda tmp: contextlib.nullcontext(url(tmp))


@contextlib.contextmanager
def etcd_member(tmp: Path) -> Iterator[str]:
    """A fresh one-member etcd cluster for one test; its URL."""
    from plexus.lab.etcd import EtcdMissing, LocalCluster
    try:
        cluster = LocalCluster(tmp / "etcd", size=1, heartbeat_ms=10, election_ms=100)
        cluster.start()
    except EtcdMissing as exc:
        if os.environ.get("CI"):
            raise           # CI installs etcd-server: a missing binary is a failure there
        pytest.skip(str(exc))
    try:
        yield cluster.url
    finally:
        cluster.stop()


BACKENDS = {
    "sqlite-memory": Backend(named(lambda tmp: "memory://"), shared=False),
    "sqlite-file": Backend(named(lambda tmp: f"sqlite:///{tmp}/store/plexus.db"), shared=True),
    "etcd": Backend(etcd_member, shared=True),
}


@pytest.fixture(params=list(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Backend, str]]:
    """The backend under test: its name, its description and the URL of a fresh store."""
    b = BACKENDS[request.param]
    with b.url(tmp_path) as url:
        yield request.param, b, url


@pytest.fixture
def store_url(backend: tuple[str, Backend, str]) -> str:
    """URL of the fresh store of this test."""
    return backend[2]


@pytest.fixture
def open_client(backend: tuple[str, Backend, str]) -> Iterator[Callable[[], Store]]:
    """Opens more clients of the same store (skips the test when the backend cannot share)."""
    name, b, url = backend
    if not b.shared:
        pytest.skip(f"{name}: clients do not share data")
    clients: list[Store] = []

    def open_one() -> Store:
        clients.append(open_store(url))
        return clients[-1]

    yield open_one
    for client in clients:
        client.close()


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A fresh, empty store of the backend under test."""
    s = open_store(store_url)
    yield s
    s.close()
