"""Login abuse resistance (issue 11): lockout with backoff per user name and per source
address, answered 401 without running the password hash; unknown user names treated
exactly like known ones; hashing in a bounded pool that never holds up the API.

A real server on loopback; its throttle's clock is replaced by a manual one, so the
lockout intervals are stepped through without sleeping."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from plexus.config import Config
from plexus.server.identity.throttle import HashPool, Overloaded
from plexus.server.runner import ThreadedServer
from tests.api.identity_helpers import admin_password, login


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def srv(tmp_path, request):
    config = Config()
    config.server.port = 0
    config.store.url = f"sqlite:///{tmp_path}/plexus.db"
    config.identity.lockout_failure_attempts = 3
    config.identity.lockout_source_failure_attempts = 0       # per-user only, unless asked
    config.identity.lockout_duration = 1.0
    for name, value in getattr(request, "param", {}).items():
        setattr(config.identity, name, value)
    with ThreadedServer(config) as server:
        server.identity = server.app.state.identity
        server.clock = server.identity.throttle.clock = Clock()
        yield server


def attempt(srv, user: str, password: str) -> httpx.Response:
    return httpx.post(f"{srv.url}/identity/v3/auth/tokens", timeout=30, json={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "password": password, "domain": {"id": "default"}}}}}})


def hashed(srv) -> int:
    return srv.identity.hash_pool.hashed


def test_user_lockout_backs_off_and_refuses_without_hashing(srv):
    password = admin_password(srv.config)
    for _ in range(3):
        assert attempt(srv, "demo", "wrong").status_code == 401
    before = hashed(srv)
    locked = attempt(srv, "demo", password)                 # the right password, too soon
    assert locked.status_code == 401 and locked.headers["Retry-After"] == "1"
    assert locked.json()["error"]["code"] == 401
    assert hashed(srv) == before                             # refused without hashing
    assert attempt(srv, "alt_demo", password).status_code == 201   # others unaffected

    srv.clock.now += 1.1                                     # lockout over: one more try
    assert attempt(srv, "demo", "wrong").status_code == 401
    srv.clock.now += 0.1
    assert attempt(srv, "demo", password).headers["Retry-After"] == "2"   # doubled
    srv.clock.now += 2.0
    assert attempt(srv, "demo", "wrong").status_code == 401
    srv.clock.now += 0.1
    assert attempt(srv, "demo", password).headers["Retry-After"] == "4"
    assert hashed(srv) == before + 1 + 2                     # alt_demo, and the two tries

    srv.clock.now += 4.0
    assert attempt(srv, "demo", password).status_code == 201     # success clears the count
    assert attempt(srv, "demo", "wrong").status_code == 401
    assert attempt(srv, "demo", password).status_code == 201


def test_unknown_users_answer_like_known_ones_and_are_hashed(srv):
    before = hashed(srv)
    known = attempt(srv, "demo", "wrong")
    unknown = attempt(srv, "no-such-user", "wrong")
    assert (known.status_code, known.json()) == (unknown.status_code, unknown.json())
    assert known.headers.get("WWW-Authenticate") == unknown.headers.get("WWW-Authenticate")
    assert hashed(srv) == before + 2                         # a dummy hash for the unknown
    for _ in range(2):
        assert attempt(srv, "no-such-user", "wrong").status_code == 401
    after = hashed(srv)
    locked = attempt(srv, "no-such-user", "wrong")           # locked out like a real user
    assert locked.status_code == 401 and locked.headers["Retry-After"] == "1"
    assert hashed(srv) == after
    # a disabled user costs the same hash and gets the same answer
    admin = login(srv.url, "admin", admin_password(srv.config), "admin")
    user = httpx.post(f"{srv.url}/identity/v3/users", headers={"X-Auth-Token": admin},
                      json={"user": {"name": "off", "password": "pw-off", "enabled": False}})
    assert user.status_code == 201
    before = hashed(srv)
    disabled = attempt(srv, "off", "pw-off")
    assert (disabled.status_code, disabled.json()) == (unknown.status_code, unknown.json())
    assert hashed(srv) == before + 1


@pytest.mark.parametrize("srv", [{"lockout_failure_attempts": 0,
                                  "lockout_source_failure_attempts": 4}], indirect=True)
def test_source_lockout_stops_spraying_many_names(srv):
    for i in range(4):                                       # one guess at each of 4 names
        assert attempt(srv, f"spray-{i}", "guess").status_code == 401
    before = hashed(srv)
    refused = attempt(srv, "demo", admin_password(srv.config))
    assert refused.status_code == 401 and refused.headers["Retry-After"] == "1"
    assert hashed(srv) == before
    srv.clock.now += 1.1
    assert attempt(srv, "demo", admin_password(srv.config)).status_code == 201


@pytest.mark.parametrize("srv", [{"hash_workers": 1, "hash_queue": 0}], indirect=True)
def test_logins_wait_in_the_pool_without_holding_up_the_api(srv):
    token = login(srv.url, "admin", admin_password(srv.config), "admin")
    pool = srv.identity.hash_pool
    release = threading.Event()
    busy = pool.executor.submit(release.wait, 30)   # the one worker is busy (not counted)
    results: dict = {}
    waiting = threading.Thread(target=lambda: results.update(
        login=attempt(srv, "demo", admin_password(srv.config))))
    waiting.start()
    try:
        for _ in range(200):                                 # the login is queued
            if pool.pending == 1:
                break
            threading.Event().wait(0.01)
        assert pool.pending == 1
        # the API answers while the login waits for the hash pool
        for _ in range(5):
            assert httpx.get(f"{srv.url}/v2.0/networks", headers={"X-Auth-Token": token},
                             timeout=10).status_code == 200
        assert waiting.is_alive()
        overflow = attempt(srv, "alt_demo", "whatever")      # worker + queue full: 503
        assert overflow.status_code == 503 and overflow.headers["Retry-After"] == "1"
    finally:
        release.set()
        busy.result(timeout=30)
        waiting.join(timeout=30)
    assert results["login"].status_code == 201


def test_hash_pool_bounds_what_it_accepts():
    async def scenario():
        pool = HashPool(workers=1, queue=0)
        gate = threading.Event()
        first = asyncio.ensure_future(pool.run(gate.wait, 30))
        await asyncio.sleep(0)
        with pytest.raises(Overloaded):
            await pool.run(lambda: True)
        gate.set()
        assert await first is True
        assert await pool.run(lambda: 7) == 7
        assert (pool.hashed, pool.rejected, pool.pending) == (2, 1, 0)
        pool.close()
    asyncio.run(scenario())
