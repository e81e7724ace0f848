"""The lab's inventory: a JSON file that lists everything the lab made, each entry
written *before* the thing is created, so that a crash (even ``kill -9``) never leaks.
Teardown removes what was recorded, and only that, tolerating things that no longer
exist; an entry leaves the file once its thing is gone.

Teardown is batched so that hundreds of VMs go in seconds: kinds go in phases (OVS
ports, processes, links, namespaces, API objects, paths: ``PHASES``), each newest
first and removed at once — processes signalled and waited for together, links deleted
with one netlink socket per namespace (none for a veth whose both ends' namespaces go
too: the kernel removes it with them), namespaces checked for stray processes with one
scan of /proc — and the inventory is rewritten once per phase."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Callable

from plexus.lab import netlink

FILE = "inventory.json"
VERSION = 1
PIDFILE_GRACE = 3.0   # how long teardown waits for the pidfile of a never-recorded pid


class InventoryError(RuntimeError):
    """The inventory is missing, unreadable or belongs to another lab."""


class Inventory:
    """Entries of one lab directory, safe to share between processes (flock)."""

    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory).resolve()
        self.path = self.dir / FILE

    # --- file ------------------------------------------------------------------------
    @classmethod
    def create(cls, directory: str | os.PathLike, header: dict) -> "Inventory":
        """Make the lab directory and an empty inventory; error if one exists."""
        inv = cls(directory)
        inv.dir.mkdir(parents=True, exist_ok=True)
        with inv._locked():
            if inv.path.exists():
                raise InventoryError(f"{inv.path} exists: that lab is up (plexus lab down)")
            inv._write({"version": VERSION, **header, "next_id": 1, "entries": []})
        return inv

    def exists(self) -> bool:
        """Whether the inventory file exists."""
        return self.path.exists()

    def read(self) -> dict:
        """The whole document."""
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            raise InventoryError(f"no lab at {self.dir} (no {FILE})") from None

    def entries(self, kind: str | None = None, group: str | None = None) -> list[dict]:
        """Recorded entries in creation order, optionally of one kind and/or group."""
        return [e for e in self.read()["entries"]
                if kind in (None, e["kind"]) and group in (None, e.get("group"))]

    @contextlib.contextmanager
    def _locked(self):
        fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write(self, doc: dict) -> None:
        tmp = self.path.with_name(f".{FILE}.{os.getpid()}")
        with open(tmp, "w") as fh:
            json.dump(doc, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    @contextlib.contextmanager
    def _edit(self):
        with self._locked():
            doc = self.read()
            yield doc
            self._write(doc)

    # --- entries ---------------------------------------------------------------------
    def record(self, kind: str, group: str = "lab", **data) -> int:
        """Record a thing about to be created; returns its entry id."""
        with self._edit() as doc:
            ident = doc["next_id"]
            doc["next_id"] += 1
            doc["entries"].append({"id": ident, "kind": kind, "group": group, **data})
        return ident

    def update(self, ident: int, **data) -> None:
        """Add facts learnt after creation (a pid, a port id) to an entry."""
        with self._edit() as doc:
            for entry in doc["entries"]:
                if entry["id"] == ident:
                    entry.update(data)

    def set(self, **header) -> None:
        """Change header fields (not entries)."""
        with self._edit() as doc:
            doc.update(header)

    def forget(self, ident: int) -> None:
        """Drop an entry whose thing is gone."""
        self.forget_many([ident])

    def forget_many(self, idents) -> None:
        """Drop entries whose things are gone (one write)."""
        gone = set(idents)
        if not gone:
            return
        with self._edit() as doc:
            doc["entries"] = [e for e in doc["entries"] if e["id"] not in gone]

    # --- teardown --------------------------------------------------------------------
    def teardown(self, handlers: dict[str, Callable[[dict], object]] | None = None,
                 group: str | None = None,
                 log: Callable[[str], None] = lambda m: None,
                 batches: dict[str, Batch] | None = None) -> list[str]:
        """Remove recorded things (all, or one group); returns the errors.

        Phases by kind (``PHASES``; other kinds after OVS ports, before processes), each
        newest first; a kind with a batch handler (``BATCHES``, ``batches``) is removed
        in one call, any other entry by its handler. With ``group=None`` and no errors
        the lab directory itself goes too."""
        if not self.exists():
            return []
        table = {**HANDLERS, **(handlers or {})}
        batch = {**BATCHES, **(batches or {})}
        entries = list(reversed(self.entries(group=group)))
        # a veth whose both ends' namespaces go in this teardown goes with them (the
        # kernel removes it); it leaves the inventory once both namespaces are gone
        leaving = {e["name"] for e in entries if e["kind"] == "netns"}
        riding = [e for e in entries if e["kind"] == "link" and e["ns"] in leaving
                  and e.get("peer_ns", e["ns"]) in leaving]
        skip = {e["id"] for e in riding}
        errors: list[str] = []

        def one_by_one(phase: list[dict]) -> dict[int, str]:
            failed = {}
            for entry in phase:
                handler = table.get(entry["kind"])
                try:
                    if handler is None:
                        raise InventoryError(f"no handler for {entry['kind']}")
                    handler(entry)
                except Exception as exc:  # noqa: BLE001 - keep going, report at the end
                    failed[entry["id"]] = str(exc)
            return failed

        def run(phase: list[dict], remove: Batch) -> None:
            try:
                failed = remove(phase)
            except Exception as exc:  # noqa: BLE001 - report, keep going
                failed = {e["id"]: str(exc) for e in phase}
            errors.extend(f"{describe(e)}: {failed[e['id']]}" for e in phase
                          if e["id"] in failed)
            done = [e["id"] for e in phase if e["id"] not in failed]
            for entry in phase:
                if entry["id"] not in failed:
                    log(f"removed {describe(entry)}")
            self.forget_many(done)

        for phase in _phases([e for e in entries if e["id"] not in skip]):
            kind = phase[0]["kind"]
            # a caller's own handler for a kind overrides the built-in batch for it
            mine = kind in (batches or {}) or table.get(kind) is HANDLERS.get(kind)
            run(phase, batch[kind] if kind in batch and mine else one_by_one)
        gone = [e for e in riding if not netlink.ns_exists(e["ns"])
                and not netlink.ns_exists(e.get("peer_ns", e["ns"]))]
        for entry in gone:
            log(f"removed {describe(entry)} (with its namespaces)")
        self.forget_many(e["id"] for e in gone)
        left = [e for e in riding if e not in gone]   # a namespace could not go
        if left:
            run(left, one_by_one)
        if group is None and not errors:
            shutil.rmtree(self.dir, ignore_errors=True)
        return errors


Batch = Callable[[list[dict]], dict[int, str]]
"""A batch handler: removes many entries of one kind; returns errors by entry id."""

PHASES = ("ovs-port", None, "process", "link", "netns", "vm", "path")
"""Teardown order by kind; ``None``: every kind not named. A VM is unplugged (OVS port,
its processes, veth, namespace) before its port is deleted through the API, as Nova
does; a whole lab's ``vm`` entries need no API call."""


