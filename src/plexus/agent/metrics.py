"""The agent's Prometheus metrics and the small HTTP listener that serves them
(``plexus-agent --metrics ADDR:PORT``, loopback by default; ``GET /metrics``).

Counted as it happens (O(1) per event): the reconcile latency histogram and bundle
failures. Everything else is read from the agent when Prometheus scrapes — its
``Counters`` (events received, flows installed, DHCP answers, ...), the BFD session
states OVSDB reports, the SNAT blocks this chassis holds and what its connections use
of them — so the agent's per-event path pays nothing for them. Labels name states and
kinds only, never a port, router or tenant.

The listener runs on the agent's own event loop (``asyncio.start_server``): a scrape
reads the agent's state between two of its steps, never concurrently with one."""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LOG = logging.getLogger("plexus.agent.metrics")
DEFAULT_ADDRESS = "127.0.0.1:9697"
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
           10.0)
BFD_STATES = ("up", "down", "init", "admin_down")

# Counters field → (metric name, help)
COUNTED = {
    "events": ("plexus_agent_events_received", "Southbound watch events applied"),
    "irrelevant": ("plexus_agent_events_irrelevant",
                   "... of which concerned nothing on this chassis"),
    "reconciles": ("plexus_agent_reconciles", "Reconciles that compiled a view"),
    "bundles": ("plexus_agent_bundles", "OpenFlow bundles applied to br-int"),
    "flow_mods": ("plexus_agent_flow_mods", "Flow mods sent in those bundles"),
    "dhcp_replies": ("plexus_agent_dhcp_replies", "DHCP requests answered"),
    "dhcp6_replies": ("plexus_agent_dhcp6_replies", "DHCPv6 messages answered"),
    "router_advertisements": ("plexus_agent_router_advertisements",
                              "Router advertisements sent (solicited and unsolicited)"),
    "ct_flushes": ("plexus_agent_conntrack_flushes", "Conntrack zones flushed"),
    "snat_leases": ("plexus_agent_snat_leases", "SNAT block lease requests granted"),
    "snat_dropped": ("plexus_agent_snat_dropped_packets",
                     "Packets the SNAT guard dropped (no free source port)"),
    "icmp_errors": ("plexus_agent_icmp_errors", "ICMP errors sent by routers here"),
    "icmp_limited": ("plexus_agent_icmp_errors_limited", "ICMP errors rate-limited"),
    "garps": ("plexus_agent_garps", "Gratuitous ARPs sent for external addresses"),
    "lb_probes": ("plexus_agent_lb_health_probes",
                  "Load balancer health probes sent to members hosted here"),
    "lb_reports": ("plexus_agent_lb_health_reports",
                   "Load balancer member verdicts reported to the server"),
}


class AgentMetrics:
    """The metrics of one agent."""

    def __init__(self, agent):
        self.agent = agent
        self.registry = CollectorRegistry(auto_describe=True)
        self.reconcile = Histogram(
            "plexus_agent_reconcile_duration_seconds", "Reconciles that compiled a view: "
            "view build, compile, lowering, diff and the bundle round trip",
            buckets=BUCKETS, registry=self.registry)
        self.bundle_failures = Counter(
            "plexus_agent_bundle_failures", "Bundles br-int refused or that failed "
            "(the agent re-reads the switch and retries)", registry=self.registry)
        self.registry.register(_AgentCollector(agent))
        self.server: asyncio.base_events.Server | None = None

    def render(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)

    async def serve(self, address: str) -> tuple[str, int]:
        """Listen on ``HOST:PORT`` (port 0: any free one); returns where it listens."""
        host, _, port = address.rpartition(":")
        self.server = await asyncio.start_server(self._answer, host.strip("[]") or
                                                 "127.0.0.1", int(port))
        bound = self.server.sockets[0].getsockname()[:2]
        LOG.info("metrics on http://%s:%d/metrics", *bound)
        return bound

    async def close(self) -> None:
        """Stop listening."""
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        """One HTTP/1.0-style exchange: GET /metrics, or 404/405."""
        try:
            async with asyncio.timeout(5):
                request = await reader.readline()
                while (await reader.readline()).strip():       # the headers: ignored
                    pass
            method, path = (request.decode("latin-1").split() + ["", ""])[:2]
            if method != "GET":
                status, body, kind = "405 Method Not Allowed", b"GET only\n", "text/plain"
            elif path.partition("?")[0] not in ("/metrics", "/"):
                status, body, kind = "404 Not Found", b"see /metrics\n", "text/plain"
            else:
                status, body, kind = "200 OK", self.render(), CONTENT_TYPE_LATEST
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: "
                         f"{len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (OSError, TimeoutError, UnicodeError):
            pass
        finally:
            writer.close()


class _AgentCollector:
    """What the agent already keeps, read at scrape time."""

    def __init__(self, agent):
        self.agent = agent

    def describe(self):
        return []

    def collect(self):
        agent = self.agent
        n = agent.counters
        for field, (name, text) in COUNTED.items():
            counter = CounterMetricFamily(name, text)
            counter.add_metric([], getattr(n, field))
            yield counter
        yield _gauge("plexus_agent_flows_installed", "Flows installed in br-int", n.flows)
        yield _gauge("plexus_agent_applied_revision", "Store revision whose relevant "
                     "changes are all in the flows (sent with heartbeats)",
                     agent.applied_revision)
        yield _gauge("plexus_agent_watch_revision", "Store revision the watch has read "
                     "up to", agent.seen_revision)
        yield _gauge("plexus_agent_openflow_connected", "Whether the OpenFlow channel to "
                     "br-int is up (flows known)", int(agent.installed is not None))
        states = GaugeMetricFamily("plexus_agent_bfd_sessions", "BFD sessions on tunnels, "
                                   "by state", labels=["state"])
        seen = {s: 0 for s in BFD_STATES}
        for state in agent.bridge.bfd_states().values():
            seen[state] = seen.get(state, 0) + 1
        for state, count in sorted(seen.items()):
            states.add_metric([state], count)
        yield states
        routers = blocks = busy = 0
        view = agent.view
        if view is not None:
            from plexus.agent import l3
            for r in l3.snat_state(view):
                if r.blocks:
                    routers += 1
                    blocks += len(r.blocks)
                    busy += len(agent._snat_use.get(r.zone, l3.SnatUse()).busy)
        yield _gauge("plexus_agent_snat_routers", "Routers this chassis SNATs for", routers)
        yield _gauge("plexus_agent_snat_blocks_held", "SNAT port blocks this chassis holds",
                     blocks)
        yield _gauge("plexus_agent_snat_blocks_busy", "... of which a connection used at "
                     "the last conntrack dump", busy)


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, text)
    gauge.add_metric([], value)
    return gauge
