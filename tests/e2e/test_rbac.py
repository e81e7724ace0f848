"""RBAC in the data plane: a VM of project B on project A's network, shared with B by an
RBAC policy (not `shared`), reaches A's VM, and the policy cannot be revoked while B's
port is there."""

from __future__ import annotations

import openstack.exceptions
import pytest


def test_vm_of_target_project_pings_owner_vm(lab):
    a = lab.lab.connect("devstack")
    b = lab.lab.connect("devstack-alt")
    net = a.network.create_network(name="rbac-e2e")
    a.network.create_subnet(network_id=net.id, cidr="10.64.0.0/24", ip_version=4)
    assert b.network.find_network(net.id) is None          # not shared with B yet
    policy = a.network.create_rbac_policy(object_type="network", object_id=net.id,
                                          action="access_as_shared",
                                          target_tenant=b.current_project_id)
    assert b.network.get_network(net.id).is_shared is True
    port = b.network.create_port(network_id=net.id, name="vmb")   # B's own credentials
    assert port.project_id == b.current_project_id
    # Each project's default group admits ICMP (the default admits only its own members).
    for conn in (a, b):
        group = conn.network.find_security_group("default", project_id=conn.current_project_id)
        conn.network.create_security_group_rule(security_group_id=group.id,
                                                direction="ingress", protocol="icmp")
    vma = lab.vm("vma", net.id, chassis="c1")
    vmb = lab.vm("vmb", net.id, port=port.id, chassis="c2")
    assert vmb.ping(vma.ip)
    assert vma.ping(vmb.ip)
    with pytest.raises(openstack.exceptions.ConflictException):
        a.network.delete_rbac_policy(policy)
    assert b.network.get_network(net.id).is_shared is True
    assert vmb.ping(vma.ip)
