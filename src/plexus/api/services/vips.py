"""Learned owners of shared allowed-address-pair VIPs (keepalived style: several ports of
a network list the VIP, the MASTER announces it with a gratuitous ARP).

The agent hosting the port that announced the VIP reports it here; the owner is a model
object (collection ``vip_owners``, id ``<network id>:<ip>``: ``network_id``, ``ip``,
``port_id``, ``chassis``), so it rides every chassis' stream on the network's scope and
``l3_neighbor`` routes the VIP to that port. A report that changes nothing writes
nothing (a GARP storm costs reads, not writes). Deleting the port deletes the owners
naming it, in the port's delete transaction; a port that stops listing the VIP leaves a
stale owner that compilers ignore (it names a port that no longer holds the VIP) until
the next report replaces it."""

from __future__ import annotations

import ipaddress

from plexus.api import errors
from plexus.api.services.base import Writes, model_key

COLLECTION = "vip_owners"


def owner_key(network_id: str, ip: str) -> str:
    """Store key of the owner of VIP ``ip`` on a network."""
    return model_key(COLLECTION, f"{network_id}:{ip}")


def pair_hosts(port: dict) -> set[str]:
    """The IPv4 host addresses (``x`` or ``x/32``) among a port's allowed address pairs."""
    out = set()
    for pair in port.get("allowed_address_pairs") or ():
        try:
            net = ipaddress.ip_network(str(pair.get("ip_address")), strict=False)
        except ValueError:
            continue
        if net.version == 4 and net.prefixlen == 32:
            out.add(str(net.network_address))
    return out


class VipOwners:
    """Recording the port a chassis saw announce a shared VIP."""

    def __init__(self, services):
        self.s = services
        services.add_hook("port_delete", self._on_port_delete)

    def report(self, port_id: str, ip, host) -> tuple[dict, bool]:
        """Port ``port_id``, bound to ``host``, announced VIP ``ip``: it is the owner now.
        Returns (the owner, whether it was written)."""
        if not isinstance(host, str) or not host:
            raise errors.InvalidInput("host must be the reporting chassis' name")
        try:
            ip = str(ipaddress.IPv4Address(ip))
        except (ValueError, TypeError):
            raise errors.InvalidInput(f"'{ip}' is not a valid IPv4 address") from None
        ports = self.s["ports"]

        def plan(attempt: int) -> tuple[dict, bool]:
            found = ports.get(port_id)
            if found is None:
                raise errors.NotFound("port", port_id)
            port, rev = found
            if port.get("binding:host_id") != host:
                raise errors.Conflict(f"Port {port_id} is bound to "
                                      f"'{port.get('binding:host_id')}', not '{host}'",
                                      type_name="PortBindingMismatch")
            if ip not in pair_hosts(port):
                raise errors.Conflict(f"Port {port_id} has no allowed address pair {ip}",
                                      type_name="AddressPairNotFound")
            owner = {"id": f"{port['network_id']}:{ip}", "network_id": port["network_id"],
                     "ip": ip, "port_id": port_id, "chassis": host}
            key = owner_key(port["network_id"], ip)
            current = self.s.get(key)
            if current is not None and current[0] == owner:
                return owner, False
            w = Writes()
            w.expect(ports.key(port_id), rev)
            w.expect(key, current[1] if current else 0)
            w.put(key, owner)
            self.s.commit(w)
            return owner, True
        return self.s.retrying(plan)

    def _on_port_delete(self, ctx, port: dict, w: Writes) -> None:
        """Delete the owners naming the port, in its delete transaction."""
        for ip in sorted(pair_hosts(port)):
            key = owner_key(port["network_id"], ip)
            found = self.s.get(key)
            if found is not None and found[0].get("port_id") == port["id"]:
                w.expect(key, found[1])
                w.delete(key)
