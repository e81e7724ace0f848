"""Table-driven checks of the allocation rules against Neutron's behaviour."""

from __future__ import annotations

import random

import pytest

from plexus.ipam import (
    IpamError,
    choose_address,
    choose_segment,
    cidr_overlaps,
    default_gateway,
    default_pools,
    in_pools,
    in_ranges,
    ip_version,
    is_valid_fixed_ip,
    normalize_cidr,
    normalize_mac,
    normalize_pools,
    pool_size,
    random_mac,
    validate_gateway,
    validate_pools,
)


@pytest.mark.parametrize(("cidr", "gateway"), [
    ("10.0.0.0/24", "10.0.0.1"),
    ("10.0.0.0/30", "10.0.0.1"),
    ("10.0.0.0/31", None),
    ("10.0.0.7/32", None),
    ("2001:db8::/64", "2001:db8::1"),
    ("2001:db8::/127", "2001:db8::1"),
    ("2001:db8::5/128", None),
])
def test_default_gateway(cidr, gateway):
    assert default_gateway(cidr) == gateway


@pytest.mark.parametrize(("cidr", "gateway", "pools"), [
    ("10.0.0.0/24", "10.0.0.1", [("10.0.0.2", "10.0.0.254")]),
    ("10.0.0.0/24", None, [("10.0.0.1", "10.0.0.254")]),
    ("10.0.0.0/24", "10.0.0.100", [("10.0.0.1", "10.0.0.99"), ("10.0.0.101", "10.0.0.254")]),
    ("10.0.0.0/24", "10.0.0.254", [("10.0.0.1", "10.0.0.253")]),
    ("10.0.0.0/24", "192.168.0.1", [("10.0.0.1", "10.0.0.254")]),     # gateway outside
    ("10.0.0.0/30", "10.0.0.1", [("10.0.0.2", "10.0.0.2")]),
    ("10.0.0.0/30", "10.0.0.2", [("10.0.0.1", "10.0.0.1")]),
    ("10.0.0.0/31", None, []),
    ("10.0.0.7/32", None, [("10.0.0.7", "10.0.0.7")]),
    ("2001:db8::/64", "2001:db8::1", [("2001:db8::2", "2001:db8::ffff:ffff:ffff:ffff")]),
    ("2001:db8::/120", None, [("2001:db8::1", "2001:db8::ff")]),
    ("2001:db8::/120", "2001:db8::80",
     [("2001:db8::1", "2001:db8::7f"), ("2001:db8::81", "2001:db8::ff")]),
])
def test_default_pools(cidr, gateway, pools):
    assert default_pools(cidr, gateway) == pools
    validate_pools(cidr, pools, gateway)


