"""QoS on real Open vSwitch (userspace datapath), real namespaces, real TCP: a bandwidth
limit set through the API is enforced on the VM's chassis by an OpenFlow meter, in each
direction (egress: what the VM sends; ingress: what it receives), within 10% of the
limit as iperf3 measures it between two VMs on different chassis; deleting the rule
lifts it; a DSCP marking rule marks the VM's IPv4 packets, as tcpdump sees them on the
receiver. Measured rates go to the test log (``-s`` prints them)."""

from __future__ import annotations

import json
import secrets
import time

import pytest

from tests.e2e.conftest import wait_for

LIMIT_KBPS = 8000           # well under what the userspace datapath carries here
TOLERANCE = 0.10
SECONDS, OMIT = 8, 2        # iperf3: measure 8 s after 2 s (the burst bucket empties)


def _iperf_server(lab, vm, port: int) -> None:
    log = lab.lab.dir / "pids" / f"{vm.name}-iperf3-{port}.log"
    lab.lab.spawn(f"{vm.name}-iperf3-{port}",
                  ["iperf3", "-s", "-p", str(port), "--logfile", str(log)],
                  ns=vm.netns, group=vm.group)
    wait_for(lambda: vm.exec("ss", "-ltn", check=False).stdout.count(f":{port} "), 10,
             "iperf3 listening")


def _rate_mbit(client, server_ip: str, port: int, reverse: bool = False) -> float:
    """iperf3's receiver-side TCP rate (Mbit/s) from ``client`` to the server (with
    ``reverse``: from the server to ``client``)."""
    argv = ["iperf3", "-c", server_ip, "-p", str(port), "-t", str(SECONDS), "-O", str(OMIT),
            "-J"] + (["-R"] if reverse else [])
    proc = client.exec(*argv, check=False, timeout=SECONDS + OMIT + 30)
    out = json.loads(proc.stdout)
    assert "error" not in out, out.get("error")
    return out["end"]["sum_received"]["bits_per_second"] / 1e6


def _meters(lab, chassis: str) -> str:
    return lab.lab.ovs(lab.spec.chassis_named(chassis)).ofctl("dump-meters", "br-int")


@pytest.fixture
def qos_lab(lab_factory):
    lab = lab_factory(chassis=2, name="qos" + secrets.token_hex(2))
    net = lab.network("qosnet", "10.61.0.0/24")
    a = lab.vm("qa", net, chassis="c1")
    b = lab.vm("qb", net, chassis="c2")
    assert a.ping(b.ip)
    _iperf_server(lab, b, 5201)
    yield lab, a, b


def _within(measured: float, limit_kbps: int) -> bool:
    return abs(measured - limit_kbps / 1000) <= TOLERANCE * limit_kbps / 1000


def test_bandwidth_limit_both_directions(qos_lab, record_property):
    lab, a, b = qos_lab
    api = lab.api.network
    free = _rate_mbit(a, b.ip, 5201)
    record_property("unlimited_mbit", free)
    assert free > 2 * LIMIT_KBPS / 1000, f"the datapath carries only {free:.1f} Mbit/s"
    policy = api.create_qos_policy(name="qos-e2e")
    egress = api.create_qos_bandwidth_limit_rule(policy, max_kbps=LIMIT_KBPS)
    api.update_port(a.port_id, qos_policy_id=policy.id)
    wait_for(lambda: f"rate={LIMIT_KBPS}" in _meters(lab, "c1"), 20, "c1's egress meter")
    limited = _rate_mbit(a, b.ip, 5201)
    record_property("egress_limited_mbit", limited)
    print(f"\nunlimited {free:.2f} Mbit/s; egress limit {LIMIT_KBPS} kbps: {limited:.2f}")
    assert _within(limited, LIMIT_KBPS), f"egress {limited:.2f} Mbit/s"
    # ingress: what reaches qa (iperf3 -R: qb sends), limited on qa's chassis
    reverse_free = _rate_mbit(a, b.ip, 5201, reverse=True)
    assert reverse_free > 2 * LIMIT_KBPS / 1000
    ingress_kbps = LIMIT_KBPS // 2
    api.create_qos_bandwidth_limit_rule(policy, max_kbps=ingress_kbps, direction="ingress")
    wait_for(lambda: f"rate={ingress_kbps}" in _meters(lab, "c1"), 20, "c1's ingress meter")
    limited_in = _rate_mbit(a, b.ip, 5201, reverse=True)
    record_property("ingress_limited_mbit", limited_in)
    print(f"ingress unlimited {reverse_free:.2f}; limit {ingress_kbps} kbps: "
          f"{limited_in:.2f}")
    assert _within(limited_in, ingress_kbps), f"ingress {limited_in:.2f} Mbit/s"
    # removing the egress rule lifts the egress limit (its meter goes), ingress stays
    api.delete_qos_bandwidth_limit_rule(egress, policy)
    wait_for(lambda: f"rate={LIMIT_KBPS}" not in _meters(lab, "c1"), 20,
             "c1's egress meter removed")
    lifted = _rate_mbit(a, b.ip, 5201)
    record_property("egress_lifted_mbit", lifted)
    print(f"egress rule deleted: {lifted:.2f} Mbit/s")
    assert lifted > 2 * LIMIT_KBPS / 1000
    # the port leaves the policy: no meter left on c1
    api.update_port(a.port_id, qos_policy_id=None)
    wait_for(lambda: "meter=" not in _meters(lab, "c1"), 20, "c1's meters removed")
    api.delete_qos_policy(policy)


def test_dscp_marking(qos_lab):
    lab, a, b = qos_lab
    api = lab.api.network
    policy = api.create_qos_policy(name="qos-dscp")
    api.create_qos_dscp_marking_rule(policy, dscp_mark=26)
    net = api.get_network(api.get_port(a.port_id).network_id)
    api.update_network(net, qos_policy_id=policy.id)        # qa takes its network's
    pcap = lab.lab.dir / "pids" / "qb-dscp.pcap"

    def marked() -> bool:
        pcap.unlink(missing_ok=True)
        lab.lab.spawn(f"qb-tcpdump-{time.monotonic_ns()}",
                      ["tcpdump", "-n", "-i", "eth0", "-c", "2", "-w", str(pcap),
                       "icmp", "and", "src", a.ip], ns=b.netns, group=b.group)
        time.sleep(0.5)
        a.ping(b.ip, count=2)
        time.sleep(0.5)
        if not pcap.exists():
            return False
        text = b.exec("tcpdump", "-n", "-v", "-r", str(pcap), check=False).stdout
        return "tos 0x68" in text                      # DSCP 26 << 2, ECN 0
    wait_for(marked, 30, "qb receives qa's pings with DSCP 26", interval=0.5)
    api.update_network(net, qos_policy_id=None)
    api.delete_qos_policy(policy)
