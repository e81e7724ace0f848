"""Subnets: CIDR, gateway and allocation pools, overlap rules, and in-use deletion."""

from __future__ import annotations

import dataclasses
import ipaddress

from plexus.api import errors, policy
from plexus.api.query import Query, _bool, matches, sort_and_page
from plexus.api.schemas.core import SUBNET
from plexus.api.services.base import ALLOC, ResourceService, Writes, now
from plexus.api.services.pools import prefix_key
from plexus.model.keys import ADDRESS_SCOPE_KEY, ROUTER_OWNERS
from plexus.ipam import (
    IpamError, cidr_overlaps, default_gateway, default_pools, eui64_address, is_auto_address,
    validate_pools,
)



def ip_key(subnet_id: str, ip: str) -> str:
    """Store key that makes an address on a subnet unique."""
    return f"{ALLOC}ip/{subnet_id}/{ip}"


def pools_wire(pools: list[tuple[str, str]]) -> list[dict]:
    """Allocation pools as Neutron writes them."""
    return [{"start": s, "end": e} for s, e in pools]


def pools_tuples(pools: list[dict]) -> list[tuple[str, str]]:
    """Allocation pools as (start, end) pairs."""
    return [(p["start"], p["end"]) for p in pools]


def check_dhcp_cidr(cidr: str, version: int) -> None:
    """Neutron's ``_validate_subnet`` rules for a subnet with DHCP: a prefix that leaves
    DHCP no address to serve (IPv4 longer than /30, IPv6 longer than /126), multicast
    (ff02::/16 included), loopback (127/8, ::1) and an IPv4 network starting at 0.0.0.0
    (0.0.0.0/0 included) are refused."""
    net = ipaddress.ip_network(cidr)
    if net.version != version:
        return                      # reported by the addressing check, as Neutron orders it
    if net.prefixlen > (30 if version == 4 else 126):
        raise errors.InvalidInput("Subnet has a prefix length that is incompatible with DHCP "
                                  "service enabled")
    if net.is_multicast:
        raise errors.InvalidInput("Multicast IP subnet is not supported if enable_dhcp is True")
    if net.is_loopback:
        raise errors.InvalidInput("Loopback IP subnet is not supported if enable_dhcp is True")
    if version == 4 and int(net.network_address) == 0:
        raise errors.InvalidInput("First IP '0.0.0.0' of network is not supported if "
                                  "enable_dhcp is True.")


def check_cidr(cidr: str, version: int, enable_dhcp: bool) -> None:
    """Neutron's CIDR rules for a new subnet: the version must match, DHCP's rules
    (``check_dhcp_cidr``) apply when it is enabled, and a /0 is never allowed
    (``_validate_subnet_cidr``)."""
    net = ipaddress.ip_network(cidr)
    if net.version != version:
        raise errors.InvalidInput(f"cidr '{cidr}' does not match the ip_version '{version}'")
    if enable_dhcp:
        check_dhcp_cidr(cidr, version)
    if net.prefixlen == 0:
        raise errors.InvalidInput("0 is not allowed as CIDR prefix length")


def check_ipv6_modes(subnet: dict) -> None:
    """Neutron's ``_validate_ipv6_attributes`` for a new subnet: no modes on IPv4 or
    without DHCP; RA and address modes equal when both are set; an auto-addressed
    (SLAAC, DHCPv6-stateless) subnet must be a /64, for EUI-64. All 400."""
    ra, addr = subnet.get("ipv6_ra_mode"), subnet.get("ipv6_address_mode")
    if ra is None and addr is None:
        return
    if subnet["ip_version"] == 4:
        name = "ipv6_ra_mode" if ra is not None else "ipv6_address_mode"
        raise errors.InvalidInput(f"{name} is not valid when ip_version is 4")
    if not subnet.get("enable_dhcp"):
        raise errors.InvalidInput("ipv6_ra_mode or ipv6_address_mode cannot be set when "
                                  "enable_dhcp is set to False")
    if ra is not None and addr is not None and ra != addr:
        raise errors.InvalidInput(f"ipv6_ra_mode set to '{ra}' with ipv6_address_mode set "
                                  f"to '{addr}' is not valid. If both attributes are set, "
                                  f"they must be the same value")
    if is_auto_address(ra, addr) and ipaddress.ip_network(subnet["cidr"]).prefixlen != 64:
        raise errors.InvalidInput(f"Invalid CIDR {subnet['cidr']} for IPv6 address mode. "
                                  f"OpenStack uses the EUI-64 address format, which "
                                  f"requires the prefix to be /64")


