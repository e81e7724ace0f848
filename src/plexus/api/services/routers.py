"""Routers: the external gateway (a port on an external network, SNAT flag), extra
routes, and interfaces by subnet or by port, with Neutron's conflict rules.

A router's record lists its gateway port and interface ports (hidden fields) and is
rewritten by every change to them, so its revision guards floating IP associations
and route checks; changes that can strand a floating IP (removing an interface,
changing the gateway, deleting the router) also hold the router's guard.

A router with a gateway also carries its gateway chassis schedule (``l3_scheduling``),
set in the same transaction as the gateway; changing or clearing the gateway address
ends the SNAT port blocks leased on it (``snat``); ``status`` is computed when read
(``l3_status``)."""

from __future__ import annotations

import ipaddress

from plexus.api import errors, policy
from plexus.api.schemas.base import Invalid, convert, to_uuid
from plexus.api.schemas.l3 import ROUTER
from plexus.api.services.base import MAX_ATTEMPTS, ResourceService, Writes, now
from plexus.api.services.l3_scheduling import (
    EXCLUDED, GATEWAY_CHASSIS, PINNED, GatewayScheduler,
)
from plexus.api.services.l3_status import StatusReports, router_status
from plexus.api.services.snat import SnatBlocks
from plexus.api.services.subnets import ip_key
from plexus.ipam import cidr_overlaps
from plexus.model.keys import GATEWAY_OWNER, INTERFACE_OWNER, PORT_FORWARDINGS



def bad_request(resource: str, msg: str) -> errors.NeutronError:
    """Neutron's generic BadRequest: ``Bad <resource> request: <msg>.``"""
    return errors.BadRequest(f"Bad {resource} request: {msg}.", type_name="BadRequest")


def bumped(obj: dict, **changes) -> dict:
    """A copy of ``obj`` with ``changes``, a new revision number and updated_at."""
    return dict(obj, **changes, revision_number=obj.get("revision_number", 0) + 1,
                updated_at=now())


def service_port(ctx, services, network_id: str, project_id: str, owner: str,
                 device_id: str, fixed_ips: list[dict] | None) -> dict:
    """A new port for a router or a floating IP, ready for ``PortService.plan_create``;
    made with admin rights, as Neutron makes it (the caller's right to the router or
    floating IP has been checked)."""
    ports = services["ports"]
    body = {"network_id": network_id, "project_id": project_id, "device_owner": owner,
            "device_id": device_id}
    if fixed_ips:
        body["fixed_ips"] = fixed_ips
    admin = policy.elevated(ctx)
    return ports.new_object(admin, ports.resource.validate_create(admin, body))


def delete_port(ctx, services, port_id: str, w: Writes) -> None:
    """Plan the deletion of a service port as PortService does (MAC, addresses, hooks)."""
    ports = services["ports"]
    found = ports.get(port_id)
    if found is None:
        return
    port, rev = found
    w.expect(ports.key(port_id), rev)
    w.delete(ports.key(port_id))
    ports.plan_delete(ctx, port, w)


