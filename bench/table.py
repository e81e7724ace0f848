"""What every benchmark prints: one table of (metric, value) rows, and the machine."""

from __future__ import annotations

import os
import platform


def machine() -> str:
    """This machine in one line (architecture, cores, kernel, Python)."""
    return (f"{platform.machine()}, {os.cpu_count()} cores, kernel {platform.release()}, "
            f"Python {platform.python_version()}")


def print_table(rows: list[tuple[str, str]]) -> None:
    """Print rows as a two-column text table."""
    width = max(len(k) for k, _ in rows)
    print(f"{'metric'.ljust(width)} | value")
    print(f"{'-' * width}-|------")
    for key, value in rows:
        print(f"{key.ljust(width)} | {value}")
