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
    _seed_like_devstack()


def _seed_like_devstack() -> None:
    """What the suites expect a devstack cloud to have: an external network "public"
    with a subnet (API objects only; no packet goes anywhere)."""
    import openstack
    admin = openstack.connect(cloud="devstack-admin")
    public = admin.network.create_network(
        name="public", is_router_external=True, provider_network_type="flat",
        provider_physical_network="physnet1")
    admin.network.create_subnet(network_id=public.id, name="public-subnet", ip_version=4,
                                cidr="172.24.4.0/24", gateway_ip="172.24.4.1",
                                is_dhcp_enabled=False)
    # A chassis registers through the southbound API exactly as plexus-agent does, so
    # the agents API has something to list (devstack always has agents).
    r = admin.session.put(f"{_SERVER.url}/southbound/v1/chassis/functional-chassis", json={
        "tunnel_ip": "198.18.0.250", "bridge_mappings": {"physnet1": "br-ex"},
        "gateway": True, "ttl": 300})
    r.raise_for_status()


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
