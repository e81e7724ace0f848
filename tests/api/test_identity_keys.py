"""Token signing keys (issue 11, Secrets): no key in code, one random key per
installation shared through the store or a key file, rotation, refusal of short keys,
and private (0600) store and key files."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from plexus.config import Config
from plexus.server.identity.keys import (
    InvalidKeys, KeyRing, SigningKey, check_identity_config, ensure_store_key, read_store_keys,
    rotate_store_key,
)
from plexus.server.identity.tokens import TokenCodec
from plexus.server.runner import ThreadedServer, free_port
from plexus.store import open_store
from tests.api.identity_helpers import admin_password, login

PROTECTED = ("/v2.0/networks", "/southbound/v1/snapshot", "/identity/v3/users")


def server_config(tmp: Path, **identity) -> Config:
    config = Config()
    config.server.port = 0
    config.store.url = f"sqlite:///{tmp}/plexus.db"
    for name, value in identity.items():
        setattr(config.identity, name, value)
    return config


def forge_admin(material: bytes) -> str:
    """An admin token for a user that does not exist, signed with ``material``."""
    codec = TokenCodec(KeyRing([SigningKey(1, material, 0.0)]), 3600)
    return codec.issue(user_id="0" * 32, user_name="admin", user_domain_id="default",
                       project_id="0" * 32, project_name="admin", project_domain_id="default",
                       roles=(("0" * 32, "admin"),))[0]


def status(url: str, path: str, token: str) -> int:
    return httpx.get(url + path, headers={"X-Auth-Token": token}, timeout=10).status_code


def run_server_main(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "plexus.server.main", *args],
                          capture_output=True, text=True, timeout=60)


def test_two_fresh_installs_have_different_keys_and_refuse_each_others_tokens(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    config_a, config_b = server_config(tmp_path / "a"), server_config(tmp_path / "b")
    with ThreadedServer(config_a) as a, ThreadedServer(config_b) as b:
        keys = []
        for tmp in ("a", "b"):
            store = open_store(f"sqlite:///{tmp_path / tmp}/plexus.db")
            keys.append(read_store_keys(store))
            store.close()
        assert len(keys[0]) == len(keys[1]) == 1
        assert len(keys[0][0].material) == 32
        assert keys[0][0].material != keys[1][0].material
        token_a = login(a.url, "admin", admin_password(config_a), "admin")
        assert all(status(a.url, path, token_a) == 200 for path in PROTECTED)
        assert all(status(b.url, path, token_a) == 401 for path in PROTECTED)


def test_tokens_signed_with_any_other_key_are_refused(tmp_path):
    config = server_config(tmp_path)
    with ThreadedServer(config) as srv:
        own = login(srv.url, "admin", admin_password(config), "admin")
        assert all(status(srv.url, path, own) == 200 for path in PROTECTED)
        store = open_store(config.store.url)
        real = read_store_keys(store)[0].material
        store.close()
        others = [b"change-me-plexus-token-secret",           # the old key in code
                  os.urandom(32), real[:-1] + bytes([real[-1] ^ 1]), b"", real * 2]
        for material in others:
            forged = forge_admin(material)
            assert [status(srv.url, path, forged) for path in PROTECTED] == [401] * 3
        # and the installation's own key does sign (the test above is not vacuous)
        assert status(srv.url, "/v2.0/networks", forge_admin(real)) == 200


def test_servers_starting_together_on_one_store_agree_on_one_key(tmp_path):
    url = f"sqlite:///{tmp_path}/plexus.db"
    stores = [open_store(url) for _ in range(6)]
    barrier = threading.Barrier(len(stores))
    found: list = []

    def start(store):
        barrier.wait()
        found.append(ensure_store_key(store))
    threads = [threading.Thread(target=start, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(found) == 6 and all(keys == found[0] for keys in found) and len(found[0]) == 1
    for store in stores:
        store.close()


def test_store_rotation_signs_with_the_new_key_and_accepts_the_old(tmp_path):
    config = server_config(tmp_path)
    config.server.port = free_port()
    config_file = tmp_path / "server.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    with ThreadedServer(config) as srv:
        password = admin_password(config)
        old_token = login(srv.url, "admin", password, "admin")
        rotated = run_server_main("--config", str(config_file), "--rotate-key")
        assert rotated.returncode == 0 and "added key" in rotated.stdout, rotated.stderr
        store = open_store(config.store.url)
        keys = sorted(read_store_keys(store), key=lambda k: k.number)
        store.close()
        assert [k.number for k in keys] == [1, 2]
        newest = TokenCodec(KeyRing([keys[1]]), 3600)
        oldest = TokenCodec(KeyRing([keys[0]]), 3600)
        # within a second the server signs with the new key (its watcher saw the rotation)
        deadline = time.monotonic() + 1.0
        while True:
            fresh = login(srv.url, "admin", password, "admin")
            try:
                newest.verify(fresh)
                break
            except Exception:
                assert time.monotonic() < deadline, "still signing with the old key"
        with pytest.raises(Exception):
            oldest.verify(fresh)
        oldest.verify(old_token)
        assert status(srv.url, "/v2.0/networks", old_token) == 200    # old key still verifies
        assert status(srv.url, "/v2.0/networks", fresh) == 200


def test_rotation_drops_keys_superseded_longer_than_the_token_lifetime(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/plexus.db")
    try:
        first = ensure_store_key(store)[0]
        second = rotate_store_key(store, token_ttl=3600, now=first.created_at + 10)
        assert {k.number for k in read_store_keys(store)} == {1, 2}
        # key 1 was superseded by key 2; once key 2 is older than the TTL, key 1 goes
        third = rotate_store_key(store, token_ttl=3600, now=second.created_at + 3601)
        assert {k.number for k in read_store_keys(store)} == {2, 3}
        assert third.material not in (first.material, second.material)
    finally:
        store.close()


def test_key_file_is_created_private_and_rotated_by_appending(tmp_path):
    key_file = tmp_path / "keys" / "token.keys"
    config = server_config(tmp_path, key_file=str(key_file))
    config.server.port = free_port()
    config_file = tmp_path / "server.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    with ThreadedServer(config) as srv:
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        lines = key_file.read_text().split()
        assert len(lines) == 1 and len(lines[0]) >= 32
        old = login(srv.url, "admin", admin_password(config), "admin")
        assert run_server_main("--config", str(config_file), "--rotate-key").returncode == 0
        lines = key_file.read_text().split()
        assert len(lines) == 2
        newest = TokenCodec(KeyRing([SigningKey(2, lines[1].encode(), 0.0)]), 3600)
        deadline = time.monotonic() + 2.0
        while True:
            try:
                newest.verify(login(srv.url, "admin", admin_password(config), "admin"))
                break
            except Exception:
                assert time.monotonic() < deadline, "the server did not re-read the key file"
                time.sleep(0.05)
        assert status(srv.url, "/v2.0/networks", old) == 200
    # the store holds no key when a key file is configured
    store = open_store(config.store.url)
    assert read_store_keys(store) == []
    store.close()


@pytest.mark.parametrize("identity, message", [
    ({"token_secret": "x" * 31}, "at least 32 bytes"),
    ({"token_secret": ""}, "at least 32 bytes"),
    ({"key_file": "KEYFILE-SHORT"}, "at least 32 bytes"),
    ({"key_file": "KEYFILE-OPEN"}, "accessible by group or others"),
])
def test_server_refuses_to_start_with_a_weak_configured_key(tmp_path, identity, message):
    short, open_file = tmp_path / "short.keys", tmp_path / "open.keys"
    short.write_text("y" * 40 + "\n" + "z" * 20 + "\n")
    short.chmod(0o600)
    open_file.write_text("w" * 48 + "\n")
    open_file.chmod(0o644)
    paths = {"KEYFILE-SHORT": str(short), "KEYFILE-OPEN": str(open_file)}
    identity = {k: paths.get(v, v) for k, v in identity.items()}
    config = server_config(tmp_path, **identity)
    config.server.port = free_port()
    config_file = tmp_path / "server.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    proc = run_server_main("--config", str(config_file))
    assert proc.returncode == 2
    assert "refusing to start" in proc.stderr and message in proc.stderr
    with pytest.raises(InvalidKeys):
        ThreadedServer(server_config(tmp_path, **identity))


def test_long_configured_secret_is_used_and_keystone_mode_needs_no_key(tmp_path):
    secret = "s" * 32
    config = server_config(tmp_path, token_secret=secret)
    with ThreadedServer(config) as srv:
        assert status(srv.url, "/v2.0/networks", forge_admin(secret.encode())) == 200
        assert status(srv.url, "/v2.0/networks", forge_admin(b"t" * 32)) == 401


def test_development_passwords_are_refused_off_loopback(tmp_path):
    config = server_config(tmp_path)
    config.server.host = "0.0.0.0"
    with pytest.raises(InvalidKeys, match="development password"):
        ThreadedServer(config)
    for user in config.identity.users:
        user.password = "a-real-password-" + user.name
    check_identity_config(config)           # real passwords: accepted
    config.identity.users[1].password = "secret"
    with pytest.raises(InvalidKeys, match="demo"):
        check_identity_config(config)


def test_store_and_key_files_are_private(tmp_path):
    old = os.umask(0o022)
    try:
        config = server_config(tmp_path, key_file=str(tmp_path / "token.keys"))
        with ThreadedServer(config) as srv:
            login(srv.url, "admin", admin_password(config), "admin")   # writes: WAL in use
            files = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("plexus.db"))
            assert "plexus.db" in files and "plexus.db-wal" in files
            modes = {name: stat.S_IMODE((tmp_path / name).stat().st_mode) for name in files}
            assert set(modes.values()) == {0o600}, modes
            assert stat.S_IMODE((tmp_path / "token.keys").stat().st_mode) == 0o600
        # an existing world-readable store is tightened when opened
        (tmp_path / "plexus.db").chmod(0o644)
        store = open_store(config.store.url)
        store.close()
        assert stat.S_IMODE((tmp_path / "plexus.db").stat().st_mode) == 0o600
    finally:
        os.umask(old)
