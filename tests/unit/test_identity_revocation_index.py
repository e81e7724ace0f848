"""The revocation index: which tokens an event revokes (by store revision, not clock),
and pruning once no token it could match can still be valid."""

from __future__ import annotations

from plexus.server.identity.revoke import RevocationIndex
from plexus.server.identity.tokens import TokenPayload


def token(revision: int, user: str = "u1", project: str | None = "p1",
          roles=(("r-member", "member"),), audit: str = "a1") -> TokenPayload:
    return TokenPayload(user_id=user, user_name=user, user_domain_id="default",
                        project_id=project, project_name=project,
                        project_domain_id="default" if project else None, roles=tuple(roles),
                        methods=("password",), issued_at=0.0, expires_at=2**40,
                        audit_id=audit, revision=revision)


def test_events_revoke_matching_tokens_issued_at_earlier_revisions():
    index = RevocationIndex(ttl=3600)
    index.add({"user_id": "u1", "revoked_at": 100.0}, revision=10)
    assert index.revoked(token(9)) and not index.revoked(token(10))
    assert not index.revoked(token(5, user="u2"))
    index.add({"project_id": "p2", "revoked_at": 100.0}, revision=20)
    assert index.revoked(token(19, user="u3", project="p2"))
    assert not index.revoked(token(19, user="u3", project="p1"))
    assert not index.revoked(token(19, user="u3", project=None))
    index.add({"user_id": "u4", "project_id": "p4", "revoked_at": 100.0}, revision=30)
    assert index.revoked(token(29, user="u4", project="p4"))
    assert not index.revoked(token(29, user="u4", project="p5"))
    index.add({"role_id": "r-admin", "revoked_at": 100.0}, revision=40)
    assert index.revoked(token(39, user="u5", roles=(("r-admin", "admin"),)))
    assert not index.revoked(token(39, user="u5"))
    index.add({"audit_id": "a9", "revoked_at": 100.0}, revision=50)
    assert index.revoked(token(99, user="u6", audit="a9"))       # one token, whenever issued
    # an older event for the same user does not lower the newest one's revision
    index.add({"user_id": "u1", "revoked_at": 90.0}, revision=5)
    assert index.revoked(token(9))
    assert len(index) == 5


def test_prune_forgets_events_older_than_the_token_lifetime():
    index = RevocationIndex(ttl=3600)
    index.add({"user_id": "old", "revoked_at": 1000.0}, revision=1)
    index.add({"user_id": "new", "revoked_at": 5000.0}, revision=2)
    assert index.prune(now=1000.0 + 3600 + 59) == 0
    assert index.prune(now=1000.0 + 3600 + 61) == 1
    assert not index.revoked(token(0, user="old")) and index.revoked(token(0, user="new"))
