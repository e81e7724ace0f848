"""A small admin client of the server's own (non-Neutron-SDK) endpoints, authenticated
through an openstacksdk connection: what ``plexus status/flows/topology`` and the demo
read."""

from __future__ import annotations

import httpx


class Api:
    """GETs against the Neutron endpoint with an admin token."""

    def __init__(self, conn):
        self.token = conn.session.get_token()
        url = conn.session.get_endpoint(service_type="network", interface="public")
        self.base = url.rstrip("/").removesuffix("/v2.0").rstrip("/")

    def get(self, path: str) -> dict:
        r = httpx.get(self.base + path, headers={"X-Auth-Token": self.token}, timeout=30)
        if r.status_code != 200:
            try:
                message = r.json()["NeutronError"]["message"]
            except (ValueError, KeyError, TypeError):
                message = r.text[:200]
            raise RuntimeError(f"GET {path}: {r.status_code} {message}")
        return r.json()