def auto_addressed(subnet: dict) -> bool:
    """Whether the subnet's ports take EUI-64 addresses (see ``is_auto_address``)."""
    return subnet.get("ip_version") == 6 and is_auto_address(
        subnet.get("ipv6_ra_mode"), subnet.get("ipv6_address_mode"))


MIN_MTU = {4: 68, 6: 1280}     # RFC 791 and RFC 8200 minimum link MTUs


def check_mtu(network: dict, version: int, mtu: int | None = None) -> None:
    """Neutron's rule: an IPv4 subnet needs a network MTU of at least 68, an IPv6 one at
    least 1280; otherwise 409 (on subnet create, and on a network MTU update)."""
    mtu = network.get("mtu") if mtu is None else mtu
    if mtu is not None and mtu < MIN_MTU[version]:
        raise errors.Conflict(
            f"Invalid network MTU {mtu} for network {network['id']}: an IPv{version} subnet "
            f"requires an MTU of at least {MIN_MTU[version]}.", type_name="NetworkMtuTooSmall")


def _ipam_error(exc: IpamError) -> errors.NeutronError:
    """Neutron's status for an addressing error: 409 for overlaps and gateway clashes."""
    cls = errors.BadRequest if exc.kind == "invalid" else errors.Conflict
    return cls(exc.message, type_name=exc.neutron_type or "InvalidAllocationPool")


