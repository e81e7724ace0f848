"""The etcd v3 backend: the store contract over an etcd cluster's JSON gateway.

Requests go to etcd's gRPC-gateway (``/v3/kv/*``, ``/v3/lease/*``, ``/v3/watch``), with
httpx for the unary calls and a raw HTTP/1.1 stream (h11) for watches, whose deadline
has to be exact. Endpoints are tried in turn: reads move to the next endpoint on any
failure; writes only when the request never left (connection refused), since a write
that may have been applied must not be sent twice. A cluster that cannot answer (no
quorum, no leader, every endpoint down) raises ``Unavailable``.

Revisions: etcd numbers its empty store 1, the contract numbers it 0, so every revision
crossing this module is etcd's minus one (``etcdctl`` shows one more than Plexus).

Watches watch the whole keyspace and filter by prefix here: etcd sends one watcher's
events in revision order without gaps, so having seen revision R means nothing at or
below R is missing, which makes ``next_revision`` exact even when no event matched.
"""

from __future__ import annotations

import base64
import math
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator, Sequence
from urllib.parse import urlsplit

import h11
import httpx
import orjson

from plexus.store.contract import (
    Compacted, Compare, Delete, Event, KeyValue, LeaseNotFound, Op, Put, Store, StoreError,
    TxnResult, Unavailable, WatchResult,
)

CONNECT_TIMEOUT = 1.0    # seconds to open a connection to one endpoint
REQUEST_TIMEOUT = 10.0   # seconds one request may take (etcd's own proposal timeout is ~7 s)
CATCH_UP = 10.0          # seconds a watch may spend reading history it was asked for
ALL_KEYS = b"\0"         # as key and range_end: every key
# gRPC metadata "hasleader" (through the gateway's Grpc-Metadata- headers): a member
# cut off from the leader refuses at once with "no leader", before doing anything,
# instead of waiting for a leader; and it ends a watch when it loses its leader.
REQUIRE_LEADER = ("Grpc-Metadata-hasleader", "true")
NO_LEADER = "etcdserver: no leader"

# gRPC status codes (as the gateway reports them) that mean "try again later"
_RETRIABLE_CODES = {1, 4, 8, 10, 14}     # cancelled, deadline, exhausted, aborted, unavailable


@dataclass(frozen=True)
class TLS:
    """Client TLS towards etcd: the CA that signed the members, and an optional client cert."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def context(self) -> ssl.SSLContext:
        """An SSL context verifying the members against ``ca_file`` (system CAs if None)."""
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


def parse_endpoints(url: str, tls: TLS | None = None) -> list[str]:
    """``etcd://h1:2379,h2:2379`` → ``["http://h1:2379", "http://h2:2379"]`` (https with TLS)."""
    if not url.startswith("etcd://"):
        raise ValueError(f"not an etcd URL: {url!r}")
    hosts = [h.strip() for h in url.removeprefix("etcd://").rstrip("/").split(",") if h.strip()]
    if not hosts:
        raise ValueError(f"no endpoints in {url!r}")
    scheme = "https" if tls else "http"
    endpoints = []
    for host in hosts:
        parts = urlsplit(f"{scheme}://{host}")
        if not parts.hostname or parts.path or parts.query:
            raise ValueError(f"bad etcd endpoint {host!r} in {url!r}: expected host:port")
        endpoints.append(f"{scheme}://{parts.hostname}:{parts.port or 2379}")
    return endpoints


# Wire encoding.

def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def _rev(etcd_revision: Any) -> int:
    """A contract revision from an etcd one (0 stays 0: "none")."""
    value = int(etcd_revision or 0)
    return value - 1 if value else 0


def _etcd_rev(revision: int) -> int:
    """An etcd revision from a contract one (0 stays 0)."""
    return revision + 1 if revision else 0


