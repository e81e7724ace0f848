"""Plexus: a distributed virtual network for OpenStack-style clouds."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("plexus")
except _metadata.PackageNotFoundError:      # running from a source tree
    __version__ = "0+unknown"
