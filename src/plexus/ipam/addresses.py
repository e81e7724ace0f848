"""IP address allocation over subnets and allocation pools, with Neutron's rules. Pure.

These functions only *choose* and *check*; the API layer records a choice with a
compare-and-swap store transaction and retries with a fresh ``used`` when it loses.

Conventions shared by every function here:

- a pool is an inclusive ``(start, end)`` pair of address strings; ``validate_pools`` and
  ``normalize_pools`` also accept Neutron's ``{"start": ..., "end": ...}`` form;
- the *usable* range of a subnet is every address but the network address (IPv6: the
  subnet-router anycast address) and, for IPv4, the broadcast address. An IPv4 /31 has
  no usable range (as in Neutron); a /32 or /128 is its own single usable address;
- malformed input raises ``IpamError(kind="invalid")`` carrying Neutron's message.
"""

from __future__ import annotations

import functools
import ipaddress
import random
import re
from collections.abc import Collection, Iterable, Mapping, Sequence

from plexus.ipam import _ranges
from plexus.ipam.errors import IpamError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Pool = tuple[str, str]

_PREFIX = re.compile(r"\d{1,3}")


# -- parsing --------------------------------------------------------------------------

def _address(value: object) -> Address:
    """Parse one address or raise IpamError(invalid)."""
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return value
    if not isinstance(value, str) or "%" in value or value != value.strip():
        raise IpamError(f"'{value}' is not a valid IP address",
                        neutron_type="InvalidInput")
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise IpamError(f"'{value}' is not a valid IP address",
                        neutron_type="InvalidInput") from None


def _network(cidr: object) -> Network:
    """Parse a cidr leniently (host bits allowed) or raise IpamError(invalid)."""
    if isinstance(cidr, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return cidr
    if (not isinstance(cidr, str) or "/" not in cidr or "%" in cidr
            or not _PREFIX.fullmatch(cidr.rpartition("/")[2])):
        raise IpamError(f"'{cidr}' is not a valid IP subnet", neutron_type="InvalidInput")
    try:
        return ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        raise IpamError(f"'{cidr}' is not a valid IP subnet",
                        neutron_type="InvalidInput") from None


@functools.lru_cache(maxsize=1 << 16)
def _key(value: str) -> tuple[int, int]:
    """(version, integer) of an address string; cached because ``used`` is re-read often."""
    addr = _address(value)
    return addr.version, int(addr)


def _usable(net: Network) -> tuple[int, int]:
    """Inclusive integer bounds of the usable addresses (empty when lo > hi)."""
    first, last = int(net.network_address), int(net.broadcast_address)
    if first == last:                                   # /32, /128: the one address
        return first, last
    return first + 1, last - (1 if net.version == 4 else 0)


def _pool_pairs(pools: Iterable[object]) -> list[tuple[Address, Address]]:
    """Parse pools given as (start, end) pairs or {"start", "end"} mappings."""
    if isinstance(pools, (str, bytes, Mapping)):
        raise IpamError(f"Invalid data format for IP pool: '{pools}'",
                        neutron_type="InvalidInput")
    parsed = []
    for pool in pools:
        if isinstance(pool, Mapping) and set(pool) == {"start", "end"}:
            raw = (pool["start"], pool["end"])
        elif (isinstance(pool, Sequence) and not isinstance(pool, (str, bytes))
              and len(pool) == 2):
            raw = (pool[0], pool[1])
        else:
            raise IpamError(f"Invalid data format for IP pool: '{pool}'",
                            neutron_type="InvalidInput")
        try:
            start, end = _address(raw[0]), _address(raw[1])
        except IpamError:
            raise IpamError(f"The allocation pool {raw[0]}-{raw[1]} is not valid.",
                            neutron_type="InvalidAllocationPool") from None
        if start.version != end.version or start > end:
            raise IpamError(f"The allocation pool {start}-{end} is not valid.",
                            neutron_type="InvalidAllocationPool")
        parsed.append((start, end))
    return parsed


def _int_ranges(pools: Iterable[object]) -> tuple[int | None, list[tuple[int, int]]]:
    """(ip version or None when empty, integer ranges) of well-formed pools."""
    pairs = _pool_pairs(pools)
    versions = {start.version for start, _ in pairs}
    if len(versions) > 1:
        raise IpamError("Allocation pools mix IPv4 and IPv6 addresses",
                        neutron_type="InvalidAllocationPool")
    return (versions.pop() if versions else None), [(int(s), int(e)) for s, e in pairs]


def _text(version: int, value: int) -> str:
    """The canonical text of an integer address."""
    return str(ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value))


