"""The store backends every contract test runs against.

To add a backend, add one entry to ``BACKENDS``: how to name a fresh store by URL
inside a test's temporary directory, and whether two clients opened on that URL
share their data (so the cross-client tests run against it too).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

from plexus.store import Store, open_store


@dataclass(frozen=True)
class Backend:
    """A way to name a fresh, empty store for one test."""

    url: Callable[[Path], str]
    shared: bool    # two clients opened on the URL see the same data


BACKENDS = {
    "sqlite-memory": Backend(lambda tmp: "memory://", shared=False),
    "sqlite-file": Backend(lambda tmp: f"sqlite:///{tmp}/store/plexus.db", shared=True),
}


@pytest.fixture(params=list(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Backend, str]:
    """The backend under test: its name, its description and the URL of a fresh store."""
    b = BACKENDS[request.param]
    return request.param, b, b.url(tmp_path)


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
