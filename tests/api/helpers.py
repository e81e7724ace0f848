"""Small helpers for API tests: raw HTTP with a client's token, store fingerprints."""

from __future__ import annotations

import httpx

from plexus.model.keys import LIVENESS


def error(r: httpx.Response, status: int, type_name: str, message: str | None = None) -> None:
    """Assert a Neutron error: status code, NeutronError type and (if given) message."""
    assert r.status_code == status, r.text
    body = r.json()["NeutronError"]
    assert body["type"] == type_name, r.text
    if message is not None:
        assert body["message"] == message, r.text


def raw(server, conn, method: str, path: str, body=None, content: bytes | None = None,
        headers: dict | None = None) -> httpx.Response:
    """An HTTP request with ``conn``'s token (for cases real clients refuse to send)."""
    hdrs = {"X-Auth-Token": conn.session.get_token(), "Content-Type": "application/json"}
    hdrs.update(headers or {})
    return httpx.request(method, server.url + path, json=body, content=content, headers=hdrs,
                         timeout=30)


def state(server) -> list[tuple[str, bytes]]:
    """Everything the API has durably written (model objects, allocations, RBAC); not
    the chassis' liveness keys, which lapse with their leases whenever they do."""
    store = server.app.state.services.store
    out = []
    for prefix in ("/plexus/model/", "/plexus/alloc/", "/plexus/rbac/"):
        kvs, _ = store.range(prefix)
        out += [(kv.key, kv.value) for kv in kvs
                if not kv.key.startswith(f"/plexus/model/{LIVENESS}/")]
    return out


def register_chassis(server, admin, name: str, ttl: float = 30.0, gateway: bool = False,
                     tunnel_ip: str = "198.18.0.11") -> int:
    """Register a chassis through the southbound API (as an agent would); its lease id."""
    r = raw(server, admin, "PUT", f"/southbound/v1/chassis/{name}", {
        "tunnel_ip": tunnel_ip, "bridge_mappings": {"physnet1": "br-ex"},
        "gateway": gateway, "ttl": ttl})
    assert r.status_code == 200, r.text
    return r.json()["lease"]
