"""The chassis' metadata proxy: 169.254.169.254:80 for the local VMs, forwarded to Nova's
metadata API as Neutron's metadata agent does.

It listens inside the chassis' metadata namespace (the listening socket is made there by
a short-lived thread that enters the namespace; the agent itself stays where it is). The
``metadata`` stage sends a VM's connection here with its source NATed to the port's
link-local address (``plexus.pipeline.stages.metadata.link_local``), so the source
address alone says which port — and so which instance (``device_id``) and project — is
asking: one dictionary lookup per request (``lookup``). The request goes on to
``nova_metadata_url`` with::

    X-Instance-ID:           the port's device_id
    X-Tenant-ID:             the port's project
    X-Instance-ID-Signature: HMAC-SHA256(shared secret, instance id), hex
    X-Forwarded-For:         the VM's fixed IPv4 address

(the client's own values of these headers are dropped). A source no local port has is
answered 404; Nova unreachable, 502."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import socket
import threading
from dataclasses import dataclass
from typing import Callable

import httpx

from plexus.agent.netns import in_netns

LOG = logging.getLogger(__name__)
MAX_HEADER = 16 * 1024
MAX_BODY = 64 * 1024
OWN_HEADERS = {"x-instance-id", "x-tenant-id", "x-instance-id-signature", "x-forwarded-for",
               "host", "connection", "content-length", "transfer-encoding"}


@dataclass(frozen=True)
class Requester:
    """Who a metadata request comes from."""

    port_id: str
    instance_id: str
    project_id: str
    address: str                    # the VM's fixed IPv4 address


def sign(secret: bytes, instance_id: str) -> str:
    """X-Instance-ID-Signature: HMAC-SHA256 of the instance id with the shared secret."""
    return hmac.new(secret, instance_id.encode(), hashlib.sha256).hexdigest()


def listening_socket(netns: str, host: str, port: int) -> socket.socket:
    """A listening TCP socket bound inside network namespace ``netns`` (/run/netns/NAME),
    made by a short-lived thread; the caller's namespace is left as it is."""
    out: dict = {}

    def work() -> None:
        try:
            with in_netns(netns):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((host, port))
                sock.listen(128)
                sock.setblocking(False)
                out["sock"] = sock
        except BaseException as exc:   # noqa: BLE001 - handed to the caller
            out["error"] = exc
    thread = threading.Thread(target=work, name=f"netns-{netns}")
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["sock"]


class MetadataProxy:
    """``await proxy.start()`` … ``await proxy.stop()``."""

    def __init__(self, netns: str, nova_url: str, secret: bytes,
                 lookup: Callable[[str], Requester | None], host: str = "169.254.169.254",
                 port: int = 80, timeout: float = 10.0):
        if not secret:
            raise ValueError("the metadata shared secret is empty")
        self.netns, self.host, self.port = netns, host, port
        self.nova_url = nova_url.rstrip("/")
        self.secret = secret
        self.lookup = lookup
        self.client = httpx.AsyncClient(timeout=timeout)
        self.server: asyncio.base_events.Server | None = None
        self.served = 0
        self.refused = 0

    async def start(self) -> None:
        sock = await asyncio.to_thread(listening_socket, self.netns, self.host, self.port)
        self.server = await asyncio.start_server(self._handle, sock=sock)
        LOG.info("metadata proxy on %s:%d in namespace %s → %s", self.host, self.port,
                 self.netns, self.nova_url)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        await self.client.aclose()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError) as exc:
            LOG.debug("metadata request dropped: %s", exc)
        finally:
            writer.close()

    async def _serve(self, reader, writer) -> None:
        peer = writer.get_extra_info("peername")[0]
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > MAX_HEADER:
            return await self._reply(writer, 431, b"request header too large\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length") or 0)
        if length > MAX_BODY:
            return await self._reply(writer, 413, b"request body too large\n")
        body = await reader.readexactly(length) if length else b""
        who = self.lookup(peer)
        if who is None or not who.instance_id:
            self.refused += 1
            LOG.warning("metadata request from %s: no local port with an instance", peer)
            return await self._reply(writer, 404, b"no instance for this address\n")
        forward = {k: v for k, v in headers.items() if k not in OWN_HEADERS}
        forward.update({"X-Instance-ID": who.instance_id, "X-Tenant-ID": who.project_id,
                        "X-Instance-ID-Signature": sign(self.secret, who.instance_id),
                        "X-Forwarded-For": who.address})
        try:
            resp = await self.client.request(method, self.nova_url + path, headers=forward,
                                             content=body)
        except httpx.HTTPError as exc:
            LOG.warning("Nova metadata API unreachable: %s", exc)
            return await self._reply(writer, 502, b"metadata service unreachable\n")
        self.served += 1
        await self._reply(writer, resp.status_code, resp.content,
                          resp.headers.get("content-type", "text/plain"))

    @staticmethod
    async def _reply(writer, status: int, body: bytes, ctype: str = "text/plain") -> None:
        reason = {200: "OK", 404: "Not Found", 403: "Forbidden", 413: "Payload Too Large",
                  431: "Request Header Fields Too Large", 502: "Bad Gateway"}.get(status, "")
        writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                     .encode("latin-1") + body)
        await writer.drain()
