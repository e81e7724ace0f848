"""OVSDB through Open vSwitch's own Python IDL (the ``ovs`` package), in one thread:
it keeps br-int configured (netdev datapath, fail_mode=secure, OpenFlow 1.3), reports
the bridge's VIFs (``external_ids:iface-id``) and tunnels with their ofports whenever
they change, and makes the set of VXLAN ports match what the agent asks for — one per
remote chassis, and only ports it created itself (``external_ids:plexus-chassis``).

The IDL runs its own poll loop, so it lives in a thread; it hands each new
``BridgeState`` to a callback (the agent passes one that hops onto its event loop) as
soon as the update that made it is read: a VIF plugged (``iface-id`` set) reaches the
agent within about a millisecond, not after a poll interval.

Two things keep that path short under bursts of VIFs:

- the ``ovs`` package parses OVSDB's JSON-RPC with a pure-Python, character-at-a-time
  parser when its C extension is not built (the PyPI wheel has none); ``FastParser``
  gives the same interface over the standard library's C decoder and is installed in
  its place (``install_fast_json``), about 50 times faster;
- ``BridgeState`` is rebuilt from the IDL's rows on every change, but each interface is
  converted once per change of its own row (``Idl.notify`` says which rows changed), not
  once per update of any row, so N plugs one after the other cost O(N) conversions, not
  O(N²)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import warnings
from dataclasses import dataclass
from typing import Callable

# ovs.poller probes for eventlet, whose import warns that it is deprecated; we use none
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import ovs.db.idl
    import ovs.json
    import ovs.jsonrpc
    import ovs.poller
    import ovs.stream

from plexus.agent.relevant import Vif  # noqa: E402

LOG = logging.getLogger(__name__)
TUNNEL_ID = "plexus-chassis"        # external_ids key marking a tunnel port we made
PATCH_ID = "plexus-physnet"         # external_ids key marking a patch port we made
VXLAN_PORT = "4789"
# BFD on tunnels toward gateway chassis: detection in 3 × min_rx (OVS's multiplier)
BFD = {"enable": "true", "min_rx": "100", "min_tx": "100"}
BRIDGE_SETTINGS = {"datapath_type": "netdev", "fail_mode": "secure",
                   "protocols": ["OpenFlow13"]}
COLUMNS = {
    "Open_vSwitch": ["bridges"],
    "Bridge": ["name", "ports", "datapath_type", "fail_mode", "protocols", "other_config"],
    "Port": ["name", "interfaces", "external_ids"],
    "Interface": ["name", "type", "options", "external_ids", "ofport", "bfd", "bfd_status"],
}
_UNSET = object()


class FastParser:
    """``ovs.json.Parser``'s interface (``feed``, ``is_done``, ``finish``) over the
    standard library's C JSON decoder: ``feed`` takes text until one whole JSON value
    is in, and returns how many characters of its argument it used.

    A decode is tried only when the new text holds a ``}`` or ``]`` (where a JSON-RPC
    message, an object, can end), so a message is decoded about once per socket read
    that may complete it."""

    _decoder = json.JSONDecoder()

    def __init__(self, check_trailer: bool = False):
        self._chunks: list[str] = []
        self._size = 0
        self._value = _UNSET
        self._error: str | None = None

    def feed(self, text: str) -> int:
        """Consume ``text`` up to the end of the first whole value; how much was used."""
        if self.is_done():
            return 0
        if "}" not in text and "]" not in text:
            self._keep(text)
            return len(text)
        before = self._size
        whole = "".join(self._chunks) + text if self._chunks else text
        start = len(whole) - len(whole.lstrip())
        if start == len(whole):
            self._keep(text)
            return len(text)
        try:
            value, end = self._decoder.raw_decode(whole, start)
        except json.JSONDecodeError as exc:
            end = len(whole.rstrip())
            if exc.pos >= end or exc.msg.startswith("Unterminated string") \
                    or (exc.msg.startswith("Invalid \\u") and exc.pos >= end - 6):
                self._keep(text)                  # the value goes on in the next read
                return len(text)
            self._error = f"line {exc.lineno}, column {exc.colno}: {exc.msg}"
            return len(text)
        self._value = value
        self._chunks, self._size = [], 0
        return max(0, end - before)

    def _keep(self, text: str) -> None:
        self._chunks.append(text)
        self._size += len(text)

    def is_done(self) -> bool:
        """Whether a whole value (or an error) has been read."""
        return self._value is not _UNSET or self._error is not None

    def finish(self):
        """The value read, or (as ``ovs.json.Parser`` does) an error string."""
        if self._error is not None:
            return self._error
        if self._value is _UNSET:
            return "unexpected end of input"
        return self._value


def install_fast_json() -> bool:
    """Make the ``ovs`` package parse JSON-RPC with ``FastParser`` when it would use its
    pure-Python parser (no C extension); True if installed."""
    if ovs.json.PARSER != ovs.json.PARSER_PY:
        return False
    ovs.json.Parser = FastParser
    return True


install_fast_json()


@dataclass(frozen=True)
class Tunnel:
    """A VXLAN port toward one remote chassis."""

    name: str
    chassis: str
    remote_ip: str
    ofport: int
    bfd: str = ""           # BFD state (up, down, init, admin_down); "" without BFD


@dataclass(frozen=True)
class BridgeState:
    """What OVSDB says about br-int: its VIFs and our tunnels (synced: a full view)."""

    synced: bool = False
    vifs: tuple[Vif, ...] = ()
    tunnels: tuple[Tunnel, ...] = ()
    bridge_ok: bool = False
    patches: tuple[tuple[str, int], ...] = ()     # (physnet, br-int ofport of its patch)

    def tunnel_ofports(self) -> dict[str, int]:
        """Remote chassis → ofport of its tunnel (usable ones only)."""
        return {t.chassis: t.ofport for t in self.tunnels if t.ofport > 0}

    def bfd_states(self) -> dict[str, str]:
        """Remote chassis → BFD state of its tunnel (tunnels with BFD only)."""
        return {t.chassis: t.bfd for t in self.tunnels if t.bfd}

    def patch_ofports(self) -> dict[str, int]:
        """Physical network → br-int's ofport of the patch toward its bridge (usable)."""
        return {physnet: ofport for physnet, ofport in self.patches if ofport > 0}


