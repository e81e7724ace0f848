"""A tiny TCP checker run inside lab namespaces: ``serve`` accepts connections and
answers each with the byte count and SHA-256 of what it received; ``send`` pushes a
pseudo-random payload, half-closes, and checks the answer. Large payloads need many
full-size segments with correct checksums, which is exactly what the lab must carry.

    python -m plexus.lab.tcp serve --port 5001 [--ready FILE]
    python -m plexus.lab.tcp send HOST PORT [--size BYTES] [--timeout S]   (prints JSON)

Many concurrent connections (SNAT capacity): ``hold`` accepts any number of connections
and echoes what each sends, keeping them open until the peer closes; ``many`` opens
COUNT connections at once, checks each carries a byte both ways, keeps them all open
for ``--hold`` seconds, closes them and prints a JSON summary (with the local ports).

    python -m plexus.lab.tcp hold --port 5001 [--ready FILE]
    python -m plexus.lab.tcp many HOST PORT --count N [--timeout S] [--hold S]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import selectors
import socket
import sys
import time
from pathlib import Path

CHUNK = 65536


def listener(port: int, host: str | None = None, **kw) -> socket.socket:
    """A listening socket on ``port``: IPv6 and IPv4 both (dual-stack) when no ``host``
    is named and the namespace has IPv6, else IPv4 on ``host`` (0.0.0.0 by default)."""
    if host is None and socket.has_dualstack_ipv6():
        try:
            return socket.create_server(("::", port), family=socket.AF_INET6,
                                        dualstack_ipv6=True, **kw)
        except OSError:             # IPv6 disabled in this namespace
            pass
    return socket.create_server((host or "0.0.0.0", port), **kw)


def serve(port: int, ready: str | None = None, host: str | None = None) -> None:
    """Answer connections forever (until killed) with "<bytes> <sha256>\\n"."""
    with listener(port, host, reuse_port=False) as srv:
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


def _more_files(wanted: int) -> None:
    """Raise this process' open-file limit toward ``wanted`` (as far as the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def hold(port: int, ready: str | None = None, host: str | None = None) -> None:
    """Accept connections forever (until killed), echo what each sends, keep each open
    until its peer closes it."""
    _more_files(1 << 16)
    sel = selectors.DefaultSelector()
    srv = listener(port, host, backlog=8192)
    srv.setblocking(False)
    sel.register(srv, selectors.EVENT_READ)
    if ready:
        Path(ready).write_text(str(port))
    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            if sock is srv:
                try:
                    while True:
                        conn, _ = srv.accept()
                        conn.setblocking(False)
                        sel.register(conn, selectors.EVENT_READ)
                except (BlockingIOError, OSError):
                    pass
                continue
            try:
                data = sock.recv(CHUNK)
                if data:
                    sock.send(data)
                    continue
            except OSError:
                pass
            sel.unregister(sock)
            sock.close()


def many(host: str, port: int, count: int, timeout: float, hold_for: float = 0.0) -> dict:
    """Open ``count`` connections at once; each sends one byte and must get it echoed
    within ``timeout`` seconds of the start. All are held ``hold_for`` seconds more, then
    closed. Returns counts (asked, connected, echoed), the errors met, the local ports."""
    _more_files(count + 64)
    sel = selectors.DefaultSelector()
    start = time.monotonic()
    pending: dict[socket.socket, str] = {}       # socket → "connect" | "echo"
    errors: dict[str, int] = {}
    done: list[socket.socket] = []
    connected = 0

    def fail(sock: socket.socket, why: str) -> None:
        errors[why] = errors.get(why, 0) + 1
        sel.unregister(sock)
        pending.pop(sock, None)
        sock.close()
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.connect_ex((host, port))
        pending[sock] = "connect"
        sel.register(sock, selectors.EVENT_WRITE)
    while pending:
        left = timeout - (time.monotonic() - start)
        if left <= 0:
            break
        for key, _ in sel.select(min(left, 1.0)):
            sock = key.fileobj
            if pending.get(sock) == "connect":
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    fail(sock, f"connect: {os.strerror(err)}")
                    continue
                connected += 1
                pending[sock] = "echo"
                sel.modify(sock, selectors.EVENT_READ)
                try:
                    sock.send(b"x")
                except OSError as exc:
                    fail(sock, f"send: {exc.strerror}")
                continue
            try:
                data = sock.recv(16)
            except OSError as exc:
                fail(sock, f"recv: {exc.strerror}")
                continue
            if data != b"x":
                fail(sock, "no echo")
                continue
            sel.unregister(sock)
            del pending[sock]
            done.append(sock)
    for sock, state in list(pending.items()):
        fail(sock, f"timeout ({state})")
    elapsed = time.monotonic() - start
    ports = sorted(s.getsockname()[1] for s in done)
    if hold_for > 0:
        time.sleep(hold_for)
    for sock in done:
        sock.close()
    return {"ok": len(done) == count, "asked": count, "connected": connected,
            "echoed": len(done), "errors": errors, "seconds": round(elapsed, 3),
            "ports": ports}


def udp_serve(port: int, ready: str | None = None, host: str = "0.0.0.0") -> None:
    """Answer every UDP datagram with ``echo:`` and the datagram, to its sender."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, port))
    if ready:
        Path(ready).touch()
    while True:
        data, peer = sock.recvfrom(2048)
        sock.sendto(b"echo:" + data, peer)


def udp_send(host: str, port: int, timeout: float) -> dict:
    """One datagram to a UDP echo, retried until ``timeout``; whether the echo came back
    (from the address and port it was sent to: a connected socket takes nothing else)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((host, port))
    sock.settimeout(0.5)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            sock.send(b"ping")
            if sock.recv(2048) == b"echo:ping":
                return {"ok": True}
        except OSError:
            time.sleep(0.1)
    return {"ok": False}


def main(argv: list[str] | None = None) -> int:
    """Command line: serve or send."""
    parser = argparse.ArgumentParser(prog="python -m plexus.lab.tcp")
    sub = parser.add_subparsers(dest="cmd", required=True)
    for server in ("serve", "hold", "udp-serve"):
        s = sub.add_parser(server)
        s.add_argument("--port", type=int, required=True)
        s.add_argument("--ready")
    c = sub.add_parser("send")
    c.add_argument("host")
    c.add_argument("port", type=int)
    c.add_argument("--size", type=int, default=1 << 20)
    c.add_argument("--timeout", type=float, default=20.0)
    m = sub.add_parser("many")
    m.add_argument("host")
    m.add_argument("port", type=int)
    m.add_argument("--count", type=int, required=True)
    m.add_argument("--timeout", type=float, default=20.0)
    m.add_argument("--hold", type=float, default=0.0)
    uc = sub.add_parser("udp-send")
    uc.add_argument("host")
    uc.add_argument("port", type=int)
    uc.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    if args.cmd == "udp-serve":
        udp_serve(args.port, args.ready)
        return 0
    if args.cmd == "udp-send":
        result = udp_send(args.host, args.port, args.timeout)
        print(json.dumps(result))
        return 0 if result["ok"] else 1
    if args.cmd == "serve":
        serve(args.port, args.ready)
        return 0
    if args.cmd == "hold":
        hold(args.port, args.ready)
        return 0
    if args.cmd == "many":
        result = many(args.host, args.port, args.count, args.timeout, args.hold)
        print(json.dumps(result))
        return 0 if result["ok"] else 1
    result = send(args.host, args.port, args.size, args.timeout)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
