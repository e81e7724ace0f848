"""What the agent learns on external networks: the MACs of the next hops its routers
send to (``l3.external_nexthops``), resolved by ARP probes (``l3.arp_probe``, sender
0.0.0.0; for IPv6 next hops neighbour solicitations, ``ipv6.neighbor_solicit``) sent into
the network's bridge, whose replies to the chassis' probing MAC the
bridge sends to the agent (docs/routing.md, "What the agent fills in"). Pure state: the
agent does the I/O (packet-outs, the punt flow) and feeds replies to ``learn``."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from plexus.agent import ipv6, l3

REFRESH = 30.0          # seconds between probes of a resolved next hop
RETRY = 1.0             # seconds between probes of an unresolved one


def probe_mac(chassis: str) -> str:
    """The MAC a chassis probes with: locally administered, unicast, from its name."""
    digest = hashlib.blake2b(f"arp-probe/{chassis}".encode(), digest_size=5).digest()
    return "0a:" + ":".join(f"{b:02x}" for b in digest)


@dataclass(frozen=True)
class Probe:
    """One ARP probe to send: into which bridge, the frame."""

    bridge: str
    ip: str
    frame: bytes


class Resolver:
    """Next hops to resolve, the MACs learnt, and when each was last probed."""

    def __init__(self, chassis: str):
        self.mac = probe_mac(chassis)
        self.wanted: dict[str, tuple[str, int | None]] = {}   # ip → (bridge, vlan)
        self.macs: dict[str, str] = {}                      # ip → MAC (what with_l3 reads)
        self._probed: dict[str, float] = {}

    def want(self, nexthops: list[l3.Nexthop], mappings: dict[str, str]) -> bool:
        """Resolve these next hops from now on (others are forgotten); True if the set
        changed. A next hop on a physical network without a mapping is left out."""
        wanted = {n.ip: (mappings[n.physical_network], n.vlan) for n in nexthops
                  if n.physical_network in mappings}
        if wanted == self.wanted:
            return False
        self.wanted = wanted
        self.macs = {ip: mac for ip, mac in self.macs.items() if ip in wanted}
        return True

    def bridges(self) -> list[str]:
        """The bridges probes go into (each needs the punt flow)."""
        return sorted({bridge for bridge, _ in self.wanted.values()})

    def due(self, now: float | None = None) -> list[Probe]:
        """The probes to send now (marked as sent)."""
        now = time.monotonic() if now is None else now
        out = []
        for ip, (bridge, vlan) in sorted(self.wanted.items()):
            wait = REFRESH if ip in self.macs else RETRY
            if now - self._probed.get(ip, -1e9) >= wait:
                self._probed[ip] = now
                out.append(Probe(bridge, ip, ipv6.neighbor_solicit(self.mac, ip, vlan)
                                 if ":" in ip else l3.arp_probe(self.mac, ip, vlan)))
        return out

    def learn(self, frame: bytes) -> bool:
        """Take an ARP reply or a neighbour advertisement; True if it taught a new or
        changed MAC of a wanted hop."""
        from os_ken.lib.packet import arp, packet
        advert = ipv6.nd_message(frame, ipv6.NEIGHBOR_ADVERTISEMENT)
        if advert is not None:
            _, target, mac = advert
            if target not in self.wanted or mac is None or self.macs.get(target) == mac:
                return False
            self.macs[target] = mac
            return True
        try:
            reply = packet.Packet(frame).get_protocol(arp.arp)
        except Exception:  # noqa: BLE001 - a malformed frame teaches nothing
            return False
        if reply is None or reply.opcode != arp.ARP_REPLY or reply.src_ip not in self.wanted:
            return False
        mac = reply.src_mac.lower()
        if self.macs.get(reply.src_ip) == mac:
            return False
        self.macs[reply.src_ip] = mac
        return True
