"""A native OpenFlow 1.3 channel to one bridge over its unix management socket, using
os-ken's codec (no os-ken application framework): hello and features, echo, the async
configuration that lets this service connection receive packet-ins (NXT_PACKET_IN2,
which carries the ``Controller`` action's userdata and the pipeline's registers; the
reasons asked for: action, and invalid TTL, which dec_ttl sends), flow statistics,
atomic bundles, packet-out and barrier. Replies are matched to requests by xid."""

from __future__ import annotations

import asyncio
import itertools
import logging
import struct
from dataclasses import dataclass, field
from typing import Callable

from os_ken.ofproto import ofproto_common
from os_ken.ofproto import ofproto_parser as ofp_parser_mod
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from plexus.lower.openflow import DP

LOG = logging.getLogger(__name__)
HEADER = struct.Struct("!BBHI")
# ONF bundle add (OF1.3 extension 230): header, experimenter, exp_type, bundle id, flags
BUNDLE_ADD = struct.Struct("!BBHIIIIxxH")
NXPIF_NXT_PACKET_IN2 = 2          # enum nx_packet_in_format (os-ken lacks the name)
REQUEST_TIMEOUT = 30.0


class OpenFlowError(RuntimeError):
    """The switch refused a request (an OFPT_ERROR), or the channel is gone."""


@dataclass(frozen=True)
class PacketIn:
    """A packet the pipeline sent to the agent: why (userdata, and the OpenFlow reason:
    ``OFPR_ACTION`` for a ``Controller`` action, ``OFPR_INVALID_TTL`` from dec_ttl), where
    from, the frame, and the pipeline fields it carried (``metadata``, ``reg3``...; OVS
    sends those that are not zero)."""

    userdata: str
    in_port: int
    cookie: int
    table_id: int
    data: bytes
    reason: int = ofp.OFPR_ACTION
    fields: dict = field(default_factory=dict)


