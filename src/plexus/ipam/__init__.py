"""Address, MAC and segment allocation over ranges: pure functions that choose, never record."""

from plexus.ipam.addresses import (
    choose_address,
    cidr_overlaps,
    default_gateway,
    default_pools,
    eui64_address,
    in_pools,
    is_auto_address,
    ip_version,
    is_valid_fixed_ip,
    normalize_cidr,
    normalize_pools,
    pool_size,
    validate_gateway,
    validate_pools,
)
from plexus.ipam.errors import IpamError
from plexus.ipam.macs import normalize_mac, random_mac
from plexus.ipam.segments import choose_segment, in_ranges

__all__ = [
    "IpamError",
    "eui64_address",
    "is_auto_address",
    "choose_address",
    "choose_segment",
    "cidr_overlaps",
    "default_gateway",
    "default_pools",
    "in_pools",
    "in_ranges",
    "ip_version",
    "is_valid_fixed_ip",
    "normalize_cidr",
    "normalize_mac",
    "normalize_pools",
    "pool_size",
    "random_mac",
    "validate_gateway",
    "validate_pools",
]
