"""The OVSDB side of the port-up path: ``FastParser`` reads JSON-RPC exactly as the
``ovs`` package's own parser does (whatever the chunking), and the IDL thread publishes
a VIF's ``iface-id``, ofport changes and unplugs at once, against a real ovsdb-server
(no ovs-vswitchd, no namespaces: a database on a unix socket in a temporary directory)."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

import ovs.json
from plexus.agent.ovs import ovsdb as ovsdb_mod
from plexus.agent.ovs.ovsdb import BridgeState, FastParser, Ovsdb
from plexus.agent.relevant import Vif

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")


# --- FastParser ------------------------------------------------------------------------

def reference_parse(text: str) -> list:
    """Values in ``text`` as the ovs package's pure-Python parser reads them."""
    out = []
    while text.strip():
        parser = object.__new__(ovs.json.Parser)      # the pure-Python class itself
        parser.__init__()
        used = parser.feed(text)
        assert parser.is_done()
        out.append(parser.finish())
        text = text[used:]
    return out


def fast_parse(chunks: list[str]) -> list:
    """Values in a stream of chunks read as ovs.jsonrpc.Connection.recv does."""
    out, parser, pending = [], None, ""
    for chunk in chunks:
        pending += chunk
        while pending:
            parser = parser or FastParser()
            pending = pending[parser.feed(pending):]
            if parser.is_done():
                out.append(parser.finish())
                parser = None
    return out


def messages(rng: random.Random, count: int) -> list[dict]:
    tricky = ["{", "}", "[", "]", '"', "\\", "é", "\u2603", "a}b", "x" * 50, ""]
    out = []
    for i in range(count):
        rows = {f"uuid-{i}-{j}": {"new": {
            "name": f"tap{j}", "ofport": rng.randint(-1, 70000),
            "external_ids": ["map", [["iface-id", rng.choice(tricky) + str(j)],
                                     ["note", "".join(rng.choices(tricky, k=3))]]],
            "options": ["map", []], "ratio": rng.random()}} for j in range(rng.randint(0, 40))}
        out.append({"method": "update3", "id": None,
                    "params": [["monid", "Open_vSwitch"], "00000000-0000",
                               {"Interface": rows}]})
    return out


@pytest.mark.parametrize("seed", range(8))
def test_fast_parser_reads_what_the_ovs_parser_reads(seed):
    rng = random.Random(seed)
    msgs = messages(rng, 12)
    text = "".join(json.dumps(m, ensure_ascii=rng.random() < 0.5)
                   + rng.choice(["", " ", "\n"]) for m in msgs)
    cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, 40)))
    if seed % 2:                                      # socket-sized reads, as jsonrpc does
        cuts = list(range(4096, len(text), 4096))
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    assert fast_parse(chunks) == reference_parse(text) == msgs


def test_fast_parser_reports_bad_json_as_a_string():
    parser = FastParser()
    parser.feed('{"a": nope}' + " " * 10)
    assert parser.is_done() and isinstance(parser.finish(), str)
    waiting = FastParser()
    waiting.feed('{"a": "unfinished')
    assert not waiting.is_done()
    assert waiting.finish() == "unexpected end of input"


def test_fast_parser_is_installed_when_ovs_has_no_c_parser():
    if ovs.json.PARSER == ovs.json.PARSER_PY:
        assert ovs.json.Parser is FastParser
    assert ovsdb_mod.install_fast_json() is (ovs.json.PARSER == ovs.json.PARSER_PY)


# --- a real ovsdb-server ---------------------------------------------------------------

