"""Token signing keys: generated per installation, shared through the store or a key file.

No key ships in code. On first start a server generates a random 32-byte key and
writes it to the store under ``/plexus/identity/keys/<n>`` with a compare-and-swap on
an absent key, so servers starting together agree on one key; every server sharing
the store reads the same ring. Alternatively ``identity.key_file`` names a file of
keys, one per line, created 0600 with a random key when absent.

Rotation adds a key: the newest key signs, every key in the ring verifies, so tokens
signed before a rotation stay valid until they expire. A key superseded longer than
the token lifetime ago can no longer have a valid token and is dropped.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import secrets
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from plexus.config import DEV_PASSWORD, Config, IdentityConfig
from plexus.store.contract import Compare, Delete, Put, Store

KEYS_PREFIX = "/plexus/identity/keys/"
MIN_KEY_BYTES = 32
KEY_BYTES = 32


class InvalidKeys(ValueError):
    """The configured keys are unusable (too short, unreadable, readable by others), or
    the identity configuration is unsafe to serve (a development password off loopback)."""


@dataclass(frozen=True)
class SigningKey:
    """One key of the ring: its number (rotation order), material and creation time."""

    number: int
    material: bytes
    created_at: float

    @property
    def hmac_key(self) -> bytes:
        """The HMAC key derived from the material (domain-separated from other uses)."""
        return hashlib.sha256(b"plexus-token-v2\0" + self.material).digest()

    @property
    def key_id(self) -> str:
        """A short public fingerprint, for logs and ``--rotate-key`` output."""
        return hashlib.sha256(b"plexus-key-id\0" + self.material).hexdigest()[:12]


class KeyRing:
    """The keys of an installation, newest first; replaced as a whole when keys change."""

    def __init__(self, keys: list[SigningKey]):
        self._lock = threading.Lock()
        self._keys: tuple[SigningKey, ...] = ()
        self._hmac: tuple[bytes, ...] = ()
        self.replace(keys)

    def replace(self, keys: list[SigningKey]) -> None:
        """Take a new set of keys (after a rotation elsewhere)."""
        if not keys:
            raise InvalidKeys("a key ring needs at least one key")
        ordered = tuple(sorted(keys, key=lambda k: k.number, reverse=True))
        with self._lock:
            self._keys = ordered
            self._hmac = tuple(k.hmac_key for k in ordered)

    @property
    def keys(self) -> tuple[SigningKey, ...]:
        """Every key, newest first."""
        return self._keys

    @property
    def signing(self) -> bytes:
        """The HMAC key of the newest key: the one that signs new tokens."""
        return self._hmac[0]

    @property
    def verifying(self) -> tuple[bytes, ...]:
        """The HMAC keys that verify (newest first)."""
        return self._hmac


# Keys in the store.

def _store_key(number: int) -> str:
    return f"{KEYS_PREFIX}{number:08d}"


def _decode(value: bytes, number: int) -> SigningKey:
    data = orjson.loads(value)
    return SigningKey(number, base64.b64decode(data["key"]), float(data["created_at"]))


def read_store_keys(store: Store) -> list[SigningKey]:
    """The keys held in the store (empty before the first start)."""
    kvs, _ = store.range(KEYS_PREFIX)
    return [_decode(kv.value, int(kv.key.rsplit("/", 1)[1])) for kv in kvs]


def _new_key_value() -> bytes:
    return orjson.dumps({"key": base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode(),
                         "created_at": time.time()})


def ensure_store_key(store: Store) -> list[SigningKey]:
    """The store's keys; generates the installation's first key if there is none.

    The first key is written only if absent (compare-and-swap), so servers that start
    together all end up with the one key that won."""
    keys = read_store_keys(store)
    if keys:
        return keys
    store.txn([Compare(_store_key(1), 0)], [Put(_store_key(1), _new_key_value())])
    return read_store_keys(store)


def rotate_store_key(store: Store, token_ttl: float, now: float | None = None) -> SigningKey:
    """Add a new signing key to the store; drop keys that can no longer verify any token.

    A key superseded more than ``token_ttl`` seconds ago signed only expired tokens."""
    now = time.time() if now is None else now
    while True:
        keys = sorted(read_store_keys(store), key=lambda k: k.number)
        number = keys[-1].number + 1 if keys else 1
        value = _new_key_value()
        stale = [old for old, newer in zip(keys, keys[1:]) if newer.created_at + token_ttl < now]
        result = store.txn([Compare(_store_key(number), 0)],
                           [Put(_store_key(number), value),
                            *(Delete(_store_key(k.number)) for k in stale)])
        if result.succeeded:
            return _decode(value, number)


# Keys in a file (or one configured key).

def _check_length(material: bytes, where: str) -> None:
    if len(material) < MIN_KEY_BYTES:
        raise InvalidKeys(f"{where}: a token signing key must be at least {MIN_KEY_BYTES} "
                          f"bytes (got {len(material)}); generate one with "
                          f"`python -c 'import secrets; print(secrets.token_urlsafe(48))'`")


def create_key_file(path: Path) -> None:
    """Create ``path`` with one random key, mode 0600; no-op if it already exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return      # another server on this machine created it first: use theirs
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(48) + "\n")


def read_key_file(path: Path) -> list[SigningKey]:
    """The keys of a key file: one per line, oldest first (the last line signs)."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InvalidKeys(f"{path}: key file is accessible by group or others "
                          f"(mode {stat.S_IMODE(mode):04o}); chmod 600 it")
    lines = [line.strip() for line in path.read_text().splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if not lines:
        raise InvalidKeys(f"{path}: no key in the key file")
    keys = []
    for number, line in enumerate(lines, start=1):
        material = line.encode()
        _check_length(material, f"{path} line {number}")
        keys.append(SigningKey(number, material, 0.0))
    return keys


def rotate_key_file(path: Path) -> SigningKey:
    """Append a new random key to the key file (it signs from now on)."""
    keys = read_key_file(path)
    line = secrets.token_urlsafe(48)
    with open(path, "a") as out:
        out.write(line + "\n")
    return SigningKey(len(keys) + 1, line.encode(), time.time())


def load_keys(config: IdentityConfig, store: Store) -> list[SigningKey]:
    """The installation's keys per the configuration: ``token_secret`` (one key),
    ``key_file`` (created if absent), or else the store (generated on first start).

    Raises InvalidKeys for a configured key shorter than 32 bytes."""
    if config.token_secret is not None:
        material = config.token_secret.encode()
        _check_length(material, "identity.token_secret")
        return [SigningKey(1, material, 0.0)]
    if config.key_file:
        path = Path(config.key_file)
        create_key_file(path)
        return read_key_file(path)
    return ensure_store_key(store)


def reload_keys(config: IdentityConfig, store: Store) -> list[SigningKey]:
    """Like ``load_keys`` without creating anything (for a running server)."""
    if config.token_secret is not None:
        return load_keys(config, store)
    if config.key_file:
        return read_key_file(Path(config.key_file))
    return read_store_keys(store)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_identity_config(config: Config) -> None:
    """Refuse (InvalidKeys) a builtin-mode server that would be reachable from other
    machines while a seeded user still has the development password."""
    if config.identity.mode != "builtin" or _loopback(config.server.host):
        return
    weak = [u.name for u in config.identity.users if u.password == DEV_PASSWORD]
    if weak:
        raise InvalidKeys(
            f"seeded user(s) {', '.join(weak)} still have the development password and the "
            f"server listens on {config.server.host}: set identity.users[].password (or "
            f"identity.users: [] and create users through the identity API)")
