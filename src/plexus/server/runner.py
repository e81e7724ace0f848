"""Running a server from Python: in a thread (tests, benchmarks) or as a process (demo),
and the clouds.yaml that points real clients at it."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import uvicorn
import yaml

from plexus.config import Config
from plexus.store import Store


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ThreadedServer:
    """A real uvicorn server on loopback, in a daemon thread of this process."""

    def __init__(self, config: Config, store: Store | None = None):
        from plexus.server.app import build_app
        if not config.server.port:
            config.server.port = free_port()
        self.config = config
        self.app = build_app(config, store)
        self.server = uvicorn.Server(uvicorn.Config(
            self.app, host=config.server.host, port=config.server.port, log_level="warning",
            access_log=False, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, name="plexus-server",
                                       daemon=True)

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return self.config.server.url()

    def start(self, timeout: float = 15.0) -> "ThreadedServer":
        """Start serving; returns once the server accepts connections."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("plexus server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> "ThreadedServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# Cloud names the openstacksdk functional tests expect, and who they log in as.
CLOUDS = {
    "devstack": ("demo", "demo"),
    "devstack-alt": ("alt_demo", "alt_demo"),
    "devstack-admin": ("admin", "admin"),
    "devstack-system-admin": ("admin", "admin"),
    "plexus": ("admin", "admin"),
    "plexus-demo": ("demo", "demo"),
}


def clouds_yaml(url: str, config: Config) -> dict:
    """A clouds.yaml document with one cloud per seeded user (see ``CLOUDS``)."""
    passwords = {u.name: u.password for u in config.identity.users}
    clouds = {}
    for cloud, (user, project) in CLOUDS.items():
        if user not in passwords:
            continue
        clouds[cloud] = {
            "auth": {"auth_url": f"{url}/identity/v3", "username": user,
                     "password": passwords[user], "project_name": project,
                     "user_domain_name": "Default", "project_domain_name": "Default"},
            "region_name": config.identity.region,
            "identity_api_version": 3,
            "interface": "public",
        }
    return {"clouds": clouds}


def write_clouds_yaml(path: str | Path, url: str, config: Config) -> Path:
    """Write ``clouds_yaml`` to ``path``, mode 0600 (it holds passwords); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(yaml.safe_dump(clouds_yaml(url, config), sort_keys=False))
    return path
