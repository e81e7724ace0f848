"""Properties of the allocation logic: no address, MAC or segment id is handed out twice,
nor a reserved one, and exhaustion is reported exactly when the ranges are full."""

from __future__ import annotations

import ipaddress
import random
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from plexus.ipam import (
    choose_address,
    choose_segment,
    default_gateway,
    default_pools,
    in_pools,
    in_ranges,
    is_valid_fixed_ip,
    normalize_mac,
    pool_size,
    random_mac,
    validate_pools,
)

FAST = settings(max_examples=100, deadline=None)


@st.composite
def ipv4_subnets(draw):
    """(cidr, gateway) over /20–/30 with a default, custom (inside) or no gateway."""
    prefix = draw(st.integers(20, 30))
    base = draw(st.integers(0, 2**32 - 1)) >> (32 - prefix) << (32 - prefix)
    net = ipaddress.IPv4Network((base, prefix))
    choice = draw(st.sampled_from(["default", "custom", "none"]))
    if choice == "default":
        gateway = default_gateway(str(net))
    elif choice == "custom":
        offset = draw(st.integers(1, net.num_addresses - 2))
        gateway = str(net.network_address + offset)
    else:
        gateway = None
    return str(net), gateway


def _pool_addresses(pools):
    """Every address of small IPv4 pools, as text."""
    out = []
    for start, end in pools:
        lo, hi = int(ipaddress.ip_address(start)), int(ipaddress.ip_address(end))
        out.extend(str(ipaddress.IPv4Address(v)) for v in range(lo, hi + 1))
    return out


@FAST
@given(subnet=ipv4_subnets(), seed=st.integers(0, 2**32), tries=st.sampled_from([0, 1, 8]))
def test_choose_address_never_repeats_never_reserved_and_exhausts_exactly(subnet, seed, tries):
    cidr, gateway = subnet
    net = ipaddress.ip_network(cidr)
    pools = default_pools(cidr, gateway)
    validate_pools(cidr, pools, gateway)                  # the defaults are always valid
    everything = _pool_addresses(pools)
    size = pool_size(pools)
    assert size == len(everything) == len(set(everything))
    assert size == net.num_addresses - 2 - (gateway is not None)
    rng = random.Random(seed)
    # Big subnets start mostly full so each example stays fast; small ones start empty.
    free_target = min(size, rng.randint(1, 48))
    used = set(rng.sample(everything, size - free_target)) if size > 256 else set()
    reserved = {str(net.network_address), str(net.broadcast_address), gateway}
    used_before = len(used)
    chosen = []
    while (address := choose_address(pools, used, rng, tries)) is not None:
        assert address not in used
        assert address not in reserved
        assert ipaddress.ip_address(address) in net
        assert in_pools(address, pools)
        assert is_valid_fixed_ip(address, cidr, gateway)
        used.add(address)
        chosen.append(address)
        assert len(chosen) <= size
    assert len(chosen) == size - used_before                 # None exactly at exhaustion
    assert used == set(everything)

    # Free one: being the only free address, it is the one chosen.
    freed = rng.choice(everything)
    used.discard(freed)
    assert choose_address(pools, used, rng, tries) == freed
    used.add(freed)
    # Free a few: each comes back once, then the pools are exhausted again.
    freed_many = set(rng.sample(everything, min(size, 5)))
    used -= freed_many
    again = set()
    while (address := choose_address(pools, used, rng, tries)) is not None:
        again.add(address)
        used.add(address)
    assert again == freed_many


@FAST
@given(subnet=ipv4_subnets(), seed=st.integers(0, 2**32))
def test_reserved_addresses_are_never_valid_fixed_ips(subnet, seed):
    cidr, gateway = subnet
    net = ipaddress.ip_network(cidr)
    assert not is_valid_fixed_ip(str(net.network_address), cidr, gateway)
    assert not is_valid_fixed_ip(str(net.broadcast_address), cidr, gateway)
    if gateway is not None:
        assert not is_valid_fixed_ip(gateway, cidr, gateway)
        assert is_valid_fixed_ip(gateway, cidr, gateway, router_port=True)
    outside = net.broadcast_address + 1 if int(net.broadcast_address) < 2**32 - 1 else None
    if outside is not None:
        assert not is_valid_fixed_ip(str(outside), cidr, gateway)
    offset = random.Random(seed).randint(1, net.num_addresses - 2)
    inside = str(net.network_address + offset)
    assert is_valid_fixed_ip(inside, cidr, gateway) == (inside != gateway)


