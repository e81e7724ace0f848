"""A real Plexus server on loopback (SQLite store in a temp dir) and real clients."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import openstack
import pytest

from plexus.config import Config
from plexus.server.runner import ThreadedServer, write_clouds_yaml

OPENSTACK = str(Path(sys.executable).with_name("openstack"))


def serving(tmp, configure=None):
    """A real server on loopback over a SQLite store in ``tmp`` (``configure(config)``
    adjusts its configuration first), with a clouds.yaml for its seeded users."""
    config = Config()
    config.server.port = 0
    config.store.url = f"sqlite:///{tmp}/plexus.db"
    if configure is not None:
        configure(config)
    srv = ThreadedServer(config)
    srv.config_used = config
    return srv


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """One server for the session; tests create their own objects and clean up."""
    tmp = tmp_path_factory.mktemp("plexus")
    with serving(tmp) as srv:
        srv.clouds = write_clouds_yaml(tmp / "clouds.yaml", srv.url, srv.config_used)
        yield srv


def _connect(server, cloud: str):
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(server.clouds)
    return openstack.connect(cloud=cloud)


@pytest.fixture(scope="session")
def admin(server):
    """openstacksdk connection as the admin."""
    return _connect(server, "devstack-admin")


@pytest.fixture(scope="session")
def demo(server):
    """openstacksdk connection as a member of project demo."""
    return _connect(server, "devstack")


@pytest.fixture(scope="session")
def alt(server):
    """openstacksdk connection as a member of project alt_demo."""
    return _connect(server, "devstack-alt")


@pytest.fixture
def cli(server):
    """Run the real ``openstack`` CLI against the server; returns parsed JSON output."""
    import json

    def run(*args: str, cloud: str = "devstack-admin", check: bool = True, fmt: bool = True):
        env = dict(os.environ, OS_CLIENT_CONFIG_FILE=str(server.clouds), OS_CLOUD=cloud)
        cmd = [OPENSTACK, *args] + (["-f", "json"] if fmt else [])
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed: {proc.stderr}")
        if not fmt or proc.returncode != 0:
            return proc
        return json.loads(proc.stdout) if proc.stdout.strip() else None
    return run
