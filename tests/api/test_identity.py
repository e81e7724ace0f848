"""The built-in identity service, exercised by real clients over HTTP.

A uvicorn server on a free loopback port serves only the identity routes;
openstacksdk (keystoneauth1) and the `openstack` CLI talk to it unmodified.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openstack
import pytest
import uvicorn
from keystoneauth1 import exceptions as ks_exceptions
from starlette.applications import Starlette

from plexus.config import IdentityConfig
from plexus.server.identity.auth import Authenticator
from plexus.server.identity.context import Unauthorized
from plexus.server.identity.keys import KeyRing, SigningKey
from plexus.server.identity.routes import identity_routes
from plexus.server.identity.service import IdentityService
from plexus.server.identity.tokens import TokenCodec
from plexus.store import open_store

OPENSTACK = Path(sys.executable).with_name("openstack")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """A running identity server and what the tests need to reach it."""

    def __init__(self, config: IdentityConfig):
        self.config = config
        self.store = open_store("memory://")
        self.service = IdentityService(self.store, config).start()
        self.service.seed(config)
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.auth_url = f"{self.url}/identity/v3"
        app = Starlette(routes=identity_routes(self.service, config, self.url))
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                                    log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "identity server did not start"
            time.sleep(0.02)
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def token(self, user: str = "admin", project: str | None = None, password: str = "secret"):
        """POST /v3/auth/tokens for ``user`` scoped to ``project`` (by name); the response."""
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": user, "password": password, "domain": {"name": "Default"}}}}}}
        if project:
            body["auth"]["scope"] = {"project": {"name": project, "domain": {"id": "default"}}}
        return self.http.post("/identity/v3/auth/tokens", json=body)

    def stop(self) -> None:
        self.http.close()
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.service.stop()
        self.store.close()


@pytest.fixture(scope="module")
def live():
    server = LiveServer(IdentityConfig(region="RegionOne"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def clouds(live, tmp_path_factory) -> dict:
    """Environment for the `openstack` CLI with a clouds.yaml for admin and demo."""
    path = tmp_path_factory.mktemp("clouds") / "clouds.yaml"
    auth = {"auth_url": live.auth_url, "password": "secret", "user_domain_name": "Default",
            "project_domain_name": "Default"}
    clouds = {"clouds": {
        name: {"auth": {**auth, "username": name, "project_name": name},
               "region_name": "RegionOne", "identity_api_version": 3}
        for name in ("admin", "demo")}}
    path.write_text(json.dumps(clouds))  # JSON is YAML
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    return {**env, "OS_CLIENT_CONFIG_FILE": str(path)}


def cli(env: dict, cloud: str, *args: str) -> subprocess.CompletedProcess:
    """Run the real `openstack` CLI against the live server."""
    return subprocess.run([str(OPENSTACK), "--os-cloud", cloud, *args], env=env,
                          capture_output=True, text=True, timeout=120)


def cli_json(env: dict, cloud: str, *args: str):
    """Run the CLI with ``-f json`` and parse its output; fails the test on a non-zero exit."""
    result = cli(env, cloud, *args, "-f", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def connect(live: LiveServer, **overrides) -> openstack.connection.Connection:
    """An openstacksdk connection with password auth, as a clouds.yaml entry would make."""
    args = dict(auth_url=live.auth_url, username="admin", password="secret",
                project_name="admin", user_domain_name="Default", project_domain_name="Default",
                region_name="RegionOne", identity_api_version="3")
    return openstack.connect(**{**args, **overrides})


# Discovery and token issue through real clients.

def test_version_discovery_documents(live):
    root = live.http.get("/identity")
    assert root.status_code == 300
    (v3,) = root.json()["versions"]["values"]
    assert v3["id"].startswith("v3.") and v3["status"] == "stable"
    assert v3["links"][0]["href"] == f"{live.url}/identity/v3/"
    assert live.http.get("/identity/").status_code == 300
    for path in ("/identity/v3", "/identity/v3/"):
        assert live.http.get(path).json()["version"]["id"] == v3["id"]


def test_sdk_password_auth_gets_token_and_network_endpoint(live):
    conn = connect(live)
    token = conn.session.get_token()
    context = Authenticator(live.config, live.service).authenticate(token)
    assert context.project_name == "admin" and context.is_admin
    assert conn.session.get_endpoint(service_type="network", interface="public") == live.url
    assert conn.session.get_endpoint(service_type="network", interface="internal") == live.url
    # the identity endpoint from the catalog is usable: the SDK discovers v3 through it
    assert "admin" in {p.name for p in conn.identity.projects()}


def test_wrong_password_is_401_with_keystone_error_body(live):
    response = live.token("admin", "admin", password="wrong")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == 401
    assert response.json()["error"]["title"] == "Unauthorized"
    assert "X-Subject-Token" not in response.headers
    assert live.token("nobody", "admin").status_code == 401
    with pytest.raises(ks_exceptions.Unauthorized):
        connect(live, password="wrong").session.get_token()


def test_project_scope_by_name_and_by_id(live):
    by_name = live.token("demo", "demo")
    assert by_name.status_code == 201
    token = by_name.json()["token"]
    project_id = token["project"]["id"]
    assert token["project"] == {"id": project_id, "name": "demo",
                                "domain": {"id": "default", "name": "Default"}}
    assert {r["name"] for r in token["roles"]} == {"member", "reader"}
    assert token["user"]["domain"] == {"id": "default", "name": "Default"}
    assert token["user"]["password_expires_at"] is None
    assert token["expires_at"].endswith("Z") and len(token["expires_at"]) == 27
    assert token["is_domain"] is False and len(token["audit_ids"]) == 1
    services = {s["type"]: s for s in token["catalog"]}
    assert services["network"]["name"] == "neutron"
    interfaces = {e["interface"] for e in services["network"]["endpoints"]}
    assert interfaces == {"public", "internal", "admin"}
    assert {e["region_id"] for e in services["identity"]["endpoints"]} == {"RegionOne"}

    by_id = live.http.post("/identity/v3/auth/tokens", json={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "id": token["user"]["id"], "password": "secret"}}},
        "scope": {"project": {"id": project_id}}}})
    assert by_id.status_code == 201
    assert by_id.json()["token"]["project"]["name"] == "demo"
    # demo has no role on admin: scoping there is refused
    assert live.token("demo", "admin").status_code == 401
    conn = connect(live, username="demo", project_name=None, project_id=project_id)
    context = Authenticator(live.config, live.service).authenticate(conn.session.get_token())
    assert context.project_id == project_id


def test_unscoped_token_falls_back_to_default_project_and_rescopes(live):
    unscoped = live.http.post("/identity/v3/auth/tokens", json={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "demo", "password": "secret", "domain": {"id": "default"}}}},
        "scope": "unscoped"}})
    assert unscoped.status_code == 201
    assert "project" not in unscoped.json()["token"] and "catalog" not in unscoped.json()["token"]
    defaulted = live.token("demo")
    assert defaulted.json()["token"]["project"]["name"] == "demo"
    rescoped = live.http.post("/identity/v3/auth/tokens", json={"auth": {
        "identity": {"methods": ["token"],
                     "token": {"id": unscoped.headers["X-Subject-Token"]}},
        "scope": {"project": {"name": "demo", "domain": {"name": "Default"}}}}})
    assert rescoped.status_code == 201
    assert rescoped.json()["token"]["expires_at"] == unscoped.json()["token"]["expires_at"]


# Token validation and revocation.

def test_validate_head_and_revoke(live):
    admin = live.token("admin", "admin").headers["X-Subject-Token"]
    demo = live.token("demo", "demo").headers["X-Subject-Token"]
    headers = {"X-Auth-Token": admin, "X-Subject-Token": demo}
    shown = live.http.get("/identity/v3/auth/tokens", headers=headers)
    assert shown.status_code == 200 and shown.json()["token"]["project"]["name"] == "demo"
    head = live.http.head("/identity/v3/auth/tokens", headers=headers)
    assert head.status_code == 200 and head.content == b""
    assert live.http.get("/identity/v3/auth/tokens", headers={
        "X-Auth-Token": admin, "X-Subject-Token": demo[:-3] + "abc"}).status_code == 404
    assert live.http.get("/identity/v3/auth/tokens", headers={
        "X-Auth-Token": "garbage", "X-Subject-Token": demo}).status_code == 401

    assert live.http.delete("/identity/v3/auth/tokens", headers=headers).status_code == 204
    assert live.http.get("/identity/v3/auth/tokens", headers=headers).status_code == 404
    with pytest.raises(Unauthorized):
        Authenticator(live.config, live.service).authenticate(demo)
    # another server sharing the store learns of the revocation too
    other_service = IdentityService(live.store, live.config).start()
    try:
        other = Authenticator(live.config, other_service)
        with pytest.raises(Unauthorized):
            other.authenticate(demo)
        assert other.authenticate(admin).user_name == "admin"
    finally:
        other_service.stop()


def test_tampered_forged_and_expired_tokens_are_rejected(live):
    codec = live.service.codec
    token, payload = codec.issue(user_id="u1", user_name="alice", user_domain_id="default",
                                 project_id="p1", project_name="demo", project_domain_id="default",
                                 roles=(("r1", "member"),))
    assert codec.verify(token) == payload
    body, sig = token.split(".")
    forged_body = codec.issue(
        user_id="u1", user_name="alice", user_domain_id="default", project_id="p1",
        project_name="demo", project_domain_id="default",
        roles=(("r0", "admin"),))[0].split(".")[0]
    for bad in (forged_body + "." + sig,                       # payload swapped, old signature
                body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + sig,
                body + "." + sig[:-1] + ("A" if sig[-1] != "A" else "B"),
                TokenCodec(KeyRing([SigningKey(1, b"k" * 32, 0.0)]), 3600).issue(
                    user_id="u1", user_name="a", user_domain_id="default")[0],
                "", "no-dot", "....", "é.é"):
        with pytest.raises(Unauthorized):
            codec.verify(bad)
    with pytest.raises(Unauthorized):
        codec.verify(token, now=payload.expires_at)
    assert codec.verify(token, now=payload.expires_at - 1) == payload

    expired, _ = codec.issue(
        user_id="u1", user_name="alice", user_domain_id="default", now=time.time() - 7200,
        expires_at=int(time.time() - 3600))
    assert live.http.get("/identity/v3/projects",
                         headers={"X-Auth-Token": expired}).status_code == 401
    with pytest.raises(Unauthorized):
        Authenticator(live.config, live.service).authenticate(expired)
    with pytest.raises(Unauthorized):
        Authenticator(live.config, live.service).authenticate(None)


# Policy.

def test_non_admin_cannot_manage_identity(live):
    demo = live.token("demo", "demo")
    headers = {"X-Auth-Token": demo.headers["X-Subject-Token"]}
    users = live.http.get("/identity/v3/users", headers=headers)
    assert users.status_code == 403 and users.json()["error"]["title"] == "Forbidden"
    assert live.http.post("/identity/v3/projects", headers=headers,
                          json={"project": {"name": "sneaky"}}).status_code == 403
    assert live.http.get("/identity/v3/users").status_code == 401
    # but a user may read their own project, their own user and their own projects
    token = demo.json()["token"]
    own = live.http.get(f"/identity/v3/projects/{token['project']['id']}", headers=headers)
    assert own.status_code == 200 and own.json()["project"]["name"] == "demo"
    me = live.http.get(f"/identity/v3/users/{token['user']['id']}", headers=headers)
    assert me.status_code == 200
    assert not {"password", "password_hash"} & set(me.json()["user"])
    mine = live.http.get("/identity/v3/auth/projects", headers=headers).json()["projects"]
    assert [p["name"] for p in mine] == ["demo"]


def test_demo_cli_user_list_is_forbidden(clouds):
    result = cli(clouds, "demo", "user", "list")
    assert result.returncode != 0
    assert "403" in result.stderr or "not authorized" in result.stderr.lower()


# The real openstack CLI.

def test_openstack_cli_identity_workflow(live, clouds):
    issued = cli_json(clouds, "admin", "token", "issue")
    assert Authenticator(live.config, live.service).authenticate(issued["id"]).is_admin
    assert {p["Name"] for p in cli_json(clouds, "admin", "project", "list")} >= {
        "admin", "demo", "alt_demo"}
    project = cli_json(clouds, "admin", "project", "create", "--description", "cli made",
                       "cli-project")
    assert project["name"] == "cli-project" and project["domain_id"] == "default"
    user = cli_json(clouds, "admin", "user", "create", "--password", "pw123", "cli-user")
    assert user["name"] == "cli-user" and "password" not in user
    result = cli(clouds, "admin", "role", "add", "--project", "cli-project", "--user",
                 "cli-user", "member")
    assert result.returncode == 0, result.stderr
    assignments = cli_json(clouds, "admin", "role", "assignment", "list", "--project",
                           "cli-project", "--names")
    assert [(a["Role"], a["User"], a["Project"]) for a in assignments] == [
        ("member", "cli-user@Default", "cli-project@Default")]
    domain = cli_json(clouds, "admin", "domain", "show", "Default")
    assert domain["id"] == "default" and domain["name"] == "Default"
    # the new user can now get a token scoped to the new project
    response = live.token("cli-user", "cli-project", password="pw123")
    assert response.status_code == 201
    assert [r["name"] for r in response.json()["token"]["roles"]] == ["member"]


def test_rest_crud_and_role_assignments(live):
    headers = {"X-Auth-Token": live.token("admin", "admin").headers["X-Subject-Token"]}
    http, v3 = live.http, "/identity/v3"
    created = http.post(f"{v3}/projects", headers=headers, json={"project": {"name": "crud"}})
    assert created.status_code == 201
    project = created.json()["project"]
    assert project["links"]["self"] == f"{live.url}{v3}/projects/{project['id']}"
    assert len(project["id"]) == 32
    dup = http.post(f"{v3}/projects", headers=headers, json={"project": {"name": "crud"}})
    assert dup.status_code == 409 and dup.json()["error"]["title"] == "Conflict"
    found = http.get(f"{v3}/projects", headers=headers, params={"name": "crud"}).json()
    assert [p["id"] for p in found["projects"]] == [project["id"]]
    patched = http.patch(f"{v3}/projects/{project['id']}", headers=headers,
                         json={"project": {"name": "crud2", "description": "d"}})
    assert patched.status_code == 200 and patched.json()["project"]["name"] == "crud2"
    assert http.get(f"{v3}/projects", headers=headers, params={"name": "crud"}).json()[
        "projects"] == []

    user = http.post(f"{v3}/users", headers=headers, json={"user": {
        "name": "crud-user", "password": "pw", "email": "c@example.com"}}).json()["user"]
    assert user["email"] == "c@example.com" and "password_hash" not in user
    role = http.get(f"{v3}/roles", headers=headers, params={"name": "reader"}).json()["roles"][0]
    grant = f"{v3}/projects/{project['id']}/users/{user['id']}/roles/{role['id']}"
    assert http.head(grant, headers=headers).status_code == 404
    assert http.put(grant, headers=headers).status_code == 204
    assert http.head(grant, headers=headers).status_code == 204
    listed = http.get(f"{v3}/role_assignments", headers=headers,
                      params={"user.id": user["id"], "include_names": "1"}).json()
    (entry,) = listed["role_assignments"]
    assert entry["role"] == {"id": role["id"], "name": "reader"}
    assert entry["scope"]["project"]["name"] == "crud2"
    assert entry["user"]["domain"] == {"id": "default", "name": "Default"}
    projects = http.get(f"{v3}/users/{user['id']}/projects", headers=headers).json()["projects"]
    assert [p["name"] for p in projects] == ["crud2"]

    assert http.delete(f"{v3}/projects/{project['id']}", headers=headers).status_code == 204
    assert http.get(f"{v3}/projects/{project['id']}", headers=headers).status_code == 404
    assert http.get(f"{v3}/role_assignments", headers=headers,
                    params={"user.id": user["id"]}).json()["role_assignments"] == []
    assert http.delete(f"{v3}/users/{user['id']}", headers=headers).status_code == 204
    assert live.token("crud-user", password="pw").status_code == 401


# Authenticator modes.

def test_keystone_mode_validates_against_external_keystone(live):
    demo = live.token("demo", "demo").headers["X-Subject-Token"]
    config = IdentityConfig(mode="keystone", keystone_url=f"{live.url}/identity",
                            service_user="admin", service_password="secret",
                            service_project="admin")
    requests: list[str] = []
    http = httpx.Client(timeout=10, event_hooks={"request": [lambda r: requests.append(r.method)]})
    authenticator = Authenticator(config, http=http)
    try:
        context = authenticator.authenticate(demo)
        assert (context.user_name, context.project_name) == ("demo", "demo")
        assert context.can_write and not context.is_admin
        assert requests == ["POST", "GET"]      # one service token, one validation
        assert authenticator.authenticate(demo) == context
        assert requests == ["POST", "GET"]      # the second answer came from the cache
        with pytest.raises(Unauthorized):
            authenticator.authenticate(demo[:-4] + "AAAA")
        with pytest.raises(Unauthorized):
            authenticator.authenticate(None)
        assert requests == ["POST", "GET", "GET"]
    finally:
        authenticator.close()


def test_none_mode_is_admin_of_noauth_project(live):
    config = IdentityConfig(mode="none", noauth_project="demo")
    context = Authenticator(config, live.service).authenticate(None)
    assert context.is_admin and context.project_name == "demo"
    assert context.project_id == live.service.find("projects", "demo")["id"]


def test_builtin_mode_reader_context(live):
    context = Authenticator(live.config, live.service).authenticate(
        live.token("demo", "demo").headers["X-Subject-Token"])
    assert context.roles == frozenset({"member", "reader"})
    assert context.can_write and not context.is_reader and not context.is_admin


# Seeding.

def test_concurrent_seeding_creates_each_object_once(tmp_path):
    url = f"sqlite:///{tmp_path}/identity.db"
    stores = [open_store(url) for _ in range(4)]
    config = IdentityConfig()
    barrier = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def seed(store):
        try:
            barrier.wait()
            IdentityService(store).seed(config)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=seed, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    service = IdentityService(stores[0])
    assert sorted(p["name"] for p in service.list("projects")) == ["admin", "alt_demo", "demo"]
    assert sorted(r["name"] for r in service.list("roles")) == ["admin", "member", "reader"]
    assert sorted(u["name"] for u in service.list("users")) == ["admin", "alt_demo", "demo"]
    assert len(service.assignments()) == 3 + 2 + 2
    before = stores[0].revision()
    service.seed(config)
    assert stores[0].revision() == before      # re-seeding writes nothing
    admin = service.find("users", "admin")
    assert service.authenticate(admin, "secret") and not service.authenticate(admin, "nope")
    for store in stores:
        store.close()
