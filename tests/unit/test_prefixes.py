"""Prefix allocation from subnet pools (``plexus.ipam.prefixes``): Neutron's order, the
pool's bounds, and set arithmetic checked against a brute-force reference."""

from __future__ import annotations

import ipaddress
import random

import pytest

from plexus.ipam import IpamError
from plexus.ipam import prefixes as px


def test_compact_merges_overlaps_and_neighbours():
    assert px.compact(["10.0.1.0/24", "10.0.0.0/24", "10.0.0.128/25", "fd00::/64"]) == \
        ["10.0.0.0/23", "fd00::/64"]


def test_choose_takes_the_smallest_free_block_first():
    pool = ["10.0.0.0/16"]
    assert px.choose_prefix(pool, [], 24) == "10.0.0.0/24"
    assert px.choose_prefix(pool, ["10.0.0.0/24"], 24) == "10.0.1.0/24"
    # a /26 in the hole left by a /25, before any fresh /24
    assert px.choose_prefix(pool, ["10.0.0.0/25", "10.0.1.0/24"], 26) == "10.0.0.128/26"
    with pytest.raises(IpamError, match="Insufficient prefix space"):
        px.choose_prefix(["10.0.0.0/24"], ["10.0.0.0/25"], 24)


def test_specific_requests_must_be_free():
    px.check_specific(["10.0.0.0/16"], ["10.0.0.0/24"], "10.0.1.0/24")
    for cidr in ("10.0.0.128/25", "10.1.0.0/24", "10.0.0.0/15"):
        with pytest.raises(IpamError, match="Cannot allocate"):
            px.check_specific(["10.0.0.0/16"], ["10.0.0.0/24"], cidr)


@pytest.mark.parametrize("bounds,kind", [
    ((4, 24, 16, 24), "IllegalSubnetPoolPrefixBounds"),
    ((4, 8, 33, 8), "IllegalSubnetPoolPrefixBounds"),
    ((4, 8, 32, 4), "IllegalSubnetPoolPrefixBounds"),
    ((4, -1, 32, 8), "UnsupportedMinSubnetPoolPrefix"),
])
def test_bounds(bounds, kind):
    with pytest.raises(IpamError) as exc:
        px.check_bounds(*bounds)
    assert exc.value.neutron_type == kind


def test_versions_and_quota_units():
    assert px.prefix_version(["fd00::/48"]) == 6
    with pytest.raises(IpamError):
        px.prefix_version([])
    with pytest.raises(IpamError):
        px.prefix_version(["10.0.0.0/8", "fd00::/8"])
    assert px.quota_units("10.0.0.0/24") == 256 and px.quota_units("fd00::/62") == 4


def test_subtract_equals_a_brute_force_reference():
    rng = random.Random(7)
    for _ in range(200):
        base = [f"10.0.{rng.randrange(0, 4) * 4}.0/22", f"10.0.{rng.randrange(16, 20)}.0/24"]
        cuts = [f"10.0.{rng.randrange(0, 24)}.{rng.randrange(0, 4) * 64}/{rng.choice([26, 25, 24])}"
                for _ in range(rng.randrange(0, 6))]
        cuts = [str(ipaddress.ip_network(c, strict=False)) for c in cuts]
        want = {a for b in base for a in ipaddress.ip_network(b)} - \
            {a for c in cuts for a in ipaddress.ip_network(c)}
        got = px.subtract(base, cuts)
        assert {a for g in got for a in ipaddress.ip_network(g)} == want
        assert got == px.compact(got)
