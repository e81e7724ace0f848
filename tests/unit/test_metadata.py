"""Metadata pieces: link-local addresses per ofport, the stage's flows, DHCP option 121,
and the proxy's forwarding (a real asyncio server on loopback; Nova's side is an httpx
mock transport)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from dataclasses import replace

import httpx

from plexus.agent.metadata import MetadataProxy, Requester, sign
from plexus.pipeline.compile import compile_view
from plexus.pipeline.stages.metadata import (
    METADATA_IP, METADATA_OFPORT, compile_metadata, link_local, ofport_of,
)
from tests.golden.reference import reference_view
from tests.unit.test_dhcp import DISCOVER, SUBNET, answer, client_frame, ip, make_view


def test_link_local_addresses_are_unique_and_reversible():
    seen = set()
    for ofport in range(1, 0xFF00):
        address = link_local(ofport)
        if address is None:
            assert ofport == 0xA9FE         # would be 169.254.169.254 itself
            continue
        assert address.startswith("169.254.") and address != METADATA_IP
        assert ofport_of(address) == ofport
        seen.add(address)
    assert len(seen) == 0xFF00 - 2
    assert link_local(0) is None and link_local(0xFF00) is None
    assert ofport_of("10.0.0.1") is None and ofport_of("nonsense") is None
    assert ofport_of(METADATA_IP) is None


def test_flows_only_where_metadata_is_served():
    view = reference_view()
    off = replace(view, metadata_ofport=0)
    assert [str(f) for f in compile_metadata(off)] == \
        ["metadata prio=0 * -> goto:egress_ct  [pipeline:metadata]"]
    assert not any("in_port=65000" in str(f) for f in compile_view(off))
    flows = [str(f) for f in compile_metadata(view)]
    # two per local port with an IPv4 address (a1-vm1, a1-vm2, a2-vm1, b1-vm1), the
    # default and the drop; the admin-down port has none
    assert len(flows) == 2 * 4 + 2
    assert not any("b1-down" in f for f in flows)
    # overlapping tenant addresses (a1-vm1 and b1-vm1 are both 10.0.0.11) get distinct
    # link-local sources
    assert "nat(src=169.254.0.1)" in " ".join(f for f in flows if "[port:a1-vm1]" in f)
    assert "nat(src=169.254.0.4)" in " ".join(f for f in flows if "[port:b1-vm1]" in f)


def test_dhcp_routes_the_metadata_address_via_the_server():
    served = replace(make_view(), metadata_ofport=METADATA_OFPORT)
    _, _, _, _, opts = answer(client_frame(DISCOVER), view=served)
    assert b"\x20\xa9\xfe\xa9\xfe" + ip("10.0.0.1") in opts[121]
    assert opts[121].endswith(b"\x00" + ip("10.0.0.1"))     # the default route stays
    # no gateway: via the server address the ARP responder answers for
    bare = replace(SUBNET, gateway_ip=None, host_routes=())
    view = replace(make_view(subnet=bare), metadata_ofport=METADATA_OFPORT)
    _, _, _, _, opts = answer(client_frame(DISCOVER), view=view)
    assert opts[121] == b"\x20\xa9\xfe\xa9\xfe" + opts[54]
    # not served here: no metadata route
    _, _, _, _, opts = answer(client_frame(DISCOVER), view=make_view())
    assert b"\xa9\xfe\xa9\xfe" not in opts[121]


INSTANCE = "0b7a6d9c-3f2e-4c1a-9d8e-7f6a5b4c3d2e"


def run_proxy(requests: list[tuple[str, dict]], known: bool = True) -> tuple[list, list]:
    """Send raw HTTP requests through a proxy on loopback; (responses, what Nova got)."""
    got: list[httpx.Request] = []

    def nova(request: httpx.Request) -> httpx.Response:
        got.append(request)
        return httpx.Response(200, text=f"hello {request.headers['x-instance-id']}")

    def lookup(address: str):
        if known and address == "127.0.0.1":
            return Requester("p1", INSTANCE, "proj-1", "10.0.0.5")
        return None

    async def main():
        proxy = MetadataProxy("unused", "http://nova:8775/", b"s3cret", lookup)
        proxy.client = httpx.AsyncClient(transport=httpx.MockTransport(nova))
        server = await asyncio.start_server(proxy._handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        out = []
        for path, headers in requests:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 169.254.169.254\r\n{extra}\r\n"
                         .encode())
            await writer.drain()
            out.append((await reader.read()).decode())
            writer.close()
        server.close()
        await server.wait_closed()
        await proxy.client.aclose()
        return out
    return asyncio.run(main()), got


def test_proxy_signs_and_names_the_instance_of_the_source_port():
    responses, got = run_proxy([
        ("/openstack/latest/meta_data.json", {}),
        ("/latest/meta-data/instance-id", {"X-Instance-ID": "someone-else",
                                           "X-Instance-ID-Signature": "forged",
                                           "X-Tenant-ID": "other", "X-Forwarded-For": "1.2.3.4"}),
    ])
    assert all(r.startswith("HTTP/1.1 200") and r.endswith(f"hello {INSTANCE}")
               for r in responses), responses
    assert [str(r.url) for r in got] == ["http://nova:8775/openstack/latest/meta_data.json",
                                        "http://nova:8775/latest/meta-data/instance-id"]
    expected = hmac.new(b"s3cret", INSTANCE.encode(), hashlib.sha256).hexdigest()
    for r in got:
        assert r.headers["x-instance-id"] == INSTANCE
        assert r.headers["x-tenant-id"] == "proj-1"
        assert r.headers["x-instance-id-signature"] == expected == sign(b"s3cret", INSTANCE)
        assert r.headers["x-forwarded-for"] == "10.0.0.5"


def test_proxy_refuses_sources_without_a_local_port():
    responses, got = run_proxy([("/latest/meta-data/instance-id", {})], known=False)
    assert responses[0].startswith("HTTP/1.1 404")
    assert got == []
