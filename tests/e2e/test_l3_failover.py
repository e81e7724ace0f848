"""Gateway failover end to end (issue 5): a VM without a floating IP streams TCP to the
internet host and pings it every 10 ms while the router's active gateway chassis is cut
off — its underlay link down inside its namespace, then its ovs-vswitchd killed by pid.
BFD on the tunnels tells the other chassis; the next candidate becomes active and
announces the gateway address. The TCP stream survives (its SNAT state is on the VM's
own chassis, the gateway holds none); the ping's loss window is measured and printed.
Its own lab: the cut-off chassis is not usable afterwards."""

from __future__ import annotations

import os
import signal

import pytest

from bench.failover import INET, active_gateway, bfd_up, cut, failover, setup, wait
from plexus.lab.inventory import alive
from tests.e2e.conftest import LabFixture, running_lab

pytestmark = pytest.mark.e2e


@pytest.fixture
def lab(tmp_path):
    """A 3-chassis lab, c1 and c2 gateway-capable, every agent alive."""
    with running_lab(tmp_path, chassis=3, gateways=2) as fixture:
        yield fixture


def kill_vswitchd(lab: LabFixture, chassis: str) -> int:
    """Kill the chassis' ovs-vswitchd by the pid the inventory recorded."""
    entry = next(e for e in lab.lab.inventory.entries("process")
                 if e.get("label") == f"{chassis}/ovs-vswitchd")
    os.kill(entry["pid"], signal.SIGKILL)
    return entry["pid"]


def test_cut_off_active_gateway_fails_over_and_keeps_the_tcp_stream(lab):
    router, vm = setup(lab)
    lab.node("inet").tcp_server(5401)
    wait(lambda: vm.ping(INET, count=1, deadline=2), 60, "the VM reaches inet")
    gw = wait(lambda: active_gateway(lab, router.id), 30, "an active gateway")
    wait(lambda: bfd_up(lab, "c3") >= 2, 30, "c3's BFD sessions to both gateways up")
    killed = []

    def cut_off():
        cut(lab, gw)
        import time
        time.sleep(1.0)
        killed.append(kill_vswitchd(lab, gw))

    result = failover(lab, vm, 5401, cut_off, seconds=6.0)
    print(f"\nfailover from {gw}: ping loss window {result['loss_ms']:.0f} ms, "
          f"{result['replies']} replies; TCP {result['tcp']}")
    assert killed and not alive(killed[0])
    assert result["tcp"].get("ok"), result["tcp"]          # no reset, every byte arrived
    assert result["loss_ms"] <= 1000, result
    assert vm.ping(INET)
