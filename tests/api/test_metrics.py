"""``/metrics`` of a real server, parsed with prometheus_client's own parser: the series
move with the requests made (by route template, never by raw path), store transactions
are timed, a streaming watcher shows in the gauge, no tenant id appears anywhere; and
``/operator/v1/status`` (``plexus status``) shows what agents report with heartbeats."""

from __future__ import annotations

import threading
import uuid

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.api.helpers import raw, register_chassis
from tests.contract.test_store_contract import wait_for


def scrape(server) -> tuple[dict, str]:
    """{(sample name, sorted labels): value} of the server's /metrics (no token), and
    the text itself."""
    r = httpx.get(server.url + "/metrics", timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, r.text


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def requests(samples, route, method, status) -> float:
    return value(samples, "plexus_http_requests_total", route=route, method=method,
                 status=str(status))


def test_requests_are_counted_by_route_template_method_and_status(server, admin):
    net = admin.network.create_network(name="metered")
    before, _ = scrape(server)
    admin.network.update_network(net, name="metered-2")
    admin.network.update_network(net, description="again")
    missing = str(uuid.uuid4())
    r = raw(server, admin, "PUT", f"/v2.0/networks/{missing}", {"network": {"name": "x"}})
    assert r.status_code == 404
    after, text = scrape(server)
    route = "/v2.0/networks/{id}"
    assert requests(after, route, "PUT", 200) - requests(before, route, "PUT", 200) == 2
    assert requests(after, route, "PUT", 404) - requests(before, route, "PUT", 404) == 1
    # the latency histogram counted the same three requests
    assert value(after, "plexus_http_request_duration_seconds_count", route=route,
                 method="PUT") - value(before, "plexus_http_request_duration_seconds_count",
                                       route=route, method="PUT") == 3
    # labels hold templates: no object or project id, ever
    for ident in (net.id, missing, net.project_id):
        assert ident not in text
    admin.network.delete_network(net)


def test_unknown_paths_share_one_series(server, admin):
    before, _ = scrape(server)
    for i in range(3):
        assert raw(server, admin, "GET", f"/no/such/{uuid.uuid4()}").status_code == 404
    after, text = scrape(server)
    assert requests(after, "unmatched", "GET", 404) - requests(before, "unmatched", "GET",
                                                               404) == 3
    assert "/no/such" not in text


def test_store_transactions_are_timed(server, admin):
    before, _ = scrape(server)
    net = admin.network.create_network(name="txn")
    admin.network.delete_network(net)
    after, _ = scrape(server)
    name = "plexus_store_txn_duration_seconds_count"
    assert value(after, name, outcome="committed") - value(before, name,
                                                           outcome="committed") >= 2


def test_a_streaming_watcher_shows_in_the_gauge_and_its_events_count(server, admin):
    token = admin.session.get_token()
    chassis = f"metrics-{uuid.uuid4().hex[:6]}"
    start = raw(server, admin, "GET", "/southbound/v1/snapshot").json()["revision"] + 1
    lines: list[bytes] = []
    opened = threading.Event()
    stop = threading.Event()

    def follow():
        with httpx.stream("GET", f"{server.url}/southbound/v1/watch?from={start}&stream=1"
                          f"&heartbeat=0.2", headers={"X-Auth-Token": token},
                          timeout=30) as r:
            opened.set()
            for line in r.iter_lines():
                lines.append(line)
                if stop.is_set():
                    return
    base, _ = scrape(server)
    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    assert opened.wait(30)
    assert wait_for(lambda: value(scrape(server)[0], "plexus_southbound_streams")
                    == value(base, "plexus_southbound_streams") + 1, 10)
    net = admin.network.create_network(name=chassis)
    assert wait_for(lambda: any(net.id.encode() in line.encode() if isinstance(line, str)
                                else net.id.encode() in line for line in lines), 10)
    stop.set()
    thread.join(10)
    after, _ = scrape(server)
    assert value(after, "plexus_southbound_events_delivered_total") > \
        value(base, "plexus_southbound_events_delivered_total")
    assert wait_for(lambda: value(scrape(server)[0], "plexus_southbound_streams")
                    == value(base, "plexus_southbound_streams"), 10)
    admin.network.delete_network(net)


def test_status_shows_what_heartbeats_report_and_chassis_alive(server, admin, demo):
    name = f"status-{uuid.uuid4().hex[:6]}"
    before, _ = scrape(server)
    lease = register_chassis(server, admin, name)
    assert wait_for(lambda: value(scrape(server)[0], "plexus_chassis_alive")
                    == value(before, "plexus_chassis_alive") + 1, 10)
    store_rev = server.app.state.services.store.revision()
    r = raw(server, admin, "PUT", f"/southbound/v1/chassis/{name}/heartbeat",
            {"lease": lease, "revision": store_rev - 3, "version": "9.9.9"})
    assert r.status_code == 200, r.text
    assert wait_for(lambda: raw(server, admin, "GET", "/operator/v1/status").json()[
        "store"]["model_revision"] >= store_rev, 10)       # the hub has the registration
    body = raw(server, admin, "GET", "/operator/v1/status").json()
    mine = [c for c in body["chassis"] if c["chassis"] == name]
    assert len(mine) == 1
    assert mine[0]["alive"] and mine[0]["lease"] == lease
    assert mine[0]["version"] == "9.9.9"
    assert mine[0]["applied_revision"] == store_rev - 3
    assert mine[0]["lag"] == body["store"]["model_revision"] - (store_rev - 3) >= 3
    # the Neutron agents API still shows the heartbeat's time
    agent = admin.network.get_agent(mine[0]["id"])
    assert agent.last_heartbeat_at == mine[0]["last_seen"]
    # a heartbeat on a lease that is gone is counted
    r = raw(server, admin, "PUT", f"/southbound/v1/chassis/{name}/heartbeat",
            {"lease": lease + 10_000})
    assert r.status_code == 404
    after, _ = scrape(server)
    assert value(after, "plexus_chassis_lease_expired_total") == \
        value(before, "plexus_chassis_lease_expired_total") + 1
    assert value(after, "plexus_chassis_registrations_total") == \
        value(before, "plexus_chassis_registrations_total") + 1
    # bad reports are refused, Neutron-style
    r = raw(server, admin, "PUT", f"/southbound/v1/chassis/{name}/heartbeat",
            {"lease": lease, "revision": "x"})
    assert r.status_code == 400 and r.json()["NeutronError"]["type"] == "InvalidInput"
    # admin only
    assert raw(server, demo, "GET", "/operator/v1/status").status_code == 403
    raw(server, admin, "DELETE", f"/southbound/v1/chassis/{name}?lease={lease}")
    assert wait_for(lambda: value(scrape(server)[0], "plexus_chassis_alive")
                    == value(before, "plexus_chassis_alive"), 10)
    gone = raw(server, admin, "GET", "/operator/v1/status").json()
    assert [c["alive"] for c in gone["chassis"] if c["chassis"] == name] == [False]
    admin.network.delete_agent(mine[0]["id"])


def dashboard_metrics(prefix: str) -> set[str]:
    """The series names docs/grafana-plexus.json queries, of one prefix."""
    import json
    import re
    from pathlib import Path
    doc = json.loads((Path(__file__).parents[2] / "docs" / "grafana-plexus.json").read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    return {m for e in exprs for m in re.findall(r"plexus_[a-z_]+", e) if m.startswith(prefix)}


def test_the_sample_dashboard_queries_only_series_the_server_serves(server, admin):
    admin.network.delete_network(admin.network.create_network(name="dash"))
    samples, _ = scrape(server)
    served = {name for name, _ in samples}
    wanted = {m for m in dashboard_metrics("plexus_") if not m.startswith("plexus_agent_")}
    assert wanted and wanted <= served, wanted - served