@settings(max_examples=25, deadline=None)
@given(high=st.integers(0, 2**64 - 1), seed=st.integers(0, 2**32))
def test_ipv6_slash64_is_fast_and_in_subnet(high, seed):
    net = ipaddress.IPv6Network((high << 64, 64))
    cidr = str(net)
    gateway = default_gateway(cidr)
    pools = default_pools(cidr, gateway)
    assert pool_size(pools) == 2**64 - 2
    rng = random.Random(seed)
    used = {gateway}
    began = time.perf_counter()
    for _ in range(50):
        address = choose_address(pools, used, rng)
        assert address is not None and address not in used
        addr = ipaddress.ip_address(address)
        assert addr in net and addr != net.network_address
        assert in_pools(address, pools)
        used.add(address)
    # The deterministic scan does not walk 2**64 addresses either.
    first = int(ipaddress.ip_address(pools[0][0]))
    crowded = {str(ipaddress.IPv6Address(first + i)) for i in range(500)}
    assert choose_address(pools, crowded, rng, tries=0) == str(ipaddress.IPv6Address(first + 500))
    assert time.perf_counter() - began < 2.0


@st.composite
def base_macs(draw):
    """A unicast base MAC with zero or more kept octets after the OUI."""
    first = draw(st.integers(0, 255)) & 0xFE
    oui = [first] + draw(st.lists(st.integers(0, 255), min_size=2, max_size=2))
    extra = draw(st.lists(st.integers(1, 255), max_size=2))
    octets = oui + extra + [0] * (6 - len(oui) - len(extra))
    sep = draw(st.sampled_from([":", "-"]))
    text = sep.join(f"{o:02x}" for o in octets)
    return (text.upper() if draw(st.booleans()) else text), 3 + len(extra)


@settings(max_examples=200, deadline=None)
@given(base=base_macs(), seed=st.integers(0, 2**32))
def test_random_mac_is_unicast_canonical_and_keeps_the_base(base, seed):
    base_mac, kept = base
    base_octets = [int(x, 16) for x in base_mac.replace("-", ":").split(":")]
    rng = random.Random(seed)
    for _ in range(20):
        mac = random_mac(base_mac, rng)
        octets = [int(x, 16) for x in mac.split(":")]
        assert mac == mac.lower() and len(mac) == 17
        assert normalize_mac(mac) == mac
        assert normalize_mac(mac.upper().replace(":", "-")) == mac
        assert octets[0] & 1 == 0
        assert octets[:kept] == base_octets[:kept]


def test_random_mac_spreads_over_the_random_octets():
    rng = random.Random(7)
    macs = {random_mac("fa:16:3e:00:00:00", rng) for _ in range(2000)}
    assert len(macs) > 1990                     # 2**24 choices: collisions are rare
    assert len({m.split(":")[3] for m in macs}) > 200


@st.composite
def segment_ranges(draw):
    """Disjoint, sorted-then-shuffled inclusive ranges with 1..200 ids in all."""
    cuts = sorted(draw(st.sets(st.integers(1, 5000), min_size=2, max_size=8)))
    pairs = [(cuts[i], cuts[i + 1] - 1) for i in range(0, len(cuts) - 1, 2)]
    pairs = [(lo, min(hi, lo + 60)) for lo, hi in pairs if lo <= hi]
    return draw(st.permutations(pairs)) if pairs else [(1, 1)]


@FAST
@given(ranges=segment_ranges(), seed=st.integers(0, 2**32), tries=st.sampled_from([0, 8]))
def test_choose_segment_never_repeats_and_exhausts_exactly(ranges, seed, tries):
    total = sum(hi - lo + 1 for lo, hi in ranges)
    rng = random.Random(seed)
    used: set[int] = {ranges[0][0] - 1, ranges[0][1] + 1}     # neighbours, outside
    chosen = []
    while (seg := choose_segment(ranges, used, rng, tries)) is not None:
        assert seg not in used and in_ranges(seg, ranges)
        used.add(seg)
        chosen.append(seg)
    assert len(chosen) == total
    freed = rng.choice(chosen)
    used.discard(freed)
    assert choose_segment(ranges, used, rng, tries) == freed
