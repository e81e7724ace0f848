"""What the metrics cost: the request middleware (per request, against the same ASGI app
without it), a store transaction's timing, and a scrape of a server whose every route
template has been hit (the series count is bounded by routes × methods × statuses).

    .venv/bin/python bench/metrics.py [--requests 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import generate_latest  # noqa: E402

from bench.table import machine, print_table  # noqa: E402
from plexus.server.metrics import ROUTE_KEY, ServerMetrics  # noqa: E402


async def _app(scope, receive, send):
    scope[ROUTE_KEY] = "/v2.0/ports/{id}"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _drive(app, n: int) -> float:
    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        pass
    began = time.perf_counter()
    for _ in range(n):
        await app({"type": "http", "method": "PUT", "path": "/v2.0/ports/x"}, receive, send)
    return (time.perf_counter() - began) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50_000)
    args = parser.parse_args()
    metrics = ServerMetrics(None)
    bare = asyncio.run(_drive(_app, args.requests))
    metered = asyncio.run(_drive(metrics.middleware(_app), args.requests))
    began = time.perf_counter()
    for _ in range(args.requests):
        metrics.observe_txn(0.001, True)
    txn = (time.perf_counter() - began) / args.requests
    from plexus.api.routes import all_routes
    from plexus.server import operator, southbound
    from starlette.routing import Route
    templates = [r.path for r in all_routes() + southbound.ROUTES + operator.ROUTES
                 if isinstance(r, Route)]
    for path in templates:
        for method in ("GET", "PUT", "POST", "DELETE"):
            for status in ("200", "201", "204", "400", "403", "404", "409", "503"):
                metrics.requests.labels(path, method, status).inc()
                metrics.latency.labels(path, method).observe(0.01)
    began = time.perf_counter()
    text = generate_latest(metrics.registry)
    scrape = time.perf_counter() - began
    print_table([
        ("machine", machine()),
        ("requests timed", str(args.requests)),
        ("ASGI call without the middleware (µs)", f"{bare * 1e6:.2f}"),
        ("ASGI call with the middleware (µs)", f"{metered * 1e6:.2f}"),
        ("middleware cost per request (µs)", f"{(metered - bare) * 1e6:.2f}"),
        ("store txn observation (µs)", f"{txn * 1e6:.2f}"),
        ("route templates", str(len(templates))),
        ("worst-case series (every route × 4 methods × 8 statuses)",
         str(len(templates) * 4 * 8)),
        ("scrape of that registry (ms)", f"{scrape * 1000:.1f}"),
        ("scrape size (KiB)", f"{len(text) / 1024:.0f}"),
    ])


if __name__ == "__main__":
    main()