# -- cidrs ----------------------------------------------------------------------------

def normalize_cidr(cidr: str) -> str:
    """Canonical ``network/prefix`` text; host bits are cleared, as Neutron does.

    Neutron's validator accepts ``10.0.0.1/24`` and the plugin stores ``10.0.0.0/24``
    ("turn the CIDR into a proper subnet"); a missing or dotted-mask prefix is rejected
    with Neutron's "isn't a recognized IP subnet cidr, '...' is recommended" message.
    """
    if isinstance(cidr, str) and cidr == cidr.strip() and "%" not in cidr:
        head, slash, tail = cidr.partition("/")
        if not slash or not _PREFIX.fullmatch(tail):
            try:
                better = ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                better = None
            if better is not None:
                raise IpamError(f"'{cidr}' isn't a recognized IP subnet cidr, "
                                f"'{better}' is recommended", neutron_type="InvalidInput")
    return str(_network(cidr))


def cidr_overlaps(a: str, b: str) -> bool:
    """Whether two cidrs share any address (never across IP versions)."""
    na, nb = _network(a), _network(b)
    return na.version == nb.version and na.overlaps(nb)


def ip_version(addr_or_cidr: str) -> int:
    """4 or 6 for an address or a cidr."""
    if isinstance(addr_or_cidr, str) and "/" in addr_or_cidr:
        return _network(addr_or_cidr).version
    return _address(addr_or_cidr).version


# -- gateway and pools ----------------------------------------------------------------

def default_gateway(cidr: str) -> str | None:
    """The first host address, or None for an IPv4 /31, a /32 or a /128."""
    net = _network(cidr)
    if net.num_addresses == 1 or (net.version == 4 and net.prefixlen == 31):
        return None
    return str(net.network_address + 1)


def validate_gateway(cidr: str, gateway_ip: str | None) -> None:
    """Neutron's gateway check: same version; inside the subnet, not network or broadcast.

    A gateway outside the subnet is allowed, as in Neutron (an on-link route).
    """
    if gateway_ip is None:
        return
    net, gw = _network(cidr), _address(gateway_ip)
    if gw.version != net.version:
        raise IpamError(f"Gateway IP version {gw.version} does not match subnet IP "
                        f"version {net.version}", neutron_type="InvalidInput")
    if gw in net and net.num_addresses > 1 and (
            gw == net.network_address
            or (net.version == 4 and gw == net.broadcast_address)):
        raise IpamError("Gateway is not valid on subnet", neutron_type="InvalidInput")


def default_pools(cidr: str, gateway_ip: str | None) -> list[Pool]:
    """Neutron's default allocation pools: the usable range minus the gateway."""
    net = _network(cidr)
    lo, hi = _usable(net)
    if lo > hi:
        return []
    holes = []
    if gateway_ip is not None:
        gw = _address(gateway_ip)
        if gw.version == net.version and lo <= int(gw) <= hi:
            holes.append(int(gw))
    ranges = [(lo, holes[0] - 1), (holes[0] + 1, hi)] if holes else [(lo, hi)]
    return [(_text(net.version, s), _text(net.version, e)) for s, e in ranges if s <= e]


def normalize_pools(pools: Iterable[object]) -> list[Pool]:
    """Well-formed pools as canonical ``(start, end)`` text pairs, in the given order."""
    return [(str(s), str(e)) for s, e in _pool_pairs(pools)]


def validate_pools(cidr: str, pools: Iterable[object], gateway_ip: str | None) -> None:
    """Raise IpamError unless every pool is well-formed, usable, disjoint and gateway-free."""
    net = _network(cidr)
    pairs = _pool_pairs(pools)
    lo, hi = _usable(net)
    for start, end in pairs:
        if start.version != net.version:
            raise IpamError(f"The allocation pool {start}-{end} is not valid.",
                            neutron_type="InvalidAllocationPool")
        if int(start) < lo or int(end) > hi:
            raise IpamError(f"The allocation pool {start}-{end} spans beyond the subnet "
                            f"cidr {net}.", neutron_type="OutOfBoundsAllocationPool")
    order = sorted(range(len(pairs)), key=lambda i: (pairs[i][0], pairs[i][1]))
    for left, right in zip(order, order[1:]):
        if pairs[right][0] <= pairs[left][1]:
            first, second = sorted((left, right))
            raise IpamError(
                f"Found overlapping allocation pools: {pairs[first][0]}-{pairs[first][1]} "
                f"{pairs[second][0]}-{pairs[second][1]} for subnet {net}.",
                kind="overlap", neutron_type="OverlappingAllocationPools")
    if gateway_ip is None:
        return
    gw = _address(gateway_ip)
    for start, end in pairs:
        if gw.version == start.version and start <= gw <= end:
            raise IpamError(f"Gateway ip {gw} conflicts with allocation pool {start}-{end}.",
                            kind="gateway_conflict",
                            neutron_type="GatewayConflictWithAllocationPools")


