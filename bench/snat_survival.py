"""SNAT session survival across control-plane outages (issue 12, item 2): a VM without a
floating IP keeps one TCP session to the internet host busy (a 64-byte chunk every
0.2 s, echoed back and checked byte for byte, ``plexus.lab.session``) while

- ``agent``: the agents of the VM's chassis and of the router's active gateway are
  killed (SIGKILL) for ``down`` seconds — longer than their 10 s liveness lease — and
  started again;
- ``server``: the API server is stopped for ``down`` seconds (every lease runs out) and
  started again.

The VM's chassis (c3) holds a block that is *not* the lowest (c2 took 1024 first, for a
VM since deleted), so a chassis that had to lease afresh would get another block. Each
row: whether the session survived (every byte echoed, no reset), bytes echoed before the
outage, while it lasted (agent: after both leases had run out), and after it, whether a
new connection works afterwards, and whether c3 holds the same blocks afterwards.

    sudo .venv/bin/python bench/snat_survival.py [--down 60] [--kinds agent,server]

The e2e test (tests/e2e/test_snat_sticky.py) runs the same ``survive`` on its own lab."""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from bench.failover import INET, active_gateway, public_network  # noqa: E402
from plexus.lab import session  # noqa: E402
from plexus.lab import vm as vms  # noqa: E402
from plexus.lab.etcd import start_control_plane, stop_control_plane  # noqa: E402
from plexus.lab.lab import start_agent, stop_agent  # noqa: E402

ECHO_PORT, CHECK_PORT = 5402, 5403
VM_CHASSIS, OTHER_CHASSIS = "c3", "c2"
KINDS = ("agent", "server")