def tunnel_name(chassis: str) -> str:
    """The port name of the tunnel toward ``chassis`` (15 characters at most)."""
    return "plx" + hashlib.blake2b(chassis.encode(), digest_size=6).hexdigest()


def patch_names(bridge: str) -> tuple[str, str]:
    """The names of the patch pair between br-int and ``bridge``: (br-int side, other
    side), 15 characters at most (``int-br-ex``, ``phy-br-ex``)."""
    if len(bridge) > 11:
        bridge = hashlib.blake2b(bridge.encode(), digest_size=5).hexdigest()[:11]
    return f"int-{bridge}", f"phy-{bridge}"


def _one(value, default=None):
    if isinstance(value, list):
        return value[0] if value else default
    return value if value is not None else default


def fetch_schema(remote: str) -> ovs.db.idl.SchemaHelper:
    """The Open_vSwitch schema as the server has it (so versions always agree)."""
    error, stream = ovs.stream.Stream.open_block(ovs.stream.Stream.open(remote), 5000)
    if error:
        raise ConnectionError(f"OVSDB {remote}: {os.strerror(error)}")
    rpc = ovs.jsonrpc.Connection(stream)
    try:
        error, reply = rpc.transact_block(
            ovs.jsonrpc.Message.create_request("get_schema", ["Open_vSwitch"]))
    finally:
        rpc.close()
    if error or reply.error:
        raise ConnectionError(f"OVSDB {remote}: get_schema failed: "
                              f"{os.strerror(error) if error else reply.error}")
    helper = ovs.db.idl.SchemaHelper(schema_json=reply.result)
    for table, columns in COLUMNS.items():
        helper.register_columns(table, columns)
    return helper


