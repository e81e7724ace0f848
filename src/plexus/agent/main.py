"""``plexus-agent``: the agent of one chassis.

    plexus-agent --server http://127.0.0.1:9696[,URL...] --chassis c1 \\
        --tunnel-ip 198.18.0.11 --ovsdb unix:/path/db.sock --ovs-rundir /path/run \\
        [--bridge-mappings physnet1:br-ex] [--gateway] \\
        [--username admin --password secret --project admin | --auth none]

SIGTERM or SIGINT stop it cleanly: the chassis' liveness ends, the flows stay."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from plexus.agent.agent import Agent, AgentConfig
from plexus.agent.metrics import DEFAULT_ADDRESS
from plexus.agent.ovs import Switch
from plexus.agent.metadata import MetadataProxy
from plexus.agent.southbound import Credentials, Southbound
from plexus.agent.timing import Timing
from plexus.pipeline.stages.metadata import METADATA_OFPORT

LOG = logging.getLogger("plexus.agent")


def mappings(text: str) -> dict[str, str]:
    """``physnet1:br-ex,physnet2:br-two`` → {physnet: bridge}."""
    out = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        physnet, sep, bridge = item.partition(":")
        if not sep or not physnet or not bridge:
            raise argparse.ArgumentTypeError(f"bad bridge mapping {item!r} (physnet:bridge)")
        out[physnet] = bridge
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(prog="plexus-agent", description=__doc__.splitlines()[0])
    p.add_argument("--server", required=True,
                   help="server URL(s), comma-separated; the next is tried when one fails")
    p.add_argument("--chassis", required=True, help="this chassis' name (binding:host_id)")
    p.add_argument("--tunnel-ip", required=True, help="this chassis' VXLAN endpoint address")
    p.add_argument("--ovsdb", required=True, help="OVSDB remote, e.g. unix:/run/db.sock")
    p.add_argument("--ovs-rundir", required=True,
                   help="OVS run directory (holds br-int.mgmt, the OpenFlow socket)")
    p.add_argument("--bridge", default="br-int", help=argparse.SUPPRESS)
    p.add_argument("--bridge-mappings", type=mappings, default={},
                   help="physical network → bridge, e.g. physnet1:br-ex")
    p.add_argument("--gateway", action="store_true", help="may host HA SNAT gateways")
    p.add_argument("--availability-zone", default="nova",
                   help="the availability zone this chassis is in (default: nova)")
    p.add_argument("--auth", choices=("password", "none"), default="password")
    p.add_argument("--username", default="admin")
    p.add_argument("--password", default="secret")
    p.add_argument("--project", default="admin")
    p.add_argument("--ttl", type=float, default=10.0, help="liveness lease TTL (seconds)")
    p.add_argument("--icmp-error-rate", type=float, default=100.0,
                   help="ICMP errors a second this chassis' routers send at most "
                        "(time exceeded, fragmentation needed, host unreachable)")
    p.add_argument("--icmp-error-burst", type=float, default=100.0,
                   help="... and at most this many at once (token bucket depth)")
    p.add_argument("--icmp-source-rate", type=float, default=10.0,
                   help="ICMP errors a second to any one sender at most")
    p.add_argument("--icmp-source-burst", type=float, default=10.0,
                   help="... and to any one sender at most this many at once")
    p.add_argument("--snat-idle", type=float, default=Timing.snat_idle,
                   help="seconds a leased SNAT port block must stay unused before it is "
                        "given back (default %(default)s)")
    p.add_argument("--metadata-netns",
                   help="serve 169.254.169.254 to local VMs: the network namespace holding "
                        "the metadata address, whose veth end is plugged into br-int with "
                        f"ofport_request={METADATA_OFPORT} (docs/operations.md)")
    p.add_argument("--nova-metadata-url",
                   help="Nova's metadata API, e.g. http://nova:8775 (with --metadata-netns)")
    p.add_argument("--metadata-secret-file",
                   help="file holding the shared secret that signs X-Instance-ID (Nova's "
                        "[neutron] metadata_proxy_shared_secret)")
    p.add_argument("--metrics", default=DEFAULT_ADDRESS, metavar="HOST:PORT",
                   help="where /metrics (Prometheus) listens (default %(default)s; "
                        "port 0: any free port; 'off': no listener)")
    p.add_argument("--log-level", default="info")
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> None:
    """Run the agent until a signal asks it to stop."""
    creds = Credentials(None) if args.auth == "none" else Credentials(
        args.username, args.password, args.project)
    sb = Southbound(args.server.split(","), creds, chassis=args.chassis)
    switch = Switch(args.ovsdb, args.ovs_rundir, args.bridge)
    agent = Agent(AgentConfig(args.chassis, args.tunnel_ip, args.bridge_mappings,
                              args.gateway, args.ttl, icmp_error_rate=args.icmp_error_rate,
                              icmp_error_burst=args.icmp_error_burst,
                              icmp_source_rate=args.icmp_source_rate,
                              icmp_source_burst=args.icmp_source_burst,
                              metrics=None if args.metrics == "off" else args.metrics,
                              availability_zone=args.availability_zone,
                              timing=Timing(snat_idle=args.snat_idle),
                              metadata_ofport=METADATA_OFPORT if args.metadata_netns else 0),
                  sb, switch)
    proxy = None
    if args.metadata_netns:
        if not args.nova_metadata_url or not args.metadata_secret_file:
            raise SystemExit("plexus-agent: --metadata-netns needs --nova-metadata-url and "
                             "--metadata-secret-file")
        secret = Path(args.metadata_secret_file).read_bytes().strip()
        proxy = MetadataProxy(args.metadata_netns, args.nova_metadata_url, secret,
                              agent.metadata_requester)
        try:
            await proxy.start()
        except OSError as exc:
            raise SystemExit(f"plexus-agent: cannot serve metadata in namespace "
                             f"{args.metadata_netns!r}: {exc} (docs/operations.md)") from None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.stop)
    try:
        await agent.run()
    finally:
        try:
            await asyncio.wait_for(agent.unregister(), 2.0)
        except Exception as exc:  # noqa: BLE001 - best effort on the way out
            LOG.info("could not unregister: %s", exc)
        if proxy is not None:
            await proxy.stop()
        await sb.close()
        LOG.info("stopped (flows left in place)")


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``plexus-agent``."""
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s [" + args.chassis
                        + "]: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