class SubnetService(ResourceService):
    """Neutron subnets."""

    resource = SUBNET
    grant_types = ("network",)

    def list(self, ctx, q: Query):
        """Neutron's ``shared`` filter on subnets: a subnet's ``shared`` is its network's
        (not an attribute of the subnet, so it is matched here, not by the schema)."""
        if "shared" not in q.filters:
            return super().list(ctx, q)
        wanted = {_bool(v) for v in q.filters["shared"]}
        rest = dataclasses.replace(q, filters={k: v for k, v in q.filters.items()
                                               if k != "shared"})
        access = self.prefetch(ctx)
        networks = self.s["networks"]
        shared = {n["id"]: bool(networks.for_caller(ctx, n, access).get("shared"))
                  for n in networks.all()}
        items = [o for o in self.present(self.all())
                 if shared.get(o["network_id"], False) in wanted
                 and self.visible(ctx, o, access) and matches(self.resource, o, rest)]
        if policy.hidden(ctx, self.resource.name) & set(rest.filters):
            items = []                  # as the generic list: no filtering on hidden fields
        page, more, before = sort_and_page(items, rest)
        return [self.view(ctx, o, q.fields) for o in page], more, before

    def _check_addressing(self, cidr: str, version: int, gateway, pools) -> tuple:
        """Validate gateway and pools against the CIDR; returns (gateway, pools)."""
        net = ipaddress.ip_network(cidr)
        if net.version != version:
            raise errors.InvalidInput(f"cidr '{cidr}' does not match the ip_version '{version}'")
        if gateway is ...:
            gateway = default_gateway(cidr)
        if gateway is not None:
            gw = ipaddress.ip_address(gateway)
            if gw.version != version:
                raise errors.InvalidInput("Gateway IP version inconsistent with allocation "
                                          "pool version")
            if gw in net and (gw == net.network_address and version == 4
                              or version == 4 and gw == net.broadcast_address):
                raise errors.InvalidInput("Gateway is not valid on subnet")
        try:
            if pools is None:
                pools = default_pools(cidr, gateway)
            else:
                pools = pools_tuples(pools)
                validate_pools(cidr, pools, gateway)
        except IpamError as exc:
            raise _ipam_error(exc) from None
        return gateway, pools

    def plan_create(self, ctx, obj: dict, w: Writes, attempt: int) -> dict:
        """Check the network, the addressing and overlaps; link the subnet to its network."""
        networks = self.s["networks"]
        found = networks.get(obj["network_id"])
        if found is None or not networks.visible(ctx, found[0]):
            raise errors.NotFound("network", obj["network_id"])
        network, rev = found             # who may: create_subnet, enforced in new_object
        self._take_prefix(ctx, obj, network, w)
        check_cidr(obj["cidr"], obj["ip_version"], obj["enable_dhcp"])
        check_ipv6_modes(obj)
        check_mtu(network, obj["ip_version"])
        gateway, pools = self._check_addressing(
            obj["cidr"], obj["ip_version"], obj["gateway_ip"], obj["allocation_pools"])
        for other_id in network.get("subnets", []):
            other = self.get(other_id)
            if other and cidr_overlaps(other[0]["cidr"], obj["cidr"]):
                raise errors.InvalidInput(
                    f"Requested subnet with cidr: {obj['cidr']} for network: "
                    f"{network['id']} overlaps with another subnet")
        for route in obj["host_routes"]:
            if ipaddress.ip_network(route["destination"]).version != obj["ip_version"]:
                raise errors.InvalidInput(f"Host route {route['destination']} does not match "
                                          f"ip_version {obj['ip_version']}")
        obj.update(gateway_ip=gateway, allocation_pools=pools_wire(pools))
        scope_field = f"ipv{obj['ip_version']}_address_scope"
        # The network lists its subnets: write it in the same transaction (its revision
        # guards against a concurrent overlapping subnet or a delete).
        pending = [s for s in w.written if s.startswith(networks.key(network["id"]))]
        if pending:
            raise errors.BadRequest("Bulk creation of several subnets on one network in one "
                                    "request is not supported")
        w.expect(networks.key(network["id"]), rev)
        w.unguarded("networks", network["id"])
        network = dict(network, subnets=network.get("subnets", []) + [obj["id"]],
                       revision_number=network.get("revision_number", 0) + 1,
                       **{scope_field: obj.get(ADDRESS_SCOPE_KEY)})
        w.put(networks.key(network["id"]), network)
        w.put(self.key(obj["id"]), obj)
        if auto_addressed(obj):
            self._address_existing_ports(obj, w)
        return obj

    def _take_prefix(self, ctx, obj: dict, network: dict, w: Writes) -> None:
        """Neutron's subnet_allocation on create: the CIDR comes from the subnet pool
        (``subnetpool_id``, or the default pool with ``use_default_subnetpool``), chosen
        or checked and claimed in the pool's index in this transaction; without a pool a
        CIDR is required. Subnets of one IP version on a network share their pool
        (``NetworkSubnetPoolAffinityError``), so they share an address scope."""
        prefixlen = obj.pop("prefixlen", None)
        use_default = obj.pop("use_default_subnetpool", False)
        if obj.get("cidr") is not None and prefixlen is not None:
            raise errors.bad_request("subnets", "cidr and prefixlen must not be supplied "
                                     "together")
        pools = self.s["subnetpools"]
        found = pools.resolve(ctx, dict(obj, use_default_subnetpool=use_default))
        if found is None:
            if obj.get("cidr") is None:
                raise errors.bad_request("subnets", "a subnetpool must be specified in the "
                                         "absence of a cidr")
            obj["subnetpool_id"] = None
        else:
            pool, pool_rev = found
            obj["subnetpool_id"] = pool["id"]
            obj["cidr"] = pools.allocate(pool, pool_rev, obj, prefixlen, w)
            if pool.get("address_scope_id"):
                obj[ADDRESS_SCOPE_KEY] = pool["address_scope_id"]
        for other_id in network.get("subnets", []):
            other = self.get(other_id)
            if other and other[0]["ip_version"] == obj["ip_version"] \
                    and other[0].get("subnetpool_id") != obj["subnetpool_id"]:
                raise errors.BadRequest("Subnets hosted on the same network must be allocated "
                                        "from the same subnet pool.",
                                        type_name="NetworkSubnetPoolAffinityError")

    def rescope(self, subnet_ids: list[str], scope: str | None, w: Writes) -> None:
        """Write a pool's new address scope on its subnets and their networks (the data
        plane reads the subnet's; the API shows the network's), in ``w``. Neither
        revision number moves: Neutron computes both at read time."""
        networks = self.s["networks"]
        touched: dict[str, tuple[dict, int]] = {}
        for subnet_id in subnet_ids:
            found = self.get(subnet_id)
            if found is None:
                continue
            subnet, rev = found
            w.expect(self.key(subnet_id), rev)
            subnet = {k: v for k, v in subnet.items() if k != ADDRESS_SCOPE_KEY}
            if scope:
                subnet[ADDRESS_SCOPE_KEY] = scope
            w.put(self.key(subnet_id), subnet)
            net = touched.get(subnet["network_id"]) or networks.get(subnet["network_id"])
            if net is not None:
                touched[subnet["network_id"]] = (dict(net[0], **{
                    f"ipv{subnet['ip_version']}_address_scope": scope}), net[1])
        for net_id, (net, rev) in touched.items():
            w.expect(networks.key(net_id), rev)
            w.put(networks.key(net_id), net)

    def release(self, subnet: dict, w: Writes) -> None:
        """Give a deleted subnet's prefix back to its pool (in ``w``)."""
        if subnet.get("subnetpool_id"):
            w.delete(prefix_key(subnet["subnetpool_id"], subnet["cidr"]))

    def _address_existing_ports(self, subnet: dict, w: Writes) -> None:
        """Give every port already on the network (not a router's) its EUI-64 address on
        a new auto-addressed subnet, in the subnet's transaction, as Neutron does."""
        ports = self.s["ports"]
        for port in self.s.where("ports", "network_id", subnet["network_id"]):
            if port.get("device_owner") in ROUTER_OWNERS:
                continue
            found = ports.get(port["id"])
            if found is None:
                continue
            current, rev = found
            ip = eui64_address(subnet["cidr"], current["mac_address"])
            key = ip_key(subnet["id"], ip)
            if self.s.store.get(key) is not None or not w.claim(key, current["id"]):
                raise errors.Conflict(f"IP address {ip} already allocated in subnet "
                                      f"{subnet['id']}", type_name="IpAddressAlreadyAllocated")
            w.expect(ports.key(current["id"]), rev)
            w.put(ports.key(current["id"]), dict(
                current, revision_number=current.get("revision_number", 0) + 1,
                updated_at=now(), fixed_ips=current["fixed_ips"] + [
                    {"subnet_id": subnet["id"], "ip_address": ip}]))

    def plan_update(self, ctx, old, new, changes, w, attempt):
        """Revalidate gateway and pools when they change; DHCP's CIDR rules when it is
        turned on."""
        if changes.get("enable_dhcp") is False and (old.get("ipv6_ra_mode")
                                                    or old.get("ipv6_address_mode")):
            raise errors.InvalidInput("Cannot disable enable_dhcp with ipv6 attributes set")
        if changes.get("enable_dhcp") and not old.get("enable_dhcp"):
            check_dhcp_cidr(old["cidr"], old["ip_version"])
        if "gateway_ip" in changes or "allocation_pools" in changes:
            gateway, pools = self._check_addressing(
                new["cidr"], new["ip_version"], new["gateway_ip"],
                changes.get("allocation_pools", new["allocation_pools"]))
            if "gateway_ip" in changes and gateway and gateway != old.get("gateway_ip"):
                holder = self.s.store.get(ip_key(old["id"], gateway))
                if holder is not None:
                    raise errors.Conflict(
                        f"Gateway ip {gateway} conflicts with allocation pool or is in use",
                        type_name="GatewayIpInUse")
            new.update(gateway_ip=gateway, allocation_pools=pools_wire(pools))
        return new

    def delete(self, ctx, ident, if_match=None):
        """Delete a subnet, refusing while ports hold addresses on it."""
        obj, _ = self.load(ctx, ident)
        self.owned(ctx, obj, "delete")
        with self.s.guarding("subnets", ident):
            super().delete(ctx, ident, if_match)

    def plan_delete(self, ctx, obj, w):
        """In-use check; unlink from the network; drop the subnet's allocations. The
        EUI-64 addresses of an auto-addressed (SLAAC, DHCPv6-stateless) subnet do not
        hold it: they are removed from their ports in the same transaction, as Neutron
        does (a router's interface still holds it)."""
        ports = self.s["ports"]
        auto = auto_addressed(obj)
        for port in self.s.where("ports", "network_id", obj["network_id"]):
            if any(ip["subnet_id"] == obj["id"] for ip in port.get("fixed_ips", [])):
                if port.get("device_owner") == "network:dhcp":
                    continue
                if auto and port.get("device_owner") not in ROUTER_OWNERS:
                    found = ports.get(port["id"])
                    if found is None:
                        continue
                    current, rev = found
                    w.expect(ports.key(port["id"]), rev)
                    w.put(ports.key(port["id"]), dict(
                        current, revision_number=current.get("revision_number", 0) + 1,
                        updated_at=now(), fixed_ips=[ip for ip in current["fixed_ips"]
                                                     if ip["subnet_id"] != obj["id"]]))
                    continue
                raise errors.Conflict(
                    f"Unable to complete operation on subnet {obj['id']}: One or more ports "
                    f"have an IP allocation from this subnet.", type_name="SubnetInUse")
        networks = self.s["networks"]
        found = networks.get(obj["network_id"])
        if found is not None:
            network, rev = found
            w.expect(networks.key(network["id"]), rev)
            rest = [s for s in network.get("subnets", []) if s != obj["id"]]
            network = dict(network, subnets=rest,
                           revision_number=network.get("revision_number", 0) + 1)
            if not any((o := self.get(s)) and o[0]["ip_version"] == obj["ip_version"]
                       for s in rest):
                network[f"ipv{obj['ip_version']}_address_scope"] = None
            w.put(networks.key(network["id"]), network)
        self.release(obj, w)
        kvs, _ = self.s.store.range(f"{ALLOC}ip/{obj['id']}/")
        for kv in kvs:
            w.delete(kv.key)
