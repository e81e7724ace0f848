"""Choosing a free integer from inclusive ranges: random first, then a deterministic scan."""

from __future__ import annotations

import bisect
import random
from collections.abc import Collection, Sequence


def choose(ranges: Sequence[tuple[int, int]], used: Collection[int],
           rng: random.Random, tries: int) -> int | None:
    """A free value from ``ranges`` (inclusive, empty when lo > hi), or None when all are used."""
    spans = [(lo, hi) for lo, hi in ranges if lo <= hi]
    total = sum(hi - lo + 1 for lo, hi in spans)
    if total == 0:
        return None
    taken = used if isinstance(used, (set, frozenset)) else set(used)
    for _ in range(max(tries, 0)):
        candidate = _nth(spans, rng.randrange(total))
        if candidate not in taken:
            return candidate
    ordered = sorted(taken)
    for lo, hi in spans:
        candidate = lo
        for value in ordered[bisect.bisect_left(ordered, lo):]:
            if value > candidate:
                break
            candidate = value + 1          # value == candidate: step over it
        if candidate <= hi:
            return candidate
    return None


def _nth(spans: Sequence[tuple[int, int]], index: int) -> int:
    """The ``index``-th value of the concatenated spans (weighting each by its size)."""
    for lo, hi in spans:
        size = hi - lo + 1
        if index < size:
            return lo + index
        index -= size
    raise IndexError(index)


def contains(value: int, ranges: Sequence[tuple[int, int]]) -> bool:
    """Whether ``value`` lies in any of the inclusive ranges."""
    return any(lo <= value <= hi for lo, hi in ranges)
