"""Tokens follow identity state: every change that takes access away revokes the tokens
it concerns on every server sharing the store, within one second (issue 11).

Two real servers share one store (a SQLite file, each server with its own handle as
two processes would have; and a one-member etcd cluster). The change is made through
server A's Keystone API; the user's token is then polled on server B's Neutron API
until it is refused, with a one-second deadline. Tokens the change does not concern
keep working, and a fresh login after a password change or a new grant is not caught
by the earlier event.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest

from plexus.config import Config
from plexus.server.runner import ThreadedServer
from tests.api.identity_helpers import admin_password, login
from tests.ha.conftest import running_etcd

DEADLINE = 1.0      # seconds: the bound for every server to refuse the token


class Pair:
    """Two servers on one store, and admin clients of each."""

    def __init__(self, url: str):
        self.servers = []
        for _ in range(2):
            config = Config()
            config.server.port = 0
            config.store.url = url
            self.servers.append(ThreadedServer(config).start())
        self.a, self.b = (s.url for s in self.servers)
        self.password = admin_password(self.servers[0].config)
        token = login(self.a, "admin", self.password, "admin")
        self.admin = httpx.Client(base_url=self.a, timeout=30,
                                  headers={"X-Auth-Token": token})

    def close(self) -> None:
        self.admin.close()
        for server in self.servers:
            server.stop()

    def identity(self, method: str, path: str, **kw) -> httpx.Response:
        response = self.admin.request(method, f"/identity/v3{path}", **kw)
        assert response.status_code < 300, response.text
        return response

    def member(self) -> dict:
        """A fresh project and a user holding member and reader on it."""
        name = "rv-" + uuid.uuid4().hex[:8]
        project = self.identity("POST", "/projects", json={"project": {"name": name}})
        user = self.identity("POST", "/users", json={"user": {
            "name": name, "password": "pw-" + name, "default_project_id":
            project.json()["project"]["id"]}})
        roles = {r["name"]: r["id"] for r in self.identity("GET", "/roles").json()["roles"]}
        ids = {"project": project.json()["project"]["id"], "user": user.json()["user"]["id"],
               "name": name, "password": "pw-" + name, "roles": roles}
        for role in ("member", "reader"):
            self.identity("PUT", f"/projects/{ids['project']}/users/{ids['user']}"
                                 f"/roles/{roles[role]}")
        return ids


def networks(url: str, token: str) -> int:
    """Status of GET /v2.0/networks with ``token``."""
    return httpx.get(f"{url}/v2.0/networks", headers={"X-Auth-Token": token},
                     timeout=10).status_code


def refused_within(url: str, token: str, since: float) -> float:
    """Seconds from ``since`` until ``url`` refuses ``token`` (fails past the deadline)."""
    while True:
        status = networks(url, token)
        elapsed = time.monotonic() - since
        if status == 401:
            return elapsed
        assert status == 200, status
        assert elapsed < DEADLINE, f"token still accepted by {url} after {elapsed:.2f} s"
        time.sleep(0.01)


@pytest.fixture(scope="module", params=["sqlite", "etcd"])
def pair(request, tmp_path_factory):
    tmp: Path = tmp_path_factory.mktemp(f"revoke-{request.param}")
    if request.param == "sqlite":
        made = Pair(f"sqlite:///{tmp}/plexus.db")
        try:
            yield made
        finally:
            made.close()
        return
    with running_etcd(tmp / "etcd", size=1) as cluster:
        made = Pair(cluster.url)
        try:
            yield made
        finally:
            made.close()


# Each change: what to do through server A, and whether the user may log in again after.
def disable_user(pair, m):
    pair.identity("PATCH", f"/users/{m['user']}", json={"user": {"enabled": False}})


def delete_user(pair, m):
    pair.identity("DELETE", f"/users/{m['user']}")


def remove_role(pair, m):
    for role in ("member", "reader"):
        pair.identity("DELETE", f"/projects/{m['project']}/users/{m['user']}"
                                f"/roles/{m['roles'][role]}")


def change_password(pair, m):
    m["password"] = "new-" + m["password"]
    pair.identity("PATCH", f"/users/{m['user']}", json={"user": {"password": m["password"]}})


def disable_project(pair, m):
    pair.identity("PATCH", f"/projects/{m['project']}", json={"project": {"enabled": False}})


def delete_project(pair, m):
    pair.identity("DELETE", f"/projects/{m['project']}")


CHANGES = [disable_user, delete_user, remove_role, change_password, disable_project,
           delete_project]


@pytest.mark.parametrize("change", CHANGES, ids=[c.__name__ for c in CHANGES])
def test_identity_change_revokes_tokens_on_every_server(pair, change):
    victim, bystander = pair.member(), pair.member()
    tokens = {url: login(url, victim["name"], victim["password"], victim["name"])
              for url in (pair.a, pair.b)}            # issued by each server
    other = login(pair.b, bystander["name"], bystander["password"], bystander["name"])
    for url in (pair.a, pair.b):
        for token in (*tokens.values(), other):
            assert networks(url, token) == 200

    change(pair, victim)
    since = time.monotonic()
    for url in (pair.b, pair.a):                      # the other server first
        for token in tokens.values():
            refused_within(url, token, since)
        assert networks(url, other) == 200            # nobody else's token is touched

    login_again = httpx.post(f"{pair.b}/identity/v3/auth/tokens", timeout=30, json={
        "auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": victim["name"], "password": victim["password"],
            "domain": {"id": "default"}}}}}})
    if change is change_password:
        # the new password works, and its token is not caught by the earlier event
        assert login_again.status_code == 201
        fresh = login_again.headers["X-Subject-Token"]
        assert networks(pair.a, fresh) == networks(pair.b, fresh) == 200
    elif change is remove_role:
        # logging in still works but grants no project: nothing to scope to
        assert login_again.status_code == 201 and "project" not in login_again.json()["token"]
        pair.identity("PUT", f"/projects/{victim['project']}/users/{victim['user']}"
                             f"/roles/{victim['roles']['member']}")
        fresh = login(pair.b, victim["name"], victim["password"], victim["name"])
        assert networks(pair.a, fresh) == 200          # a new grant, a new token: valid
    else:
        assert login_again.status_code == 401 or "project" not in login_again.json()["token"]


def test_revoked_token_is_refused_by_the_identity_api_too(pair):
    victim = pair.member()
    token = login(pair.a, victim["name"], victim["password"], victim["name"])
    subject = {"X-Auth-Token": token, "X-Subject-Token": token}
    assert httpx.get(f"{pair.b}/identity/v3/auth/tokens", headers=subject).status_code == 200
    assert httpx.delete(f"{pair.a}/identity/v3/auth/tokens", headers=subject).status_code == 204
    since = time.monotonic()
    refused_within(pair.b, token, since)
    assert httpx.get(f"{pair.b}/identity/v3/auth/tokens", headers=subject).status_code == 401


def test_revocation_ends_an_open_southbound_stream(pair):
    """An agent's streaming watch, opened with an admin token on server B, ends once the
    user's admin role is removed through server A: an open stream is not a way around
    revocation."""
    victim = pair.member()
    grant = (f"/projects/{victim['project']}/users/{victim['user']}"
             f"/roles/{victim['roles']['admin']}")
    pair.identity("PUT", grant)
    token = login(pair.b, victim["name"], victim["password"], victim["name"])
    lines = []
    with httpx.stream("GET", f"{pair.b}/southbound/v1/watch",
                      params={"from": 0, "stream": 1, "heartbeat": 0.2},
                      headers={"X-Auth-Token": token}, timeout=30) as r:
        assert r.status_code == 200, r.read()
        reader = r.iter_lines()
        while len(lines) < 3:                      # the stream is up and beating
            line = next(reader)
            if line:
                lines.append(line)
        pair.identity("DELETE", grant)
        since = time.monotonic()
        for line in reader:                        # ends instead of beating forever
            assert time.monotonic() - since < 10, "stream outlived the revocation"
        ended = time.monotonic() - since
    assert ended < 10
    assert networks(pair.b, token) == 401
