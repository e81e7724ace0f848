"""Security groups end to end (issue 6): a 2-chassis lab with an agent per chassis, VMs
on different chassis whose ports carry groups made through the API, and real traffic —
TCP to allowed and denied ports, the replies of outbound connections, ICMP by type,
remote-group membership changes, port security disabled, a removed rule (new
connections blocked, established ones revoked as docs/security-groups.md says), and the
conntrack zone of a VIF that went away.

One lab serves the whole module; each test makes its own network, groups and VMs, and
the lab's inventory tears everything down, failed or not."""

from __future__ import annotations

import sys
import time

import pytest

from plexus.lab import vm as vms
from tests.e2e.conftest import LabFixture, running_lab, wait_for

pytestmark = pytest.mark.e2e

NO = dict(size=4096, timeout=2)          # a TCP check expected to fail: short timeouts

# Run inside VMs (written into the lab's directory, so lab processes name it):
#   serve PORT            echo lines back, one thread per connection
#   stream IP PORT LOG    one connection; every 0.2 s send a line, log "ok" or "lost"
#   once IP PORT SECONDS  exit 0 if a new connection echoes a line
#   icmp IP TYPE SECONDS  exit 0 if an ICMP request of TYPE is answered
HELPER = r'''
import socket, struct, sys, threading, time

def serve(port):
    srv = socket.create_server(("0.0.0.0", port))
    def echo(conn):
        with conn:
            for line in conn.makefile("rb"):
                conn.sendall(line)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=echo, args=(conn,), daemon=True).start()

def stream(ip, port, log):
    with open(log, "a", buffering=1) as out:
        conn = socket.create_connection((ip, port), timeout=3)
        conn.settimeout(1.0)
        n = 0
        while True:
            n += 1
            conn.sendall(b"%d\n" % n)
            try:
                got = conn.recv(4096)
                out.write(("ok %d\n" % n) if got else "closed\n")
                if not got:
                    return
            except socket.timeout:
                out.write("lost %d\n" % n)
            time.sleep(0.2)

def once(ip, port, seconds):
    try:
        with socket.create_connection((ip, port), timeout=seconds) as conn:
            conn.settimeout(seconds)
            conn.sendall(b"hello\n")
            return conn.recv(64) == b"hello\n"
    except OSError:
        return False

def checksum(data):
    data += b"\0" * (len(data) % 2)
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF

def icmp(ip, kind, seconds):
    answer = {8: 0, 13: 14}[kind]
    body = struct.pack("!HH", 0x1234, 1) + (b"\0" * 12 if kind == 13 else b"plexus")
    head = struct.pack("!BBH", kind, 0, 0)
    msg = struct.pack("!BBH", kind, 0, checksum(head + body)) + body
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.settimeout(0.5)
    sock.sendto(msg, (ip, 0))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            data, (src, _) = sock.recvfrom(2048)
        except socket.timeout:
            continue
        start = (data[0] & 0x0F) * 4
        if src == ip and data[start] == answer and data[start + 4:start + 6] == b"\x12\x34":
            return True
    return False

mode, args = sys.argv[1], sys.argv[2:]
if mode == "serve":
    serve(int(args[0]))
elif mode == "stream":
    stream(args[0], int(args[1]), args[2])
elif mode == "once":
    sys.exit(0 if once(args[0], int(args[1]), float(args[2])) else 1)
elif mode == "icmp":
    sys.exit(0 if icmp(args[0], int(args[1]), float(args[2])) else 1)
'''


# --- the lab -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A 2-chassis lab whose agents are up and registered."""
    with running_lab(tmp_path_factory.mktemp("sg"), chassis=2, gateways=1) as fixture:
        (fixture.lab.dir / "sghelper.py").write_text(HELPER)
        # The module's tests make more groups and rules in one project than Neutron's
        # default quotas (10 groups, 100 rules) allow; a test setup lifts them, as
        # tempest's does.
        net = fixture.api.network
        net.update_quota(fixture.api.current_project_id, security_groups=-1,
                         security_group_rules=-1)
        yield fixture


def helper(lab: LabFixture) -> str:
    return str(lab.lab.dir / "sghelper.py")


def group(lab: LabFixture, name: str, *rules: dict, egress: bool = True):
    """A security group with ``rules``; ``egress=False`` removes the egress rules every
    new group starts with (then it allows nothing at all without ``rules``)."""
    net = lab.api.network
    sg = net.create_security_group(name=name)
    if not egress:
        for rule in net.security_group_rules(security_group_id=sg.id):
            net.delete_security_group_rule(rule)
    for rule in rules:
        net.create_security_group_rule(security_group_id=sg.id, **rule)
    return sg


