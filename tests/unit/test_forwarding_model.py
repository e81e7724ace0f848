"""Port forwardings in the model and the agent's view: parsed with their floating IP
(refused whole when unusable), indexed by internal port in the catalog (kept current on
change and delete), and in a chassis' view only for forwardings it NATs or steers."""

from __future__ import annotations

import pytest

from plexus.agent import view as views
from plexus.model import keys
from plexus.model.catalog import Catalog
from plexus.model.objects import BadObject, parse
from tests.golden.test_l3_golden import forwarded_objects


def _fip(**pf):
    base = {"id": "pf-1", "protocol": "tcp", "external": [80, 80],
            "internal_port_id": "p1", "internal_ip_address": "10.0.0.5",
            "internal": [8080, 8080]}
    return {"id": "f1", "floating_ip_address": "203.0.113.5", "floating_network_id": "ext",
            "router_id": "r1", keys.PORT_FORWARDINGS: [{**base, **pf}]}


def test_parsed_with_the_floating_ip():
    fip = parse(keys.FLOATINGIPS, _fip())
    [pf] = fip.forwardings
    assert (pf.protocol, pf.external, pf.internal, pf.port_id) == (6, (80, 80), (8080, 8080),
                                                                   "p1")
    for bad in ({"external": [90, 80]}, {"internal": [1, 3], "external": [1, 2]},
                {"protocol": "nope"}, {"internal_ip_address": "fe80::1"}, {"external": None}):
        with pytest.raises(BadObject):
            parse(keys.FLOATINGIPS, _fip(**bad))


def test_catalog_indexes_forwardings_by_internal_port():
    catalog = Catalog()
    catalog.apply_wire(keys.FLOATINGIPS, "f1", _fip())
    assert catalog.fips_by_forwarded_port.of("p1") == {"f1"}
    catalog.apply_wire(keys.FLOATINGIPS, "f1", _fip(internal_port_id="p2"))
    assert catalog.fips_by_forwarded_port.of("p1") == set()
    assert catalog.fips_by_forwarded_port.of("p2") == {"f1"}
    catalog.apply_wire(keys.FLOATINGIPS, "f1", None)
    assert not catalog.fips_by_forwarded_port


def test_view_holds_what_the_chassis_nats_or_steers():
    catalog, problems = Catalog.from_wire(forwarded_objects())
    assert not problems

    def held(chassis):
        local = views.local_view(catalog, chassis, "192.0.2.1", {}, {})
        return set(views.with_routing(local, catalog, alive=["gw1", "gw2", "hv1", "hv2"])
                   .port_forwardings)
    everything = {"pf-web", "pf-dns", "pf-ssh1", "pf-ssh2", "pf-range"}   # no SCTP
    assert held("hv1") == everything                # its ports' floating IPs, whole
    assert held("hv2") == {"pf-ssh1", "pf-ssh2", "pf-range"}
    assert held("gw1") == everything                # the active gateway steers
    assert held("gw2") == set()
    assert held("hv3") == set()
