"""Address-scope-aware routing end to end (issue 13), as Neutron routes: a router
routes directly only between its subnets of one address scope; between scopes (or a
scope and none) only through NAT, so a VM in scope "red" cannot reach a VM in scope
"blue" behind the same router, while two subnets of "red" talk directly. Toward an
external network whose subnet is in "red", a "red" subnet is routed without SNAT (the
internet host sees the VM's own address) and a "blue" one is SNATed to the router's
gateway address.

Every subnet here comes from a subnet pool (the scope is the pool's), so this also runs
subnet allocation from pools end to end through the agents."""

from __future__ import annotations

import pytest

from plexus.lab import netlink
from tests.e2e.conftest import running_lab, wait_for
from tests.e2e.test_l3 import INET, captured, gateway_address

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A 2-chassis lab, c1 gateway-capable."""
    with running_lab(tmp_path_factory.mktemp("scopes"), chassis=2, gateways=1) as fixture:
        yield fixture


def pool_subnet(api, name: str, scope, prefix: str, **subnet):
    """A network with one subnet taken from a new pool of ``prefix`` in ``scope``."""
    pool = api.create_subnet_pool(name=f"{name}-pool", prefixes=[prefix],
                                  address_scope_id=scope.id if scope else None,
                                  default_prefix_length=24)
    net = api.create_network(name=name, **subnet.pop("network", {}))
    sub = api.create_subnet(network_id=net.id, ip_version=4, subnetpool_id=pool.id,
                            name=f"{name}-subnet", **subnet)
    return api.get_network(net.id), sub


def test_scopes_decide_direct_routing_and_snat(lab):
    api = lab.api.network
    red = api.create_address_scope(name="red", ip_version=4)
    blue = api.create_address_scope(name="blue", ip_version=4)
    # the external network, its subnet in "red" (flat on physnet1, 203.0.113.0/24)
    public, _ = pool_subnet(api, "public", red, "203.0.113.0/24", cidr="203.0.113.0/24",
                            gateway_ip="203.0.113.1", is_dhcp_enabled=False,
                            allocation_pools=[{"start": "203.0.113.100",
                                               "end": "203.0.113.199"}],
                            network={"provider_network_type": "flat",
                                     "provider_physical_network": "physnet1",
                                     "is_router_external": True})
    red1, red1_sub = pool_subnet(api, "red1", red, "10.81.0.0/16")
    red2, red2_sub = pool_subnet(api, "red2", red, "10.82.0.0/16")
    blue1, blue1_sub = pool_subnet(api, "blue1", blue, "10.83.0.0/16")
    assert red1_sub.cidr == "10.81.0.0/24" and blue1_sub.cidr == "10.83.0.0/24"
    assert api.get_network(red1.id).ipv4_address_scope_id == red.id
    router = api.create_router(name="scoped")
    for sub in (red1_sub, red2_sub, blue1_sub):
        api.add_interface_to_router(router, subnet_id=sub.id)
    api.update_router(router, external_gateway_info={"network_id": public.id})
    gateway = gateway_address(lab, router)

    a = lab.vm("sc-a", red1, chassis="c2", static=True)
    c = lab.vm("sc-c", red2, chassis="c1", static=True)
    b = lab.vm("sc-b", blue1, chassis="c1", static=True)
    # same scope: routed directly, both ways
    assert wait_for(lambda: lab.vm("sc-a").ping(c.ip, count=1, deadline=2), 30,
                    "a (red) pings c (red) through the router")
    assert lab.vm("sc-c").ping(a.ip)
    # b is up and routed (its own gateway answers), yet never reaches red, nor red it
    assert wait_for(lambda: lab.vm("sc-b").ping("10.83.0.1", count=1, deadline=2), 20,
                    "b pings its router")
    assert not lab.vm("sc-a").ping(b.ip, count=3, deadline=4)
    assert not lab.vm("sc-b").ping(a.ip, count=3, deadline=4)
    assert not lab.vm("sc-c").ping(b.ip, count=3, deadline=4)
    assert lab.vm("sc-a").ping(c.ip)                        # still fine after the drops

    # toward the external network (in red): red leaves with its own address; the upstream
    # router routes red1 back through the router's gateway address
    netlink.add_route(lab.spec.netns("ext"), red1_sub.cidr, gateway)
    assert wait_for(lambda: lab.vm("sc-a").ping(INET, count=1, deadline=2), 30,
                    "a (red) pings the internet host without SNAT")
    seen = captured(lab, "inet", "eth0", "icmp",
                    lambda: lab.vm("sc-a").ping(INET, count=2, deadline=3))
    assert f"{a.ip} > {INET}" in seen and gateway not in seen, seen
    # blue is SNATed to the gateway address
    assert wait_for(lambda: lab.vm("sc-b").ping(INET, count=1, deadline=2), 30,
                    "b (blue) pings the internet host through SNAT")
    seen = captured(lab, "inet", "eth0", "icmp",
                    lambda: lab.vm("sc-b").ping(INET, count=2, deadline=3))
    assert f"{gateway} > {INET}" in seen and b.ip not in seen, seen

    # moving blue's pool into red (Neutron: the router follows) lets b reach a directly
    blue_pool = api.get_subnet_pool(blue1_sub.subnet_pool_id)
    api.update_subnet_pool(blue_pool, address_scope_id=red.id)
    assert wait_for(lambda: lab.vm("sc-b").ping(a.ip, count=1, deadline=2), 30,
                    "b reaches a once both are in red")
