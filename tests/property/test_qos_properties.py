"""QoS in the pipeline, over random policies and attachments on the reference world:

- each meter id names one spec wherever a flow names it, and belongs to one port and
  direction; every flow of a port with an egress limit in egress_qos passes its meter,
  its VIF's output flow passes its ingress meter, and only ports with a policy get any;
- a port's own policy wins over its network's;
- a policy's change recompiles only the parts (networks) whose bound ports enforce it,
  and the incremental flows still equal the full compile;
- the lowering's meter table (``flowdiff.Lowered``) is exactly the meters the desired
  flows name, after any sequence of removals and additions."""

from __future__ import annotations

import random
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from plexus.agent.flowdiff import Lowered
from plexus.model.objects import Limit, QosPolicy
from plexus.pipeline.compile import compile_view
from plexus.pipeline.flows import Meter
from plexus.pipeline.incremental import IncrementalCompiler
from plexus.pipeline.stages.common import bound_ports
from plexus.pipeline.stages.qos import meter_id, policy_of
from tests.golden.reference import reference_view

POLICIES = ["q1", "q2", "q3"]
SETTINGS = settings(max_examples=40, deadline=None)


def random_policy(ident: str, rnd: random.Random) -> QosPolicy:
    def limit():
        return Limit(rnd.choice([500, 1000, 8000]), rnd.choice([0, 100])) \
            if rnd.random() < 0.6 else None
    return QosPolicy(ident, egress=limit(), ingress=limit(),
                     dscp=rnd.choice([None, 10, 26, 46]))


def random_view(rnd: random.Random):
    """The reference view with random policies on its networks and ports."""
    view = reference_view()
    nets = {n: replace(net, qos_policy_id=rnd.choice(POLICIES + [""]))
            for n, net in view.networks.items()}
    ports = {p: replace(port, qos_policy_id=rnd.choice(POLICIES + ["", "", "q-gone"]))
             for p, port in view.ports.items()}
    qos = {q: random_policy(q, rnd) for q in POLICIES}
    return replace(view, networks=nets, ports=ports, qos=qos)


@SETTINGS
@given(st.integers(0, 2 ** 32))
def test_meters_are_per_port_and_direction_with_one_spec(seed):
    view = random_view(random.Random(seed))
    flows = compile_view(view)
    specs: dict[int, Meter] = {}
    for flow in flows:
        for meter in flow.meters():
            assert specs.setdefault(meter.id, meter) == meter, flow
    owners = {}
    for port in bound_ports(view):
        qos = policy_of(view, port)
        own = port.qos_policy_id or view.networks[port.network_id].qos_policy_id
        assert (qos is None) == (own not in view.qos)           # its own wins, else its net's
        if port.qos_policy_id in view.qos:
            assert qos.id == port.qos_policy_id
        egress = [f for f in flows if f.stage == "egress_qos" and f.cookie == f"port:{port.id}"]
        out = [f for f in flows if f.stage == "output" and f.cookie == f"port:{port.id}"]
        if qos is None:
            assert not egress and not any(f.meters() for f in out)
            continue
        for direction, limit in (("egress", qos.egress), ("ingress", qos.ingress)):
            if limit is not None:
                owners.setdefault(meter_id(port.id, direction), (port.id, direction))
                assert owners[meter_id(port.id, direction)] == (port.id, direction)
        if qos.egress is not None:
            assert egress and all(m.id == meter_id(port.id, "egress") and m.kbps ==
                                  qos.egress.kbps for f in egress for m in f.meters())
            assert all(f.meters() for f in egress)
        if port.id in view.vif_ofports:
            assert [m.id for f in out for m in f.meters()] == (
                [meter_id(port.id, "ingress")] if qos.ingress is not None else [])
        marked = [f for f in egress if any(getattr(a, "field", "") == "ip_dscp"
                                           for a in f.actions)]
        assert len(marked) == (2 if qos.dscp is not None else 0)


@SETTINGS
@given(st.integers(0, 2 ** 32))
def test_a_policy_change_recompiles_only_its_parts(seed):
    rnd = random.Random(seed)
    view = random_view(rnd)
    compiler = IncrementalCompiler()
    compiler.compile(view)
    changed = rnd.choice(POLICIES)
    after = replace(view, qos={**view.qos, changed: random_policy(changed, rnd)})
    delta = compiler.compile(after)
    holding = {p.network_id for p in view.bound_ports()       # admin-down ones too
               if (policy_of(view, p) or QosPolicy("")).id == changed}
    for stage, unit in delta.recompiled:
        assert unit in holding, (stage, unit, holding)
    assert sorted(map(str, compiler.flows())) == sorted(map(str, compile_view(after)))


@SETTINGS
@given(st.integers(0, 2 ** 32))
def test_lowered_meters_are_those_the_flows_name(seed):
    rnd = random.Random(seed)
    lowered = Lowered()
    current: set = set()
    for _ in range(6):
        flows = set(compile_view(random_view(rnd)))
        lowered.update(current - flows, flows - current)
        current = flows
        named = {m.id: m for f in current for m in f.meters()}
        assert lowered.meters == named


def test_a_networks_policy_is_not_a_network_devices():
    view = reference_view()                     # net-a1 holds qos-net
    vm = view.ports["a1-vm2"]
    device = replace(vm, device_owner="network:router_interface")
    assert policy_of(view, vm).id == "qos-net"
    assert policy_of(view, device) is None
    assert policy_of(view, replace(device, qos_policy_id="qos-gold")).id == "qos-gold"
