"""What the registry promises of a partitioned stage: its flows are exactly the union of
its per-network compiler over each local network's part of the view (and the part with
no network) and of its whole-view compiler — on every chassis of the reference labs."""

from __future__ import annotations

import pytest

from plexus.pipeline.compile import compilers
from plexus.pipeline.incremental import SHARED, part, split
from tests.golden import l3_reference
from tests.golden.acl_reference import KINDS
from tests.golden.acl_reference import view as acl_view
from tests.golden.reference import reference_view

VIEWS = {**{f"l3-{c}": (lambda c=c: l3_reference.view(c)) for c in l3_reference.CHASSIS},
         "reference": reference_view,
         **{f"acl-{k}": (lambda k=k: acl_view(*KINDS[k])) for k in KINDS}}
PARTITIONED = [(st, c) for st, c in compilers() if st.partitioned]


def test_the_stages_that_say_so_are_partitioned():
    names = {st.name for st, _ in PARTITIONED}
    assert {"port_security", "arp_responder", "dhcp", "egress_ct", "ingress_ct", "classify",
            "egress_acl", "ingress_acl", "l2_lookup", "output", "metadata",
            "egress_qos", "nd_responder"} == names


@pytest.mark.parametrize("name", sorted(VIEWS))
def test_a_partitioned_stage_is_the_union_of_its_parts(name):
    view = VIEWS[name]()
    nets = sorted({p.network_id for p in view.local_ports()})
    for stage, compiler in PARTITIONED:
        per_network, whole = split(stage, compiler)
        found = set()
        for net in [SHARED, *nets]:
            found |= {str(f) for f in per_network(part(view, net))}
        if whole is not None:
            found |= {str(f) for f in whole(view)}
        assert found == {str(f) for f in compiler(view)}, (name, stage.name)
