"""Logging in to a test server's built-in identity over HTTP."""

from __future__ import annotations

import httpx

from plexus.config import Config


def admin_password(config: Config) -> str:
    """The password the configuration seeds the admin user with."""
    return next(u.password for u in config.identity.users if u.name == "admin")


def login(url: str, user: str, password: str, project: str | None = None) -> str:
    """A token for ``user`` (scoped to ``project``, by name), from the server at ``url``."""
    auth: dict = {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "password": password, "domain": {"id": "default"}}}}}
    if project:
        auth["scope"] = {"project": {"name": project, "domain": {"id": "default"}}}
    response = httpx.post(f"{url}/identity/v3/auth/tokens", json={"auth": auth}, timeout=30)
    assert response.status_code == 201, response.text
    return response.headers["X-Subject-Token"]
