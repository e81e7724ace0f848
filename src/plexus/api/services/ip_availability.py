"""Network IP availability (``network-ip-availability``, admin only): per network and
subnet, how many addresses the allocation pools hold (``total_ips``; the whole CIDR for a
subnet without pools) and how many ports hold (``used_ips``), as Neutron counts them.

Used addresses are counted from the IPAM claims (``/plexus/alloc/ip/<subnet>/``), so one
network costs its subnets and their used addresses; the list costs every network."""

from __future__ import annotations

import ipaddress

from plexus.api import errors, policy
from plexus.api.services.base import ALLOC, Services

FILTERS = ("network_id", "network_name", "project_id", "tenant_id", "ip_version")


def total_ips(subnet: dict) -> int:
    """Addresses in the subnet's allocation pools (the CIDR's size without pools)."""
    pools = subnet.get("allocation_pools") or []
    if not pools:
        return ipaddress.ip_network(subnet["cidr"], strict=False).num_addresses
    return sum(int(ipaddress.ip_address(p["end"])) - int(ipaddress.ip_address(p["start"])) + 1
               for p in pools)


class IpAvailability:
    """Computes availabilities from the stored networks, subnets and address claims."""

    def __init__(self, services: Services):
        self.s = services

    def _used(self, subnet_id: str) -> int:
        kvs, _ = self.s.store.range(f"{ALLOC}ip/{subnet_id}/")
        return len(kvs)

    def of(self, network: dict, ip_versions: set[int] | None = None) -> dict:
        """One network's availability."""
        subnets = self.s["subnets"]
        rows = []
        for sid in network.get("subnets", []):
            found = subnets.get(sid)
            if found is None or (ip_versions and found[0]["ip_version"] not in ip_versions):
                continue
            sub = found[0]
            rows.append({"subnet_id": sub["id"], "subnet_name": sub.get("name", ""),
                         "ip_version": sub["ip_version"], "cidr": sub["cidr"],
                         "total_ips": total_ips(sub), "used_ips": self._used(sub["id"])})
        return {"network_id": network["id"], "network_name": network.get("name", ""),
                "project_id": network["project_id"], "tenant_id": network["project_id"],
                "subnet_ip_availability": rows,
                "total_ips": sum(r["total_ips"] for r in rows),
                "used_ips": sum(r["used_ips"] for r in rows)}

    def show(self, ctx, network_id: str) -> dict:
        """``GET /v2.0/network-ip-availabilities/{network_id}`` (404 unless admin)."""
        found = self.s["networks"].get(network_id)
        if found is None or not policy.check(ctx, "get_network_ip_availability", found[0]):
            raise errors.NotFound("network", network_id)
        return self.of(found[0])

    def list(self, ctx, filters: dict[str, list[str]]) -> list[dict]:
        """``GET /v2.0/network-ip-availabilities`` with Neutron's filters (others 400)."""
        unknown = sorted(set(filters) - set(FILTERS))
        if unknown:
            raise errors.BadRequest(f"[{', '.join(unknown)}] is invalid attribute for "
                                    f"filtering", type_name="HTTPBadRequest")
        if not policy.check(ctx, "get_network_ip_availability", {}):
            return []
        try:
            versions = {int(v) for v in filters.get("ip_version", [])}
        except ValueError:
            raise errors.InvalidInput("Invalid input for ip_version") from None
        if "network_id" in filters:
            networks = [f[0] for i in filters["network_id"]
                        if (f := self.s["networks"].get(i))]
        else:
            networks = self.s["networks"].all()
        projects = set(filters.get("project_id", [])) | set(filters.get("tenant_id", []))
        out = []
        for network in networks:
            if "network_name" in filters and network.get("name") not in filters["network_name"]:
                continue
            if projects and network["project_id"] not in projects:
                continue
            item = self.of(network, versions or None)
            if versions and not item["subnet_ip_availability"]:
                continue
            out.append(item)
        return out