def _phases(entries: list[dict]) -> list[list[dict]]:
    """Entries (newest first) cut into phases: one list per kind, in ``PHASES`` order
    (unnamed kinds each in a phase of their own, newest first, at ``None``)."""
    by_kind: dict[str, list[dict]] = {}
    for entry in entries:
        by_kind.setdefault(entry["kind"], []).append(entry)
    named = [k for k in PHASES if k]
    out = []
    for kind in PHASES:
        if kind is None:
            out += [by_kind[k] for k in by_kind if k not in named]
        elif kind in by_kind:
            out.append(by_kind[kind])
    return out


def describe(entry: dict) -> str:
    """A short human description of an entry."""
    kind = entry["kind"]
    if kind == "process":
        return f"process {entry.get('label')} (pid {entry.get('pid', '?')})"
    if kind == "netns":
        return f"namespace {entry['name']}"
    if kind == "link":
        return f"link {entry['name']} in {entry['ns']}"
    return f"{kind} {entry.get('name', entry.get('id'))}"


# --- processes ---------------------------------------------------------------------------

def start_time(pid: int) -> int | None:
    """The kernel start time of ``pid`` (clock ticks since boot); None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(stat.rpartition(")")[2].split()[19])


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not; ours is reaped on the way)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    state = _state(pid)
    return state is not None and state not in ("Z", "X")


def resolve_pid(entry: dict) -> int | None:
    """The pid of a recorded process if it still is that process, else None.

    A pid is trusted when its start time matches the one recorded; a pid read from the
    recorded pidfile (a crash before the start time was written) when its command line
    names the pidfile or the ``marker`` recorded with it."""
    pid = entry.get("pid")
    if pid and entry.get("start") is not None:
        return pid if alive(pid) and start_time(pid) == entry["start"] else None
    pidfile = entry.get("pidfile")
    if not pid and pidfile:
        with contextlib.suppress(OSError, ValueError):
            pid = int(Path(pidfile).read_text().split()[0])
    if not pid or not alive(pid):
        return None
    marker = entry.get("marker") or pidfile
    return pid if marker and marker in _cmdline(pid) else None


def stop_process(entry: dict, timeout: float = 5.0) -> bool:
    """SIGTERM a recorded process (SIGKILL after ``timeout``); returns whether it ran."""
    pidfile = entry.get("pidfile")
    if not entry.get("pid") and pidfile:
        # recorded, then the lab crashed: the process may still be starting up
        deadline = time.monotonic() + PIDFILE_GRACE
        while not Path(pidfile).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    pid = resolve_pid(entry)
    if pid is None:
        return False
    end_pid(pid, signal.SIGTERM, timeout)
    return True


def end_pid(pid: int, sig: int = signal.SIGTERM, timeout: float = 5.0) -> None:
    """Send ``sig`` to ``pid`` (a process the lab recorded) and wait until it is gone;
    SIGKILL if it outlives ``timeout``."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout
        time.sleep(0.02)


