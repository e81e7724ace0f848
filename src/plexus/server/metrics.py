"""The server's Prometheus metrics, served at ``/metrics`` (text exposition format).

Each app has its own ``CollectorRegistry`` (several servers may share one process in
tests). What is counted as it happens costs O(1) per request or transaction (a dict
lookup and an add); what is a level (watchers, streams, chassis alive, the store
revision) is read from the hub when Prometheus scrapes, not kept up to date per event.

Labels never carry tenant data: requests are labelled by the *route template*
(``/v2.0/networks/{id}``, never the raw path), the method and the status code; there
are no object ids, project ids or addresses in any label. That is why ``/metrics``
needs no token (like every Prometheus exporter): it says how busy the server is, not
what any tenant has. Keep it off public networks all the same (docs/operations.md)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

ROUTE_KEY = "plexus.route"          # the ASGI scope key the tagged routes set
UNMATCHED = "unmatched"             # no route (404) or a method no route takes (405)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0)


class ServerMetrics:
    """The metrics of one server app."""

    def __init__(self, hub=None):
        self.registry = CollectorRegistry(auto_describe=True)
        self.hub = hub
        self.requests = Counter(
            "plexus_http_requests", "HTTP requests answered, by route template, method "
            "and status", ("route", "method", "status"), registry=self.registry)
        self.latency = Histogram(
            "plexus_http_request_duration_seconds", "Time to the response's status line "
            "(for a streaming watch: to the stream's start), by route template and method",
            ("route", "method"), buckets=LATENCY_BUCKETS, registry=self.registry)
        self.txn = Histogram(
            "plexus_store_txn_duration_seconds", "Store transactions of API writes "
            "(outcome: committed, or conflict when a guard failed and the write re-plans)",
            ("outcome",), buckets=LATENCY_BUCKETS, registry=self.registry)
        self._committed, self._conflict = self.txn.labels("committed"), self.txn.labels(
            "conflict")
        self.lease_expired = Counter(
            "plexus_chassis_lease_expired", "Heartbeats refused because the chassis' "
            "liveness lease had expired (the agent registers again)",
            registry=self.registry)
        self.registrations = Counter(
            "plexus_chassis_registrations", "Chassis registrations (first start, restart, "
            "re-registration after a lost lease)", registry=self.registry)
        self.registry.register(_HubCollector(self))

    def observe_txn(self, seconds: float, committed: bool) -> None:
        """One store transaction of an API write."""
        (self._committed if committed else self._conflict).observe(seconds)

    async def endpoint(self, request: Request) -> Response:
        """``GET /metrics``: the registry in Prometheus' text format."""
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    def middleware(self, app):
        """ASGI middleware counting every HTTP request once its status is known."""
        requests, latency = self.requests, self.latency
        children: dict[tuple, tuple] = {}   # labels → (counter, histogram): bounded by routes

        async def metered(scope, receive, send):
            if scope["type"] != "http":
                return await app(scope, receive, send)
            began = time.perf_counter()
            method = scope["method"] if scope["method"] in METHODS else "other"

            async def send_counted(message):
                if message["type"] == "http.response.start":
                    key = (scope.get(ROUTE_KEY, UNMATCHED), method, message["status"])
                    pair = children.get(key)
                    if pair is None:
                        pair = children[key] = (requests.labels(key[0], method, str(key[2])),
                                                latency.labels(key[0], method))
                    pair[0].inc()
                    pair[1].observe(time.perf_counter() - began)
                await send(message)
            await app(scope, receive, send_counted)
        return metered


class _HubCollector:
    """Levels read from the hub at scrape time (O(1) each: lengths and counters)."""

    def __init__(self, metrics: ServerMetrics):
        self.metrics = metrics

    def describe(self):
        return []

    def collect(self):
        hub = self.metrics.hub
        if hub is None:
            return
        yield _gauge("plexus_southbound_watchers", "Long-polling southbound watches "
                     "waiting now", hub.watchers())
        yield _gauge("plexus_southbound_streams", "Streaming southbound watches open now",
                     hub.streams)
        yield _gauge("plexus_store_revision", "The newest store revision the hub has "
                     "applied", max(hub.next - 1, 0))
        yield _gauge("plexus_chassis_alive", "Chassis holding a liveness lease (leases "
                     "held)", len(hub.raw.get("liveness", ())))
        yield _gauge("plexus_chassis_subscribed", "Chassis the hub routes events to",
                     len(hub.subs))
        for name, key, text in (
                ("plexus_southbound_events_routed", "events", "Store events the hub routed"),
                ("plexus_southbound_events_delivered", "delivered",
                 "Events sent to agents in watch answers and stream lines"),
                ("plexus_southbound_events_synthetic", "synthetic",
                 "Put/delete events made for chassis whose scopes changed")):
            counter = CounterMetricFamily(name, text)
            counter.add_metric([], hub.stats.get(key, 0))
            yield counter


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, text)
    gauge.add_metric([], value)
    return gauge


def tag_routes(routes: list[BaseRoute], prefix: str = "") -> None:
    """Make every route record its template in the scope (``ROUTE_KEY``) when it
    serves a request, so requests are labelled by template, never by raw path."""
    for route in routes:
        if isinstance(route, Mount):
            tag_routes(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            route.app = _tagged(route.app, prefix + route.path)


def _tagged(app, template: str):
    async def tagged(scope, receive, send):
        scope[ROUTE_KEY] = template
        await app(scope, receive, send)
    return tagged
