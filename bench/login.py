"""Login flood benchmark: Neutron API latency while 30 clients hammer wrong passwords.

For each configuration below, a real ``plexus-server`` process of this tree's code is
started on a fresh SQLite store with 50 networks. One prober measures GET /v2.0/networks
(sequential, keep-alive, admin token) for ``--seconds`` with no other load, then again
while a separate process runs ``--clients`` concurrent clients posting wrong passwords
to /identity/v3/auth/tokens as fast as they are answered (half for the existing users,
half for random unknown names; all from 127.0.0.1, as one attacker). Prints one table.

Configurations:
  old     no lockout, hashing in 40 threads (the behaviour before issue 11: scrypt in
          the API's own thread pool)
  pool    no lockout, hashing in the bounded pool (2 threads, 32 waiting; more get 503):
          the worst case of a distributed attacker whose every attempt is hashed
  default the shipped configuration: lockout per user (5) and per source (30) with
          doubling backoff, refused without hashing, and the bounded pool

    .venv/bin/python bench/login.py [--clients 30] [--seconds 10] [--configs old,pool,default]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))
from plexus.config import Config  # noqa: E402
from plexus.server.runner import free_port  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))   # bench/table.py
from scale import stop_server as stop  # noqa: E402
from table import machine, print_table  # noqa: E402

CONFIGS = {
    "old": {"lockout_failure_attempts": 0, "lockout_source_failure_attempts": 0,
            "hash_workers": 40, "hash_queue": 100_000},
    "pool": {"lockout_failure_attempts": 0, "lockout_source_failure_attempts": 0},
    "default": {},
}


def start_server(config: Config, directory: Path) -> subprocess.Popen:
    """A plexus-server process of this tree's code, returned once it answers."""
    config_file = directory / "server.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    code = ("import sys; sys.path.insert(0, %r); from plexus.server.main import main; "
            "main()" % str(SRC))
    log = open(directory / "server.log", "ab")
    proc = subprocess.Popen([sys.executable, "-c", code, "--config", str(config_file),
                             "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT)
    url = config.server.url()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited ({proc.returncode}); see {directory}/server.log")
        try:
            if httpx.get(url + "/", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    stop(proc)
    raise SystemExit("server did not start")


def admin_token(url: str, password: str) -> str:
    r = httpx.post(f"{url}/identity/v3/auth/tokens", timeout=30, json={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
    r.raise_for_status()
    return r.headers["X-Subject-Token"]


def probe(url: str, token: str, seconds: float) -> list[float]:
    """Latencies (s) of sequential GET /v2.0/networks for ``seconds``."""
    out = []
    with httpx.Client(base_url=url, headers={"X-Auth-Token": token}, timeout=60) as http:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            began = time.perf_counter()
            r = http.get("/v2.0/networks")
            out.append(time.perf_counter() - began)
            if r.status_code != 200:
                raise SystemExit(f"API answered {r.status_code}: {r.text[:200]}")
    return out


async def _flood(url: str, clients: int, until: float) -> dict:
    counts = {"attempts": 0, "hashed": 0, "locked": 0, "busy": 0, "other": 0}
    users = ["admin", "demo", "alt_demo"]

    async def client(i: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            while time.time() < until:
                name = users[i % 3] if i % 2 == 0 else "ghost-" + secrets.token_hex(4)
                try:
                    r = await http.post("/identity/v3/auth/tokens", json={"auth": {
                        "identity": {"methods": ["password"], "password": {"user": {
                            "name": name, "domain": {"id": "default"},
                            "password": "wrong-" + secrets.token_hex(4)}}}}})
                except httpx.HTTPError:
                    counts["other"] += 1
                    continue
                counts["attempts"] += 1
                if r.status_code == 401:
                    counts["locked" if "retry-after" in r.headers else "hashed"] += 1
                elif r.status_code == 503:
                    counts["busy"] += 1
                else:
                    counts["other"] += 1
    await asyncio.gather(*(client(i) for i in range(clients)))
    return counts


def flood(url: str, clients: int, until: float, results) -> None:
    """Process body: ``clients`` concurrent wrong-password clients until ``until``."""
    results.put(asyncio.run(_flood(url, clients, until)))


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 1 else 0.0


def run_config(name: str, args, directory: Path) -> dict:
    config = Config()
    config.server.port = free_port()
    config.store.url = f"sqlite:///{directory}/plexus.db"
    for key, value in CONFIGS[name].items():
        setattr(config.identity, key, value)
    password = next(u.password for u in config.identity.users if u.name == "admin")
    server = start_server(config, directory)
    url = config.server.url()
    try:
        token = admin_token(url, password)
        with httpx.Client(base_url=url, headers={"X-Auth-Token": token}, timeout=60) as http:
            for i in range(50):
                http.post("/v2.0/networks", json={"network": {"name": f"n{i}"}}).raise_for_status()
        probe(url, token, 1.0)                                  # warm up
        before = probe(url, token, args.seconds)
        ctx = multiprocessing.get_context("fork")
        results = ctx.Queue()
        started = time.time()
        until = started + 1.0 + args.seconds
        flooder = ctx.Process(target=flood, args=(url, args.clients, until, results))
        flooder.start()
        try:
            time.sleep(1.0)                                     # the flood ramps up
            during = probe(url, token, args.seconds)
            counts = results.get(timeout=args.seconds + 120)
            elapsed = time.time() - started
        finally:
            flooder.join(timeout=30)
            if flooder.is_alive():
                flooder.kill()
                flooder.join()
        return {"name": name, "before": before, "during": during, "counts": counts,
                "elapsed": elapsed}
    finally:
        stop(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--configs", default="old,pool,default")
    args = parser.parse_args()
    names = [n for n in args.configs.split(",") if n]
    rows: list[tuple[str, str]] = [("flooding clients", str(args.clients)),
                                   ("probe seconds per phase", f"{args.seconds:g}")]
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"plexus-login-{name}-") as tmp:
            r = run_config(name, args, Path(tmp))
        c, seconds = r["counts"], r["elapsed"]
        rows += [
            (f"[{name}] API p50 / p95 / p99 before (ms)",
             " / ".join(f"{pct(r['before'], q):.1f}" for q in (50, 95, 99))),
            (f"[{name}] API p50 / p95 / p99 during (ms)",
             " / ".join(f"{pct(r['during'], q):.1f}" for q in (50, 95, 99))),
            (f"[{name}] API requests before / during",
             f"{len(r['before'])} / {len(r['during'])}"),
            (f"[{name}] login attempts/s", f"{c['attempts'] / seconds:.0f}"),
            (f"[{name}] hashed / refused locked / 503 busy",
             f"{c['hashed']} / {c['locked']} / {c['busy']}"
             + (f" ({c['other']} other)" if c["other"] else "")),
        ]
    rows.append(("machine", machine()))
    print_table(rows)


if __name__ == "__main__":
    main()