def stop_processes(entries: list[dict], timeout: float = 5.0) -> dict[int, str]:
    """``stop_process`` for many at once: SIGTERM to all, wait for all, SIGKILL what is
    left after ``timeout``. Entries recorded without a pid (a crash) go one by one."""
    unsure = [e for e in entries if not e.get("pid") and e.get("pidfile")]
    for entry in unsure:
        stop_process(entry, timeout)
    pids = [p for p in (resolve_pid(e) for e in entries if e not in unsure) if p]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if alive(p)]
            if pids:
                time.sleep(0.02)
        if not pids:
            break
    return {}


def _netns_inodes(names: list[str]) -> dict[tuple[int, int], str]:
    found = {}
    for name in names:
        with contextlib.suppress(OSError):
            st = os.stat(netlink.NETNS_DIR / name)
            found[(st.st_dev, st.st_ino)] = name
    return found


def remove_namespaces(entries: list[dict]) -> dict[int, str]:
    """``_remove_netns`` for many at once: one scan of /proc finds the processes still
    in any of them (such a namespace is reported and kept), the others are removed."""
    inodes = _netns_inodes([e["name"] for e in entries])
    stray: dict[str, list[int]] = {}
    if inodes:
        for pid_dir in Path("/proc").iterdir():
            if not pid_dir.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                st = os.stat(pid_dir / "ns" / "net")
                name = inodes.get((st.st_dev, st.st_ino))
                if name:
                    stray.setdefault(name, []).append(int(pid_dir.name))
    failed = {}
    for entry in entries:
        pids = sorted(stray.get(entry["name"], []))
        if pids:
            failed[entry["id"]] = (f"processes {pids} still run in it and were not started "
                                   "by the lab; stop them, then run lab down again")
            continue
        try:
            netlink.ns_delete(entry["name"])
        except OSError as exc:
            failed[entry["id"]] = str(exc)
    return failed


def remove_links(entries: list[dict]) -> dict[int, str]:
    """``_remove_link`` for many at once: one netlink socket per namespace."""
    by_ns: dict[str, list[dict]] = {}
    for entry in entries:
        by_ns.setdefault(entry["ns"], []).append(entry)
    failed = {}
    for ns, links in by_ns.items():
        try:
            netlink.links_delete(ns, [e["name"] for e in links])
        except Exception as exc:  # noqa: BLE001 - report every link of that namespace
            failed.update({e["id"]: str(exc) for e in links})
    return failed


def _remove_netns(entry: dict) -> None:
    # a process the lab did not record keeps the namespace alive: say so, never kill it
    stray = netlink.ns_pids(entry["name"]) if netlink.ns_exists(entry["name"]) else []
    if stray:
        raise InventoryError(f"processes {stray} still run in it and were not started by "
                             "the lab; stop them, then run lab down again")
    netlink.ns_delete(entry["name"])


def _remove_link(entry: dict) -> None:
    netlink.link_delete(entry["ns"], entry["name"])


def _remove_path(entry: dict) -> None:
    path = Path(entry["path"])
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


BATCHES: dict[str, Batch] = {
    "process": stop_processes,
    "netns": remove_namespaces,
    "link": remove_links,
}

HANDLERS: dict[str, Callable[[dict], object]] = {
    "process": stop_process,
    "netns": _remove_netns,
    "link": _remove_link,
    "path": _remove_path,
}