def wait(check, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        time.sleep(interval)
    return result


def blocks(lab, router_id: str, chassis: str) -> list[tuple[int, int]] | None:
    """The chassis' SNAT blocks on the router, from the southbound API (None: no answer)."""
    try:
        r = httpx.get(f"{lab.lab.url}/southbound/v1/routers/{router_id}/snat-blocks",
                      params={"chassis": chassis}, timeout=10,
                      headers={"X-Auth-Token": lab.api.session.get_token()})
    except httpx.HTTPError:
        return None
    if r.status_code != 200:
        return None
    return [(b["port_min"], b["port_max"]) for b in r.json()["snat_blocks"]]


def alive(lab) -> set[str]:
    """Chassis alive in the API (empty while it does not answer)."""
    try:
        return {a.host for a in lab.api.network.agents() if a.is_alive}
    except Exception:  # noqa: BLE001 - the server is down or restarting
        return set()


def setup(lab) -> dict:
    """Router with a gateway on "public", c2 holding the lowest block, a VM on c3 holding
    the next one, echo and check servers on the internet host."""
    api = lab.api.network
    public = public_network(api)
    net = api.create_network(name="sv-net")
    subnet = api.create_subnet(network_id=net.id, cidr="10.64.2.0/24", ip_version=4)
    router = api.create_router(name="sv-router",
                               external_gateway_info={"network_id": public.id})
    api.add_interface_to_router(router, subnet_id=subnet.id)
    lab.vm("sv-first", net.id, chassis=OTHER_CHASSIS, static=True)
    first = wait(lambda: blocks(lab, router.id, OTHER_CHASSIS), 60,
                 f"{OTHER_CHASSIS} leasing a SNAT block")
    vm = lab.vm("sv-a", net.id, chassis=VM_CHASSIS, static=True)
    mine = wait(lambda: blocks(lab, router.id, VM_CHASSIS), 60,
                f"{VM_CHASSIS} leasing a SNAT block")
    assert min(mine) > min(first), (mine, first)
    assert not vms.delete(lab.lab, "sv-first")      # c2 keeps its block all the same
    inet = lab.node("inet")
    _echo_server(lab, inet)
    inet.tcp_server(CHECK_PORT)
    wait(lambda: vm.tcp_client(INET, CHECK_PORT, size=4096, timeout=5).get("ok"), 60,
         "a TCP connection from the VM to the internet host")
    return {"router": router, "vm": vm}


def _echo_server(lab, inet) -> int:
    ready = lab.lab.dir / "pids" / "sv-echo.ready"
    pid = lab.lab.spawn("inet-session-echo", [sys.executable, "-m", "plexus.lab.session",
                                              "echo", "--port", str(ECHO_PORT),
                                              "--ready", str(ready)],
                        ns=inet.netns, group=inet.group, log=lab.lab.dir / "pids" / "sv-echo.log")
    wait(ready.exists, 10, "the echo server")
    return pid


def echoed(log: Path) -> int:
    return session.last(log).get("echoed", 0)


def survive(lab, ctx: dict, kind: str, down: float = 60.0, settle: float = 10.0) -> dict:
    """One outage of ``kind`` while a session runs; the row described above."""
    router, vm = ctx["router"], ctx["vm"]
    tag = secrets.token_hex(2)
    log = lab.lab.dir / "pids" / f"sv-session-{tag}.jsonl"
    until = lab.lab.dir / "pids" / f"sv-session-{tag}.stop"
    lab.lab.spawn(f"sv-session-{tag}", [sys.executable, "-m", "plexus.lab.session", "run",
                                         INET, str(ECHO_PORT), "--log", str(log),
                                         "--until", str(until)],
                  ns=vm.netns, group=vm.group, log=lab.lab.dir / "pids" / f"sv-{tag}.log")
    wait(lambda: echoed(log) >= 10 * session.CHUNK, 30, "the session exchanging data")
    held = blocks(lab, router.id, VM_CHASSIS)
    gateway = wait(lambda: active_gateway(lab, router.id), 30, "an active gateway")
    everyone = {ch.name for ch in lab.spec.chassis_list()}
    before = echoed(log)
    if kind == "agent":
        victims = sorted({VM_CHASSIS, gateway})
        for name in victims:
            stop_agent(lab.lab, name, signal.SIGKILL)
        start = time.monotonic()
        # their liveness leases run out; the rest of the cloud sees them dead
        wait(lambda: not (alive(lab) & set(victims)), 30, f"{victims} not alive in the API")
        time.sleep(5)                      # what reacts to that has reacted
        expired = echoed(log)
        time.sleep(max(0.0, start + down - time.monotonic()))
        during = echoed(log) - expired
        at_end = echoed(log)
        for name in victims:
            start_agent(lab.lab, name)
    elif kind == "server":
        stopped = stop_control_plane(lab.lab)
        start = time.monotonic()
        at_start = echoed(log)
        time.sleep(down)
        at_end = echoed(log)
        during = at_end - at_start
        start_control_plane(lab.lab, stopped)
    else:
        raise ValueError(f"outage kind {kind!r}: one of {KINDS}")
    outage = time.monotonic() - start
    wait(lambda: alive(lab) == everyone, 60, "every agent alive again")
    time.sleep(settle)
    until.write_text("stop")
    final = wait(lambda: session.last(log) if session.last(log).get("done") else None, 120,
                 "the session to finish")
    check = vm.tcp_client(INET, CHECK_PORT, size=65536, timeout=10)
    after = blocks(lab, router.id, VM_CHASSIS)
    return {"outage": kind, "down_s": round(outage, 1), "survived": bool(final.get("ok")),
            "error": final.get("error"), "bytes_before": before, "bytes_during": during,
            "bytes_after": final.get("echoed", 0) - at_end,
            "new_connection": bool(check.get("ok")), "blocks_kept": held == after,
            "blocks_before": held, "blocks_after": after}


def run(lab, kinds=KINDS, down: float = 60.0) -> list[dict]:
    """Set the scene up on ``lab`` (a LabFixture of 3 chassis, c1 and c2 gateways) and
    return one row per outage kind."""
    ctx = setup(lab)
    return [survive(lab, ctx, kind, down) for kind in kinds]


COLUMNS = ("outage", "down_s", "survived", "bytes_before", "bytes_during", "bytes_after",
           "new_connection", "blocks_kept")


def print_rows(rows: list[dict]) -> None:
    """One table: a column per field of ``COLUMNS``."""
    cells = [list(COLUMNS)] + [[str(r[c]) for c in COLUMNS] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    for n, row in enumerate(cells):
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths)))
        if n == 0:
            print("-|-".join("-" * w for w in widths))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--down", type=float, default=60.0, help="outage length, seconds")
    p.add_argument("--kinds", default=",".join(KINDS))
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces, Open vSwitch)")
    from plexus.lab import Lab, LabSpec
    from table import machine
    from tests.e2e.conftest import LabFixture, wait_for

    with tempfile.TemporaryDirectory(prefix="plexus-snat-survival-") as tmp:
        made = Lab(LabSpec(name="sv" + secrets.token_hex(3), chassis=3, gateways=2),
                   Path(tmp))
        made.up()
        try:
            lab = LabFixture(made)
            wait_for(lambda: alive(lab) == {"c1", "c2", "c3"}, 30, "every agent alive")
            rows = run(lab, args.kinds.split(","), args.down)
        finally:
            errors = made.down()
            if errors:
                print("teardown:", errors, file=sys.stderr)
    print_rows(rows)
    print(f"machine: {machine()}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))   # bench/table.py
    main()