def pool_size(pools: Iterable[object]) -> int:
    """How many addresses the pools hold."""
    return sum(end - start + 1 for start, end in _int_ranges(pools)[1])


def in_pools(ip: str, pools: Iterable[object]) -> bool:
    """Whether ``ip`` lies in one of the pools (False for a malformed address)."""
    try:
        version, value = _key(ip) if isinstance(ip, str) else (_address(ip).version, int(ip))
    except IpamError:
        return False
    pool_version, ranges = _int_ranges(pools)
    return version == pool_version and _ranges.contains(value, ranges)


def is_valid_fixed_ip(ip: str, cidr: str, gateway_ip: str | None, *,
                      router_port: bool = False) -> bool:
    """Whether a *requested* address may be given to a port on this subnet.

    Inside the subnet, not the network address, not the IPv4 broadcast and not the
    gateway; addresses outside the allocation pools are fine (Neutron). A router
    interface (``router_port``) may take the gateway and the IPv6 subnet-router anycast
    address. The one address of a /32 or /128 is valid. False for malformed input.
    """
    try:
        addr, net = _address(ip), _network(cidr)
    except IpamError:
        return False
    if addr.version != net.version or addr not in net:
        return False
    if net.num_addresses == 1:
        return True
    if addr == net.network_address and not (router_port and net.version == 6):
        return False
    if net.version == 4 and net.prefixlen < 31 and addr == net.broadcast_address:
        return False
    if gateway_ip is not None and not router_port:
        try:
            if addr == _address(gateway_ip):
                return False
        except IpamError:
            pass
    return True


# -- choosing -------------------------------------------------------------------------

def choose_address(pools: Iterable[object], used: Collection[str], rng: random.Random,
                   tries: int = 8) -> str | None:
    """A free address from the pools: random picks first, then a scan; None when exhausted.

    Up to ``tries`` uniform picks over the union of the pools (weighted by size) that are
    not in ``used``; if all collide, the lowest free address. Entries of ``used`` are
    compared as addresses (any spelling); other-version entries are ignored. Never
    materialises a pool, so 2**64-address IPv6 pools are fine.
    """
    version, ranges = _int_ranges(pools)
    if version is None:
        return None
    taken = set()
    for item in used:
        item_version, value = _key(item) if isinstance(item, str) else (
            _address(item).version, int(item))
        if item_version == version:
            taken.add(value)
    chosen = _ranges.choose(ranges, taken, rng, tries)
    return None if chosen is None else _text(version, chosen)


# -- IPv6 auto-addressing ---------------------------------------------------------------

AUTO_MODES = ("slaac", "dhcpv6-stateless")


def is_auto_address(ra_mode: str | None, address_mode: str | None) -> bool:
    """Whether an IPv6 subnet's hosts configure themselves (SLAAC or DHCPv6-stateless):
    its ports' addresses are EUI-64, not allocated (Neutron's ``is_auto_address_subnet``:
    the address mode decides, or the RA mode when no address mode is set)."""
    if address_mode is not None:
        return address_mode in AUTO_MODES
    return ra_mode in AUTO_MODES


def eui64_address(cidr: str, mac: str) -> str:
    """The EUI-64 address (RFC 4291 appendix A) of ``mac`` on the /64 ``cidr``: the MAC's
    halves around ff:fe, universal/local bit flipped, under the prefix."""
    net = _network(cidr)
    if net.version != 6 or net.prefixlen != 64:
        raise IpamError(f"EUI-64 needs an IPv6 /64 prefix, not {cidr}",
                        neutron_type="InvalidInput")
    octets = [int(part, 16) for part in mac.split(":")]
    if len(octets) != 6:
        raise IpamError(f"'{mac}' is not a valid MAC address", neutron_type="InvalidInput")
    octets[0] ^= 0x02
    iid = int.from_bytes(bytes(octets[:3] + [0xFF, 0xFE] + octets[3:]), "big")
    return str(ipaddress.IPv6Address(int(net.network_address) | iid))

