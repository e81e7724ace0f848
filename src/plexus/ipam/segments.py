"""Segmentation id (VNI, VLAN id) allocation over inclusive integer ranges. Pure."""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence

from plexus.ipam import _ranges


def choose_segment(ranges: Sequence[tuple[int, int]], used: Collection[int],
                   rng: random.Random, tries: int = 8) -> int | None:
    """A free id from the inclusive ranges: random picks, then the lowest free; None when full."""
    return _ranges.choose([(int(lo), int(hi)) for lo, hi in ranges], used, rng, tries)


def in_ranges(value: int, ranges: Sequence[tuple[int, int]]) -> bool:
    """Whether ``value`` lies in one of the inclusive ranges."""
    return _ranges.contains(value, ranges)
