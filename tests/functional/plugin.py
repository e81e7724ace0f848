"""pytest plugin that runs the functional suites shipped with openstacksdk and
python-openstackclient against a real Plexus server started for the session.

    pytest -p tests.functional.plugin --pyargs openstack.tests.functional.network.v2 ...

Tests of resources or extensions Plexus does not implement are skipped with the
reason recorded in ``tests/functional/skips.py`` (and rendered into docs/api.md)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

from plexus.config import Config
from plexus.server.runner import ThreadedServer, write_clouds_yaml
from tests.functional.skips import reason_for

_SERVER: ThreadedServer | None = None


def pytest_configure(config):
    """Start the server before collection (the suites read clouds.yaml at import)."""
    global _SERVER
    tmp = Path(tempfile.mkdtemp(prefix="plexus-functional-"))
    cfg = Config()
    cfg.server.port = 0
    cfg.store.url = f"sqlite:///{tmp}/plexus.db"
    _SERVER = ThreadedServer(cfg).start()
    # openstackclient's suite runs the CLI with every OS_* variable removed, so the
    # clouds.yaml goes where clients look by default: $XDG_CONFIG_HOME/openstack/.
    os.environ["XDG_CONFIG_HOME"] = str(tmp / "config")
    clouds = write_clouds_yaml(tmp / "config" / "openstack" / "clouds.yaml", _SERVER.url, cfg)
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(clouds)
    bindir = str(Path(sys.executable).parent)
    os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    os.environ.setdefault("OS_CLOUD", "devstack-admin")
    os.environ.setdefault("OPENSTACKSDK_FUNC_TEST_TIMEOUT", "60")


def pytest_unconfigure(config):
    """Stop the server."""
    if _SERVER is not None:
        _SERVER.stop()


def pytest_collection_modifyitems(config, items):
    """Skip, with the written reason, what Plexus does not implement."""
    for item in items:
        reason = reason_for(item.nodeid)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))
