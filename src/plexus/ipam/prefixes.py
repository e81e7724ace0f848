"""Prefix allocation from subnet pools, with Neutron's rules (``neutron.ipam.subnet_alloc``).
Pure: these functions choose and check; the API layer records a choice under the pool's
allocation index with a compare-and-swap transaction.

A pool's prefixes are kept compacted (adjacent and overlapping prefixes merged, as
Neutron's ``IPSet.compact``). ``allocated`` is the list of CIDRs the pool has given out.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from plexus.ipam.errors import IpamError

# Neutron's SubnetPoolHelper: default minimum prefix length and the quota unit per version.
DEFAULT_MIN_PREFIXLEN = {4: 8, 6: 64}
MAX_PREFIXLEN = {4: 32, 6: 128}
QUOTA_UNIT = {4: 32, 6: 64}     # IPv4 quota counts /32s, IPv6 quota counts /64s


def _nets(cidrs: Iterable[str]) -> list:
    return [ipaddress.ip_network(c, strict=False) for c in cidrs]


def prefix_version(prefixes: list[str]) -> int:
    """The IP version of a pool's prefixes; 400 when empty or mixed (Neutron's words)."""
    if not prefixes:
        raise IpamError("Empty subnet pool prefix list.", neutron_type="EmptySubnetPoolPrefixList")
    versions = {n.version for n in _nets(prefixes)}
    if len(versions) > 1:
        raise IpamError("Cannot mix IPv4 and IPv6 prefixes in a subnet pool.",
                        neutron_type="PrefixVersionMismatch")
    return versions.pop()


def compact(prefixes: Iterable[str]) -> list[str]:
    """Prefixes merged into the fewest CIDRs (overlaps and neighbours collapsed), sorted."""
    nets = _nets(prefixes)
    out = []
    for version in (4, 6):
        out += [str(n) for n in ipaddress.collapse_addresses(
            n for n in nets if n.version == version)]
    return out


def covers(outer: Iterable[str], inner: Iterable[str]) -> bool:
    """Whether every address of ``inner`` lies in ``outer``."""
    outer_nets = _nets(outer)
    return all(any(n.subnet_of(o) for o in outer_nets if o.version == n.version)
               for n in _nets(compact(inner)))


def overlap(a: Iterable[str], b: Iterable[str]) -> bool:
    """Whether any prefix of ``a`` overlaps any of ``b``."""
    bn = _nets(b)
    return any(x.version == y.version and x.overlaps(y) for x in _nets(a) for y in bn)


def _intervals(nets: Iterable) -> dict[int, list[tuple[int, int]]]:
    """Merged, sorted inclusive integer intervals of networks, per IP version."""
    by_version: dict[int, list[tuple[int, int]]] = {}
    for net in nets:
        by_version.setdefault(net.version, []).append(
            (int(net.network_address), int(net.broadcast_address)))
    out = {}
    for version, spans in by_version.items():
        merged: list[tuple[int, int]] = []
        for lo, hi in sorted(spans):
            if merged and lo <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
            else:
                merged.append((lo, hi))
        out[version] = merged
    return out


def subtract(prefixes: Iterable[str], removed: Iterable[str]) -> list[str]:
    """``prefixes`` without the addresses of ``removed``, compacted. One sweep over the
    sorted intervals: O((prefixes + removed) log), however many prefixes are given out."""
    keep, cut = _intervals(_nets(prefixes)), _intervals(_nets(removed))
    out = []
    for version in sorted(keep):
        cls = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
        cuts, i = cut.get(version, []), 0
        for lo, hi in keep[version]:
            while i < len(cuts) and cuts[i][1] < lo:
                i += 1
            j, start = i, lo
            while j < len(cuts) and cuts[j][0] <= hi:
                if cuts[j][0] > start:
                    out += [str(n) for n in ipaddress.summarize_address_range(
                        cls(start), cls(cuts[j][0] - 1))]
                start = max(start, cuts[j][1] + 1)
                j += 1
            if start <= hi:
                out += [str(n) for n in ipaddress.summarize_address_range(cls(start), cls(hi))]
    return out


def check_bounds(version: int, min_len: int, max_len: int, default_len: int) -> None:
    """Neutron's prefix-bound rules (``IllegalSubnetPoolPrefixBounds``, 400)."""
    def illegal(kind, value, base_kind, base):
        raise IpamError(f"Illegal prefix bounds: {kind}={value}, {base_kind}={base}.",
                        neutron_type="IllegalSubnetPoolPrefixBounds")
    if min_len < 0:
        raise IpamError(f"Prefix '{min_len}' not supported in IPv{version} pool.",
                        neutron_type="UnsupportedMinSubnetPoolPrefix")
    if min_len > max_len:
        illegal("min_prefixlen", min_len, "max_prefixlen", max_len)
    if max_len > MAX_PREFIXLEN[version]:
        illegal("max_prefixlen", max_len, "ip_version_max", MAX_PREFIXLEN[version])
    if default_len < min_len:
        illegal("default_prefixlen", default_len, "min_prefixlen", min_len)
    if default_len > max_len:
        illegal("default_prefixlen", default_len, "max_prefixlen", max_len)


def check_prefixlen(prefixlen: int, min_len: int, max_len: int) -> None:
    """A request's prefix length within the pool's bounds (400 otherwise)."""
    if prefixlen > max_len:
        raise IpamError(f"Unable to allocate subnet with prefix length {prefixlen}, maximum "
                        f"allowed prefix is {max_len}.",
                        neutron_type="MaxPrefixSubnetAllocationError")
    if prefixlen < min_len:
        raise IpamError(f"Unable to allocate subnet with prefix length {prefixlen}, minimum "
                        f"allowed prefix is {min_len}.",
                        neutron_type="MinPrefixSubnetAllocationError")


def quota_units(cidr: str) -> int:
    """How many quota units (/32 for IPv4, /64 for IPv6) a prefix counts for."""
    net = ipaddress.ip_network(cidr)
    return 2 ** max(QUOTA_UNIT[net.version] - net.prefixlen, 0)


def _no_space(reason: str) -> IpamError:
    return IpamError(f"Failed to allocate subnet: {reason}.", kind="conflict",
                     neutron_type="SubnetAllocationError")


def choose_prefix(prefixes: list[str], allocated: Iterable[str], prefixlen: int) -> str:
    """The first free prefix of length ``prefixlen``, as Neutron picks it: from the free
    blocks ordered smallest first (longest prefix), the first that can hold it, at its
    lowest address."""
    free = sorted(_nets(subtract(prefixes, allocated)),
                  key=lambda n: (-n.prefixlen, n.version, int(n.network_address)))
    for block in free:
        if prefixlen >= block.prefixlen:
            return str(next(block.subnets(new_prefix=prefixlen)))
    raise _no_space(f"Insufficient prefix space to allocate subnet size /{prefixlen}")


def check_specific(prefixes: list[str], allocated: Iterable[str], cidr: str) -> None:
    """A requested CIDR must lie wholly in one free block of the pool."""
    want = ipaddress.ip_network(cidr)
    if not any(want.version == b.version and want.subnet_of(b)
               for b in _nets(subtract(prefixes, allocated))):
        raise _no_space("Cannot allocate requested subnet from the available set of prefixes")
