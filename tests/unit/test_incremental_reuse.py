"""What the incremental compiler recompiles on the port-up path: a view rebuilt from an
unchanged catalog (new dicts, equal values) recompiles nothing; a VIF plugged for a port
already bound here recompiles only its network's part and the whole-view units that
read the VIFs, and the flows stay those of the full compile."""

from __future__ import annotations

from plexus.agent import view as views
from plexus.model.catalog import Catalog
from plexus.pipeline.compile import compile_view
from plexus.pipeline.incremental import SHARED, WHOLE, IncrementalCompiler
from tests.golden.l3_reference import TUNNEL_IP, objects
from tests.property.test_incremental import facts

HERE = "hv1"


def build(catalog, vif_ofports):
    f = facts(catalog, HERE)
    f["vif_ofports"] = dict(vif_ofports)
    return views.build(catalog, HERE, TUNNEL_IP[HERE], **f)


def test_an_equal_view_recompiles_nothing_and_a_plug_only_its_network():
    catalog, problems = Catalog.from_wire(objects())
    assert not problems
    local = sorted(catalog.ports_by_chassis.of(HERE))
    assert len(local) >= 2
    ports = catalog.objects["ports"]
    plugged = {p: i + 1 for i, p in enumerate(local[1:])}
    compiler = IncrementalCompiler()
    compiler.compile(build(catalog, plugged))

    again = compiler.compile(build(catalog, plugged))        # every dict made afresh
    assert not again and again.recompiled == []

    first = local[0]
    now = {**plugged, first: 99}
    view = build(catalog, now)
    delta = compiler.compile(view)
    assert delta.added
    assert {name for _, name in delta.recompiled} <= {ports[first].network_id, WHOLE, SHARED}
    assert sorted(map(str, compiler.flows())) == sorted(map(str, compile_view(view)))

    back = compiler.compile(build(catalog, plugged))          # unplugged again
    assert sorted(map(str, back.removed)) == sorted(map(str, delta.added))
    assert sorted(map(str, compiler.flows())) == sorted(
        map(str, compile_view(build(catalog, plugged))))