def _prefix_end(prefix: bytes) -> bytes:
    """The least key above every key starting with ``prefix`` (``\\0``: no bound)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return ALL_KEYS
    return stripped[:-1] + bytes([stripped[-1] + 1])


def _kv(raw: dict) -> KeyValue:
    """A KeyValue from the gateway's JSON form."""
    return KeyValue(_unb64(raw["key"]).decode(), _unb64(raw.get("value")),
                    _rev(raw.get("create_revision")), _rev(raw.get("mod_revision")),
                    int(raw.get("version") or 0), int(raw.get("lease") or 0))


def _event(raw: dict) -> Event:
    """An Event from the gateway's JSON form."""
    prev = _kv(raw["prev_kv"]) if raw.get("prev_kv") else None
    if raw.get("type") == "DELETE":
        kv = raw["kv"]
        return Event("delete", KeyValue(_unb64(kv["key"]).decode(), b"", 0,
                                        _rev(kv.get("mod_revision")), 0, 0), prev)
    return Event("put", _kv(raw["kv"]), prev)


class _Failed(Exception):
    """One endpoint failed; ``sent`` tells whether the request may have reached etcd."""

    def __init__(self, endpoint: str, reason: str, sent: bool):
        super().__init__(f"{endpoint}: {reason}")
        self.sent = sent