def ingress(protocol: str | None = None, low: int | None = None, high: int | None = None,
            **kw) -> dict:
    """An IPv4 ingress rule (TCP/UDP: a port range, ICMP: type and code)."""
    return {"direction": "ingress", "ethertype": "IPv4", "protocol": protocol,
            "port_range_min": low, "port_range_max": high if high is not None else
            (low if protocol in ("tcp", "udp") else None), **kw}


def vm(lab: LabFixture, name: str, net, chassis: str, groups: list):
    """A VM on ``chassis`` whose port has ``groups`` (DHCP passes whatever they say)."""
    port = lab.api.network.create_port(network_id=net.id, name=name,
                                       security_groups=[g.id for g in groups])
    return lab.vm(name, net, chassis=chassis, port=port.id)


def tcp(src, dst, port: int, **kw) -> bool:
    """Whether ``src`` can send a payload to the TCP checker of ``dst`` on ``port``."""
    return src.tcp_client(dst.ip, port, **({"size": 64 << 10} | kw))["ok"]


def echo_once(lab: LabFixture, src, dst, port: int, seconds: float = 2) -> bool:
    """Whether a new connection from ``src`` to the echo server of ``dst`` works."""
    return src.exec(sys.executable, helper(lab), "once", dst.ip, str(port), str(seconds),
                    check=False, timeout=seconds + 10).returncode == 0


def icmp(lab: LabFixture, src, dst, kind: int) -> bool:
    """Whether ``dst`` answers an ICMP request of type ``kind`` from ``src``."""
    return src.exec(sys.executable, helper(lab), "icmp", dst.ip, str(kind), "2",
                    check=False, timeout=15).returncode == 0


def start_echo_server(lab: LabFixture, node, port: int) -> None:
    """An echo server in ``node`` (recorded; stopped with the VM or the lab)."""
    lab.lab.spawn(f"{node.name}-echo-{port}", [sys.executable, helper(lab), "serve",
                                               str(port)], ns=node.netns, group=node.group)
    wait_for(lambda: node.exec("ss", "-ltn", f"sport = :{port}").stdout.count("LISTEN"),
             10, f"echo server on {node.name}:{port}")


# --- the tests -----------------------------------------------------------------------------

def test_tcp_to_an_allowed_port_works_and_to_a_denied_port_does_not(lab):
    net = lab.network("sg-tcp", "10.71.0.0/24")
    web = group(lab, "web", ingress("tcp", 5001))
    anything = group(lab, "anything", ingress())
    srv = vm(lab, "tcp-srv", net, "c2", [web])
    cli = vm(lab, "tcp-cli", net, "c1", [anything])
    srv.tcp_server(5001)
    srv.tcp_server(5002)
    assert tcp(cli, srv, 5001, size=1 << 20)
    assert not tcp(cli, srv, 5002, **NO)
    assert not cli.ping(srv.ip, count=2, deadline=3)         # no ICMP rule either
    assert srv.ping(cli.ip)                                  # the other way, anything goes


def test_replies_to_outbound_connections_return(lab):
    net = lab.network("sg-reply", "10.72.0.0/24")
    outbound = group(lab, "outbound")             # a new group: all egress, no ingress
    server = group(lab, "server", ingress("tcp", 5003))
    cli = vm(lab, "rp-cli", net, "c1", [outbound])
    srv = vm(lab, "rp-srv", net, "c2", [server])
    srv.tcp_server(5003)
    cli.tcp_server(5003)
    # the server's segments (data, ACKs, its answer) come back although cli admits nothing
    result = cli.tcp_client(srv.ip, 5003, size=4 << 20)
    assert result["ok"] and result["bytes"] == 4 << 20, result
    assert not tcp(srv, cli, 5003, **NO)                       # a new connection does not
    assert not srv.ping(cli.ip, count=2, deadline=3)


def test_icmp_by_type(lab):
    net = lab.network("sg-icmp", "10.73.0.0/24")
    echo = group(lab, "echo-only", ingress("icmp", 8))          # type 8, any code
    icmp_any = group(lab, "icmp-any", ingress("icmp"))
    pinger = vm(lab, "ic-ping", net, "c1", [group(lab, "icmp-out")])
    only = vm(lab, "ic-echo", net, "c2", [echo])
    every = vm(lab, "ic-any", net, "c2", [icmp_any])
    assert pinger.ping(only.ip) and icmp(lab, pinger, only, 8)
    assert icmp(lab, pinger, every, 13), "a timestamp request where any ICMP is allowed"
    assert not icmp(lab, pinger, only, 13), "a timestamp request where only echo is"
    assert pinger.ping(every.ip)