@pytest.mark.parametrize(("pools", "gateway", "kind", "neutron_type", "message"), [
    ([("10.0.0.10", "10.0.0.5")], None, "invalid", "InvalidAllocationPool",
     "The allocation pool 10.0.0.10-10.0.0.5 is not valid."),
    ([("10.0.0.x", "10.0.0.5")], None, "invalid", "InvalidAllocationPool", None),
    ([("10.0.0.2",)], None, "invalid", "InvalidInput", None),
    (["10.0.0.2-10.0.0.5"], None, "invalid", "InvalidInput", None),
    ([{"start": "10.0.0.2"}], None, "invalid", "InvalidInput", None),
    ([("2001:db8::2", "2001:db8::5")], None, "invalid", "InvalidAllocationPool", None),
    ([("10.0.0.0", "10.0.0.5")], None, "invalid", "OutOfBoundsAllocationPool",
     "The allocation pool 10.0.0.0-10.0.0.5 spans beyond the subnet cidr 10.0.0.0/24."),
    ([("10.0.0.200", "10.0.0.255")], None, "invalid", "OutOfBoundsAllocationPool", None),
    ([("10.0.1.1", "10.0.1.5")], None, "invalid", "OutOfBoundsAllocationPool", None),
    ([("10.0.0.2", "10.0.0.50"), ("10.0.0.50", "10.0.0.60")], None, "overlap",
     "OverlappingAllocationPools",
     "Found overlapping allocation pools: 10.0.0.2-10.0.0.50 10.0.0.50-10.0.0.60 "
     "for subnet 10.0.0.0/24."),
    ([("10.0.0.100", "10.0.0.120"), ("10.0.0.2", "10.0.0.9"), ("10.0.0.5", "10.0.0.6")],
     None, "overlap", "OverlappingAllocationPools",
     "Found overlapping allocation pools: 10.0.0.2-10.0.0.9 10.0.0.5-10.0.0.6 "
     "for subnet 10.0.0.0/24."),
    ([("10.0.0.1", "10.0.0.254")], "10.0.0.1", "gateway_conflict",
     "GatewayConflictWithAllocationPools",
     "Gateway ip 10.0.0.1 conflicts with allocation pool 10.0.0.1-10.0.0.254."),
    ([{"start": "10.0.0.2", "end": "10.0.0.9"}], "10.0.0.9", "gateway_conflict",
     "GatewayConflictWithAllocationPools", None),
    ([("10.0.0.2", "10.0.0.9")], "bogus", "invalid", "InvalidInput", None),
])
def test_validate_pools_errors(pools, gateway, kind, neutron_type, message):
    with pytest.raises(IpamError) as caught:
        validate_pools("10.0.0.0/24", pools, gateway)
    assert caught.value.kind == kind
    assert caught.value.neutron_type == neutron_type
    if message is not None:
        assert caught.value.message == message == str(caught.value)


@pytest.mark.parametrize(("cidr", "pools", "gateway"), [
    ("10.0.0.0/24", [], "10.0.0.1"),
    ("10.0.0.0/24", [("10.0.0.1", "10.0.0.254")], None),
    ("10.0.0.0/24", [("10.0.0.2", "10.0.0.9"), ("10.0.0.10", "10.0.0.20")], "10.0.0.1"),
    ("10.0.0.0/24", [{"start": "10.0.0.2", "end": "10.0.0.2"}], "192.168.0.1"),
    ("2001:db8::/64", [("2001:db8::2", "2001:db8::ffff:ffff:ffff:ffff")], "2001:db8::1"),
])
def test_validate_pools_accepts(cidr, pools, gateway):
    validate_pools(cidr, pools, gateway)


@pytest.mark.parametrize(("gateway", "ok"), [
    (None, True), ("10.0.0.1", True), ("10.0.0.254", True), ("192.168.0.1", True),
    ("10.0.0.0", False), ("10.0.0.255", False), ("2001:db8::1", False), ("x", False),
])
def test_validate_gateway(gateway, ok):
    if ok:
        validate_gateway("10.0.0.0/24", gateway)
    else:
        with pytest.raises(IpamError) as caught:
            validate_gateway("10.0.0.0/24", gateway)
        assert caught.value.kind == "invalid"


@pytest.mark.parametrize(("raw", "canonical"), [
    ("10.0.0.0/24", "10.0.0.0/24"),
    ("10.0.0.1/24", "10.0.0.0/24"),               # host bits cleared, as Neutron does
    ("192.168.1.77/16", "192.168.0.0/16"),
    ("10.0.0.7/32", "10.0.0.7/32"),
    ("0.0.0.0/0", "0.0.0.0/0"),
    ("2001:0DB8:0:0::1/64", "2001:db8::/64"),
    ("2001:db8::/128", "2001:db8::/128"),
])
def test_normalize_cidr(raw, canonical):
    assert normalize_cidr(raw) == canonical


