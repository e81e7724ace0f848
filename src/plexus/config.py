"""Configuration: one typed model, loaded from YAML (and PLEXUS_CONFIG)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerConfig(_Model):
    """Where the API listens and how clients reach it."""

    host: str = "127.0.0.1"
    port: int = 9696
    # URL put in the identity catalog; default http://host:port
    public_url: str | None = None

    def url(self) -> str:
        """The URL clients use to reach this server."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")


class StoreConfig(_Model):
    """Which backend holds the state: ``sqlite:///path`` or ``etcd://host:port,host:port``."""

    url: str = "sqlite:///var/plexus/plexus.db"
    # etcd over TLS: the CA that signed the members' certificates, and a client
    # certificate and key when the members require one (--client-cert-auth)
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


class SeedUser(_Model):
    """A user created at start-up by the built-in identity service."""

    name: str
    password: str
    project: str
    roles: list[str] = Field(default_factory=lambda: ["member", "reader"])
    domain: str = "Default"


class IdentityConfig(_Model):
    """How requests are authenticated."""

    # builtin: Plexus serves a Keystone v3 subset under /identity/v3;
    # keystone: tokens are validated against an existing Keystone;
    # none: no authentication (development only): every request is admin of ``noauth_project``.
    mode: Literal["builtin", "keystone", "none"] = "builtin"
    token_secret: str = "change-me-plexus-token-secret"
    token_ttl: int = 4 * 3600
    region: str = "RegionOne"
    projects: list[str] = Field(default_factory=lambda: ["admin", "demo", "alt_demo"])
    users: list[SeedUser] = Field(default_factory=lambda: [
        SeedUser(name="admin", password="secret", project="admin", roles=["admin", "member", "reader"]),
        SeedUser(name="demo", password="secret", project="demo"),
        SeedUser(name="alt_demo", password="secret", project="alt_demo"),
    ])
    # keystone mode: where Keystone is, and the service credentials used to validate tokens
    keystone_url: str | None = None
    service_user: str | None = None
    service_password: str | None = None
    service_project: str | None = None
    service_domain: str = "Default"
    noauth_project: str = "admin"


class NetworkConfig(_Model):
    """Segment ranges, MAC base and MTU defaults."""

    vni_ranges: list[tuple[int, int]] = Field(default_factory=lambda: [(1001, 16000)])
    vlan_ranges: dict[str, list[tuple[int, int]]] = Field(
        default_factory=lambda: {"physnet1": [(100, 299)]})
    flat_networks: list[str] = Field(default_factory=lambda: ["physnet1"])
    default_network_type: Literal["vxlan", "vlan", "flat"] = "vxlan"
    base_mac: str = "fa:16:3e:00:00:00"
    physical_mtu: int = 1500
    vxlan_overhead: int = 50
    # SNAT spread over the chassis: source ports on a router's gateway IP are leased in
    # aligned blocks of snat_block_size ports from this inclusive range
    snat_port_range: tuple[int, int] = (1024, 65535)
    snat_block_size: int = 64
    # how many gateway-capable chassis each router with a gateway is scheduled on
    # (0 = all of them)
    gateway_chassis_per_router: int = 0


class LimitsConfig(_Model):
    """Request limits (Neutron's defaults): bodies above ``max_body_bytes`` get 413, lists
    longer than these get 400."""

    max_body_bytes: int = 1024 * 1024
    max_tags: int = 50
    max_allowed_address_pairs: int = 10
    max_subnet_host_routes: int = 20
    max_dns_nameservers: int = 5
    max_fixed_ips_per_port: int = 5


class QuotaConfig(_Model):
    """Default per-project quotas (Neutron's defaults; -1 = unlimited)."""

    network: int = 100
    subnet: int = 100
    port: int = 500
    router: int = 10
    floatingip: int = 50
    security_group: int = 10
    security_group_rule: int = 100


class Config(_Model):
    """The whole configuration of a server (and of the tools that start one)."""

    server: ServerConfig = Field(default_factory=ServerConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    quotas: QuotaConfig = Field(default_factory=QuotaConfig)


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Read the YAML file at ``path`` (or $PLEXUS_CONFIG); defaults when neither is given."""
    path = path or os.environ.get("PLEXUS_CONFIG")
    if not path:
        return Config()
    data = yaml.safe_load(Path(path).read_text()) or {}
    return Config.model_validate(data)