def test_remote_group_membership_changes_reachability(lab):
    net = lab.network("sg-remote", "10.74.0.0/24")
    app, plain = group(lab, "app"), group(lab, "plain")
    db = group(lab, "db", ingress("tcp", 5432, remote_group_id=app.id))
    dbvm = vm(lab, "rg-db", net, "c2", [db])
    appvm = vm(lab, "rg-app", net, "c1", [plain])
    other = vm(lab, "rg-other", net, "c1", [app])                # a member all along
    dbvm.tcp_server(5432)
    assert tcp(other, dbvm, 5432)
    assert not tcp(appvm, dbvm, 5432, **NO)
    lab.api.network.update_port(appvm.port_id, security_groups=[app.id])
    wait_for(lambda: tcp(appvm, dbvm, 5432, **NO), 20, "the new member reaches db")
    lab.api.network.update_port(appvm.port_id, security_groups=[plain.id])
    wait_for(lambda: not tcp(appvm, dbvm, 5432, **NO), 20, "the former member is refused")
    assert tcp(other, dbvm, 5432)


def test_port_security_disabled_passes_everything(lab):
    net = lab.network("sg-off", "10.75.0.0/24")
    closed = group(lab, "closed", egress=False)                  # nothing in, nothing out
    peer_group = group(lab, "peer", ingress())
    ps = vm(lab, "ps-vm", net, "c2", [closed])
    peer = vm(lab, "ps-peer", net, "c1", [peer_group])
    ps.tcp_server(7001)
    peer.tcp_server(7002)
    assert not tcp(peer, ps, 7001, **NO) and not tcp(ps, peer, 7002, **NO)
    assert not peer.ping(ps.ip, count=2, deadline=3)
    lab.api.network.update_port(ps.port_id, security_groups=[], port_security_enabled=False)
    wait_for(lambda: tcp(peer, ps, 7001, **NO), 20, "the port's ACLs gone")
    assert tcp(ps, peer, 7002)
    assert peer.ping(ps.ip) and ps.ping(peer.ip)
    # and anti-spoofing is off too: another source address gets through
    ps.exec("ip", "addr", "add", "10.75.0.250/24", "dev", "eth0")
    assert ps.exec("ping", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "2", "-I", "10.75.0.250",
                   peer.ip, check=False).returncode == 0


def test_rule_removal_blocks_new_connections_and_revokes_established_ones(lab):
    net = lab.network("sg-revoke", "10.76.0.0/24")
    svc = group(lab, "svc")
    rule = dict(ingress("tcp", 6100), security_group_id=svc.id)
    ident = lab.api.network.create_security_group_rule(**rule).id
    srv = vm(lab, "rv-srv", net, "c2", [svc])
    cli = vm(lab, "rv-cli", net, "c1", [group(lab, "rv-out")])
    start_echo_server(lab, srv, 6100)
    assert echo_once(lab, cli, srv, 6100)
    log = lab.lab.dir / "pids" / "rv-stream.log"
    lab.lab.spawn("rv-stream", [sys.executable, helper(lab), "stream", srv.ip, "6100",
                                str(log)], ns=cli.netns, group=cli.group)

    def lines() -> list[str]:
        return log.read_text().split() if log.exists() else []

    wait_for(lambda: lines().count("ok") >= 3, 15, "the established connection echoing")

    lab.api.network.delete_security_group_rule(ident)
    wait_for(lambda: not echo_once(lab, cli, srv, 6100), 20, "new connections refused")
    time.sleep(1.5)                            # let an echo already under way arrive
    mark = len(lines())
    time.sleep(2.5)
    after = lines()[mark:]
    assert "ok" not in after and "lost" in after, after          # revoked at its next packet

    lab.api.network.create_security_group_rule(**rule)
    wait_for(lambda: echo_once(lab, cli, srv, 6100), 20, "new connections allowed again")
    mark = len(lines())
    time.sleep(2.5)
    after = lines()[mark:]
    assert "ok" not in after and "lost" in after, after          # …but it stays revoked


def test_a_vif_that_goes_away_leaves_no_conntrack_entries_in_its_zone(lab):
    net = lab.network("sg-zone", "10.77.0.0/24")
    open_group = group(lab, "zone-open", ingress())
    keep = vm(lab, "zn-keep", net, "c1", [open_group])
    gone = vm(lab, "zn-gone", net, "c2", [open_group])
    ovs = lab.lab.ovs("c2")
    tap = ovs.vsctl("--bare", "--columns=name", "find", "Interface",
                    f"external_ids:iface-id={gone.port_id}").strip()
    zone = int(ovs.vsctl("get", "Interface", tap, "ofport"))

    def entries() -> list[str]:
        out = ovs.appctl("dpctl/dump-conntrack", f"zone={zone}")
        return [line for line in out.splitlines() if line.strip()]

    gone.tcp_server(7100)
    assert tcp(keep, gone, 7100) and keep.ping(gone.ip)
    assert entries(), "the VM's connections are tracked in its zone (its ofport)"
    assert vms.delete(lab.lab, "zn-gone") == []
    wait_for(lambda: not entries(), 15, f"conntrack zone {zone} flushed")
    agent_log = (lab.lab.dir / "c2" / "agent.log").read_text()
    assert f"conntrack zone {zone} flushed" in agent_log
