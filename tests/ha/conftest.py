"""A distributed control plane on loopback: a 3-member etcd cluster and plexus-server
processes on it, each started, killed (-9) and restarted by pid. Everything is stopped
and its directory removed when the test ends, failed or not."""

from __future__ import annotations

import contextlib

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest
import yaml

from plexus.config import Config
from plexus.lab.etcd import EtcdMissing, LocalCluster, store_url
from plexus.server.runner import free_port


def admin_token(url: str) -> str:
    """An admin token from the built-in identity service of the server at ``url``."""
    r = httpx.post(f"{url}/identity/v3/auth/tokens", timeout=30, json={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": "secret"}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
    r.raise_for_status()
    return r.headers["X-Subject-Token"]


@contextlib.contextmanager
def running_etcd(directory: Path, **options) -> Iterator[LocalCluster]:
    """A local etcd cluster (``LocalCluster`` options), stopped afterwards. Without the
    etcd binary the test is skipped — except under CI, which installs it."""
    cluster = LocalCluster(directory, **options)
    try:
        cluster.start()
    except EtcdMissing as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))
    try:
        yield cluster
    finally:
        cluster.stop()


class ServerProcess:
    """One plexus-server process on a fixed loopback port (a restart keeps the port)."""

    def __init__(self, name: str, directory: Path):
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = directory / f"{name}.log"
        self.config_file = directory / f"{name}.yaml"
        self.proc: subprocess.Popen | None = None

    def configure(self, store_url: str) -> None:
        """Write the server's configuration: its port and store."""
        config = Config()
        config.server.port = self.port
        config.store.url = store_url
        self.config_file.write_text(yaml.safe_dump(config.model_dump(mode="json")))

    def start(self, timeout: float = 60.0) -> "ServerProcess":
        """Start the process; return once it answers."""
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "plexus.server.main", "--config", str(self.config_file),
                 "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.log}")
            try:
                if httpx.get(self.url + "/", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer in {timeout:.0f}s; see {self.log}")

    def kill(self) -> None:
        """kill -9 the process (by pid) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s, by pid."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None


class ControlPlane:
    """An etcd cluster and the servers on it.

    A server sends its requests to the first endpoint of its store URL that answers;
    the first server's list starts with the etcd leader, the others' with the other
    members, so killing the leader also kills the member a server is talking to."""

    def __init__(self, directory: Path, servers: int, members: int):
        self.dir = directory
        self.etcd = LocalCluster(directory / "etcd", size=members)
        self.servers = [ServerProcess(f"server{i + 1}", directory) for i in range(servers)]

    def start(self) -> "ControlPlane":
        self.etcd.start()
        leader = self.etcd.leader()
        order = sorted(self.etcd.members, key=lambda m: m.name != leader)
        for i, server in enumerate(self.servers):
            turned = order[i % len(order):] + order[:i % len(order)]
            server.configure(store_url(turned))
            server.start()
        return self

    def stop(self) -> None:
        for s in self.servers:
            s.stop()
        self.etcd.stop()

    def server_logs(self) -> str:
        """Everything the servers logged."""
        return "\n".join(s.log.read_text() for s in self.servers if s.log.exists())


@pytest.fixture
def control_plane(tmp_path: Path) -> Iterator[ControlPlane]:
    """3 etcd members and 2 servers on loopback, stopped (by pid) after the test."""
    plane = ControlPlane(tmp_path, servers=2, members=3)
    try:
        plane.start()
    except EtcdMissing as exc:
        plane.stop()
        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))
    except BaseException:
        plane.stop()
        raise
    try:
        yield plane
    finally:
        plane.stop()