@pytest.mark.parametrize(("raw", "message"), [
    ("10.0.2.0", "'10.0.2.0' isn't a recognized IP subnet cidr, '10.0.2.0/32' is recommended"),
    ("fe80::", "'fe80::' isn't a recognized IP subnet cidr, 'fe80::/128' is recommended"),
    ("10.0.0.0/255.255.255.0",
     "'10.0.0.0/255.255.255.0' isn't a recognized IP subnet cidr, '10.0.0.0/24' is recommended"),
    ("garbage", "'garbage' is not a valid IP subnet"),
    ("10/24", "'10/24' is not a valid IP subnet"),
    ("10.0.0.0/33", "'10.0.0.0/33' is not a valid IP subnet"),
    ("2001:db8::/129", None), ("10.0.0.256/24", None), ("10.0.0.0/", None),
    (" 10.0.0.0/24", None), ("10.0.0.0/24 ", None), ("fe80::%eth0/64", None), ("", None),
    (None, None), (24, None),
])
def test_normalize_cidr_rejects(raw, message):
    with pytest.raises(IpamError) as caught:
        normalize_cidr(raw)
    assert caught.value.kind == "invalid"
    if message is not None:
        assert caught.value.message == message


@pytest.mark.parametrize(("raw", "canonical"), [
    ("fa:16:3e:00:00:01", "fa:16:3e:00:00:01"),
    ("FA:16:3E:AB:CD:EF", "fa:16:3e:ab:cd:ef"),
    ("fa-16-3e-ab-cd-ef", "fa:16:3e:ab:cd:ef"),
    ("FA163EABCDEF", "fa:16:3e:ab:cd:ef"),
    ("fa16.3eab.cdef", "fa:16:3e:ab:cd:ef"),
    ("02:00:00:00:00:00", "02:00:00:00:00:00"),
    ("11:22:33:44:55:66", "11:22:33:44:55:66"),   # multicast bit: Neutron accepts it
])
def test_normalize_mac(raw, canonical):
    assert normalize_mac(raw) == canonical


@pytest.mark.parametrize("raw", [
    "00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff",
    "fa:16:3e:00:00", "fa:16:3e:00:00:00:00", "fa:16:3e-00:00:01", "fa:16:3e:0:0:1",
    "gg:16:3e:00:00:01", " fa:16:3e:00:00:01", "", None, 0xFA163E000001,
])
def test_normalize_mac_rejects(raw):
    with pytest.raises(IpamError) as caught:
        normalize_mac(raw)
    assert caught.value.kind == "invalid"


@pytest.mark.parametrize(("base", "prefix"), [
    ("fa:16:3e:00:00:00", "fa:16:3e:"),
    ("fa:16:3e:4f:00:00", "fa:16:3e:4f:"),
    ("FA-16-3E-4F-5A-00", "fa:16:3e:4f:5a:"),
    ("fa:16:3e:00:12:00", "fa:16:3e:"),            # octet four is zero: random from there
    ("fa:16:3e:4f:5a:6b", "fa:16:3e:4f:5a:"),      # the last octet is always random
])
def test_random_mac_keeps_the_base(base, prefix):
    rng = random.Random(3)
    macs = {random_mac(base, rng) for _ in range(64)}
    assert all(m.startswith(prefix) for m in macs)
    assert len(macs) > 1


def test_random_mac_rejects_a_multicast_or_malformed_base():
    for base in ("01:00:5e:00:00:00", "nonsense"):
        with pytest.raises(IpamError):
            random_mac(base, random.Random(0))


def test_random_mac_never_returns_all_zero():
    class Zeros(random.Random):
        """Returns zero a few times, then something else."""

        calls = 0

        def getrandbits(self, k):
            self.calls += 1
            return 0 if self.calls <= 6 else 1

    assert random_mac("00:00:00:00:00:00", Zeros()) == "00:00:00:01:01:01"


