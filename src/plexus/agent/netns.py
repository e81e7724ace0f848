"""Entering a network namespace from one thread (setns(2)), the rest of the process
staying where it is: sockets made inside keep belonging to that namespace."""

from __future__ import annotations

import contextlib
import ctypes
import os

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


@contextlib.contextmanager
def in_netns(name: str):
    """Run the calling thread inside network namespace ``name`` (/run/netns/NAME) for
    the block."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {name}: {os.strerror(err)}")
        try:
            yield
        finally:
            if _libc.setns(home, CLONE_NEWNET) != 0:
                raise SystemExit("cannot return to the original network namespace")
    finally:
        os.close(target)
        os.close(home)
