"""Helpers for the router and floating IP tests: Neutron error checks, a commit held
back at the store boundary to open a race window on purpose, and a server of a test
module's own (with clients for it) where a test must know every chassis there is."""

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


@contextlib.contextmanager
def fresh_server(tmp, **network):
    """A server of its own on a new store (so tests see exactly the chassis they register),
    with ``network`` settings overridden; ``.clouds`` is its clouds.yaml."""
    from plexus.config import Config
    from plexus.server.runner import ThreadedServer, write_clouds_yaml
    config = Config()
    config.server.port = 0
    config.store.url = f"sqlite:///{tmp}/plexus.db"
    for name, value in network.items():
        setattr(config.network, name, value)
    with ThreadedServer(config) as srv:
        srv.clouds = write_clouds_yaml(tmp / "clouds.yaml", srv.url, config)
        yield srv


def connect(server, cloud: str = "devstack-admin"):
    """An openstacksdk connection to ``server`` (without touching the environment)."""
    import openstack.config
    from openstack.connection import Connection
    region = openstack.config.OpenStackConfig(   # not OS_CLIENT_CONFIG_FILE's server
        config_files=[str(server.clouds)], load_envvars=False).get_one(cloud=cloud)
    return Connection(config=region)


def run_cli(server, *args: str, cloud: str = "devstack-admin", check: bool = True):
    """The real ``openstack`` CLI against ``server``; parsed JSON output (``-f json``)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path
    env = dict(os.environ, OS_CLIENT_CONFIG_FILE=str(server.clouds), OS_CLOUD=cloud)
    proc = subprocess.run([str(Path(sys.executable).with_name("openstack")), *args],
                          env=env, capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed: {proc.stderr}")
    if proc.returncode != 0 or "-f" not in args:
        return proc
    return json.loads(proc.stdout) if proc.stdout.strip() else None