@pytest.mark.parametrize(("pools", "size"), [
    ([], 0),
    ([("10.0.0.2", "10.0.0.254")], 253),
    ([{"start": "10.0.0.1", "end": "10.0.0.1"}, ("10.0.0.3", "10.0.0.4")], 3),
    ([("2001:db8::2", "2001:db8::ffff:ffff:ffff:ffff")], 2**64 - 2),
])
def test_pool_size(pools, size):
    assert pool_size(pools) == size


@pytest.mark.parametrize(("ip", "inside"), [
    ("10.0.0.1", False), ("10.0.0.2", True), ("10.0.0.9", True), ("10.0.0.10", False),
    ("10.0.0.20", True), ("2001:db8::5", False), ("bogus", False),
])
def test_in_pools(ip, inside):
    assert in_pools(ip, [("10.0.0.2", "10.0.0.9"), ("10.0.0.20", "10.0.0.20")]) is inside


@pytest.mark.parametrize(("ip", "cidr", "gateway", "router", "ok"), [
    ("10.0.0.5", "10.0.0.0/24", "10.0.0.1", False, True),
    ("10.0.0.254", "10.0.0.0/24", "10.0.0.1", False, True),    # outside pools is fine
    ("10.0.0.1", "10.0.0.0/24", "10.0.0.1", False, False),     # the gateway
    ("10.0.0.1", "10.0.0.0/24", "10.0.0.1", True, True),       # ...unless a router port
    ("10.0.0.1", "10.0.0.0/24", None, False, True),
    ("10.0.0.0", "10.0.0.0/24", None, False, False),
    ("10.0.0.255", "10.0.0.0/24", None, False, False),
    ("10.0.1.5", "10.0.0.0/24", None, False, False),
    ("10.0.0.1", "10.0.0.0/31", None, False, True),            # /31: no broadcast
    ("10.0.0.0", "10.0.0.0/31", None, False, False),
    ("10.0.0.7", "10.0.0.7/32", None, False, True),
    ("2001:db8::", "2001:db8::/64", None, False, False),       # subnet-router anycast
    ("2001:db8::", "2001:db8::/64", None, True, True),
    ("2001:db8::ffff:ffff:ffff:ffff", "2001:db8::/64", None, False, True),
    ("10.0.0.5", "2001:db8::/64", None, False, False),
    ("not-an-ip", "10.0.0.0/24", None, False, False),
])
def test_is_valid_fixed_ip(ip, cidr, gateway, router, ok):
    assert is_valid_fixed_ip(ip, cidr, gateway, router_port=router) is ok


@pytest.mark.parametrize(("a", "b", "overlap"), [
    ("10.0.0.0/24", "10.0.0.128/25", True),
    ("10.0.0.0/24", "10.0.1.0/24", False),
    ("10.0.0.0/8", "10.200.0.0/16", True),
    ("10.0.0.5/24", "10.0.0.0/24", True),
    ("10.0.0.0/24", "2001:db8::/64", False),
    ("2001:db8::/32", "2001:db8:1::/48", True),
])
def test_cidr_overlaps(a, b, overlap):
    assert cidr_overlaps(a, b) is overlap
    assert cidr_overlaps(b, a) is overlap


@pytest.mark.parametrize(("value", "version"), [
    ("10.0.0.1", 4), ("10.0.0.0/24", 4), ("2001:db8::1", 6), ("2001:db8::/64", 6),
])
def test_ip_version(value, version):
    assert ip_version(value) == version


@pytest.mark.parametrize("value", ["x", "10.0.0.0/33", "", "1.2.3"])
def test_ip_version_rejects(value):
    with pytest.raises(IpamError):
        ip_version(value)


def test_normalize_pools_canonicalises_both_forms():
    assert normalize_pools([{"start": "2001:DB8:0::2", "end": "2001:db8::9"},
                            ("10.0.0.1", "10.0.0.2")]) == [
        ("2001:db8::2", "2001:db8::9"), ("10.0.0.1", "10.0.0.2")]


