"""Write → every watcher delivery of the per-chassis southbound watch, on one server
process, with 100 / 500 / 1,000 watchers (issue 10). Prints one table.

A real ``plexus-server`` process on loopback with a fresh SQLite store, loaded through
the API with a shared network holding one port on each of ``--chassis`` chassis (so
every watcher must get a write to any of them) and a probe port on a network of its
own. For each W the server is restarted and W watchers connect, each as one chassis
(``c0000`` …), spread over ``--clients`` client processes (raw asyncio HTTP):

- ``stream``: one ``GET /southbound/v1/watch?from=REV&chassis=X&stream=1`` per watcher,
  open for the whole phase, newline-delimited JSON lines read as they come;
- ``poll``: the long poll agents used before streams (``&timeout=25``), asked again
  after every answer, on a kept-alive connection.

Then ``--writes`` port updates on the shared network through ``PUT /v2.0/ports``, one
every ``--write-interval`` s, while a prober times ``GET`` and ``PUT /v2.0/ports/{id}``
of the probe port. Reported per mode and W: deliveries made within the phase's cap,
write → watcher delivery p50 / p99 over every (write, watcher) pair (from the write's
request to the line's arrival), the time until the last watcher had the worst write,
the API p95 during the phase, the server's CPU seconds over the phase and peak RSS.

    .venv/bin/python bench/stream.py [--watchers 100,500,1000] [--modes stream,poll]
        [--clients 2] [--writes 20] [--write-interval 0.5] [--phase-cap 90]

Only 127.0.0.1; every process it starts it stops again, by pid.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(SRC))

from table import machine, print_table  # noqa: E402
# the server harness is bench/scale.py's (server process, token, writes and API prober)
from scale import _pct as pct  # noqa: E402
from scale import _token as token_of  # noqa: E402
from scale import run_phase, start_server  # noqa: E402
from scale import stop_server as stop  # noqa: E402


def chassis_name(i: int) -> str:
    return f"c{i:04d}"


# --- the server -------------------------------------------------------------------------

def free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]






def preload(url: str, token: str, chassis: int) -> dict:
    """A shared network with one port on each chassis, and a probe port elsewhere."""
    import httpx
    from concurrent.futures import ThreadPoolExecutor
    headers = {"X-Auth-Token": token}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
        def network(name, cidr):
            r = c.post("/v2.0/networks", json={"network": {"name": name}})
            r.raise_for_status()
            nid = r.json()["network"]["id"]
            c.post("/v2.0/subnets", json={"subnet": {"network_id": nid, "cidr": cidr,
                                                     "ip_version": 4}}).raise_for_status()
            return nid
        shared = network("stream-shared", "10.100.0.0/16")
        probe_net = network("stream-probe", "10.101.0.0/24")
    jobs = [(shared, chassis_name(i), f"shared-{i}") for i in range(chassis)]
    jobs.append((probe_net, "", "probe"))
    local = threading.local()

    def create(job):
        nid, host, name = job
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, headers=headers, timeout=60)
        body = {"network_id": nid, "name": name, "device_owner": "compute:nova",
                "device_id": f"vm-{name}", "security_groups": []}
        if host:
            body["binding:host_id"] = host
        r = local.client.post("/v2.0/ports", json={"port": body})
        r.raise_for_status()
        return name, r.json()["port"]["id"]

    with ThreadPoolExecutor(4) as pool:
        ids = dict(pool.map(create, jobs))
    return {"shared": [ids[f"shared-{i}"] for i in range(chassis)], "probe": ids["probe"],
            "ports": len(jobs)}


# --- a watcher client process ---------------------------------------------------------

async def _head(reader) -> tuple[int, dict[str, str]]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("closed")
    status = int(status_line.split()[1])
    headers = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            return status, headers
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip().lower()


async def _chunks(reader):
    """The chunks of a chunked body, as they arrive."""
    while True:
        size = int((await reader.readline()).split(b";")[0], 16)
        if size == 0:
            await reader.readline()
            return
        data = await reader.readexactly(size)
        await reader.readline()
        yield data


async def _body(reader, headers) -> bytes:
    if "chunked" in headers.get("transfer-encoding", ""):
        return b"".join([c async for c in _chunks(reader)])
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"]))
    return await reader.read()


def _request(path: str, token: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Auth-Token: {token}\r\n"
            f"Accept: application/json\r\n\r\n").encode()


async def watchers(mode: str, port: int, token: str, names: list[str], start: int,
                   prefix: str, writes: int, deadline: float) -> dict:
    """Watch as each chassis of ``names`` until each saw ``writes`` writes or the
    deadline (``time.time()``); {write name: [arrival times]} and counts."""
    import orjson
    seen: dict[str, list[float]] = {}
    stats = {"requests": 0, "lines": 0, "errors": 0, "statuses": {}}
    opened = [0]
    ready = asyncio.Event()
    finished = [0]
    everyone = asyncio.Event()     # connections close once every watcher here is done,
                                   # so closing does not compete with delivering

    async def done() -> None:
        finished[0] += 1
        if finished[0] == len(names):
            everyone.set()
        try:
            await asyncio.wait_for(everyone.wait(), max(0.1, deadline - time.time()))
        except asyncio.TimeoutError:
            pass

    def took(body: bytes, got: set, now: float) -> int:
        doc = orjson.loads(body)
        if "error" in doc:
            raise ConnectionError(doc["error"])
        for event in doc.get("events") or ():
            obj = event.get("object") or {}
            name = obj.get("name") if isinstance(obj, dict) else None
            if isinstance(name, str) and name.startswith(prefix) and name not in got:
                got.add(name)
                seen.setdefault(name, []).append(now)
        return int(doc["next"])

    def status(code: int) -> None:
        stats["requests"] += 1
        stats["statuses"][code] = stats["statuses"].get(code, 0) + 1

    async def stream(chassis: str) -> None:
        got: set[str] = set()
        nxt, announced = start, False
        while len(got) < writes and time.time() < deadline:
            writer = None
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(_request(f"/southbound/v1/watch?from={nxt}&chassis={chassis}"
                                      f"&stream=1", token))
                code, headers = await _head(reader)
                status(code)
                if code != 200:
                    await _body(reader, headers)
                    await asyncio.sleep(0.5)
                    continue
                if not announced:
                    announced = True
                    opened[0] += 1
                    if opened[0] == len(names):
                        ready.set()
                buffer = b""
                chunks = _chunks(reader)
                while len(got) < writes:
                    left = deadline - time.time()
                    if left <= 0:
                        break
                    data = await asyncio.wait_for(chunks.__anext__(), left)
                    now = time.time()
                    buffer += data
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        if line:
                            stats["lines"] += 1
                            nxt = took(line, got, now)
            except (asyncio.TimeoutError, StopAsyncIteration):
                pass
            except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError):
                stats["errors"] += 1
                await asyncio.sleep(0.2)
            finally:
                if len(got) >= writes or time.time() >= deadline:
                    await done()
                if writer is not None:
                    writer.close()

    async def poll(chassis: str) -> None:
        got: set[str] = set()
        nxt, conn, announced = start, None, False
        while len(got) < writes and time.time() < deadline:
            try:
                if conn is None:
                    conn = await asyncio.open_connection("127.0.0.1", port)
                if not announced:
                    announced = True
                    opened[0] += 1
                    if opened[0] == len(names):
                        ready.set()
                wait = max(1, min(25, int(deadline - time.time())))
                conn[1].write(_request(f"/southbound/v1/watch?from={nxt}&timeout={wait}"
                                       f"&chassis={chassis}", token))

                async def answer():
                    code, headers = await _head(conn[0])
                    return code, headers, await _body(conn[0], headers)
                code, headers, body = await asyncio.wait_for(
                    answer(), max(0.1, deadline - time.time() + 1))
                now = time.time()
                status(code)
                if headers.get("connection") == "close":
                    conn[1].close()
                    conn = None
                if code != 200:
                    await asyncio.sleep(0.5)
                    continue
                stats["lines"] += 1
                nxt = took(body, got, now)
            except asyncio.TimeoutError:
                break
            except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError):
                stats["errors"] += 1
                if conn is not None:
                    conn[1].close()
                conn = None
                await asyncio.sleep(0.2)
        await done()
        if conn is not None:
            conn[1].close()

    one = stream if mode == "stream" else poll
    tasks = [asyncio.create_task(one(n)) for n in names]
    try:
        await asyncio.wait_for(ready.wait(), 60)
    except asyncio.TimeoutError:
        pass
    print(json.dumps({"ready": opened[0]}), flush=True)
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"seen": seen, "stats": stats}


def watch_child(spec: str) -> None:
    a = json.loads(spec)
    result = asyncio.run(watchers(a["mode"], a["port"], a["token"], a["names"], a["start"],
                                  a["prefix"], a["writes"], a["deadline"]))
    print(json.dumps(result), flush=True)


# --- one phase: W watchers, the writes and the prober -----------------------------------




def phase(mode: str, count: int, url: str, port: int, token: str, model: dict,
          server: subprocess.Popen, args) -> dict:
    """One mode and W: watchers connect, writes and probes run, results are gathered."""
    import httpx
    snap = httpx.get(f"{url}/southbound/v1/snapshot?chassis={chassis_name(0)}",
                     headers={"X-Auth-Token": token}, timeout=120)
    snap.raise_for_status()
    start = int(snap.json()["revision"]) + 1
    prefix = f"{mode}-{count}-w"
    names = [chassis_name(i) for i in range(count)]
    deadline = time.time() + args.phase_cap
    groups = [g for g in (names[i::args.clients] for i in range(args.clients)) if g]
    specs = [{"mode": mode, "port": port, "token": token, "names": group, "start": start,
              "prefix": prefix, "writes": args.writes, "deadline": deadline}
             for group in groups]
    ran = run_phase(Path(__file__).resolve(), specs, url, token, model, prefix, server, args,
                    deadline)
    result, peak, cpu, wall = ran["drive"], [ran["rss"]], ran["cpu"], ran["wall"]
    seen: dict[str, list[float]] = {}
    stats = {"requests": 0, "lines": 0, "errors": 0}
    for record in ran["records"]:
        if "seen" in record:
            for name, times in record["seen"].items():
                seen.setdefault(name, []).extend(times)
            for k in stats:
                stats[k] += record["stats"][k]
    sent = result["sent"]
    delays = [(t - sent[name]) * 1000 for name, times in seen.items() if name in sent
              for t in times]
    per_write_all = [(max(seen[name]) - sent[name]) * 1000 for name in sent
                     if len(seen.get(name, ())) == count]
    api = result["api"]
    return {"mode": mode, "watchers": count, "writes_sent": len(sent),
            "expected": len(sent) * count, "delivered": len(delays),
            "p50": pct(delays, 0.5) if delays else None,
            "p99": pct(delays, 0.99) if delays else None,
            "all_max": max(per_write_all) if per_write_all else None,
            "complete": len(per_write_all),
            "per_write": [round((max(seen[n]) - sent[n]) * 1000) if seen.get(n) else None
                          for n in sorted(sent)],
            "api_p95": pct([ms for _, ms, _ in api], 0.95) if api else None,
            "api_n": len(api), "api_failed": sum(1 for _, _, s in api if s not in (200, 201)),
            "rss": peak[0], "cpu": cpu, "wall": wall, "stats": stats}


def ms(v) -> str:
    if v is None:
        return "n/a"
    return f"{v / 1000:.1f} s" if v >= 10000 else f"{v:.0f} ms"


def rows_of(results: list[dict], model: dict, args) -> list[tuple[str, str]]:
    rows = [("model (through the API)",
             f"{model['ports']:,} ports; one shared network with a port on each of "
             f"{args.chassis:,} chassis"),
            ("clients", f"{args.clients} processes; {args.writes} writes, one every "
                        f"{args.write_interval} s; cap {args.phase_cap:.0f} s")]
    for mode in args.modes:
        mine = [r for r in results if r["mode"] == mode]
        if not mine:
            continue
        label = "stream" if mode == "stream" else "long poll"
        ws = " / ".join(str(r["watchers"]) for r in mine)

        def col(fn, mine=mine):
            return " / ".join(fn(r) for r in mine)
        rows.append((f"{label}, watchers ({ws}): deliveries (requests; errors)",
                     col(lambda r: f"{r['delivered']}/{r['expected']} "
                         f"({r['stats']['requests']}; {r['stats']['errors']})")))
        rows.append((f"{label}: write → watcher delivery p50 / p99",
                     col(lambda r: f"{ms(r['p50'])} / {ms(r['p99'])}")))
        rows.append((f"{label}: write → last watcher, worst write",
                     col(lambda r: ms(r["all_max"]) if r["complete"] == r["writes_sent"]
                         and r["writes_sent"] else
                         f"n/a ({r['complete']}/{r['writes_sent']} reached all)")))
        rows.append((f"{label}: API p95 during the phase (n, failed)",
                     col(lambda r: f"{ms(r['api_p95'])} ({r['api_n']}, {r['api_failed']})")))
        rows.append((f"{label}: server CPU (share of one core), RSS peak",
                     col(lambda r: f"{r['cpu'] / max(r['wall'], 1e-9):.0%}, "
                         f"{r['rss']:.0f} MiB")))
    rows.append(("machine", machine()))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--watchers", default="100,500,1000")
    ap.add_argument("--modes", default="stream", help="stream,poll")
    ap.add_argument("--chassis", type=int, default=None,
                    help="chassis with a port on the shared network (default: max W)")
    ap.add_argument("--clients", type=int, default=2, help="watcher client processes")
    ap.add_argument("--writes", type=int, default=20)
    ap.add_argument("--write-interval", type=float, default=0.5)
    ap.add_argument("--phase-cap", type=float, default=90.0)
    ap.add_argument("--settle", type=float, default=2.0)
    ap.add_argument("--_watch-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._watch_child is not None:
        watch_child(args._watch_child)
        return
    args.watchers = [int(w) for w in args.watchers.split(",") if w]
    args.modes = [m for m in args.modes.split(",") if m]
    args.chassis = args.chassis or max(args.watchers)
    args.clients = max(1, min(args.clients, 4))
    tmp = Path(tempfile.mkdtemp(prefix="plexus-stream-"))
    store_url = f"sqlite:///{tmp}/plexus.db"
    log = tmp / "server.log"
    results, model, server = [], {}, None
    try:
        # the model is loaded on a server of its own: the phases' servers start from a
        # store at rest (one read of the model), not behind the load's backlog
        port = free_port()
        server = start_server(store_url, port, log)
        model = preload(f"http://127.0.0.1:{port}", token_of(f"http://127.0.0.1:{port}"),
                        args.chassis)
        stop(server)
        for mode in args.modes:
            for count in args.watchers:
                port = free_port()
                server = start_server(store_url, port, log)
                url = f"http://127.0.0.1:{port}"
                token = token_of(url)
                results.append(phase(mode, count, url, port, token, model, server, args))
                print(f"# {mode} {count}: {json.dumps(results[-1])}", file=sys.stderr,
                      flush=True)
                stop(server)
                server = None
    finally:
        if server is not None:
            stop(server)
        shutil.rmtree(tmp, ignore_errors=True)
    print_table(rows_of(results, model, args))


if __name__ == "__main__":
    main()
