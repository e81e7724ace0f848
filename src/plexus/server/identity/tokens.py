"""Stateless signed tokens: any server sharing the installation's keys validates any token.

A token is ``base64url(payload) "." base64url(HMAC-SHA256(key, base64url(payload)))``
where the payload is a compact JSON array and the key the newest of the ring
(``keys.py``); every key of the ring verifies. Nothing is stored per token, so
validation costs one HMAC per key tried, one JSON parse and a look-up in the
revocation index. A token carries the store revision it was issued at, which the
revocation index compares with the revision of each revocation event.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import time
from dataclasses import dataclass

import orjson

from plexus.server.identity.context import RequestContext, Unauthorized
from plexus.server.identity.keys import KeyRing

_VERSION = 2


@dataclass(frozen=True, slots=True)
class TokenPayload:
    """What a token says: who, scoped to which project, with which roles, until when."""

    user_id: str
    user_name: str
    user_domain_id: str
    project_id: str | None
    project_name: str | None
    project_domain_id: str | None
    roles: tuple[tuple[str, str], ...]  # (role id, role name)
    methods: tuple[str, ...]
    issued_at: float
    expires_at: int
    audit_id: str
    revision: int = 0       # the store revision the token was issued at

    def context(self) -> RequestContext:
        """The request context this token grants."""
        return RequestContext(
            user_id=self.user_id, user_name=self.user_name,
            project_id=self.project_id or "", project_name=self.project_name or "",
            domain_id=self.project_domain_id or self.user_domain_id,
            roles=frozenset(name for _, name in self.roles))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenCodec:
    """Issues tokens signed with the ring's newest key; verifies with any of its keys."""

    def __init__(self, keys: KeyRing, ttl: int):
        self.keys = keys
        self.ttl = ttl

    @staticmethod
    def _sign(key: bytes, body: bytes) -> str:
        return _b64encode(hmac.digest(key, body, "sha256"))

    def issue(self, *, user_id: str, user_name: str, user_domain_id: str,
              project_id: str | None = None, project_name: str | None = None,
              project_domain_id: str | None = None,
              roles: tuple[tuple[str, str], ...] = (), methods: tuple[str, ...] = ("password",),
              now: float | None = None, expires_at: int | None = None,
              audit_id: str | None = None, revision: int = 0) -> tuple[str, TokenPayload]:
        """A new token and its payload; expiry is ``now + ttl`` unless given. ``revision``
        is the store revision read before the identity data the token is based on."""
        issued = round(time.time() if now is None else now, 6)
        payload = TokenPayload(
            user_id=user_id, user_name=user_name, user_domain_id=user_domain_id,
            project_id=project_id, project_name=project_name,
            project_domain_id=project_domain_id, roles=tuple(roles), methods=tuple(methods),
            issued_at=issued,
            expires_at=expires_at if expires_at is not None else int(issued) + self.ttl,
            audit_id=audit_id or secrets.token_urlsafe(16), revision=revision)
        raw = orjson.dumps([
            _VERSION, payload.user_id, payload.user_name, payload.user_domain_id,
            payload.project_id, payload.project_name, payload.project_domain_id,
            [list(r) for r in payload.roles], list(payload.methods),
            payload.issued_at, payload.expires_at, payload.audit_id, payload.revision])
        body = _b64encode(raw)
        return f"{body}.{self._sign(self.keys.signing, body.encode('ascii'))}", payload

    def verify(self, token: str, now: float | None = None) -> TokenPayload:
        """The token's payload; raises Unauthorized if forged, garbled or expired."""
        if not token or not isinstance(token, str):
            raise Unauthorized("no token")
        body, dot, sig = token.partition(".")
        if not dot or not body.isascii() or not sig.isascii():
            raise Unauthorized("malformed token")
        signed = body.encode("ascii")
        if not any(hmac.compare_digest(self._sign(key, signed), sig)
                   for key in self.keys.verifying):
            raise Unauthorized("invalid token signature")
        try:
            fields = orjson.loads(_b64decode(body))
            (version, uid, uname, udom, pid, pname, pdom, roles, methods,
             issued, expires, audit, revision) = fields
            if version != _VERSION:
                raise ValueError("unknown token version")
            payload = TokenPayload(
                user_id=uid, user_name=uname, user_domain_id=udom, project_id=pid,
                project_name=pname, project_domain_id=pdom,
                roles=tuple((rid, rname) for rid, rname in roles), methods=tuple(methods),
                issued_at=float(issued), expires_at=int(expires), audit_id=audit,
                revision=int(revision))
        except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError) as exc:
            raise Unauthorized("malformed token") from exc
        if (time.time() if now is None else now) >= payload.expires_at:
            raise Unauthorized("token expired")
        return payload