class EtcdStore(Store):
    """The store contract over an etcd v3 cluster (one or more client endpoints)."""

    def __init__(self, endpoints: Sequence[str], tls: TLS | None = None,
                 timeout: float = REQUEST_TIMEOUT):
        if not endpoints:
            raise ValueError("at least one etcd endpoint is needed")
        self.endpoints = list(endpoints)
        self._ssl = tls.context() if tls else None
        self._timeout = timeout
        self._preferred = 0                 # index of the endpoint that answered last
        self._lock = threading.Lock()
        self._closed = False
        self._http = httpx.Client(
            verify=self._ssl if self._ssl is not None else True,
            timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            headers=[REQUIRE_LEADER])

    @classmethod
    def from_url(cls, url: str, tls: TLS | None = None) -> "EtcdStore":
        """A store on the endpoints of ``etcd://host:port,host:port``."""
        return cls(parse_endpoints(url, tls), tls)

    # Endpoints and requests.

    def _order(self) -> list[int]:
        """Endpoint indexes to try, the last one that answered first."""
        with self._lock:
            if self._closed:
                raise StoreError("store is closed")
            first = self._preferred
        n = len(self.endpoints)
        return [(first + i) % n for i in range(n)]

    def _answered(self, index: int) -> None:
        with self._lock:
            self._preferred = index

    def _on_endpoints(self, attempt, *, retry_sent: bool):
        """``attempt(endpoint)`` on each endpoint in turn until one answers.

        An endpoint that failed before the request left is always skipped; one that
        failed after (the request may have been applied) only when ``retry_sent``.
        Raises Unavailable once no endpoint is left to try."""
        failures: list[str] = []
        for index in self._order():
            try:
                result = attempt(self.endpoints[index])
            except _Failed as exc:
                failures.append(str(exc))
                if exc.sent and not retry_sent:
                    break
                continue
            self._answered(index)
            return result
        raise Unavailable("etcd cannot serve the request now (" + "; ".join(failures) + ")")

    def _call(self, path: str, body: dict, *, idempotent: bool) -> dict:
        """POST ``body`` to ``/v3/<path>`` on the first endpoint that answers."""
        return self._on_endpoints(lambda endpoint: self._post(endpoint, path, body),
                                  retry_sent=idempotent)

    def _post(self, endpoint: str, path: str, body: dict) -> dict:
        """One request to one endpoint: the decoded answer, or _Failed / a store error."""
        try:
            response = self._http.post(f"{endpoint}/v3/{path}", content=orjson.dumps(body),
                                       headers={"Content-Type": "application/json"})
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise _Failed(endpoint, f"cannot connect ({exc})", sent=False) from None
        except httpx.HTTPError as exc:
            raise _Failed(endpoint, f"{type(exc).__name__} ({exc})", sent=True) from None
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise _Failed(endpoint, f"HTTP {response.status_code}, not JSON", sent=True) from None
        if path == "lease/keepalive":        # a stream of one message: {"result": ...}
            data = data.get("result", data)
        if response.status_code == 200 and "error" not in data:
            return data
        error = data.get("error")
        message = error.get("message", "") if isinstance(error, dict) else str(error or "")
        code = int(data.get("code") or (error.get("code", 0) if isinstance(error, dict) else 0))
        _raise_for(message, code)
        if message == NO_LEADER:         # refused before anything was done: try elsewhere
            raise _Failed(endpoint, message, sent=False)
        if code in _RETRIABLE_CODES or response.status_code >= 500:
            raise _Failed(endpoint, message or f"HTTP {response.status_code}", sent=True)
        raise StoreError(f"etcd refused the request: {message or response.status_code}")

    # The contract.

    def get(self, key: str) -> KeyValue | None:
        """The key's current value, or None."""
        data = self._call("kv/range", {"key": _b64(key.encode())}, idempotent=True)
        kvs = data.get("kvs") or []
        return _kv(kvs[0]) if kvs else None

    def range(self, prefix: str) -> tuple[list[KeyValue], int]:
        """All keys starting with ``prefix``, sorted by key, and the revision they were read at."""
        raw = prefix.encode()
        data = self._call("kv/range", {"key": _b64(raw or ALL_KEYS),
                                       "range_end": _b64(_prefix_end(raw))}, idempotent=True)
        return [_kv(kv) for kv in data.get("kvs") or []], _rev(data["header"]["revision"])

    def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        """Apply ``ops`` atomically iff every compare holds; one revision for all writes."""
        if len({op.key for op in ops}) != len(ops):
            raise ValueError("a transaction may touch each key only once")
        body = {
            "compare": [{"target": "MOD", "result": "EQUAL", "key": _b64(c.key.encode()),
                         "mod_revision": _etcd_rev(c.mod_revision)} for c in compares],
            "success": [_request_op(op) for op in ops],
        }
        data = self._call("kv/txn", body, idempotent=False)
        return TxnResult(bool(data.get("succeeded")), _rev(data["header"]["revision"]))

    def revision(self) -> int:
        """The current global revision (0 for an empty, never-written store)."""
        data = self._call("kv/range", {"key": _b64(ALL_KEYS), "limit": 1, "count_only": True},
                          idempotent=True)
        return _rev(data["header"]["revision"])

    def watch(self, prefix: str, from_revision: int, timeout: float = 0.0) -> WatchResult:
        """Events under ``prefix`` with revision >= ``from_revision`` (0: from the next write on).

        Waits up to ``timeout`` seconds for at least one event; ``next_revision`` is one
        past the newest revision examined. Raises ``Compacted`` for compacted history."""
        if from_revision < 0:
            raise ValueError("from_revision must be >= 0")
        return self._on_endpoints(
            lambda endpoint: _Watch(self, endpoint, prefix.encode(), from_revision, timeout).run(),
            retry_sent=True)

    def compact(self, revision: int) -> None:
        """Forget history at and below ``revision`` (current values are kept)."""
        if revision <= 0:
            return
        try:
            self._call("kv/compaction", {"revision": _etcd_rev(revision), "physical": True},
                       idempotent=True)
        except _AlreadyCompacted:
            pass

    def lease_grant(self, ttl: float) -> int:
        """Create a lease of ``ttl`` seconds (etcd rounds up to whole seconds); returns its id."""
        if ttl <= 0:
            raise ValueError("a lease needs a positive TTL")
        data = self._call("lease/grant", {"TTL": max(1, math.ceil(ttl))}, idempotent=False)
        return int(data["ID"])

    def lease_keepalive(self, lease: int) -> float:
        """Renew the lease to its full TTL; returns the TTL. Raises ``LeaseNotFound``."""
        data = self._call("lease/keepalive", {"ID": lease}, idempotent=True)
        ttl = int(data.get("TTL") or 0)
        if ttl <= 0:
            raise LeaseNotFound(f"lease {lease} not found")
        return float(ttl)

    def lease_revoke(self, lease: int) -> None:
        """End the lease now, deleting its keys. Raises ``LeaseNotFound``."""
        self._call("lease/revoke", {"ID": lease}, idempotent=False)

    def close(self) -> None:
        """Close the connections; the store is unusable afterwards."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._http.close()

    # For the watch.

    def _connect(self, endpoint: str) -> socket.socket:
        """A connected (TLS-wrapped if configured) socket to ``endpoint``."""
        parts = urlsplit(endpoint)
        sock = socket.create_connection((parts.hostname, parts.port), timeout=CONNECT_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._ssl is not None:
            sock = self._ssl.wrap_socket(sock, server_hostname=parts.hostname)
        return sock


class _AlreadyCompacted(StoreError):
    """etcd: the requested revision is at or below the compacted one."""


def _raise_for(message: str, code: int) -> None:
    """Turn etcd's refusals that mean something to the contract into its errors."""
    if "requested lease not found" in message:
        raise LeaseNotFound(message.removeprefix("etcdserver: "))
    if "duplicate key given in txn request" in message:
        raise ValueError("a transaction may touch each key only once")
    if "required revision has been compacted" in message:
        raise _AlreadyCompacted(message)
    if "required revision is a future revision" in message:
        raise ValueError(f"cannot compact beyond the current revision ({message})")


