"""Security group races made deterministic: a store that runs a competing request at the
exact moment a transaction is about to commit (the store is the only thing faked)."""

from __future__ import annotations

import pytest

from plexus.api import errors
from plexus.api.services import build_services
from plexus.api.services.base import model_key
from plexus.config import Config
from plexus.server.identity.context import RequestContext
from plexus.store import Delete, Put
from plexus.store.sqlite import SqliteStore

DEMO = RequestContext("u1", "demo", "p-demo", "demo", "default", frozenset({"member"}))


class CuttingInStore(SqliteStore):
    """Runs ``cut_in()`` once, just before the first commit whose ops satisfy ``when``."""

    when = None
    cut_in = None

    def txn(self, compares, ops):
        """Let the competing request go first, then commit as asked."""
        if self.when is not None and self.when(ops):
            self.when, cut_in = None, self.cut_in
            cut_in()
        return super().txn(compares, ops)


@pytest.fixture
def svc():
    """Services over an in-memory store that can be cut in on."""
    store = CuttingInStore(":memory:")
    yield build_services(store, Config())
    store.close()


def writes(prefix: str, kind=Put):
    """A ``when`` that matches a transaction writing (or deleting) under ``prefix``."""
    return lambda ops: any(isinstance(op, kind) and op.key.startswith(prefix) for op in ops)


def test_default_group_race_makes_one_group(svc):
    groups = svc["security-groups"]
    inner = []
    svc.store.when = writes("/plexus/alloc/default-sg/")
    svc.store.cut_in = lambda: inner.append(groups.ensure_default("p-new"))
    outer = groups.ensure_default("p-new")
    assert inner == [outer]
    defaults = [g for g in groups.all() if g["project_id"] == "p-new"]
    assert len(defaults) == 1 and len(defaults[0]["security_group_rules"]) == 4


def test_duplicate_rule_race_is_a_409_naming_the_winner(svc):
    group = svc["security-groups"].create(DEMO, {"name": "g"})
    rules = svc["security-group-rules"]
    body = {"security_group_id": group["id"], "direction": "ingress", "protocol": "tcp"}
    inner = []
    svc.store.when = writes(model_key("security-group-rules", ""))
    svc.store.cut_in = lambda: inner.append(rules.create(DEMO, dict(body, protocol="6")))
    with pytest.raises(errors.Conflict) as exc:
        rules.create(DEMO, body)
    assert exc.value.message == (f"Security group rule already exists. Rule id is "
                                 f"{inner[0]['id']}.")
    assert len(svc["security-groups"].get(group["id"])[0]["security_group_rules"]) == 3


def test_port_cannot_join_a_group_deleted_while_it_was_planned(svc):
    group = svc["security-groups"].create(DEMO, {"name": "g"})
    net = svc["networks"].create(DEMO, {"name": "n"})
    svc.store.when = writes(model_key("ports", ""))
    svc.store.cut_in = lambda: svc["security-groups"].delete(DEMO, group["id"])
    with pytest.raises(errors.NotFound):
        svc["ports"].create(DEMO, {"network_id": net["id"], "security_groups": [group["id"]]})
    assert svc["ports"].all() == []


def test_port_cannot_slip_in_while_its_group_is_being_deleted(svc):
    group = svc["security-groups"].create(DEMO, {"name": "g"})
    net = svc["networks"].create(DEMO, {"name": "n"})
    port = {"network_id": net["id"], "security_groups": [group["id"]]}
    failed = []

    def port_create():
        try:
            svc["ports"].create(DEMO, port)
        except errors.Conflict as exc:
            failed.append(exc.type_name)
    svc.store.when = writes(model_key("security-groups", group["id"]), Delete)
    svc.store.cut_in = port_create
    svc["security-groups"].delete(DEMO, group["id"])
    assert failed == ["ConcurrentModification"]
    assert svc["ports"].all() == []


def test_rule_cannot_name_a_remote_group_deleted_meanwhile(svc):
    groups, rules = svc["security-groups"], svc["security-group-rules"]
    group = groups.create(DEMO, {"name": "g"})
    remote = groups.create(DEMO, {"name": "r"})
    svc.store.when = writes(model_key("security-group-rules", ""))
    svc.store.cut_in = lambda: groups.delete(DEMO, remote["id"])
    with pytest.raises(errors.NotFound):
        rules.create(DEMO, {"security_group_id": group["id"], "direction": "ingress",
                            "remote_group_id": remote["id"]})
    assert not [r for r in rules.all() if r["remote_group_id"] == remote["id"]]
    assert len(groups.get(group["id"])[0]["security_group_rules"]) == 2