class Idl(ovs.db.idl.Idl):
    """The ``ovs`` IDL, remembering which rows changed since ``take_touched``."""

    def __init__(self, *args, **kwargs):
        self.touched: set = set()
        super().__init__(*args, **kwargs)

    def notify(self, event, row, updates=None):
        self.touched.add(row.uuid)

    def take_touched(self) -> set:
        """The uuids of rows created, changed or deleted since the last call."""
        touched, self.touched = self.touched, set()
        return touched


class Ovsdb:
    """The OVSDB side of one chassis' br-int, run by a thread."""

    def __init__(self, remote: str, on_change: Callable[[BridgeState], None],
                 bridge: str = "br-int"):
        self.remote, self.on_change, self.bridge = remote, on_change, bridge
        self._lock = threading.Lock()
        self._want_tunnels: tuple[str, dict[str, str], frozenset] | None = None
        self._want_patches: dict[str, str] | None = None
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._thread = threading.Thread(target=self._run, name="ovsdb", daemon=True)
        self._last: BridgeState | None = None
        self._failed_txn = 0
        self._said: set = set()
        self._ifaces: dict = {}       # row uuid → (the datums read, what they said)

    # --- the agent's side --------------------------------------------------------------
    def start(self) -> "Ovsdb":
        """Start the IDL thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the IDL thread."""
        self._stop.set()
        self._wake()
        self._thread.join(timeout=5)
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)

    def set_tunnels(self, local_ip: str, peers: dict[str, str],
                    bfd: frozenset = frozenset()) -> None:
        """Make the tunnel ports exactly one per peer (chassis → remote tunnel IP), with
        BFD on those toward the chassis in ``bfd``."""
        with self._lock:
            self._want_tunnels = (local_ip, dict(peers), frozenset(bfd))
        self._wake()

    def set_patches(self, mappings: dict[str, str]) -> None:
        """Have a patch pair between br-int and each mapped bridge (physnet → bridge)."""
        with self._lock:
            self._want_patches = dict(mappings)
        self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    # --- the thread --------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._session()
            except ConnectionError as exc:
                LOG.warning("%s; retrying", exc)
                self._stop.wait(1.0)
            except Exception:  # noqa: BLE001 - log, wait, reconnect
                LOG.exception("OVSDB session %s failed; retrying", self.remote)
                self._stop.wait(1.0)

    def _session(self) -> None:
        idl = Idl(self.remote, fetch_schema(self.remote))
        self._ifaces = {}
        seqno = None
        try:
            while not self._stop.is_set():
                idl.run()
                if idl.has_ever_connected() and idl.change_seqno != seqno:
                    seqno = idl.change_seqno
                    done = self._ensure_bridge(idl)
                    if done is False:
                        seqno = None            # try again after the back-off
                    elif done:
                        continue
                if idl.has_ever_connected() and self._apply_tunnels(idl):
                    continue
                if idl.has_ever_connected() and self._apply_patches(idl):
                    continue
                self._publish(idl)
                poller = ovs.poller.Poller()
                idl.wait(poller)
                poller.fd_wait(self._wake_r, ovs.poller.POLLIN)
                if self._failed_txn:
                    poller.timer_wait(min(5000, 100 * 2 ** self._failed_txn))
                poller.block()
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
        finally:
            idl.close()

    def _bridge_row(self, idl):
        for row in idl.tables["Bridge"].rows.values():
            if row.name == self.bridge:
                return row
        return None

    def _state(self, idl) -> BridgeState:
        bridge = self._bridge_row(idl)
        if bridge is None:
            return BridgeState(synced=idl.has_ever_connected())
        vifs, tunnels, patches = [], [], []
        seen: dict = {}
        touched = idl.take_touched() if isinstance(idl, Idl) else None
        for port in bridge.ports:
            for iface in port.interfaces:
                kind, what = self._iface(iface, seen, touched)
                if kind == "patch":
                    patches.append(what)
                elif kind == "tunnel":
                    tunnels.append(what)
                elif kind == "vif":
                    vifs.append(what)
        self._ifaces = seen
        return BridgeState(synced=True, bridge_ok=self._bridge_ok(bridge),
                           vifs=tuple(sorted(vifs, key=lambda v: v.name)),
                           tunnels=tuple(sorted(tunnels, key=lambda t: t.name)),
                           patches=tuple(sorted(patches)))

    def _iface(self, iface, seen: dict, touched: set | None) -> tuple[str, object]:
        """What an interface is — ("vif", Vif), ("tunnel", Tunnel), ("patch", (physnet,
        ofport)) or ("", None) — converted from its columns only when its row changed
        since the last state (``touched``; None: unknown, convert)."""
        if touched is not None and iface.uuid not in touched:
            cached = self._ifaces.get(iface.uuid)
            if cached is not None:
                seen[iface.uuid] = cached
                return cached
        ids = dict(iface.external_ids)
        ofport = _one(iface.ofport, -1)
        ofport = ofport if isinstance(ofport, int) else -1
        if PATCH_ID in ids:
            out = ("patch", (ids[PATCH_ID], ofport))
        elif TUNNEL_ID in ids:
            bfd = dict(iface.bfd).get("enable") == "true"
            state = dict(iface.bfd_status).get("state", "down") if bfd else ""
            out = ("tunnel", Tunnel(iface.name, ids[TUNNEL_ID],
                                    dict(iface.options).get("remote_ip", ""), ofport, state))
        elif ids.get("iface-id"):
            out = ("vif", Vif(iface.name, ids["iface-id"], ofport))
        else:
            out = ("", None)
        seen[iface.uuid] = out
        return out

    def _publish(self, idl) -> None:
        if not idl.has_ever_connected():
            return
        state = self._state(idl)
        if state != self._last:
            self._last = state
            self.on_change(state)

    @staticmethod
    def _bridge_ok(bridge) -> bool:
        return (bridge.datapath_type == BRIDGE_SETTINGS["datapath_type"]
                and _one(bridge.fail_mode, "") == BRIDGE_SETTINGS["fail_mode"]
                and list(bridge.protocols) == BRIDGE_SETTINGS["protocols"])

    def _commit(self, txn, what: str) -> bool:
        status = txn.commit_block()
        if status in (ovs.db.idl.Transaction.SUCCESS, ovs.db.idl.Transaction.UNCHANGED):
            self._failed_txn = 0
            return True
        self._failed_txn = min(self._failed_txn + 1, 6)
        LOG.warning("OVSDB transaction (%s) ended %s: %s", what, status, txn.get_error())
        return False

    def _ensure_bridge(self, idl) -> bool | None:
        """Create or fix br-int: None if it was right, else whether the fix committed."""
        bridge = self._bridge_row(idl)
        if bridge is not None and self._bridge_ok(bridge):
            return None
        txn = ovs.db.idl.Transaction(idl)
        if bridge is None:
            LOG.info("creating %s", self.bridge)
            iface = txn.insert(idl.tables["Interface"])
            iface.name, iface.type = self.bridge, "internal"
            port = txn.insert(idl.tables["Port"])
            port.name, port.interfaces = self.bridge, [iface]
            bridge = txn.insert(idl.tables["Bridge"])
            bridge.name, bridge.ports = self.bridge, [port]
            bridge.other_config = {"disable-in-band": "true"}
            root = next(iter(idl.tables["Open_vSwitch"].rows.values()))
            root.verify("bridges")
            root.bridges = list(root.bridges) + [bridge]
        else:
            LOG.info("configuring %s: %s", self.bridge, BRIDGE_SETTINGS)
        bridge.datapath_type = BRIDGE_SETTINGS["datapath_type"]
        bridge.fail_mode = BRIDGE_SETTINGS["fail_mode"]
        bridge.protocols = BRIDGE_SETTINGS["protocols"]
        return self._commit(txn, f"configure {self.bridge}")

    def _apply_tunnels(self, idl) -> bool:
        """Create, fix or remove tunnel ports; True if a transaction succeeded."""
        with self._lock:
            want = self._want_tunnels
        bridge = self._bridge_row(idl)
        if want is None or bridge is None:
            return False
        local_ip, peers, with_bfd = want
        have = {}
        stale = []
        for port in bridge.ports:
            ids = dict(port.external_ids)
            if TUNNEL_ID not in ids:
                continue
            iface = port.interfaces[0] if port.interfaces else None
            chassis = ids[TUNNEL_ID]
            if (chassis in peers and chassis not in have and iface is not None
                    and iface.type == "vxlan" and port.name == tunnel_name(chassis)
                    and dict(iface.options) == tunnel_options(local_ip, peers[chassis])):
                have[chassis] = port
            else:
                stale.append(port)
        missing = sorted(set(peers) - set(have))
        rebfd = [c for c, port in sorted(have.items())
                 if dict(port.interfaces[0].bfd) != (BFD if c in with_bfd else {})]
        if not missing and not stale and not rebfd:
            with self._lock:
                if self._want_tunnels == want:
                    self._want_tunnels = None     # done until asked again
            return False
        txn = ovs.db.idl.Transaction(idl)
        bridge.verify("ports")
        ports = [p for p in bridge.ports if p not in stale]
        for port in stale:
            LOG.info("removing tunnel port %s (%s)", port.name,
                     dict(port.external_ids).get(TUNNEL_ID))
            port.delete()
        for chassis in rebfd:
            LOG.info("BFD %s on the tunnel to %s", "on" if chassis in with_bfd else "off",
                     chassis)
            have[chassis].interfaces[0].bfd = BFD if chassis in with_bfd else {}
        for chassis in missing:
            name = tunnel_name(chassis)
            LOG.info("adding tunnel port %s to %s (%s)", name, chassis, peers[chassis])
            iface = txn.insert(idl.tables["Interface"])
            iface.name, iface.type = name, "vxlan"
            iface.options = tunnel_options(local_ip, peers[chassis])
            iface.external_ids = {TUNNEL_ID: chassis}
            if chassis in with_bfd:
                iface.bfd = BFD
            port = txn.insert(idl.tables["Port"])
            port.name, port.interfaces = name, [iface]
            port.external_ids = {TUNNEL_ID: chassis}
            ports.append(port)
        bridge.ports = ports
        return self._commit(txn, "tunnels")


    def _apply_patches(self, idl) -> bool:
        """Create the missing patch pairs br-int ↔ mapped bridge; True if a transaction
        succeeded. A bridge that does not exist yet is skipped (logged once)."""
        with self._lock:
            want = self._want_patches
        integration = self._bridge_row(idl)
        if want is None or integration is None:
            return False
        bridges = {row.name: row for row in idl.tables["Bridge"].rows.values()}
        txn, todo = None, []
        for physnet, name in sorted(want.items()):
            other = bridges.get(name)
            if other is None:
                if ("missing", name) not in self._said:
                    self._said.add(("missing", name))
                    LOG.warning("bridge %s (physnet %s) does not exist: no patch", name,
                                physnet)
                continue
            inner, outer = patch_names(name)
            have_inner = any(p.name == inner for p in integration.ports)
            have_outer = any(p.name == outer for p in other.ports)
            if have_inner and have_outer:
                continue
            todo.append(name)
            txn = txn or ovs.db.idl.Transaction(idl)
            for bridge, mine, peer, present in ((integration, inner, outer, have_inner),
                                                (other, outer, inner, have_outer)):
                if present:
                    continue
                LOG.info("adding patch port %s to %s (peer %s)", mine, bridge.name, peer)
                iface = txn.insert(idl.tables["Interface"])
                iface.name, iface.type = mine, "patch"
                iface.options = {"peer": peer}
                iface.external_ids = {PATCH_ID: physnet}
                port = txn.insert(idl.tables["Port"])
                port.name, port.interfaces = mine, [iface]
                port.external_ids = {PATCH_ID: physnet}
                bridge.verify("ports")
                bridge.ports = list(bridge.ports) + [port]
        if txn is None:
            with self._lock:
                if self._want_patches == want:
                    self._want_patches = None
            return False
        return self._commit(txn, "patch ports " + ", ".join(todo))


def tunnel_options(local_ip: str, remote_ip: str) -> dict[str, str]:
    """Options of a VXLAN port: the VNI comes from the flow (``key=flow``)."""
    return {"remote_ip": remote_ip, "local_ip": local_ip, "key": "flow",
            "dst_port": VXLAN_PORT}