def _request_op(op: Op) -> dict:
    """One txn operation in the gateway's JSON form."""
    key = _b64(op.key.encode())
    if isinstance(op, Put):
        put = {"key": key, "value": _b64(op.value)}
        if op.lease:
            put["lease"] = op.lease
        return {"request_put": put}
    if isinstance(op, Delete):
        return {"request_delete_range": {"key": key}}
    raise TypeError(f"not a store operation: {op!r}")


class _Watch:
    """One bounded long-poll: a watch stream on the whole keyspace, read until done."""

    def __init__(self, store: EtcdStore, endpoint: str, prefix: bytes, from_revision: int,
                 timeout: float):
        self.store, self.endpoint, self.prefix = store, endpoint, prefix
        self.from_revision = from_revision
        self.timeout = timeout
        self.events: list[Event] = []
        self.want = _etcd_rev(from_revision)   # first etcd revision wanted (0: next write)
        self.seen = 0                          # newest etcd revision delivered to us
        self.head = 0                          # etcd's revision when the watch was created

    def run(self) -> WatchResult:
        """Create the watch, collect events, close; _Failed when the endpoint let us down."""
        began = time.monotonic()
        try:
            sock = self.store._connect(self.endpoint)
        except OSError as exc:
            raise _Failed(self.endpoint, f"cannot connect ({exc})", sent=False) from None
        try:
            return self._collect(sock, began)
        finally:
            sock.close()

    def _request(self) -> dict:
        # Starting one revision early lets etcd itself say "compacted" for the first
        # wanted revision (it accepts a start equal to its compact revision, whose
        # history may be partial); the extra revision's events are dropped.
        start = self.want - 1 if self.want > 1 else self.want
        return {"create_request": {"key": _b64(ALL_KEYS), "range_end": _b64(ALL_KEYS),
                                   "start_revision": start, "prev_kv": True}}

    def _caught_up(self) -> bool:
        """Whether every revision up to the watch's creation has been delivered."""
        return self.want > self.head or self.seen >= self.head

    def _collect(self, sock: socket.socket, began: float) -> WatchResult:
        stream = _Stream(sock, self.endpoint)
        stream.send(urlsplit(self.endpoint).netloc, "/v3/watch", orjson.dumps(self._request()))
        deadline = began + self.timeout
        created = False
        while True:
            now = time.monotonic()
            if not created:
                limit = began + self.store._timeout
            elif self._caught_up():
                if self.events or now >= deadline:
                    break
                limit = deadline
            else:       # history first, even past the timeout (up to CATCH_UP)
                limit = max(deadline, began + CATCH_UP)
                if now >= limit:
                    break
            try:
                message = stream.next_message(limit - now)
            except TimeoutError:
                if not created:
                    raise _Failed(self.endpoint, "watch not created in time", sent=True) from None
                continue
            except (OSError, h11.ProtocolError, _StreamEnded) as exc:
                if self.events:        # what arrived is complete up to self.seen
                    break
                raise _Failed(self.endpoint, f"watch stream broke ({exc})", sent=True) from None
            if "error" in message:
                raise _Failed(self.endpoint, f"watch refused: {message['error']}", sent=True)
            result = message.get("result", {})
            if result.get("canceled"):
                compact = int(result.get("compact_revision") or 0)
                if compact:
                    raise Compacted(self.from_revision, _rev(compact))
                raise _Failed(self.endpoint, f"watch cancelled: {result.get('cancel_reason')}",
                              sent=True)
            if result.get("created"):
                created = True
                self.head = int(result["header"]["revision"])
                self.want = self.want or self.head + 1
            self._take(result.get("events") or [])
        newest = max(self.seen, self.head) if self._caught_up() else self.seen
        return WatchResult(self.events, _rev(max(self.want, newest + 1)))

    def _take(self, raw_events: list[dict]) -> None:
        """Keep the wanted events under the prefix; note the newest revision delivered."""
        for raw in raw_events:
            revision = int(raw["kv"].get("mod_revision") or 0)
            self.seen = max(self.seen, revision)
            if revision < self.want:
                continue
            if _unb64(raw["kv"]["key"]).startswith(self.prefix):
                self.events.append(_event(raw))


