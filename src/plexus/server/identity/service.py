"""Identity data in the store: domains, projects, users, roles and role assignments.

Everything lives under ``/plexus/identity/`` as JSON. Names are unique through index
keys written in the same compare-and-swap transaction as the object, so two servers
creating (or seeding) the same name at once end up with one object.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import uuid
from typing import Any, Iterable
from urllib.parse import quote

import orjson

from plexus.config import IdentityConfig
from plexus.server.identity.context import Unauthorized
from plexus.server.identity.keys import KeyRing, load_keys, reload_keys
from plexus.server.identity.revoke import IdentityWatcher, RevocationIndex, revocation_put
from plexus.server.identity.tokens import TokenCodec, TokenPayload
from plexus.store.contract import Compare, Delete, KeyValue, Put, Store

PREFIX = "/plexus/identity/"
DEFAULT_DOMAIN = {"id": "default", "name": "Default", "description": "The default domain",
                  "enabled": True, "tags": [], "options": {}}
BUILTIN_ROLES = ("admin", "member", "reader")
_KINDS = ("projects", "users", "roles")
_MUTABLE = {
    "projects": {"name", "description", "enabled", "tags", "options"},
    "users": {"name", "enabled", "default_project_id", "description", "email", "options"},
    "roles": {"name", "description", "options"},
}


class IdentityError(Exception):
    """A request the identity service refuses; carries the HTTP status and title."""

    status = 400
    title = "Bad Request"


class NotFound(IdentityError):
    """The named object does not exist."""

    status = 404
    title = "Not Found"


class Conflict(IdentityError):
    """A name is already taken."""

    status = 409
    title = "Conflict"


def hash_password(password: str) -> str:
    """A salted scrypt hash of ``password`` as one self-describing string."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    encode = base64.b64encode
    return f"scrypt$16384$8$1${encode(salt).decode()}${encode(digest).decode()}"


_DUMMY_HASH: str | None = None


def dummy_hash() -> str:
    """A hash no password matches, checked for unknown users so timing reveals nothing."""
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hash_password(secrets.token_urlsafe(32))
    return _DUMMY_HASH


def check_password(password: str, encoded: str) -> bool:
    """True when ``password`` matches a hash made by ``hash_password``."""
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt),
                             n=int(n), r=int(r), p=int(p), dklen=32)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


def _key(kind: str, obj_id: str) -> str:
    return f"{PREFIX}{kind}/{obj_id}"


def _name_key(kind: str, name: str, domain_id: str | None) -> str:
    scope = "" if kind == "roles" else quote(domain_id or "", safe="") + "/"
    return f"{PREFIX}names/{kind}/{scope}{quote(name, safe='')}"


def _assignment_key(project_id: str, user_id: str, role_id: str) -> str:
    return f"{PREFIX}assignments/{project_id}/{user_id}/{role_id}"


def _load(kv: KeyValue | None) -> dict | None:
    return orjson.loads(kv.value) if kv is not None else None


