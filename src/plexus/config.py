"""Configuration: one typed model, loaded from YAML (and PLEXUS_CONFIG)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator


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


# The seeded users' password on a development install. A server that listens on
# anything but loopback refuses to start in builtin mode while a seeded user still has
# it (see plexus.server.identity.keys.check_identity_config): set real passwords.
DEV_PASSWORD = "secret"


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
    # Token signing keys (builtin mode). Normally neither is set: the first server
    # generates a random key into the store and every server sharing the store uses it
    # (rotate with `plexus-server --rotate-key`). Or a key file: one key per line, the
    # last signs, all verify; created mode 0600 with a random key when absent. Or one
    # key given here. Configured keys must be at least 32 bytes.
    key_file: str | None = None
    token_secret: str | None = None
    token_ttl: int = 4 * 3600
    # Login throttling (Keystone's lockout): after this many failed logins a user name
    # (source address) is refused for lockout_duration seconds, doubling with each
    # further failure up to lockout_max_duration; failures are forgotten lockout_window
    # seconds after the last one. 0 disables the check.
    lockout_failure_attempts: int = 5
    lockout_source_failure_attempts: int = 30
    lockout_duration: float = 1.0
    lockout_max_duration: float = 300.0
    lockout_window: float = 300.0
    # Password hashing (scrypt) runs in this many threads (0: half the CPU cores, at
    # least one), with at most hash_queue logins waiting (more are answered 503), so a
    # login flood cannot starve the API of threads or cores.
    hash_workers: int = 0
    hash_queue: int = 32
    region: str = "RegionOne"
    projects: list[str] = Field(default_factory=lambda: ["admin", "demo", "alt_demo"])
    users: list[SeedUser] = Field(default_factory=lambda: [
        SeedUser(name="admin", password=DEV_PASSWORD, project="admin",
                 roles=["admin", "member", "reader"]),
        SeedUser(name="demo", password=DEV_PASSWORD, project="demo"),
        SeedUser(name="alt_demo", password=DEV_PASSWORD, project="alt_demo"),
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
    # seconds a dead chassis' SNAT blocks stay its own (and its return flows stay on the
    # gateways) before another chassis may lease them: longer than the longest conntrack
    # timeout of router zones (TCP established, 7200 s), so no session that could still
    # be alive on the dead chassis' datapath shares ports with a new owner's
    snat_quarantine: float = Field(default=7260.0, ge=0)

    # blocks one chassis may hold on one router's gateway address (agents lease more as
    # their blocks fill, up to this; past it new connections drop, counted, never leave
    # un-NATed): at most snat_max_blocks × snat_block_size connections per chassis,
    # router, protocol and destination
    snat_max_blocks: int = Field(256, ge=1, le=1024)
    # how many gateway-capable chassis each router with a gateway is scheduled on
    # (0 = all of them)
    gateway_chassis_per_router: int = 0
    # the cloud's DNS domain (Neutron's [DEFAULT] dns_domain): ports' dns_assignment and
    # what the host DHCP says (domain name, DHCPv6 search list). While it is the default
    # openstacklocal. (or empty), ports keep no dns_name (as Neutron); a final dot is added
    dns_domain: str = "openstacklocal."

    @field_validator("dns_domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        from plexus.model import dns
        try:
            return dns.check_dns_domain(dns.domain_setting(value))
        except dns.BadName as exc:
            raise ValueError(str(exc)) from None


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


class NovaConfig(_Model):
    """Where and how the server tells Nova about ports (Neutron's ``[nova]`` section and
    its ``notify_nova_on_port_*`` / ``send_events_interval`` options). Nothing is sent
    while ``auth_url`` is unset. The password comes from this file, never from code."""

    # keystoneauth password plugin: the service user (Nova's os-server-external-events
    # API needs the admin or service role)
    auth_url: str | None = None
    username: str | None = None
    password: str | None = None
    project_name: str | None = None
    user_domain_name: str = "Default"
    project_domain_name: str = "Default"
    region_name: str | None = None
    # which catalog endpoint of the compute service: public, internal or admin
    endpoint_type: Literal["public", "internal", "admin"] = "public"
    # Nova's URL (e.g. http://nova:8774/v2.1) when the catalog has no compute service
    endpoint_override: str | None = None
    cafile: str | None = None
    insecure: bool = False
    timeout: float = Field(default=10.0, gt=0)
    notify_nova_on_port_status_changes: bool = True
    notify_nova_on_port_data_changes: bool = True
    # the first event goes at once; those that come within this many seconds after a
    # send go together in the next request (Neutron's send_events_interval)
    send_events_interval: float = Field(default=2.0, ge=0)
    # a failed send (unreachable, 5xx, 401) is retried after retry_initial seconds,
    # doubling up to retry_max; events wait in a queue of at most max_queue (beyond it
    # the oldest are dropped, logged and counted)
    retry_initial: float = Field(default=0.5, gt=0)
    retry_max: float = Field(default=30.0, gt=0)
    max_queue: int = Field(default=10000, ge=1)
    max_batch: int = Field(default=200, ge=1)


class Config(_Model):
    """The whole configuration of a server (and of the tools that start one)."""

    server: ServerConfig = Field(default_factory=ServerConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    quotas: QuotaConfig = Field(default_factory=QuotaConfig)
    nova: NovaConfig = Field(default_factory=NovaConfig)


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Read the YAML file at ``path`` (or $PLEXUS_CONFIG); defaults when neither is given."""
    path = path or os.environ.get("PLEXUS_CONFIG")
    if not path:
        return Config()
    data = yaml.safe_load(Path(path).read_text()) or {}
    return Config.model_validate(data)
