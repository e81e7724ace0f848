"""A long-lived TCP session for outage tests, run inside lab namespaces: ``echo`` answers
every connection by echoing what it receives; ``run`` opens one connection and sends a
small numbered chunk every ``--interval`` seconds, checks that the echo comes back
byte for byte, and appends its progress to ``--log`` (a JSON line every half second:
seconds since start, bytes sent, bytes echoed back) until ``--until FILE`` exists (or
``--seconds`` pass); then it waits for the last echoes and writes a final line with
``"done": true`` and ``"ok"`` (every byte echoed, no error).

    python -m plexus.lab.session echo --port 5002 [--ready FILE]
    python -m plexus.lab.session run HOST PORT --log FILE [--until FILE] [--seconds S]

``progress(path)`` reads such a log; ``last(path)`` its latest line.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import sys
import threading
import time
from pathlib import Path

CHUNK = 64


def echo(port: int, ready: str | None = None) -> None:
    """Echo every connection (a thread each) until killed."""
    def serve(conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                pass
    with socket.create_server(("0.0.0.0", port)) as srv:
        if ready:
            Path(ready).write_text(str(port))
        while True:
            conn, _ = srv.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()


def chunk(i: int) -> bytes:
    """The ``i``-th chunk: its number, repeated."""
    return f"{i:08d}".encode() * (CHUNK // 8)


def run(host: str, port: int, log: str, until: str | None, seconds: float,
        interval: float = 0.2, drain: float = 60.0) -> dict:
    """Keep a session busy; returns (and logs) the final state."""
    start = time.monotonic()
    state = {"t": 0.0, "sent": 0, "echoed": 0, "error": None}
    sent = bytearray()
    out = open(log, "a")

    def note(**extra) -> None:
        state["t"] = round(time.monotonic() - start, 2)
        out.write(json.dumps({**state, **extra}) + "\n")
        out.flush()

    try:
        s = socket.create_connection((host, port), timeout=10)
    except OSError as exc:
        state["error"] = f"connect: {exc}"
        note(done=True, ok=False)
        return state
    s.settimeout(30)
    i, next_send, next_note, stop_at = 0, start, start, None
    try:
        while True:
            now = time.monotonic()
            if stop_at is None and (now - start >= seconds or (until and Path(until).exists())):
                stop_at = now + drain               # stop sending; wait for the echoes
            if stop_at is not None and (state["echoed"] == state["sent"] or now > stop_at):
                break
            if stop_at is None and now >= next_send:
                data = chunk(i)
                s.sendall(data)
                sent += data
                state["sent"] += len(data)
                i += 1
                next_send += interval
            if now >= next_note:
                note()
                next_note += 0.5
            wait = max(0.0, min(next_send, next_note) - time.monotonic())
            if select.select([s], [], [], wait if stop_at is None else 0.1)[0]:
                data = s.recv(65536)
                if not data:
                    raise ConnectionError("closed by the peer")
                got = state["echoed"]
                if bytes(sent[got:got + len(data)]) != data:
                    raise ValueError(f"echo differs from what was sent at byte {got}")
                state["echoed"] += len(data)
    except (OSError, ValueError) as exc:
        state["error"] = repr(exc)
    finally:
        s.close()
    note(done=True, ok=state["error"] is None and state["echoed"] == state["sent"] > 0)
    out.close()
    return state


def progress(path: str | Path) -> list[dict]:
    """Every line of a session log so far."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip().endswith("}")]


def last(path: str | Path) -> dict:
    """The latest line of a session log ({} before the first)."""
    lines = progress(path)
    return lines[-1] if lines else {}


def main(argv: list[str] | None = None) -> int:
    """Command line: echo or run."""
    parser = argparse.ArgumentParser(prog="python -m plexus.lab.session")
    sub = parser.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("echo")
    e.add_argument("--port", type=int, required=True)
    e.add_argument("--ready")
    r = sub.add_parser("run")
    r.add_argument("host")
    r.add_argument("port", type=int)
    r.add_argument("--log", required=True)
    r.add_argument("--until")
    r.add_argument("--seconds", type=float, default=3600.0)
    r.add_argument("--interval", type=float, default=0.2)
    args = parser.parse_args(argv)
    if args.cmd == "echo":
        echo(args.port, args.ready)
        return 0
    state = run(args.host, args.port, args.log, args.until, args.seconds, args.interval)
    return 0 if state["error"] is None else 1


if __name__ == "__main__":
    sys.exit(main())