class IdentityService:
    """CRUD over identity objects in the store, password checks, signing keys and token
    revocation (events written with each change that takes access away)."""

    def __init__(self, store: Store, config: IdentityConfig | None = None):
        self.store = store
        self.config = config or IdentityConfig()
        self.revocations = RevocationIndex(self.config.token_ttl)
        self._codec: TokenCodec | None = None
        self.watcher: IdentityWatcher | None = None
        self._key_file_stamp: tuple | None = None
        self.throttle = None        # LoginThrottle and HashPool of the identity routes
        self.hash_pool = None

    # Signing keys and revocation.

    @property
    def codec(self) -> TokenCodec:
        """The token codec over the installation's keys (bootstrapped on first use)."""
        if self._codec is None:
            self._codec = TokenCodec(KeyRing(load_keys(self.config, self.store)),
                                     self.config.token_ttl)
            self._key_file_stamp = self._stamp()
        return self._codec

    def _stamp(self) -> tuple | None:
        if not self.config.key_file:
            return None
        try:
            st = os.stat(self.config.key_file)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def reload_keys(self) -> None:
        """Re-read the keys (after a rotation by another server, or a key file change)."""
        keys = reload_keys(self.config, self.store)
        if keys:
            self.codec.keys.replace(keys)

    def _poll_key_file(self) -> None:
        stamp = self._stamp()
        if stamp is not None and stamp != self._key_file_stamp:
            self._key_file_stamp = stamp
            self.reload_keys()

    def start(self) -> "IdentityService":
        """Bootstrap the keys and follow revocation events and key changes in the store."""
        self.codec
        if self.watcher is None:
            self.watcher = IdentityWatcher(
                self.store, self.revocations, on_keys=self.reload_keys,
                poll_keys=self._poll_key_file if self.config.key_file else None).start()
        return self

    def stop(self) -> None:
        """Stop following the store, and the identity routes' hash pool."""
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None
        if self.hash_pool is not None:
            self.hash_pool.close()

    def verify(self, token: str) -> TokenPayload:
        """The payload of a valid, unrevoked token; raises Unauthorized."""
        payload = self.codec.verify(token)
        if self.revocations.revoked(payload):
            raise Unauthorized("token revoked")
        return payload

    def _revocation(self, **criteria: str | None) -> Put:
        return revocation_put(self.store, self.config.token_ttl, **criteria)

    def _commit(self, compares: list, ops: list) -> bool:
        """Run a transaction; index the revocation events it wrote here at once."""
        result = self.store.txn(compares, ops)
        if result.succeeded:
            for op in ops:
                if isinstance(op, Put) and op.key.startswith("/plexus/identity/revocations/"):
                    self.revocations.add(orjson.loads(op.value), result.revision)
        return result.succeeded

    # Domains: only the Default domain exists.

    def get_domain(self, domain_id: str) -> dict:
        """The domain with this id; raises NotFound."""
        if domain_id != DEFAULT_DOMAIN["id"]:
            raise NotFound(f"Could not find domain: {domain_id}.")
        return dict(DEFAULT_DOMAIN)

    def list_domains(self, name: str | None = None) -> list[dict]:
        """All domains, optionally only the one called ``name``."""
        return [dict(DEFAULT_DOMAIN)] if name in (None, DEFAULT_DOMAIN["name"]) else []

    def resolve_domain(self, ref: dict | None) -> dict:
        """The domain a ``{"id": ...}`` or ``{"name": ...}`` reference names (Default if none)."""
        if not ref:
            return dict(DEFAULT_DOMAIN)
        if "id" in ref:
            return self.get_domain(ref["id"])
        found = self.list_domains(ref.get("name"))
        if not found:
            raise NotFound(f"Could not find domain: {ref.get('name')}.")
        return found[0]

    # Generic objects (projects, users, roles).

    def get(self, kind: str, obj_id: str) -> dict:
        """The object of ``kind`` with this id; raises NotFound."""
        obj = _load(self.store.get(_key(kind, obj_id)))
        if obj is None:
            raise NotFound(f"Could not find {kind[:-1]}: {obj_id}.")
        return obj

    def find(self, kind: str, name: str, domain_id: str | None = "default") -> dict | None:
        """The object of ``kind`` called ``name`` (in ``domain_id``), or None."""
        kv = self.store.get(_name_key(kind, name, domain_id))
        return _load(self.store.get(_key(kind, kv.value.decode()))) if kv else None

    def list(self, kind: str, **filters: Any) -> list[dict]:
        """Objects of ``kind`` whose fields equal every non-None filter."""
        kvs, _ = self.store.range(f"{PREFIX}{kind}/")
        wanted = {k: v for k, v in filters.items() if v is not None}
        objs = (orjson.loads(kv.value) for kv in kvs)
        return [o for o in objs if all(o.get(k) == v for k, v in wanted.items())]

    def _create(self, kind: str, obj: dict) -> dict:
        name_key = _name_key(kind, obj["name"], obj.get("domain_id"))
        result = self.store.txn(
            [Compare(name_key, 0)],
            [Put(name_key, obj["id"].encode()), Put(_key(kind, obj["id"]), orjson.dumps(obj))])
        if not result.succeeded:
            raise Conflict(f"Conflict occurred attempting to store {kind[:-1]} - "
                           f"Duplicate entry found with name {obj['name']}.")
        return obj

    def update(self, kind: str, obj_id: str, changes: dict) -> dict:
        """Apply ``changes`` to an object (renames keep names unique); returns it."""
        unknown = set(changes) - _MUTABLE[kind] - ({"password"} if kind == "users" else set())
        if unknown:
            raise IdentityError(f"Invalid input for field(s): {', '.join(sorted(unknown))}.")
        while True:
            kv = self.store.get(_key(kind, obj_id))
            if kv is None:
                raise NotFound(f"Could not find {kind[:-1]}: {obj_id}.")
            obj = orjson.loads(kv.value)
            new = {**obj, **{k: v for k, v in changes.items() if k != "password"}}
            if "password" in changes:
                new["password_hash"] = hash_password(changes["password"])
            compares, ops = [Compare(kv.key, kv.mod_revision)], [Put(kv.key, orjson.dumps(new))]
            disabled = obj.get("enabled", True) and not new.get("enabled", True)
            if kind == "users" and (disabled or "password" in changes):
                ops.append(self._revocation(user_id=obj_id))
            elif kind == "projects" and disabled:
                ops.append(self._revocation(project_id=obj_id))
            if new["name"] != obj["name"]:
                new_name = _name_key(kind, new["name"], new.get("domain_id"))
                compares.append(Compare(new_name, 0))
                ops += [Put(new_name, obj_id.encode()),
                        Delete(_name_key(kind, obj["name"], obj.get("domain_id")))]
                if self.find(kind, new["name"], new.get("domain_id")) is not None:
                    raise Conflict(f"Conflict occurred attempting to store {kind[:-1]} - "
                                   f"Duplicate entry found with name {new['name']}.")
            if self._commit(compares, ops):
                return new

    def delete(self, kind: str, obj_id: str) -> None:
        """Delete an object, its name and every role assignment that mentions it."""
        obj = self.get(kind, obj_id)
        position = {"projects": 0, "users": 1, "roles": 2}[kind]
        ops: list = [Delete(_key(kind, obj_id)),
                     Delete(_name_key(kind, obj["name"], obj.get("domain_id")))]
        ops += [Delete(_assignment_key(*a)) for a in self.assignments() if a[position] == obj_id]
        ops.append(self._revocation(**{f"{kind[:-1]}_id": obj_id}))
        self._commit([], ops)

    # Typed constructors.

    def create_project(self, name: str, domain_id: str = "default", description: str = "",
                       enabled: bool = True, tags: Iterable[str] = ()) -> dict:
        """Create a project; raises Conflict when the name is taken in the domain."""
        self.get_domain(domain_id)
        return self._create("projects", {
            "id": uuid.uuid4().hex, "name": name, "domain_id": domain_id,
            "description": description, "enabled": enabled, "parent_id": domain_id,
            "is_domain": False, "tags": list(tags), "options": {}})

    def create_user(self, name: str, password: str | None, domain_id: str = "default",
                    enabled: bool = True, **extra: Any) -> dict:
        """Create a user with a hashed password; raises Conflict when the name is taken."""
        self.get_domain(domain_id)
        unknown = set(extra) - _MUTABLE["users"]
        if unknown:
            raise IdentityError(f"Invalid input for field(s): {', '.join(sorted(unknown))}.")
        return self._create("users", {
            "id": uuid.uuid4().hex, "name": name, "domain_id": domain_id, "enabled": enabled,
            "password_expires_at": None, "options": {}, **extra,
            "password_hash": hash_password(password) if password else None})

    def create_role(self, name: str, description: str | None = None) -> dict:
        """Create a global role; raises Conflict when the name is taken."""
        return self._create("roles", {"id": uuid.uuid4().hex, "name": name, "domain_id": None,
                                      "description": description, "options": {}})

    def authenticate(self, user: dict | None, password: str) -> bool:
        """True when ``user`` exists, is enabled and ``password`` is theirs.

        Always runs one scrypt hash (against a dummy for an unknown user, a disabled
        user or one without a password), so the time taken does not tell them apart."""
        encoded = (user or {}).get("password_hash") or dummy_hash()
        ok = check_password(password, encoded)
        return bool(ok and user and user.get("enabled", True) and user.get("password_hash"))

    # Role assignments (project scope only).

    def grant(self, project_id: str, user_id: str, role_id: str) -> None:
        """Give the user the role on the project (idempotent)."""
        for kind, obj_id in (("projects", project_id), ("users", user_id), ("roles", role_id)):
            self.get(kind, obj_id)
        key = _assignment_key(project_id, user_id, role_id)
        self.store.txn([Compare(key, 0)], [Put(key, b"{}")])

    def revoke(self, project_id: str, user_id: str, role_id: str) -> None:
        """Take the role away; raises NotFound when it was not granted."""
        if not self.has_role(project_id, user_id, role_id):
            raise NotFound(f"Could not find role assignment with role: {role_id}, "
                           f"user or group: {user_id}, project, domain, or system: {project_id}.")
        self._commit([], [Delete(_assignment_key(project_id, user_id, role_id)),
                          self._revocation(user_id=user_id, project_id=project_id)])

    def has_role(self, project_id: str, user_id: str, role_id: str) -> bool:
        """True when the user holds the role on the project."""
        return self.store.get(_assignment_key(project_id, user_id, role_id)) is not None

    def assignments(self, project_id: str | None = None, user_id: str | None = None,
                    role_id: str | None = None) -> list[tuple[str, str, str]]:
        """(project id, user id, role id) triples matching every given filter."""
        prefix = f"{PREFIX}assignments/" + (f"{project_id}/" if project_id else "")
        kvs, _ = self.store.range(prefix)
        triples = (tuple(kv.key[len(PREFIX) + 12:].split("/")) for kv in kvs)
        return [t for t in triples
                if (user_id is None or t[1] == user_id) and (role_id is None or t[2] == role_id)]

    def roles_on(self, project_id: str, user_id: str) -> list[dict]:
        """The roles the user holds on the project."""
        roles = []
        for _, _, role_id in self.assignments(project_id=project_id, user_id=user_id):
            try:
                roles.append(self.get("roles", role_id))
            except NotFound:
                pass
        return roles

    def projects_of(self, user_id: str) -> list[dict]:
        """The projects on which the user holds any role."""
        ids = sorted({p for p, _, _ in self.assignments(user_id=user_id)})
        projects = []
        for project_id in ids:
            try:
                projects.append(self.get("projects", project_id))
            except NotFound:
                pass
        return projects

    # Token revocation by audit id (DELETE /auth/tokens).

    def revoke_token(self, audit_id: str) -> None:
        """Revoke the token with this audit id (an event, like any other revocation)."""
        self._commit([], [self._revocation(audit_id=audit_id)])

    # Start-up.

    def _ensure(self, kind: str, name: str, create) -> dict:
        """The object called ``name``, created if absent; safe when servers race."""
        while True:
            found = self.find(kind, name, None if kind == "roles" else "default")
            if found is not None:
                return found
            try:
                return create()
            except Conflict:
                continue  # another server created it between our read and our write

    def seed(self, config: IdentityConfig) -> None:
        """Create the configured projects, roles, users and assignments if absent."""
        projects = {p: self._ensure("projects", p, lambda p=p: self.create_project(p))
                    for p in dict.fromkeys([*config.projects, *(u.project for u in config.users)])}
        role_names = dict.fromkeys([*BUILTIN_ROLES, *(r for u in config.users for r in u.roles)])
        roles = {r: self._ensure("roles", r, lambda r=r: self.create_role(r)) for r in role_names}
        for seed in config.users:
            domain = self.resolve_domain({"name": seed.domain})
            project = projects[seed.project]
            user = self._ensure("users", seed.name, lambda s=seed, d=domain: self.create_user(
                s.name, s.password, d["id"], default_project_id=project["id"]))
            for role in seed.roles:
                self.grant(project["id"], user["id"], roles[role]["id"])
