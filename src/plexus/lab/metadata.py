"""A small metadata backend for the lab and the tests, standing in for Nova's metadata API.

    python -m plexus.lab.metadata --port 8775 --secret-file S --clouds clouds.yaml \\
        --record requests.jsonl

Like Nova's handler of proxied requests it checks ``X-Instance-ID-Signature`` (HMAC-SHA256
of ``X-Instance-ID`` with the shared secret; 403 when it does not match), finds the
instance — here the Plexus port whose ``device_id`` it is, read from the API with the
lab admin's credentials — and refuses (404) when the instance's project is not
``X-Tenant-ID``. It serves the OpenStack format (``/openstack``,
``/openstack/latest/meta_data.json``) and the EC2 format (``/latest/meta-data/`` and its
``instance-id``, ``hostname``, ``local-ipv4``, ``placement/availability-zone``). Every
request is appended to ``--record`` as one JSON line (path, instance, whether the
signature was valid, status), which the tests read."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import time
from pathlib import Path

import httpx
import uvicorn
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

EC2_KEYS = ("ami-id", "hostname", "instance-id", "local-hostname", "local-ipv4",
            "placement/")


def ec2_id(instance_id: str) -> str:
    """The EC2-style id shown for an instance (Nova derives it from an integer id; the
    lab derives it from the UUID)."""
    return "i-" + instance_id.replace("-", "")[:8]


class Backend:
    """The ASGI app and what it needs: the secret, the API, the request record."""

    def __init__(self, secret: bytes, api_url: str, auth: dict, record: Path | None):
        self.secret = secret
        self.api_url = api_url.rstrip("/")
        self.auth = auth
        self.record = record
        self.token: str | None = None
        self.client = httpx.AsyncClient(timeout=10)
        self.app = Starlette(routes=[Route("/{path:path}", self.serve, methods=["GET"])])

    async def _token(self) -> str:
        if self.token is None:
            a = self.auth
            body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
                "name": a["username"], "password": a["password"],
                "domain": {"name": a.get("user_domain_name", "Default")}}}},
                "scope": {"project": {"name": a["project_name"],
                                      "domain": {"name": a.get("project_domain_name",
                                                               "Default")}}}}}
            resp = await self.client.post(f"{a['auth_url'].rstrip('/')}/auth/tokens",
                                          json=body)
            resp.raise_for_status()
            self.token = resp.headers["X-Subject-Token"]
        return self.token

    async def _port(self, instance_id: str) -> dict | None:
        for _ in range(2):
            resp = await self.client.get(f"{self.api_url}/v2.0/ports",
                                         params={"device_id": instance_id},
                                         headers={"X-Auth-Token": await self._token()})
            if resp.status_code == 401:
                self.token = None
                continue
            resp.raise_for_status()
            ports = resp.json()["ports"]
            return ports[0] if ports else None
        return None

    def _note(self, **entry) -> None:
        if self.record is not None:
            with self.record.open("a") as out:
                out.write(json.dumps({"time": time.time(), **entry}) + "\n")

    async def serve(self, request: Request) -> Response:
        path = "/" + request.path_params["path"]
        instance = request.headers.get("x-instance-id", "")
        project = request.headers.get("x-tenant-id", "")
        given = request.headers.get("x-instance-id-signature", "")
        expected = hmac.new(self.secret, instance.encode(), hashlib.sha256).hexdigest()
        valid = bool(instance) and hmac.compare_digest(given, expected)
        note = dict(path=path, instance_id=instance, project_id=project, signature_valid=valid,
                    forwarded_for=request.headers.get("x-forwarded-for", ""))
        if not valid:
            self._note(status=403, **note)
            return PlainTextResponse("Invalid proxy request signature.", status_code=403)
        port = await self._port(instance)
        if port is None or port.get("project_id") != project:
            self._note(status=404, **note)
            return PlainTextResponse("Instance not found for this project.", status_code=404)
        response = self.render(path, instance, port, note["forwarded_for"])
        self._note(status=response.status_code, **note)
        return response

    def render(self, path: str, instance: str, port: dict, address: str) -> Response:
        name = port.get("name") or instance
        hostname = name.replace("_", "-").lower()
        meta = {"uuid": instance, "name": name, "hostname": hostname,
                "project_id": port["project_id"], "availability_zone": "nova",
                "launch_index": 0, "public_keys": {}, "meta": {},
                "devices": [], "random_seed": ""}
        ec2 = {"ami-id": "ami-00000001", "hostname": hostname, "instance-id": ec2_id(instance),
               "local-hostname": hostname, "local-ipv4": address,
               "placement/availability-zone": "nova"}
        path = path.rstrip("/") or "/"
        if path in ("/openstack", "/"):
            return PlainTextResponse("latest\n" if path == "/openstack" else "latest\n")
        if path in ("/openstack/latest", "/openstack/latest/"):
            return PlainTextResponse("meta_data.json\n")
        if path == "/openstack/latest/meta_data.json":
            return JSONResponse(meta)
        if path == "/latest/meta-data":
            return PlainTextResponse("\n".join(EC2_KEYS))
        if path == "/latest/meta-data/placement":
            return PlainTextResponse("availability-zone")
        key = path.removeprefix("/latest/meta-data/")
        if key in ec2 and path.startswith("/latest/meta-data/"):
            return PlainTextResponse(ec2[key])
        return PlainTextResponse("Not found", status_code=404)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="plexus-lab-metadata", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--secret-file", required=True)
    p.add_argument("--clouds", required=True, help="clouds.yaml of the lab")
    p.add_argument("--cloud", default="plexus")
    p.add_argument("--record", help="append one JSON line per request here")
    args = p.parse_args(argv)
    cloud = yaml.safe_load(Path(args.clouds).read_text())["clouds"][args.cloud]
    auth = cloud["auth"]
    api = auth["auth_url"].rsplit("/identity/", 1)[0]
    backend = Backend(Path(args.secret_file).read_bytes().strip(), api, auth,
                      Path(args.record) if args.record else None)
    asyncio.run(uvicorn.Server(uvicorn.Config(backend.app, host=args.host, port=args.port,
                                              log_level="warning", access_log=False)).serve())


if __name__ == "__main__":
    main()