@pytest.fixture
def ovsdb_server(tmp_path):
    if not (SCHEMA.exists() and shutil.which("ovsdb-server") and shutil.which("ovsdb-tool")):
        pytest.skip("Open vSwitch's ovsdb-server is not installed")
    db, sock = tmp_path / "conf.db", tmp_path / "db.sock"
    subprocess.run(["ovsdb-tool", "create", str(db), str(SCHEMA)], check=True)
    proc = subprocess.Popen(["ovsdb-server", str(db), f"--remote=punix:{sock}",
                             f"--unixctl={tmp_path / 'ovsdb.ctl'}", "--no-chdir",
                             f"--log-file={tmp_path / 'ovsdb.log'}",
                             f"--pidfile={tmp_path / 'ovsdb.pid'}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not sock.exists():
        assert time.monotonic() < deadline, "ovsdb-server did not start"
        time.sleep(0.02)
    subprocess.run(["ovs-vsctl", f"--db=unix:{sock}", "--no-wait", "init"], check=True)
    yield f"unix:{sock}"
    proc.terminate()
    proc.wait(timeout=10)


def vsctl(remote: str, *args: str) -> None:
    subprocess.run(["ovs-vsctl", f"--db={remote}", "--no-wait", *args], check=True,
                   capture_output=True)


def transact(remote: str, *ops: dict) -> None:
    out = subprocess.run(["ovsdb-client", "transact", remote,
                          json.dumps(["Open_vSwitch", *ops])],
                         check=True, capture_output=True, text=True).stdout
    assert "error" not in out, out


class Published:
    """The states the IDL thread hands over, with when each arrived."""

    def __init__(self):
        self.states: list[tuple[float, BridgeState]] = []
        self.cond = threading.Condition()

    def __call__(self, state: BridgeState) -> None:
        with self.cond:
            self.states.append((time.monotonic(), state))
            self.cond.notify_all()

    def mark(self) -> int:
        with self.cond:
            return len(self.states)

    def wait_for(self, test, timeout: float = 5.0, since: int = 0) -> tuple[float, BridgeState]:
        """The first state from the ``since``-th on that passes ``test``."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for at, state in self.states[since:]:
                    if test(state):
                        return at, state
                left = deadline - time.monotonic()
                assert left > 0, f"no such state; last: {self.states[-1:]}"
                self.cond.wait(left)


def test_a_plugged_vif_is_published_at_once_and_kept_current(ovsdb_server):
    published = Published()
    idl = Ovsdb(ovsdb_server, published).start()
    try:
        published.wait_for(lambda s: s.synced and s.bridge_ok)
        for i in range(30):                           # other VIFs already there
            vsctl(ovsdb_server, "add-port", "br-int", f"old{i}", "--", "set", "Interface",
                  f"old{i}", f"external_ids:iface-id=port-old{i}")
        published.wait_for(lambda s: len(s.vifs) == 30)
        vsctl(ovsdb_server, "add-port", "br-int", "tap1")
        published.wait_for(lambda s: any(v.name == "old29" for v in s.vifs))
        began = time.monotonic()
        vsctl(ovsdb_server, "set", "Interface", "tap1", "external_ids:iface-id=port-1")
        at, state = published.wait_for(lambda s: Vif("tap1", "port-1", -1) in s.vifs)
        # the ovs-vsctl process itself takes most of this; the thread adds ~a millisecond
        assert at - began < 1.0
        assert len(state.vifs) == 31
        # a column the thread read before changes: the cached conversion is not reused
        transact(ovsdb_server, {"op": "update", "table": "Interface",
                                "where": [["name", "==", "tap1"]], "row": {"ofport": 7}})
        published.wait_for(lambda s: Vif("tap1", "port-1", 7) in s.vifs)
        vsctl(ovsdb_server, "set", "Interface", "tap1", "external_ids:iface-id=port-2")
        _, state = published.wait_for(lambda s: Vif("tap1", "port-2", 7) in s.vifs)
        assert Vif("tap1", "port-1", 7) not in state.vifs
        mark = published.mark()
        vsctl(ovsdb_server, "del-port", "br-int", "tap1")
        _, state = published.wait_for(lambda s: not any(v.name == "tap1" for v in s.vifs),
                                      since=mark)
        assert len(state.vifs) == 30
    finally:
        idl.stop()


def test_a_burst_of_plugs_in_one_transaction_is_one_state(ovsdb_server):
    published = Published()
    idl = Ovsdb(ovsdb_server, published).start()
    try:
        published.wait_for(lambda s: s.synced and s.bridge_ok)
        args = []
        for i in range(100):
            args += ["--", "add-port", "br-int", f"tap{i}"]
        vsctl(ovsdb_server, *args[1:])
        time.sleep(0.2)
        count = published.mark()
        args = []
        for i in range(100):
            args += ["--", "set", "Interface", f"tap{i}", f"external_ids:iface-id=p{i}"]
        vsctl(ovsdb_server, *args[1:])
        _, state = published.wait_for(lambda s: len(s.vifs) == 100, since=count)
        assert {v.iface_id for v in state.vifs} == {f"p{i}" for i in range(100)}
        assert len(published.states) == count + 1      # no half-plugged burst in between
    finally:
        idl.stop()


# --- OpenFlow bundles ------------------------------------------------------------------

def test_bundled_flow_mods_are_the_bytes_os_ken_would_send():
    from os_ken.ofproto import ofproto_v1_3 as ofp
    from os_ken.ofproto import ofproto_v1_3_parser as parser

    from plexus.agent.ovs.openflow import Channel
    from plexus.lower.openflow import DP

    def flow_mod(i):
        return parser.OFPFlowMod(
            DP, cookie=i, table_id=i % 7, command=ofp.OFPFC_ADD, priority=100 + i,
            match=parser.OFPMatch(in_port=i + 1, eth_dst=f"fa:16:3e:00:00:{i:02x}"),
            instructions=[parser.OFPInstructionActions(
                ofp.OFPIT_APPLY_ACTIONS, [parser.OFPActionOutput(i + 2, 0)])])

    class Writer:
        def __init__(self):
            self.out = []

        def write(self, data):
            self.out.append(bytes(data))

    channel = Channel("/nonexistent")
    channel._writer = Writer()
    flags = ofp.ONF_BF_ATOMIC | ofp.ONF_BF_ORDERED
    for i in range(5):
        xid = channel._send_bundled(77, flags, flow_mod(i))
        reference = parser.ONFBundleAddMsg(DP, 77, flags, flow_mod(i), [])
        reference.set_xid(xid)
        reference.serialize()
        assert channel._writer.out[-1] == bytes(reference.buf)
