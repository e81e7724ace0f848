"""MAC address generation and validation with Neutron's ``base_mac`` semantics. Pure."""

from __future__ import annotations

import random
import re

from plexus.ipam.errors import IpamError

_SEPARATED = re.compile(r"[0-9a-f]{2}([:-])[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}")
_BARE = re.compile(r"[0-9a-f]{12}")
_DOTTED = re.compile(r"[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}")


def _octets(text: object) -> list[int]:
    """The six octets of a MAC in colon, hyphen, bare or Cisco-dotted form, else IpamError."""
    if isinstance(text, str):
        low = text.lower()
        if _SEPARATED.fullmatch(low) or _BARE.fullmatch(low) or _DOTTED.fullmatch(low):
            digits = re.sub(r"[:.\-]", "", low)
            return [int(digits[i:i + 2], 16) for i in range(0, 12, 2)]
    raise IpamError(f"'{text}' is not a valid MAC address", neutron_type="InvalidInput")


def _text(octets: list[int]) -> str:
    """Lower-case, colon-separated text of six octets."""
    return ":".join(f"{o:02x}" for o in octets)


def normalize_mac(s: str) -> str:
    """Canonical ``aa:bb:cc:dd:ee:ff``; broadcast and all-zero are invalid (as Neutron:
    other multicast addresses are accepted)."""
    octets = _octets(s)
    if all(o == 0xFF for o in octets) or not any(octets):
        raise IpamError(f"'{s}' is not a valid MAC address", neutron_type="InvalidInput")
    return _text(octets)


def random_mac(base_mac: str, rng: random.Random) -> str:
    """A random unicast MAC under ``base_mac`` (e.g. ``fa:16:3e:00:00:00``).

    As in Neutron, the first three octets of the base are always kept; octets four and
    five are kept too while they are non-zero (``fa:16:3e:4f:00:00`` keeps four); the
    rest, and always the last octet, are random. A multicast base is invalid.
    """
    base = _octets(base_mac)
    if base[0] & 1:
        raise IpamError(f"Base MAC '{base_mac}' is a multicast address",
                        neutron_type="InvalidInput")
    keep = 3
    while keep < 5 and base[keep]:
        keep += 1
    while True:
        octets = base[:keep] + [rng.getrandbits(8) for _ in range(6 - keep)]
        if any(octets):                               # only possible with a 00:00:00 base
            return _text(octets)
