"""The one place the agent talks to Open vSwitch: OVSDB (bridge, VIFs, tunnels) through
the ``ovs`` IDL, OpenFlow 1.3 to br-int through os-ken's codec, and ovs-vswitchd's
unixctl socket (``ovs-appctl``) for what OpenFlow cannot say in os-ken (flushing a
conntrack zone, reading its connections; ovs-vsctl for conntrack zone timeout
policies). ``Switch`` is the boundary the agent uses; tests replace it with a
fake that keeps the same methods."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Callable

from plexus.agent.flowdiff import Entry, Key, of_meter_config, of_stats
from plexus.agent.ovs.openflow import Channel, OpenFlowError, PacketIn
from plexus.agent.ovs.ovsdb import BridgeState, Ovsdb, Tunnel, patch_names, tunnel_name
from plexus.pipeline.flows import Meter

__all__ = ["BridgeState", "OpenFlowError", "PacketIn", "Switch", "Tunnel", "patch_names",
           "tunnel_name", "vswitchd_target"]
APPCTL_TIMEOUT = 5.0
ARP_PUNT_PRIORITY = 1000           # above the external bridge's NORMAL flow
LOOPBACK_PRIORITY = 900            # above NORMAL: hairpin frames back into br-int
LOOPBACK_COOKIE = 0x706C78686169   # "plxhai": the loopback flows of a mapped bridge
NORMAL = 0xFFFFFFFA                # OFPP_NORMAL
# what ``warm_tunnel`` sends: broadcast, from a locally administered MAC, EtherType
# 0x88B5 (IEEE 802 local experimental), no payload beyond the minimum frame
WARM_FRAME = bytes.fromhex("ffffffffffff" "0a706c78776d" "88b5") + b"plexus-warm".ljust(46, b"\0")


def vswitchd_target(rundir: str) -> str:
    """ovs-vswitchd's unixctl socket in ``rundir``: ``ovs-vswitchd.ctl`` when it was
    started with that name (``--unixctl``), else OVS's default ``ovs-vswitchd.<pid>.ctl``."""
    run = Path(rundir)
    named = run / "ovs-vswitchd.ctl"
    if named.exists():
        return str(named)
    try:
        pid = int((run / "ovs-vswitchd.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return str(named)           # ovs-appctl then says what is missing
    return str(run / f"ovs-vswitchd.{pid}.ctl")


class Switch:
    """br-int of one chassis: OVSDB state and tunnels, flows, packet-in and packet-out."""

    def __init__(self, ovsdb: str, rundir: str, bridge: str = "br-int"):
        self.ovsdb_remote = ovsdb
        self.rundir = rundir
        self.mgmt = f"{rundir.rstrip('/')}/{bridge}.mgmt"
        self.bridge = bridge
        self._ovsdb: Ovsdb | None = None
        self._channel: Channel | None = None
        self._external: dict[str, Channel] = {}      # mapped bridge → its channel

    def start(self, on_state: Callable[[BridgeState], None]) -> None:
        """Start following OVSDB; ``on_state`` gets each new ``BridgeState`` (in the
        calling thread's event loop)."""
        loop = asyncio.get_running_loop()
        self._ovsdb = Ovsdb(self.ovsdb_remote,
                            lambda state: loop.call_soon_threadsafe(on_state, state),
                            self.bridge).start()

    def set_tunnels(self, local_ip: str, peers: dict[str, str],
                    bfd: frozenset = frozenset()) -> None:
        """Have exactly one VXLAN port per peer chassis (name → tunnel IP), with BFD on
        those toward the chassis in ``bfd``."""
        self._ovsdb.set_tunnels(local_ip, peers, bfd)

    def set_patches(self, mappings: dict[str, str]) -> None:
        """Have a patch pair between br-int and each mapped bridge (physnet → bridge)."""
        self._ovsdb.set_patches(mappings)

    async def punt_arp_replies(self, bridge: str, mac: str,
                               on_packet_in: Callable[[PacketIn], None]) -> None:
        """On the external ``bridge`` (which otherwise forwards NORMAL), send ARP replies
        and neighbour advertisements addressed to ``mac`` to the agent (packet-in with userdata ``arp``), keeping a
        channel to it; raises ``OSError``/``OpenFlowError``."""
        channel = self._external.get(bridge)
        if channel is None or not channel.alive:
            path = f"{self.rundir.rstrip('/')}/{bridge}.mgmt"
            channel = self._external[bridge] = await Channel(path, on_packet_in).connect()
        await channel.add_flow(ARP_PUNT_PRIORITY, {"eth_type": 0x0806, "arp_op": 2,
                                                   "eth_dst": mac}, "arp")
        await channel.add_flow(ARP_PUNT_PRIORITY, {"eth_type": 0x86DD, "ip_proto": 58,
                                                   "icmpv6_type": 136, "eth_dst": mac}, "arp")

    async def set_loopback(self, bridge: str, macs: list[str],
                           on_packet_in: Callable[[PacketIn], None]) -> None:
        """On the external ``bridge``, send frames br-int sends out of its patch to one of
        ``macs`` (addresses br-int itself answers for: floating IPs plugged here, gateways
        active here) straight back into br-int: its NORMAL never sends a frame back out
        of the port it came from. Exactly these flows (others removed); raises
        ``OSError``/``OpenFlowError``."""
        channel = self._external.get(bridge)
        if channel is None or not channel.alive:
            path = f"{self.rundir.rstrip('/')}/{bridge}.mgmt"
            channel = self._external[bridge] = await Channel(path, on_packet_in).connect()
        phy = await channel.port_number(patch_names(bridge)[1])
        if phy is None:
            raise OSError(f"{bridge} has no patch port {patch_names(bridge)[1]} (yet)")
        await channel.set_loopback(LOOPBACK_COOKIE, LOOPBACK_PRIORITY, phy, macs)

    def external_alive(self, bridge: str) -> bool:
        """Whether the OpenFlow channel to the external ``bridge`` is up."""
        channel = self._external.get(bridge)
        return channel is not None and channel.alive

    def packet_out_external(self, bridge: str, data: bytes) -> None:
        """Send a frame into the external ``bridge`` (forwarded NORMAL there)."""
        channel = self._external.get(bridge)
        if channel is None or not channel.alive:
            raise OSError(f"no OpenFlow channel to {bridge}")
        channel.packet_out(NORMAL, data)

    async def connect(self, on_packet_in: Callable[[PacketIn], None]) -> None:
        """Open the OpenFlow channel (raises ``OSError``/``OpenFlowError``)."""
        self._channel = await Channel(self.mgmt, on_packet_in).connect()

    @property
    def connected(self) -> bool:
        """Whether the OpenFlow channel is up."""
        return self._channel is not None and self._channel.alive

    async def disconnected(self) -> None:
        """Return once the OpenFlow channel is gone."""
        if self._channel is not None:
            await self._channel.closed.wait()

    async def installed(self) -> dict[Key, Entry]:
        """Every flow installed on the bridge, in canonical form."""
        return {e.key: e for e in map(of_stats, await self._channel.flow_stats())}

    async def meters(self) -> dict[int, Meter]:
        """The meters of br-int, by id."""
        return {c.meter_id: of_meter_config(c) for c in await self._channel.meter_configs()}

    async def apply_meters(self, messages: list) -> None:
        """Add, modify or delete meters (raises ``OpenFlowError``)."""
        await self._channel.send_checked(messages)

    async def apply(self, messages: list) -> None:
        """Apply flow mods as one atomic bundle (raises ``OpenFlowError``)."""
        await self._channel.bundle(messages)

    def packet_out(self, port: int, data: bytes) -> None:
        """Send a frame out of an OpenFlow port."""
        self._channel.packet_out(port, data)

    def warm_tunnel(self, ofport: int) -> None:
        """Send one frame through a tunnel port (tunnel key 0, which no chassis
        classifies: the far end drops it), so that the userspace datapath resolves the
        remote endpoint's MAC now. Its native tunnelling drops the packet that finds no
        entry in its tunnel neighbour cache (``ovs-appctl tnl/neigh/show``) while it
        ARPs for the endpoint: that packet should be this one, not a VM's first."""
        self._channel.packet_out(ofport, WARM_FRAME)

    async def flush_conntrack(self, zone: int) -> None:
        """Forget every connection of conntrack zone ``zone`` (``ovs-appctl
        dpctl/flush-conntrack zone=N``); raises ``OSError`` when that fails."""
        await self._run(["ovs-appctl", "-t", vswitchd_target(self.rundir),
                         f"--timeout={APPCTL_TIMEOUT:.0f}", "dpctl/flush-conntrack",
                         f"zone={zone}"])

    async def dump_conntrack(self) -> str:
        """Every connection the datapath tracks (``ovs-appctl dpctl/dump-conntrack``),
        one line each; raises ``OSError`` when that fails."""
        return await self._run(["ovs-appctl", "-t", vswitchd_target(self.rundir),
                                f"--timeout={APPCTL_TIMEOUT:.0f}", "dpctl/dump-conntrack"])

    async def table_packets(self, table: int) -> dict[int, int]:
        """Packets matched by the flows of one OpenFlow table, summed per cookie."""
        out: dict[int, int] = {}
        for stat in await self._channel.flow_stats(table):
            out[stat.cookie] = out.get(stat.cookie, 0) + stat.packet_count
        return out

    async def set_zone_timeouts(self, add: dict[int, dict[str, int]],
                                remove: list[int] = ()) -> None:
        """Conntrack timeout policies (seconds per state) of zones of the userspace
        datapath (OVSDB ``Datapath``/``CT_Zone``/``CT_Timeout_Policy``, one ovs-vsctl
        transaction): set those of ``add``, remove those of ``remove``."""
        vsctl = ["ovs-vsctl", f"--db={self.ovsdb_remote}", f"--timeout={APPCTL_TIMEOUT:.0f}"]
        have = await self._run([*vsctl, "--if-exists", "get", "Open_vSwitch", ".",
                                "datapaths:netdev"])
        argv = list(vsctl)
        if not have.strip():
            argv += ["--", "--id=@dp", "create", "Datapath", "datapath_version=0",
                     "--", "set", "Open_vSwitch", ".", "datapaths:netdev=@dp"]
            await self._run(argv)
            argv = list(vsctl)
        for zone in remove:
            argv += ["--", "--if-exists", "del-zone-tp", "netdev", f"zone={zone}"]
        for zone, timeouts in sorted(add.items()):
            argv += ["--", "--if-exists", "del-zone-tp", "netdev", f"zone={zone}",
                     "--", "add-zone-tp", "netdev", f"zone={zone}",
                     *(f"{k}={v}" for k, v in sorted(timeouts.items()))]
        if len(argv) > len(vsctl):
            await self._run(argv)

    async def _run(self, argv: list[str]) -> str:
        """Run an OVS tool; its output (``OSError`` when it fails or does not answer)."""
        proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), APPCTL_TIMEOUT + 2)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise OSError(f"{' '.join(argv)}: no answer") from None
        if proc.returncode != 0:
            raise OSError(f"{' '.join(argv)}: {err.decode(errors='replace').strip()}")
        return out.decode(errors="replace")

    def stop(self) -> None:
        """Close the channel and stop following OVSDB (flows stay installed)."""
        for channel in [self._channel, *self._external.values()]:
            if channel is not None:
                channel.close()
        if self._ovsdb is not None:
            self._ovsdb.stop()
