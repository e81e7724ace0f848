"""A tiny TCP checker run inside lab namespaces: ``serve`` accepts connections and
answers each with the byte count and SHA-256 of what it received; ``send`` pushes a
pseudo-random payload, half-closes, and checks the answer. Large payloads need many
full-size segments with correct checksums, which is exactly what the lab must carry.

    python -m plexus.lab.tcp serve --port 5001 [--ready FILE]
    python -m plexus.lab.tcp send HOST PORT [--size BYTES] [--timeout S]   (prints JSON)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import socket
import sys
import time
from pathlib import Path

CHUNK = 65536


def serve(port: int, ready: str | None = None, host: str = "0.0.0.0") -> None:
    """Answer connections forever (until killed) with "<bytes> <sha256>\\n"."""
    with socket.create_server((host, port), reuse_port=False) as srv:
        if ready:
            Path(ready).write_text(str(port))
        while True:
            conn, _ = srv.accept()
            with conn:
                conn.settimeout(60)
                digest, count = hashlib.sha256(), 0
                try:
                    while chunk := conn.recv(CHUNK):
                        digest.update(chunk)
                        count += len(chunk)
                    conn.sendall(f"{count} {digest.hexdigest()}\n".encode())
                except OSError:
                    continue


def payload(size: int, seed: int = 7) -> bytes:
    """Deterministic pseudo-random bytes (incompressible, so nothing is shortcut)."""
    return random.Random(seed).randbytes(size)


def send(host: str, port: int, size: int, timeout: float) -> dict:
    """Send ``size`` bytes and verify the server's count and digest."""
    data = payload(size)
    start = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)
            reply = b""
            while chunk := conn.recv(4096):
                reply += chunk
    except OSError as exc:
        return {"ok": False, "error": str(exc), "bytes": 0}
    elapsed = time.monotonic() - start
    count, _, digest = reply.decode().strip().partition(" ")
    ok = count == str(size) and digest == hashlib.sha256(data).hexdigest()
    return {"ok": ok, "bytes": int(count or 0), "seconds": round(elapsed, 4),
            "mbit_s": round(size * 8 / elapsed / 1e6, 1) if elapsed else None}


def main(argv: list[str] | None = None) -> int:
    """Command line: serve or send."""
    parser = argparse.ArgumentParser(prog="python -m plexus.lab.tcp")
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--ready")
    c = sub.add_parser("send")
    c.add_argument("host")
    c.add_argument("port", type=int)
    c.add_argument("--size", type=int, default=1 << 20)
    c.add_argument("--timeout", type=float, default=20.0)
    args = parser.parse_args(argv)
    if args.cmd == "serve":
        serve(args.port, args.ready)
        return 0
    result = send(args.host, args.port, args.size, args.timeout)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
