"""API benchmark: port creates per second and list latency at 10k ports.

Starts real plexus-server processes on a fresh store (SQLite, or a 3-member etcd
cluster on loopback), creates ports through HTTP from several client threads (spread
over the servers), then times listing all of them, and the requests that concern one
small network among them (its ports listed by network and by device, an IPv6 SLAAC
subnet added to and removed from it, a security group of its own deleted, the
network itself deleted): those should cost what the small network holds, not what
the cloud holds. Prints one table.

    .venv/bin/python bench/api.py [--ports 10000] [--workers 4] [--store sqlite|etcd]
                                  [--servers N] [--etcd-members 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from plexus.server.runner import free_port  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parent))   # bench/table.py
from table import machine, print_table  # noqa: E402


def token(url: str) -> str:
    """An admin token from the built-in identity service."""
    r = httpx.post(f"{url}/identity/v3/auth/tokens", json={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": "secret"}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
    r.raise_for_status()
    return r.headers["X-Subject-Token"]


def start_server(store_url: str, port: int, log: Path) -> subprocess.Popen:
    """A plexus-server process, returned once it answers."""
    exe = Path(sys.executable).with_name("plexus-server")
    proc = subprocess.Popen([str(exe), "--port", str(port), "--store", store_url,
                             "--log-level", "warning"], stdout=open(log, "w"),
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"server did not start; see {log}")


def create_ports(urls: list[str], tok: str, network_id: str, count: int, workers: int) -> dict:
    """Create ``count`` ports from ``workers`` threads (thread i talks to server i mod N);
    latency list and elapsed time."""
    latencies: list[float] = []
    failures: list[int] = []
    lock = threading.Lock()
    remaining = [count]

    def work(url: str):
        with httpx.Client(base_url=url, headers={"X-Auth-Token": tok}, timeout=60) as c:
            while True:
                with lock:
                    if remaining[0] == 0:
                        return
                    remaining[0] -= 1
                t0 = time.perf_counter()
                r = c.post("/v2.0/ports", json={"port": {"network_id": network_id}})
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
                    if r.status_code != 201:
                        failures.append(r.status_code)

    threads = [threading.Thread(target=work, args=(urls[i % len(urls)],))
               for i in range(workers)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"elapsed": time.perf_counter() - began, "latencies": latencies,
            "failures": failures}


def timed(fn, times: int = 5) -> list[float]:
    """Seconds each of ``times`` calls of ``fn`` took."""
    out = []
    for _ in range(times):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def ok(r: httpx.Response) -> httpx.Response:
    """The response, after checking it succeeded."""
    if r.status_code >= 300:
        raise SystemExit(f"{r.request.method} {r.request.url}: {r.status_code} {r.text}")
    return r


def small_network(c: httpx.Client, ports: int = 10) -> dict[str, list[float]]:
    """Time the requests about one small network (``ports`` ports) in a big cloud."""
    net = ok(c.post("/v2.0/networks", json={"network": {"name": "small"}})).json()["network"]
    ok(c.post("/v2.0/subnets", json={"subnet": {
        "network_id": net["id"], "cidr": "10.200.0.0/24", "ip_version": 4}}))
    made = [ok(c.post("/v2.0/ports", json={"port": {
        "network_id": net["id"], "device_id": f"vm-{i}", "device_owner": "compute:nova"}}
    )).json()["port"] for i in range(ports)]
    out = {
        "by_network": timed(lambda: ok(c.get("/v2.0/ports", params={
            "network_id": net["id"]}))),
        "by_device": timed(lambda: ok(c.get("/v2.0/ports", params={"device_id": "vm-3"}))),
    }

    def slaac():
        sub = ok(c.post("/v2.0/subnets", json={"subnet": {
            "network_id": net["id"], "cidr": "fd00:200::/64", "ip_version": 6,
            "ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac"}})).json()["subnet"]
        ok(c.delete(f"/v2.0/subnets/{sub['id']}"))
    out["slaac"] = timed(slaac)

    def group():
        sg = ok(c.post("/v2.0/security-groups", json={"security_group": {
            "name": "g"}})).json()["security_group"]
        ok(c.delete(f"/v2.0/security-groups/{sg['id']}"))
    out["group"] = timed(group)
    for port in made:
        ok(c.delete(f"/v2.0/ports/{port['id']}"))
    out["network"] = timed(lambda: ok(c.delete(f"/v2.0/networks/{net['id']}")), 1)
    return out


def pct(values: list[float], p: float) -> float:
    """The p-th percentile."""
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=10000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--store", default="sqlite", choices=["sqlite", "etcd"])
    parser.add_argument("--servers", type=int, default=1, help="plexus-server processes")
    parser.add_argument("--etcd-members", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="plexus-bench-"))
    cluster = None
    servers: list[subprocess.Popen] = []
    try:
        if args.store == "etcd":
            from plexus.lab.etcd import LocalCluster
            cluster = LocalCluster(tmp / "etcd", size=args.etcd_members).start()
            store_url = cluster.url
        else:
            store_url = f"sqlite:///{tmp}/bench.db"
        urls = []
        for i in range(args.servers):
            port = free_port()
            servers.append(start_server(store_url, port, tmp / f"server{i + 1}.log"))
            urls.append(f"http://127.0.0.1:{port}")
        url = urls[0]
        tok = token(url)
        hdrs = {"X-Auth-Token": tok}
        net = httpx.post(f"{url}/v2.0/networks", json={"network": {"name": "bench"}},
                         headers=hdrs).json()["network"]
        ok(httpx.put(f"{url}/v2.0/quotas/{net['project_id']}", headers=hdrs, json={
            "quota": {"port": -1, "network": -1, "subnet": -1}}))   # the cloud is big
        httpx.post(f"{url}/v2.0/subnets", json={"subnet": {
            "network_id": net["id"], "cidr": "10.128.0.0/16", "ip_version": 4}},
            headers=hdrs).raise_for_status()
        res = create_ports(urls, tok, net["id"], args.ports, args.workers)
        list_times = []
        with httpx.Client(base_url=url, headers=hdrs, timeout=60) as c:
            for _ in range(5):
                t0 = time.perf_counter()
                r = c.get("/v2.0/ports")
                list_times.append(time.perf_counter() - t0)
                listed = len(r.json()["ports"])
            small = small_network(c)

        def ms(values: list[float]) -> str:
            return f"{statistics.median(values) * 1e3:.1f} / {max(values) * 1e3:.1f}"
        rows = [
            ("store", f"etcd ({args.etcd_members} members, loopback)" if cluster else "sqlite"),
            ("servers", str(args.servers)),
            ("ports created", f"{len(res['latencies']) - len(res['failures'])} "
                              f"({len(res['failures'])} failed)"),
            ("client threads", str(args.workers)),
            ("port creates/s", f"{args.ports / res['elapsed']:.0f}"),
            ("create latency p50 / p95 (ms)", f"{pct(res['latencies'], 50) * 1e3:.1f} / "
                                              f"{pct(res['latencies'], 95) * 1e3:.1f}"),
            (f"list {listed} ports p50 / max (ms)",
             f"{statistics.median(list_times) * 1e3:.0f} / {max(list_times) * 1e3:.0f}"),
            ("one 10-port network: list its ports by network_id p50 / max (ms)",
             ms(small["by_network"])),
            ("one 10-port network: list one VM's port by device_id p50 / max (ms)",
             ms(small["by_device"])),
            ("one 10-port network: SLAAC subnet create + delete p50 / max (ms)",
             ms(small["slaac"])),
            ("security group create + delete p50 / max (ms)", ms(small["group"])),
            ("delete the emptied network (ms)", ms(small["network"])),
            ("machine", machine()),
        ]
        print_table(rows)
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=10)
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