class RouterService(ResourceService):
    """Neutron routers."""

    resource = ROUTER

    def __init__(self, services):
        super().__init__(services)
        self.scheduler = GatewayScheduler(services)
        self.snat = SnatBlocks(services)
        self.reports = StatusReports(services)

    # ---- reading -------------------------------------------------------------------

    def gateway_port(self, router: dict) -> dict | None:
        """The router's gateway port, if it has one."""
        found = router.get("gw_port_id") and self.s["ports"].get(router["gw_port_id"])
        return found[0] if found else None

    def interface_ports(self, router: dict) -> list[tuple[dict, int]]:
        """The router's interface ports with their revisions."""
        ports = self.s["ports"]
        return [found for pid in router.get("interface_ports", [])
                if (found := ports.get(pid)) is not None]

    def _router_ports(self, router: dict) -> list[dict]:
        gw = self.gateway_port(router)
        return [p for p, _ in self.interface_ports(router)] + ([gw] if gw else [])

    def view(self, ctx, obj: dict, fields: list[str] | None = None, access=None) -> dict:
        """Wire form; external_gateway_info is read from the gateway port."""
        info = None
        gw = self.gateway_port(obj)
        if gw is not None:
            info = {"network_id": gw["network_id"], "enable_snat": obj.get("enable_snat", True),
                    "external_fixed_ips": [{"subnet_id": ip["subnet_id"],
                                            "ip_address": ip["ip_address"]}
                                           for ip in gw["fixed_ips"]]}
        return super().view(ctx, dict(obj, external_gateway_info=info), fields, access)

    def present(self, objs: list[dict]) -> list[dict]:
        """Routers with ``status`` computed from their gateway chassis' liveness and
        reports (see ``l3_status``)."""
        if not objs:
            return objs
        alive, reports = self.reports.alive(), self.reports.reports(self.c)
        return [dict(o, status=router_status(o, alive, reports.get(o["id"], {})),
                     distributed=True, ha=True)     # (routers stored before they said so)
                for o in objs]

    def set_status(self, ident: str, host: str, status: str,
                   revision_number: int | None = None) -> dict:
        """A gateway chassis reports the router programmed (ACTIVE) or not (DOWN, ERROR)
        at ``revision_number``; returns the router's computed status."""
        found = self.get(ident)
        if found is None:
            raise errors.NotFound("router", ident)
        router = found[0]
        if host not in (router.get(GATEWAY_CHASSIS) or []):
            raise errors.Conflict(f"Router {ident} is not scheduled on chassis {host}.",
                                  type_name="RouterNotHostedByChassis")
        self.reports.record(self.c, router, host, status, revision_number)
        return self.present([self.get(ident)[0]])[0]

    def _subnet(self, subnet_id: str) -> dict | None:
        found = self.s["subnets"].get(subnet_id)
        return found[0] if found else None

    def _fips_via(self, router_id: str) -> list[dict]:
        return self.s.where("floatingips", "router_id", router_id)

    # ---- create / update / delete ----------------------------------------------------

    def plan_create(self, ctx, obj: dict, w: Writes, attempt: int) -> dict:
        """The gateway port is created, and scheduled, in the router's transaction."""
        info = obj.pop("external_gateway_info")
        self.s["availability_zones"].check_hints(obj.get("availability_zone_hints") or [])
        obj.update(routes=[], distributed=True, ha=True,
                   availability_zones=sorted(set(obj.get("availability_zone_hints") or [])),
                   gw_port_id=None, enable_snat=True,
                   interface_ports=[], **{GATEWAY_CHASSIS: [], PINNED: [], EXCLUDED: []})
        if info:
            self._create_gateway(ctx, obj, info, w, attempt)
            self.scheduler.plan_router(obj, w)
        w.put(self.key(obj["id"]), obj)
        return obj

    def update(self, ctx, ident, body, if_match=None):
        """Update a router; changing the gateway holds the router's guard."""
        if not isinstance(body, dict) or "external_gateway_info" not in body:
            return super().update(ctx, ident, body, if_match)
        obj, _ = self.load(ctx, ident)
        self.owned(ctx, obj, "update")
        with self.s.guarding(self.c, ident):
            return super().update(ctx, ident, body, if_match)

    def plan_update(self, ctx, old, new, changes, w, attempt):
        """Extra routes (checked against the ports the router has now, as Neutron does) and
        gateway set, change or clear (ext-gw-mode)."""
        if "routes" in changes:
            self._check_routes(old, new["routes"])
        if "external_gateway_info" in changes:
            info = new.pop("external_gateway_info")
            readdressed = self._update_gateway(ctx, old, new, info, w, attempt)
            if readdressed or not new["enable_snat"]:
                self.snat.plan_drop(old["id"], w)
            self.scheduler.plan_router(new, w)
        return new

    def delete(self, ctx, ident, if_match=None):
        """Delete a router (with its gateway port) unless interfaces remain."""
        obj, _ = self.load(ctx, ident)
        self.owned(ctx, obj, "delete")
        with self.s.guarding(self.c, ident):
            super().delete(ctx, ident, if_match)
        self.snat.sweep(ident)

    def after_write(self, ctx, obj):
        """After a change of the gateway: sweep SNAT blocks left on an old address."""
        self.snat.sweep(obj["id"])

    def plan_delete(self, ctx, obj, w):
        """RouterInUse while interfaces remain; the gateway port and status reports go
        with the router, and no SNAT block may be claimed on it any more."""
        if obj.get("interface_ports"):
            raise errors.Conflict(f"Router {obj['id']} still has ports", type_name="RouterInUse")
        if obj.get("gw_port_id"):
            self._check_gateway_unused(obj)
            delete_port(ctx, self.s, obj["gw_port_id"], w)
        self.snat.plan_drop(obj["id"], w)
        self.reports.plan_forget(self.c, obj["id"], w)

    # ---- gateway -------------------------------------------------------------------

    def _gateway_network(self, ctx, info: dict) -> dict:
        """The external network a gateway is requested on, checked as Neutron does."""
        networks = self.s["networks"]
        found = networks.get(info["network_id"])
        if found is None or not networks.visible(ctx, found[0]):
            raise errors.NotFound("network", info["network_id"])
        network = found[0]
        if not network.get("router:external"):
            raise bad_request("router", f"Network {network['id']} is not an external network")
        gateways = {s["gateway_ip"] for sid in network.get("subnets", [])
                    if (s := self._subnet(sid)) and s.get("gateway_ip")}
        for ip in info.get("external_fixed_ips") or []:
            if ip.get("ip_address") in gateways:
                raise bad_request("router", f"External IP {ip['ip_address']} is the same as "
                                            f"the gateway IP")
        return network

    def _create_gateway(self, ctx, router: dict, info: dict, w: Writes, attempt: int) -> None:
        """Plan a gateway port on the external network and link it to the router."""
        network = self._gateway_network(ctx, info)
        subnets = [s for sid in network.get("subnets", []) if (s := self._subnet(sid))]
        self._check_subnets(router, subnets, include_gateway=True)
        port = service_port(ctx, self.s, network["id"], router["project_id"], GATEWAY_OWNER,
                            router["id"], info.get("external_fixed_ips"))
        port = self.s["ports"].plan_create(ctx, port, w, attempt)
        router.update(gw_port_id=port["id"], enable_snat=info.get("enable_snat", True))

    def _update_gateway(self, ctx, old: dict, new: dict, info: dict | None, w: Writes,
                        attempt: int) -> bool:
        """Keep, re-address, replace or remove the gateway port; True if the gateway's
        addresses changed (or went)."""
        current = self.gateway_port(old)
        new["enable_snat"] = info.get("enable_snat", True) if info else True
        if current is not None and info and current["network_id"] == info["network_id"]:
            self._gateway_network(ctx, info)
            wanted = info.get("external_fixed_ips")
            if wanted and self._ips_differ(current["fixed_ips"], wanted):
                self._readdress_gateway(ctx, current, wanted, w, attempt)
                return True
            return False
        if current is not None:
            self._check_gateway_unused(old)
            delete_port(ctx, self.s, current["id"], w)
            new["gw_port_id"] = None
        if info:
            self._create_gateway(ctx, new, info, w, attempt)
        return current is not None

    @staticmethod
    def _ips_differ(held: list[dict], wanted: list[dict]) -> bool:
        """Neutron's test for a change of the gateway's external addresses."""
        subnets = {ip["subnet_id"] for ip in held}
        wanted_subnets = {ip["subnet_id"] for ip in wanted if ip.get("subnet_id")}
        addresses = {ip["ip_address"] for ip in held}
        wanted_addresses = {ip["ip_address"] for ip in wanted if ip.get("ip_address")}
        return subnets != wanted_subnets or addresses != wanted_addresses

    def _readdress_gateway(self, ctx, port: dict, wanted: list[dict], w: Writes,
                           attempt: int) -> None:
        """Give the existing gateway port the requested external addresses."""
        ports = self.s["ports"]
        found = ports.get(port["id"])
        if found is None:
            raise errors.NotFound("port", port["id"])
        port, rev = found
        w.expect(ports.key(port["id"]), rev)
        changes = {"fixed_ips": wanted}
        new = ports.plan_update(ctx, port, {**port, **changes}, changes, w, attempt)
        w.put(ports.key(port["id"]), bumped(new))

    def _check_gateway_unused(self, router: dict) -> None:
        """The gateway may not go while floating IPs are reached through it."""
        if self._fips_via(router["id"]):
            gw = self.gateway_port(router)
            raise errors.Conflict(
                f"Gateway cannot be updated for router {router['id']}, since a gateway to "
                f"external network {gw['network_id'] if gw else None} is required by one or "
                f"more floating IPs.", type_name="RouterExternalGatewayInUseByFloatingIp")

    # ---- routes --------------------------------------------------------------------

    def _check_routes(self, router: dict, routes: list[dict]) -> None:
        """Each nexthop must be on a subnet of the router's ports, and not the router's own."""
        cidrs, own = [], set()
        for port in self._router_ports(router):
            for ip in port["fixed_ips"]:
                subnet = self._subnet(ip["subnet_id"])
                if subnet is not None:
                    cidrs.append(ipaddress.ip_network(subnet["cidr"]))
                own.add(ip["ip_address"])
        for route in routes:
            nexthop = ipaddress.ip_address(route["nexthop"])
            if not any(nexthop in net for net in cidrs):
                raise self._invalid_routes(routes, "the nexthop is not connected with router")
            if route["nexthop"] in own:
                raise self._invalid_routes(routes, "the nexthop is used by router")

    def change_routes(self, ctx, ident: str, body, add: bool) -> dict:
        """extraroute-atomic (``PUT add_extraroutes`` / ``remove_extraroutes``): add routes
        to, or remove them from, the router's current ones in one update."""
        inner = body.get("router") if isinstance(body, dict) else None
        if not isinstance(inner, dict) or set(inner) != {"routes"}:
            raise errors.InvalidInput("the body must be {'router': {'routes': [...]}}")
        given = convert(ROUTER.attr("routes"), inner["routes"])
        for _ in range(MAX_ATTEMPTS):
            router, _ = self._writable(ctx, ident, "add_extraroutes" if add
                                       else "remove_extraroutes")
            old = router.get("routes", [])
            routes = (old + [r for r in given if r not in old] if add
                      else [r for r in old if r not in given])
            try:
                return self.update(ctx, ident, {"routes": routes},
                                   if_match=router["revision_number"])
            except errors.PreconditionFailed:
                continue
        raise errors.Conflict("The request conflicted with concurrent changes; retry it.",
                              type_name="ConcurrentModification")

    @staticmethod
    def _invalid_routes(routes: list[dict], reason: str) -> errors.NeutronError:
        return errors.BadRequest(f"Invalid format for routes: {routes}, {reason}",
                                 type_name="InvalidRoutes")

    # ---- interfaces -----------------------------------------------------------------

    @staticmethod
    def _interface_args(body, removal: bool) -> tuple[str | None, str | None]:
        """The (port_id, subnet_id) of an interface request, validated as Neutron does."""
        if not isinstance(body, dict) or not ({"port_id", "subnet_id"} & set(body)):
            raise bad_request("router", "Either subnet_id or port_id must be specified")
        ids = {}
        for key in ("port_id", "subnet_id"):
            if key in body:
                try:
                    ids[key] = to_uuid()(body[key])
                except Invalid as exc:
                    raise bad_request("router", str(exc)) from None
        if not removal and len(ids) == 2:
            raise bad_request("router", "Cannot specify both subnet-id and port-id")
        return ids.get("port_id"), ids.get("subnet_id")

    def _writable(self, ctx, ident: str, action: str) -> tuple[dict, int]:
        router, rev = self.load(ctx, ident)
        policy.enforce(ctx, action, self.policy_target(ctx, router))
        return router, rev

    def _check_subnets(self, router: dict, new_subnets: list[dict],
                       include_gateway: bool = False) -> None:
        """A subnet may be on a router once, and may not overlap the router's others."""
        new_ids = {s["id"] for s in new_subnets}
        compared = []
        for port in self._router_ports(router):
            for ip in port["fixed_ips"]:
                if ip["subnet_id"] in new_ids:
                    raise bad_request("router", f"Router already has a port on subnet "
                                                f"{ip['subnet_id']}")
                if (port.get("device_owner") == GATEWAY_OWNER) == include_gateway:
                    compared.append(ip["subnet_id"])
        for sid in compared:
            other = self._subnet(sid)
            for subnet in new_subnets:
                if other is not None and cidr_overlaps(other["cidr"], subnet["cidr"]):
                    raise bad_request("router", f"Cidr {subnet['cidr']} of subnet "
                                                f"{subnet['id']} overlaps with cidr "
                                                f"{other['cidr']} of subnet {other['id']}")

    def add_interface(self, ctx, ident: str, body) -> dict:
        """``PUT add_router_interface``: attach a subnet (a new port at its gateway IP) or
        an existing port; returns Neutron's interface info."""
        port_id, subnet_id = self._interface_args(body, removal=False)

        def plan(attempt: int) -> dict:
            router, rev = self._writable(ctx, ident, "add_router_interface")
            w = Writes()
            w.expect(self.key(ident), rev)
            if port_id:
                port, subnets = self._attach_port(ctx, router, port_id, w)
            else:
                port, subnets = self._attach_subnet(ctx, router, subnet_id, w, attempt)
            router = bumped(router, interface_ports=router["interface_ports"] + [port["id"]])
            w.put(self.key(ident), router)
            self.s.commit(w)
            return self._interface_info(router, port, subnets[-1], subnets)
        return self.s.retrying(plan)

    def _attach_subnet(self, ctx, router, subnet_id, w, attempt) -> tuple[dict, list[dict]]:
        subnets = self.s["subnets"]
        found = subnets.get(subnet_id)
        if found is None or not subnets.visible(ctx, found[0]):
            raise errors.NotFound("subnet", subnet_id)
        subnet = found[0]
        if not subnet.get("gateway_ip"):
            raise bad_request("router", "Subnet for router interface must have a gateway IP")
        if (subnet["ip_version"] == 6 and subnet.get("ipv6_ra_mode") is None
                and subnet.get("ipv6_address_mode") is not None):
            raise bad_request("router", f"IPv6 subnet {subnet_id} configured to receive RAs "
                                        f"from an external router cannot be added to Neutron "
                                        f"Router.")
        self._check_subnets(router, [subnet])
        port = service_port(ctx, self.s, subnet["network_id"], router["project_id"],
                            INTERFACE_OWNER, router["id"],
                            [{"subnet_id": subnet_id, "ip_address": subnet["gateway_ip"]}])
        return self.s["ports"].plan_create(ctx, port, w, attempt), [subnet]

    def _attach_port(self, ctx, router, port_id, w) -> tuple[dict, list[dict]]:
        ports = self.s["ports"]
        found = ports.get(port_id)
        if found is None or not ports.visible(ctx, found[0]):
            raise errors.NotFound("port", port_id)
        port, rev = found
        # the port becomes the router's: it must be of the router's project (Neutron's
        # device owner check on the port update that attaches it)
        ports.check_device(ctx, dict(port, device_owner=INTERFACE_OWNER,
                                      device_id=router["id"]))
        if port.get("device_id"):
            raise errors.Conflict(
                f"Unable to complete operation on port {port_id} for network "
                f"{port['network_id']}. Port already has an attached device "
                f"{port['device_id']}.", type_name="PortInUse")
        if not port.get("fixed_ips"):
            raise bad_request("router", "Router port must have at least one fixed IP")
        subnets = [s for ip in port["fixed_ips"] if (s := self._subnet(ip["subnet_id"]))]
        self._check_subnets(router, subnets)
        if len([s for s in subnets if s["ip_version"] == 4]) > 1:
            raise bad_request("router", "Cannot have multiple IPv4 subnets on router port")
        w.expect(ports.key(port_id), rev)
        port = bumped(port, device_id=router["id"], device_owner=INTERFACE_OWNER)
        w.put(ports.key(port_id), port)
        return port, subnets

    def remove_interface(self, ctx, ident: str, body) -> dict:
        """``PUT remove_router_interface`` by subnet or port; refused while floating IPs or
        routes need it. Holds the router's guard so no floating IP is stranded."""
        port_id, subnet_id = self._interface_args(body, removal=True)
        self._writable(ctx, ident, "remove_router_interface")

        def plan(attempt: int) -> dict:
            router, rev = self._writable(ctx, ident, "remove_router_interface")
            w = Writes()
            w.expect(self.key(ident), rev)
            if port_id:
                port, subnets, gone = self._detach_port(ctx, router, port_id, subnet_id, w)
            else:
                port, subnets, gone = self._detach_subnet(ctx, router, subnet_id, w)
            kept = [p for p in router["interface_ports"] if not (gone and p == port["id"])]
            w.put(self.key(ident), bumped(router, interface_ports=kept))
            self.s.commit(w)
            return self._interface_info(router, port, subnets[0], subnets)
        with self.s.guarding(self.c, ident):
            return self.s.retrying(plan)

    def _detach_port(self, ctx, router, port_id, subnet_id, w) -> tuple[dict, list, bool]:
        for port, rev in self.interface_ports(router):
            if port["id"] == port_id:
                break
        else:
            raise errors.ResourceNotFound(f"Router {router['id']} does not have an interface "
                                          f"with id {port_id}", type_name="RouterInterfaceNotFound")
        sids = [ip["subnet_id"] for ip in port["fixed_ips"]]
        if subnet_id and subnet_id not in sids:
            raise errors.BadRequest(f"Subnet on port {port_id} does not match the requested "
                                    f"subnet {subnet_id}.", type_name="SubnetMismatchForPort")
        subnets = [s for sid in sids if (s := self._subnet(sid))]
        for subnet in subnets:
            self._check_interface_unused(router, subnet)
        delete_port(ctx, self.s, port_id, w)
        return port, subnets, True

    def _detach_subnet(self, ctx, router, subnet_id, w) -> tuple[dict, list, bool]:
        subnets = self.s["subnets"]
        found = subnets.get(subnet_id)
        if found is None or not subnets.visible(ctx, found[0]):
            raise errors.NotFound("subnet", subnet_id)
        subnet = found[0]
        self._check_interface_unused(router, subnet)
        ports = self.s["ports"]
        for port, rev in self.interface_ports(router):
            held = [ip for ip in port["fixed_ips"] if ip["subnet_id"] == subnet_id]
            if not held:
                continue
            if len(held) == len(port["fixed_ips"]):
                delete_port(ctx, self.s, port["id"], w)
                return port, [subnet], True
            # a port with several prefixes only gives up this subnet's address
            w.expect(ports.key(port["id"]), rev)
            for ip in held:
                w.delete(ip_key(subnet_id, ip["ip_address"]))
            w.put(ports.key(port["id"]), bumped(port, fixed_ips=[
                ip for ip in port["fixed_ips"] if ip["subnet_id"] != subnet_id]))
            return port, [subnet], False
        raise errors.ResourceNotFound(f"Router {router['id']} has no interface on subnet "
                                      f"{subnet_id}", type_name="RouterInterfaceNotFoundForSubnet")

    def _check_interface_unused(self, router: dict, subnet: dict) -> None:
        """An interface stays while floating IPs or extra routes go through its subnet."""
        net = ipaddress.ip_network(subnet["cidr"])
        for fip in self._fips_via(router["id"]):
            fixed = [fip.get("fixed_ip_address")] + [
                pf["internal_ip_address"] for pf in fip.get(PORT_FORWARDINGS) or ()]
            if any(ip and ipaddress.ip_address(ip) in net for ip in fixed):
                raise errors.Conflict(
                    f"Router interface for subnet {subnet['id']} on router {router['id']} "
                    f"cannot be deleted, as it is required by one or more floating IPs.",
                    type_name="RouterInterfaceInUseByFloatingIP")
        for route in router.get("routes", []):
            if ipaddress.ip_address(route["nexthop"]) in net:
                raise errors.Conflict(
                    f"Router interface for subnet {subnet['id']} on router {router['id']} "
                    f"cannot be deleted, as it is required by one or more routes.",
                    type_name="RouterInterfaceInUseByRoute")

    @staticmethod
    def _interface_info(router: dict, port: dict, subnet: dict, subnets: list[dict]) -> dict:
        """Neutron's body for add/remove_router_interface."""
        return {"id": router["id"], "tenant_id": port["project_id"],
                "project_id": port["project_id"], "port_id": port["id"],
                "network_id": port["network_id"], "subnet_id": subnet["id"],
                "subnet_ids": [s["id"] for s in subnets], "tags": port.get("tags", [])}