class _StreamEnded(Exception):
    """The server closed the watch stream."""


class _Stream:
    """A streaming HTTP/1.1 POST over one socket: newline-delimited JSON messages back."""

    def __init__(self, sock: socket.socket, endpoint: str):
        self.sock = sock
        self.endpoint = endpoint
        self.conn = h11.Connection(h11.CLIENT)
        self.buffer = b""
        self.status: int | None = None

    def send(self, host: str, target: str, body: bytes) -> None:
        """Send the whole request (etcd keeps the watch open after the body ends)."""
        head = h11.Request(method="POST", target=target, headers=[
            ("Host", host), ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))), REQUIRE_LEADER])
        try:
            self.sock.sendall(self.conn.send(head) + self.conn.send(h11.Data(data=body))
                              + self.conn.send(h11.EndOfMessage()))
        except OSError as exc:
            raise _Failed(self.endpoint, f"cannot send ({exc})", sent=False) from None

    def next_message(self, wait: float) -> dict:
        """The next JSON message, waiting at most ``wait`` seconds (TimeoutError)."""
        deadline = time.monotonic() + wait
        while b"\n" not in self.buffer:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError()
                self.sock.settimeout(remaining)
                try:
                    data = self.sock.recv(65536)
                except (socket.timeout, ssl.SSLWantReadError):
                    raise TimeoutError() from None
                self.conn.receive_data(data)
            elif isinstance(event, h11.Response):
                self.status = event.status_code
            elif isinstance(event, h11.Data):
                self.buffer += bytes(event.data)
            elif self.buffer.strip():       # the stream ended after a last, unterminated message
                self.buffer += b"\n"
            else:
                raise _StreamEnded(f"HTTP {self.status}, stream ended")
        line, _, self.buffer = self.buffer.partition(b"\n")
        if not line.strip():
            return self.next_message(max(deadline - time.monotonic(), 0.0))
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise _StreamEnded(f"HTTP {self.status}, not JSON: {line[:200]!r}") from None
        if self.status is not None and self.status != 200 and "error" not in message:
            message = {"error": message}
        return message