class Channel:
    """One OpenFlow 1.3 connection to a bridge's ``<rundir>/<bridge>.mgmt`` socket."""

    def __init__(self, path: str, on_packet_in: Callable[[PacketIn], None] | None = None):
        self.path = path.removeprefix("unix:")
        self.on_packet_in = on_packet_in or (lambda pin: None)
        self._xids = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future, list]] = {}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task | None = None
        self.closed = asyncio.Event()
        self.datapath_id: int | None = None

    # --- connection ------------------------------------------------------------------
    async def connect(self, timeout: float = 10.0) -> "Channel":
        """Connect, say hello, learn the datapath id, and ask for packet-ins."""
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_unix_connection(self.path), timeout)
        self._send(parser.OFPHello(DP))
        version, msg_type, _, _, _ = await asyncio.wait_for(self._read_raw(), timeout)
        # the switch says the highest version it speaks; both then use the lower one
        if msg_type != ofp.OFPT_HELLO or version < ofp.OFP_VERSION:
            raise OpenFlowError(f"{self.path}: expected a hello for OpenFlow 1.3 or later, "
                                f"got version {version} type {msg_type}")
        self._task = asyncio.create_task(self._read_loop(), name=f"openflow:{self.path}")
        features = await self.request(parser.OFPFeaturesRequest(DP), timeout=timeout)
        self.datapath_id = features.datapath_id
        self._send(parser.NXTSetPacketInFormatMsg(DP, NXPIF_NXT_PACKET_IN2))
        reasons = 1 << ofp.OFPR_ACTION | 1 << ofp.OFPR_INVALID_TTL
        self._send(parser.OFPSetAsync(DP, [reasons, reasons], [0, 0], [0, 0]))
        await self.barrier(timeout=timeout)
        return self

    def close(self) -> None:
        """Close the connection (pending requests fail)."""
        if self._writer is not None:
            self._writer.close()
        if self._task is not None:
            self._task.cancel()
        self._fail_pending(OpenFlowError("channel closed"))
        self.closed.set()

    @property
    def alive(self) -> bool:
        """Whether the connection is up."""
        return self._writer is not None and not self.closed.is_set()

    # --- requests --------------------------------------------------------------------
    def _send(self, msg) -> int:
        if self._writer is None or self.closed.is_set():
            raise OpenFlowError("channel closed")
        if msg.xid is None:
            msg.set_xid(next(self._xids) & 0xFFFFFFFF)
        msg.serialize()
        self._writer.write(msg.buf)
        return msg.xid

    async def request(self, msg, timeout: float = REQUEST_TIMEOUT):
        """Send ``msg`` and wait for its reply (multipart replies come back as a list)."""
        future = asyncio.get_running_loop().create_future()
        xid = self._send(msg)
        self._pending[xid] = (future, [])
        try:
            await self._writer.drain()
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(xid, None)

    async def barrier(self, timeout: float = REQUEST_TIMEOUT) -> None:
        """Wait until the switch has processed everything sent before."""
        await self.request(parser.OFPBarrierRequest(DP), timeout=timeout)

    async def flow_stats(self, table: int = ofp.OFPTT_ALL) -> list:
        """Every installed flow (os-ken ``OFPFlowStats``) of every table (or one)."""
        req = parser.OFPFlowStatsRequest(DP, 0, table, ofp.OFPP_ANY, ofp.OFPG_ANY,
                                         0, 0, parser.OFPMatch())
        replies = await self.request(req)
        return [stat for reply in replies for stat in reply.body]

    async def meter_configs(self) -> list:
        """Every meter of the switch (os-ken ``OFPMeterConfigStats``)."""
        replies = await self.request(parser.OFPMeterConfigStatsRequest(DP, 0, ofp.OFPM_ALL))
        return [stat for reply in replies for stat in reply.body]

    async def send_checked(self, messages: list, timeout: float = REQUEST_TIMEOUT) -> None:
        """Send messages that have no reply on success (meter mods, which OVS does not
        take in bundles), then a barrier; raises ``OpenFlowError`` with the errors the
        switch answered any of them with."""
        if not messages:
            return
        errors: list = []
        xids = []
        try:
            for msg in messages:
                xid = self._send(msg)
                self._pending[xid] = (None, errors)
                xids.append(xid)
            await self.barrier(timeout)
        finally:
            for xid in xids:
                self._pending.pop(xid, None)
        if errors:
            raise OpenFlowError(f"{len(errors)} of {len(messages)} refused: "
                                + "; ".join(map(str, errors[:3])))

    async def bundle(self, messages: list, timeout: float = REQUEST_TIMEOUT) -> None:
        """Apply ``messages`` (flow mods) as one atomic, ordered ONF bundle."""
        if not messages:
            return
        bundle_id = next(self._xids) & 0xFFFFFFFF
        flags = ofp.ONF_BF_ATOMIC | ofp.ONF_BF_ORDERED
        await self.request(parser.ONFBundleCtrlMsg(DP, bundle_id, ofp.ONF_BCT_OPEN_REQUEST,
                                                   flags, []), timeout)
        errors: list[str] = []
        added: list[int] = []
        try:
            for msg in messages:
                xid = self._send_bundled(bundle_id, flags, msg)
                added.append(xid)
                self._pending[xid] = (None, errors)
            await self._writer.drain()
            await self.request(parser.ONFBundleCtrlMsg(DP, bundle_id,
                                                       ofp.ONF_BCT_COMMIT_REQUEST, flags, []),
                               timeout)
        except OpenFlowError as exc:
            detail = "; ".join(errors[:5])
            raise OpenFlowError(f"bundle of {len(messages)} refused: {exc}"
                                + (f" ({detail})" if detail else "")) from None
        finally:
            for xid in added:
                self._pending.pop(xid, None)

    def _send_bundled(self, bundle_id: int, flags: int, msg) -> int:
        """Send ``msg`` inside an ONF bundle add message; returns the xid both carry.
        Byte for byte what os-ken's ``ONFBundleAddMsg`` makes, without building and
        serializing a second message object per flow mod (a burst of ports is
        thousands of them)."""
        if self._writer is None or self.closed.is_set():
            raise OpenFlowError("channel closed")
        xid = next(self._xids) & 0xFFFFFFFF
        if msg.xid is None:
            msg.set_xid(xid)
        else:
            msg.xid = xid
        msg.serialize()
        inner = msg.buf
        self._writer.write(BUNDLE_ADD.pack(
            ofp.OFP_VERSION, ofp.OFPT_EXPERIMENTER, BUNDLE_ADD.size + len(inner), xid,
            ofproto_common.ONF_EXPERIMENTER_ID, ofp.ONF_ET_BUNDLE_ADD_MESSAGE, bundle_id,
            flags) + inner)
        return xid

    async def add_flow(self, priority: int, match: dict, userdata: str,
                       timeout: float = REQUEST_TIMEOUT) -> None:
        """Add (or replace) one flow in table 0 sending matching packets to the agent
        with ``userdata``; waits for the switch to accept it."""
        action = parser.NXActionController2(userdata=userdata.encode(),
                                            max_len=ofp.OFPCML_NO_BUFFER)
        self._send(parser.OFPFlowMod(
            DP, table_id=0, command=ofp.OFPFC_ADD, priority=priority,
            match=parser.OFPMatch(**match),
            instructions=[parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [action])]))
        await self.barrier(timeout=timeout)

    async def port_number(self, name: str) -> int | None:
        """The OpenFlow port number of the bridge's port called ``name`` (None: none)."""
        replies = await self.request(parser.OFPPortDescStatsRequest(DP, 0))
        for reply in replies:
            for port in reply.body:
                if port.name.decode(errors="replace") == name:
                    return port.port_no
        return None

    async def set_loopback(self, cookie: int, priority: int, in_port: int,
                           macs: list[str], timeout: float = REQUEST_TIMEOUT) -> None:
        """Have exactly one flow in table 0 per MAC of ``macs`` sending frames from
        ``in_port`` to it back out of ``in_port`` (flows marked ``cookie``; others with
        that cookie removed); waits for the switch to accept them."""
        self._send(parser.OFPFlowMod(DP, cookie=cookie, cookie_mask=0xFFFFFFFFFFFFFFFF,
                                     table_id=ofp.OFPTT_ALL, command=ofp.OFPFC_DELETE,
                                     out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
                                     match=parser.OFPMatch()))
        back = [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS,
                                             [parser.OFPActionOutput(ofp.OFPP_IN_PORT, 0)])]
        for mac in macs:
            self._send(parser.OFPFlowMod(DP, cookie=cookie, table_id=0,
                                         command=ofp.OFPFC_ADD, priority=priority,
                                         match=parser.OFPMatch(in_port=in_port, eth_dst=mac),
                                         instructions=back))
        await self.barrier(timeout=timeout)

    def packet_out(self, port: int, data: bytes) -> None:
        """Send ``data`` out of ``port`` (as if it came from the controller)."""
        self._send(parser.OFPPacketOut(DP, ofp.OFP_NO_BUFFER, ofp.OFPP_CONTROLLER,
                                       [parser.OFPActionOutput(port, 0)], data))

    # --- the reader ------------------------------------------------------------------
    async def _read_raw(self) -> tuple[int, int, int, int, bytes]:
        head = await self._reader.readexactly(HEADER.size)
        version, msg_type, length, xid = HEADER.unpack(head)
        body = await self._reader.readexactly(length - HEADER.size)
        return version, msg_type, length, xid, head + body

    async def _read_loop(self) -> None:
        try:
            while True:
                version, msg_type, length, xid, buf = await self._read_raw()
                try:
                    msg = ofp_parser_mod.msg(DP, version, msg_type, length, xid, buf)
                except Exception:  # noqa: BLE001 - one undecodable message must not end us
                    LOG.exception("undecodable OpenFlow message type %d", msg_type)
                    continue
                if msg is not None:
                    self._dispatch(msg)
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            LOG.warning("OpenFlow channel %s lost: %s", self.path, exc or "closed")
        except asyncio.CancelledError:
            pass
        finally:
            self._fail_pending(OpenFlowError("channel lost"))
            self.closed.set()

    def _dispatch(self, msg) -> None:
        if isinstance(msg, parser.OFPEchoRequest):
            reply = parser.OFPEchoReply(DP, msg.data)
            reply.set_xid(msg.xid)
            self._send(reply)
            return
        if isinstance(msg, parser.NXTPacketIn2):
            self._packet_in(msg)
            return
        if isinstance(msg, parser.OFPPacketIn):
            LOG.debug("ignoring a standard packet-in from table %d", msg.table_id)
            return
        entry = self._pending.get(msg.xid)
        if entry is None:
            if isinstance(msg, parser.OFPErrorMsg):
                LOG.error("OpenFlow error for xid %d: %s", msg.xid, describe_error(msg))
            return
        future, parts = entry
        if isinstance(msg, parser.OFPErrorMsg):
            if future is None:                     # a bundled message: collected
                parts.append(describe_error(msg))
            elif not future.done():
                future.set_exception(OpenFlowError(describe_error(msg)))
            return
        if future is None or future.done():
            return
        if isinstance(msg, parser.OFPMultipartReply):
            parts.append(msg)
            if not msg.flags & ofp.OFPMPF_REPLY_MORE:
                future.set_result(parts)
            return
        future.set_result(msg)

    def _packet_in(self, msg) -> None:
        try:
            fields = pipeline_fields(msg.metadata or b"")
            pin = PacketIn(userdata=(msg.userdata or b"").decode(errors="replace"),
                           in_port=int(fields.get("in_port", 0)), cookie=msg.cookie or 0,
                           table_id=msg.table_id or 0, data=bytes(msg.data or b""),
                           reason=msg.reason if msg.reason is not None else ofp.OFPR_ACTION,
                           fields=fields)
        except Exception:  # noqa: BLE001 - a malformed packet-in is logged and dropped
            LOG.exception("malformed packet-in")
            return
        try:
            self.on_packet_in(pin)
        except Exception:  # noqa: BLE001 - a responder bug must not end the channel
            LOG.exception("packet-in handler failed")

    def _fail_pending(self, exc: Exception) -> None:
        for future, _ in list(self._pending.values()):
            if future is not None and not future.done():
                future.set_exception(exc)


def pipeline_fields(metadata: bytes) -> dict:
    """The fields carried in an NXT_PACKET_IN2 metadata property (raw OXMs): in_port,
    metadata, registers... (a masked one as its value)."""
    length = 4 + len(metadata)
    buf = struct.pack("!HH", ofp.OFPMT_OXM, length) + metadata + b"\0" * ((8 - length % 8) % 8)
    match = parser.OFPMatch.parser(buf, 0)
    return {k: (v[0] if isinstance(v, tuple) else v) for k, v in match.items()}


def in_port_of(metadata: bytes) -> int:
    """The in_port carried in an NXT_PACKET_IN2 metadata property (raw OXMs)."""
    return int(pipeline_fields(metadata).get("in_port", 0))


def describe_error(msg) -> str:
    """A readable OpenFlow error: type, code and the start of the offending message."""
    names = {v: k for k, v in vars(ofp).items() if k.startswith("OFPET_")}
    return f"{names.get(msg.type, msg.type)} code {msg.code}"


__all__ = ["Channel", "OpenFlowError", "PacketIn", "in_port_of"]
