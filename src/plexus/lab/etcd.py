"""Local etcd clusters on loopback: the lab's control plane store, and the tests' and
benchmarks' (Debian's etcd-server; members on free loopback ports, data in a directory
of ours, processes known by pid only).

``members`` plans a cluster, ``member_argv`` is the command line of one member (the lab
starts it through its inventory), and ``LocalCluster`` runs one from this process for
tests and benchmarks: start, kill -9 and restart members, stop everything by pid.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from plexus.server.runner import free_port

HOST = "127.0.0.1"


class EtcdMissing(RuntimeError):
    """The etcd binary is not installed."""


def etcd_binary() -> str:
    """Path of the etcd server binary (Debian's etcd-server)."""
    path = shutil.which("etcd")
    if not path:
        raise EtcdMissing("etcd is not installed (apt-get install etcd-server; "
                          "scripts/bootstrap.sh does it)")
    return path


@dataclass(frozen=True)
class ServerTLS:
    """TLS of the members' client port: their certificate and the CA clients must show."""

    cert_file: str
    key_file: str
    client_ca_file: str


@dataclass(frozen=True)
class Member:
    """One etcd member: its name, loopback ports and data directory."""

    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    scheme: str = "http"        # of the client port ("https" with ServerTLS)

    @property
    def client_url(self) -> str:
        return f"{self.scheme}://{HOST}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{HOST}:{self.peer_port}"


def members(directory: str | os.PathLike, size: int, prefix: str = "etcd",
            scheme: str = "http") -> list[Member]:
    """A cluster of ``size`` members on free loopback ports, data under ``directory``."""
    ports: set[int] = set()
    while len(ports) < 2 * size:
        ports.add(free_port())
    ports_list = sorted(ports)
    return [Member(f"{prefix}{i + 1}", ports_list[2 * i], ports_list[2 * i + 1],
                   Path(directory) / f"{prefix}{i + 1}", scheme) for i in range(size)]


def store_url(cluster: list[Member]) -> str:
    """The Plexus store URL of the cluster: ``etcd://127.0.0.1:P1,127.0.0.1:P2,...``."""
    return "etcd://" + ",".join(f"{HOST}:{m.client_port}" for m in cluster)


def member_argv(member: Member, cluster: list[Member], *, heartbeat_ms: int = 100,
                election_ms: int = 1000, token: str = "plexus",
                compaction: str | None = None, tls: ServerTLS | None = None) -> list[str]:
    """The command line of one member (a restart with existing data ignores the
    initial-cluster flags, so the same line serves both)."""
    argv = [etcd_binary(), "--name", member.name, "--data-dir", str(member.data_dir),
            "--listen-client-urls", member.client_url,
            "--advertise-client-urls", member.client_url,
            "--listen-peer-urls", member.peer_url,
            "--initial-advertise-peer-urls", member.peer_url,
            "--initial-cluster", ",".join(f"{m.name}={m.peer_url}" for m in cluster),
            "--initial-cluster-token", token, "--initial-cluster-state", "new",
            "--heartbeat-interval", str(heartbeat_ms), "--election-timeout", str(election_ms),
            "--logger", "zap", "--log-level", "warn"]
    if compaction:
        argv += ["--auto-compaction-mode", "periodic", "--auto-compaction-retention", compaction]
    if tls:
        argv += ["--cert-file", tls.cert_file, "--key-file", tls.key_file,
                 "--trusted-ca-file", tls.client_ca_file, "--client-cert-auth"]
    return argv


def healthy(member: Member, timeout: float = 1.0, verify=True) -> bool:
    """Whether the member answers and its cluster has a leader (etcd's /health)."""
    try:
        r = httpx.get(f"{member.client_url}/health", timeout=timeout, verify=verify)
        return r.status_code == 200 and r.json().get("health") == "true"
    except (httpx.HTTPError, ValueError):
        return False


def wait_healthy(cluster: list[Member], timeout: float = 30.0,
                 alive=lambda: True, verify=True) -> None:
    """Return once every member reports a healthy cluster; raise RuntimeError otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("an etcd member exited while starting")
        if all(healthy(m, verify=verify) for m in cluster):
            return
        time.sleep(0.05)
    raise RuntimeError(f"etcd cluster not healthy after {timeout:.0f}s")


class LocalCluster:
    """An etcd cluster run by this process (tests, benchmarks); every stop is by pid."""

    def __init__(self, directory: str | os.PathLike, size: int = 3, *, heartbeat_ms: int = 100,
                 election_ms: int = 1000, tls: ServerTLS | None = None, client_ssl=None):
        self.dir = Path(directory)
        self.members = members(self.dir, size, scheme="https" if tls else "http")
        self.options = {"heartbeat_ms": heartbeat_ms, "election_ms": election_ms, "tls": tls}
        self.verify = client_ssl if client_ssl is not None else True
        self.procs: dict[str, subprocess.Popen] = {}

    @property
    def url(self) -> str:
        """The store URL of this cluster."""
        return store_url(self.members)

    def member(self, name: str) -> Member:
        """The member called ``name``."""
        return next(m for m in self.members if m.name == name)

    def start_member(self, name: str) -> None:
        """Start (or restart, on its existing data) one member."""
        m = self.member(name)
        m.data_dir.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.dir / f"{name}.log", "ab")
        try:
            self.procs[name] = subprocess.Popen(
                member_argv(m, self.members, **self.options), stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()

    def start(self, timeout: float = 30.0) -> "LocalCluster":
        """Start every member; returns once the cluster is healthy."""
        etcd_binary()
        try:
            for m in self.members:
                self.start_member(m.name)
            wait_healthy(self.members, timeout, verify=self.verify,
                         alive=lambda: all(p.poll() is None for p in self.procs.values()))
        except BaseException:
            self.stop()
            raise
        return self

    def kill(self, name: str) -> None:
        """kill -9 one member (by its pid) and reap it."""
        proc = self.procs.pop(name)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    def leader(self) -> str | None:
        """Name of the member that is leader now (None if no live member knows one)."""
        names, leader = {}, None
        for m in self.members:
            if m.name not in self.procs:
                continue
            try:
                status = httpx.post(f"{m.client_url}/v3/maintenance/status", json={},
                                    timeout=1, verify=self.verify).json()
            except (httpx.HTTPError, ValueError):
                continue
            names[status["header"]["member_id"]] = m.name
            leader = status.get("leader") or leader
        return names.get(leader)

    def stop(self, remove_data: bool = True) -> None:
        """Stop every member this object started (SIGTERM, then SIGKILL, by pid); then
        remove the members' data (about 64 MB of preallocated WAL each; logs stay)."""
        for name, proc in list(self.procs.items()):
            if proc.poll() is None:
                proc.terminate()
        for name, proc in list(self.procs.items()):
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
            del self.procs[name]
        if remove_data:
            for m in self.members:
                shutil.rmtree(m.data_dir, ignore_errors=True)

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# The lab's control plane: members spawned through the lab's inventory.

CONTROL_PLANE = ("server", "server2")       # labels of the lab's API servers


def start_lab_cluster(lab, size: int = 3) -> str:
    """Start a ``size``-member cluster for ``lab`` (data in ``<lab>/etcd``, each member
    recorded in the inventory by pid); returns its store URL once it is healthy."""
    cluster = members(lab.dir / "etcd", size)
    (lab.dir / "etcd").mkdir(parents=True, exist_ok=True)
    pids = [lab.spawn(f"etcd/{m.name}", member_argv(m, cluster, compaction="1h"),
                      log=lab.dir / "etcd" / f"{m.name}.log") for m in cluster]
    from plexus.lab.inventory import alive
    wait_healthy(cluster, alive=lambda: all(alive(pid) for pid in pids))
    return store_url(cluster)


def control_plane_entries(lab) -> list[dict]:
    """The inventory entries of the lab's etcd members and API servers."""
    return [e for e in lab.inventory.entries("process")
            if e["label"] in CONTROL_PLANE or e["label"].startswith("etcd/")]


def stop_control_plane(lab) -> list[dict]:
    """Stop every etcd member and API server of the lab (by recorded pid); returns
    their entries, for ``start_control_plane``."""
    from plexus.lab.inventory import stop_process
    entries = control_plane_entries(lab)
    for entry in sorted(entries, key=lambda e: e["label"].startswith("etcd/")):
        stop_process(entry)             # servers first, then the members
        lab.inventory.forget(entry["id"])
    return entries


def start_control_plane(lab, entries: list[dict], timeout: float = 60.0) -> None:
    """Start again what ``stop_control_plane`` stopped (members on their data, servers
    on their ports); returns once every server answers."""
    from plexus.lab.lab import server_answers
    for entry in sorted(entries, key=lambda e: not e["label"].startswith("etcd/")):
        log = Path(entry["log"]) if entry.get("log") else None
        lab.spawn(entry["label"], entry["argv"], ns=entry.get("ns"), group=entry["group"],
                  log=log)
    deadline = time.monotonic() + timeout
    while not all(server_answers(url) for url in lab.urls):
        if time.monotonic() > deadline:
            raise RuntimeError("the lab's API servers did not answer after a restart")
        time.sleep(0.1)
