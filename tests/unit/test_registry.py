"""The stage registry keeps its promises."""

import pytest

from plexus.pipeline.flows import Flow, Output
from plexus.pipeline.registry import (
    BY_NAME, REGISTERS, STAGES, PipelineViolation, check_flow,
)


def test_tables_unique_and_increasing():
    tables = [s.table for s in STAGES]
    assert tables == sorted(tables) and len(set(tables)) == len(tables)


def test_gotos_point_forward_to_declared_stages():
    for st in STAGES:
        for nxt in st.next:
            assert nxt in BY_NAME, f"{st.name} -> undeclared {nxt}"
            assert BY_NAME[nxt].table > st.table, f"{st.name} -> {nxt} goes backwards"


def test_one_owner_per_stage_and_registers_distinct():
    owners = [s.owner for s in STAGES]
    assert len(set(owners)) == len(owners)
    fields = [r.field for r in REGISTERS.values()]
    assert len(set(fields)) == len(fields)


def test_check_flow_rejects_undeclared_things():
    ok = Flow.make("l2_lookup", 10, {"net": 1, "eth_dst": "fa:16:3e:00:00:01"},
                   goto="ingress_ct")
    check_flow(ok, owner=BY_NAME["l2_lookup"].owner)
    with pytest.raises(PipelineViolation):
        check_flow(Flow.make("nowhere", 1))
    with pytest.raises(PipelineViolation):
        check_flow(Flow.make("l2_lookup", 1, {"tcp_dst": 22}))
    with pytest.raises(PipelineViolation):
        check_flow(Flow.make("l2_lookup", 1, goto="classify"))
    with pytest.raises(PipelineViolation):
        check_flow(Flow.make("output", 1, actions=[Output(1)]), owner="someone.else")
