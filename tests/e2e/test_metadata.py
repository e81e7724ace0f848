"""Metadata on the host, end to end: VMs fetch http://169.254.169.254/ through their own
chassis' agent (real TCP from the VM's namespace, the metadata stage's conntrack NAT to
the port's link-local address, the agent's proxy in the chassis' metadata namespace) from
the lab's metadata backend, which checks the HMAC signature of X-Instance-ID as Nova
does, on routerless and routed subnets. Each VM gets its own instance's data — also when it forges the instance headers,
and when another network on another chassis uses the same addresses; a request signed
with another secret is refused by the backend."""

from __future__ import annotations

import hashlib
import hmac
import json
import sys

import httpx
import pytest

from plexus.lab.metadata import ec2_id
from tests.e2e.conftest import running_lab, wait_for

pytestmark = pytest.mark.e2e

FETCH = """
import json, sys, urllib.request, urllib.error
req = urllib.request.Request("http://169.254.169.254" + sys.argv[1], headers=json.loads(sys.argv[2]))
try:
    with urllib.request.urlopen(req, timeout=5) as r:
        print(json.dumps({"status": r.status, "body": r.read().decode()}))
except urllib.error.HTTPError as e:
    print(json.dumps({"status": e.code, "body": e.read().decode()}))
except Exception as e:
    print(json.dumps({"status": 0, "body": repr(e)}))
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with running_lab(tmp_path_factory.mktemp("metadata"), chassis=2, gateways=1,
                     metadata=True) as fixture:
        yield fixture


def fetch(vm, path: str, headers: dict | None = None) -> dict:
    proc = vm.exec(sys.executable, "-c", FETCH, path, json.dumps(headers or {}), check=False,
                   timeout=30)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fetch_ok(vm, path: str, headers: dict | None = None) -> dict:
    """Fetch, retrying while the agent may still be programming the VM's flows."""
    return wait_for(lambda: (r := fetch(vm, path, headers))["status"] == 200 and r, 20,
                    f"{vm.name} fetches {path}")


def records(lab) -> list[dict]:
    path = lab.lab.metadata_record
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_vms_fetch_their_own_metadata_through_the_agent(lab):
    net1 = lab.network("md1", "10.70.0.0/24")
    net2 = lab.network("md2", "10.70.0.0/24")          # the same addresses, elsewhere
    a = lab.vm("mda", net1, chassis="c1")
    b = lab.vm("mdb", net1, chassis="c1")
    c = lab.vm("mdc", net2, chassis="c2")
    # a subnet behind a router: the VM sends to the router's MAC, still answered here
    net3 = lab.network("md3", "10.71.0.0/24")
    router = lab.api.network.create_router(name="mdr")
    lab.api.network.add_interface_to_router(
        router, subnet_id=next(lab.api.network.subnets(network_id=net3.id)).id)
    d = lab.vm("mdd", net3, chassis="c2")
    ports = {vm.name: lab.api.network.get_port(vm.port_id) for vm in (a, b, c, d)}
    # DHCP option 121 routed the metadata address via the subnet's gateway
    routes = a.exec("ip", "route", "show", "169.254.169.254").stdout
    assert "via 10.70.0.1" in routes, routes

    for vm in (a, b, c, d):
        port = ports[vm.name]
        meta = json.loads(fetch_ok(vm, "/openstack/latest/meta_data.json")["body"])
        assert meta["uuid"] == port.device_id, (vm.name, meta)
        assert meta["project_id"] == port.project_id
        assert fetch_ok(vm, "/latest/meta-data/instance-id")["body"] == ec2_id(port.device_id)
        assert fetch_ok(vm, "/latest/meta-data/local-ipv4")["body"] == vm.ip

    seen = records(lab)
    for vm in (a, b, c, d):
        mine = [r for r in seen if r["instance_id"] == ports[vm.name].device_id]
        assert mine and all(r["signature_valid"] and r["status"] == 200 for r in mine), mine
        assert {r["forwarded_for"] for r in mine} == {vm.ip}
        assert {"/openstack/latest/meta_data.json", "/latest/meta-data/instance-id"} <= \
            {r["path"] for r in mine}

    # b forging a's identity still gets its own data: the proxy names the instance
    forged = fetch_ok(b, "/openstack/latest/meta_data.json", {
        "X-Instance-ID": ports["mda"].device_id, "X-Tenant-ID": ports["mda"].project_id,
        "X-Instance-ID-Signature": "0" * 64})
    assert json.loads(forged["body"])["uuid"] == ports["mdb"].device_id


def test_a_wrong_shared_secret_is_refused(lab):
    url = lab.lab.inventory.read()["metadata_url"]
    port = next(iter(lab.api.network.ports(device_owner="compute:nova")), None)
    assert port is not None
    instance = port.device_id
    wrong = hmac.new(b"not-the-secret", instance.encode(), hashlib.sha256).hexdigest()
    resp = httpx.get(url + "/openstack/latest/meta_data.json", headers={
        "X-Instance-ID": instance, "X-Tenant-ID": port.project_id,
        "X-Instance-ID-Signature": wrong}, timeout=10)
    assert resp.status_code == 403
    assert any(r["instance_id"] == instance and not r["signature_valid"] and r["status"] == 403
               for r in records(lab))
    right = hmac.new(lab.lab.metadata_secret.read_bytes().strip(), instance.encode(),
                     hashlib.sha256).hexdigest()
    ok = httpx.get(url + "/latest/meta-data/instance-id", headers={
        "X-Instance-ID": instance, "X-Tenant-ID": port.project_id,
        "X-Instance-ID-Signature": right}, timeout=10)
    assert ok.status_code == 200 and ok.text == ec2_id(instance)