def test_choose_address_scan_takes_the_lowest_free_and_skips_outsiders():
    pools = [("10.0.0.10", "10.0.0.12"), ("10.0.0.20", "10.0.0.21")]
    used = ["10.0.0.10", "10.0.0.11", "10.0.0.12", "10.0.0.1", "2001:db8::1"]
    assert choose_address(pools, used, random.Random(0), tries=0) == "10.0.0.20"
    assert choose_address(pools, used + ["10.0.0.20", "10.0.0.21"], random.Random(0)) is None
    assert choose_address([], [], random.Random(0)) is None


def test_choose_address_compares_used_as_addresses():
    pools = [("2001:db8::1", "2001:db8::2")]
    used = {"2001:DB8:0:0::1"}
    assert choose_address(pools, used, random.Random(0), tries=0) == "2001:db8::2"


def test_choose_address_is_uniform_over_the_union():
    pools = [("10.0.0.1", "10.0.0.1"), ("10.0.0.100", "10.0.0.199")]
    rng = random.Random(11)
    picks = [choose_address(pools, (), rng) for _ in range(5000)]
    assert 10 < picks.count("10.0.0.1") < 110         # ~1 in 101, not 1 in 2


def test_choose_address_rejects_malformed_input():
    with pytest.raises(IpamError):
        choose_address([("10.0.0.1", "nope")], [], random.Random(0))
    with pytest.raises(IpamError):
        choose_address([("10.0.0.1", "10.0.0.5")], ["garbage"], random.Random(0))


@pytest.mark.parametrize(("ranges", "used", "expected"), [
    ([(100, 102)], {100, 101}, 102),
    ([(5, 4), (7, 7)], set(), 7),                      # an empty range is skipped
    ([(1, 2), (10, 11)], {1, 2, 10}, 11),
    ([(1, 2)], {1, 2}, None),
    ([], set(), None),
])
def test_choose_segment_scan(ranges, used, expected):
    assert choose_segment(ranges, used, random.Random(0), tries=0) == expected
    assert choose_segment(ranges, list(used), random.Random(0)) == expected


@pytest.mark.parametrize(("value", "inside"), [(0, False), (1, True), (4094, True), (4095, False)])
def test_in_ranges(value, inside):
    assert in_ranges(value, [(1, 100), (200, 4094)]) is inside


# ---- IPv6 auto-addressing (EUI-64) ----------------------------------------------------

from plexus.ipam import eui64_address, is_auto_address  # noqa: E402


@pytest.mark.parametrize("cidr, mac, want", [
    # RFC 4291 appendix A: ff:fe in the middle, universal/local bit inverted
    ("2001:db8::/64", "fa:16:3e:11:22:33", "2001:db8::f816:3eff:fe11:2233"),
    ("2001:db8:1:2::/64", "00:00:00:00:00:00", "2001:db8:1:2:200:ff:fe00:0"),
    ("fd00::/64", "02:00:00:00:00:01", "fd00::ff:fe00:1"),
])
def test_eui64_address(cidr, mac, want):
    assert eui64_address(cidr, mac) == want


@pytest.mark.parametrize("cidr", ["2001:db8::/80", "10.0.0.0/24", "2001:db8::/48"])
def test_eui64_needs_an_ipv6_64(cidr):
    with pytest.raises(IpamError):
        eui64_address(cidr, "fa:16:3e:11:22:33")


@pytest.mark.parametrize("ra, addr, auto", [
    (None, None, False), ("slaac", None, True), (None, "slaac", True),
    ("dhcpv6-stateless", None, True), (None, "dhcpv6-stateless", True),
    ("dhcpv6-stateful", None, False), (None, "dhcpv6-stateful", False),
    ("slaac", "dhcpv6-stateful", False),      # the address mode decides
    ("dhcpv6-stateful", "slaac", True),
])
def test_is_auto_address(ra, addr, auto):
    assert is_auto_address(ra, addr) is auto
