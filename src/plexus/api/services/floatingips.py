"""Floating IPs: an address on an external network (held by a port owned by the floating
IP), associated with a fixed IPv4 address of a port that some router connects to that
external network.

Status is computed when read (``l3_status``): DOWN until the chassis hosting the
associated port reports the floating IP programmed, and while that chassis is dead.
Each associated port has an index record (fixed IP and external network -> floating
IP) that makes a fixed IP's floating IP unique and lets a port's deletion disassociate
its floating IPs in the same transaction."""

from __future__ import annotations

import ipaddress

from plexus.api import errors
from plexus.api.schemas.l3 import FLOATINGIP
from plexus.api.services.base import ALLOC, IndexRecords, ResourceService, Writes
from plexus.api.services.l3_status import floatingip_status
from plexus.api.services.routers import bad_request, bumped, delete_port, service_port
from plexus.model.keys import (
    FLOATINGIP_OWNER, GATEWAY_CHASSIS, INTERFACE_OWNERS, PORT_FORWARDINGS,
)

PORT_DETAILS = ("name", "network_id", "mac_address", "admin_state_up", "status", "device_id",
                "device_owner")
UNASSOCIATED = {"port_id": None, "fixed_ip_address": None, "router_id": None}


def assoc_key(port_id: str) -> str:
    """Store key of a port's floating IP index: {"<fixed ip> <external net>": fip id}."""
    return f"{ALLOC}fip-port/{port_id}"


def in_use_by_forwardings(fip_id: str) -> errors.NeutronError:
    """Neutron's FipInUseByPortForwarding (409)."""
    return errors.Conflict(f"Floating IP {fip_id} in use by Port Forwarding resources.",
                           type_name="FipInUseByPortForwarding")


def _entry(fixed_ip: str, network_id: str) -> str:
    return f"{fixed_ip} {network_id}"


class FloatingIPService(ResourceService):
    """Neutron floating IPs."""

    resource = FLOATINGIP

    def __init__(self, services):
        super().__init__(services)
        services.add_hook("port_delete", self._on_port_delete)

    def load(self, ctx, ident: str) -> tuple[dict, int]:
        """The floating IP if the caller may see it; Neutron's FloatingIPNotFound otherwise."""
        found = self.get(ident)
        if found is None or not self.visible(ctx, found[0]):
            raise errors.NotFound("floatingip", ident, type_name="FloatingIPNotFound")
        return found

    def view(self, ctx, obj: dict, fields: list[str] | None = None, access=None) -> dict:
        """Wire form, with port_details read from the associated port."""
        from plexus.api.services.port_forwardings import in_fip
        details = None
        found = obj.get("port_id") and self.s["ports"].get(obj["port_id"])
        if found:
            details = {k: found[0].get(k) for k in PORT_DETAILS}
        return super().view(ctx, dict(obj, port_details=details,
                                      port_forwardings=in_fip(obj)), fields, access)

    def _host(self, fip: dict, alive: set[str]) -> str | None:
        """The chassis hosting the floating IP's port (its binding:host_id); for one with
        port forwardings, its owner as the agents compute it (``router.forwarding_owner``):
        the chassis of the forwardings' ports when that is one, else the router's active
        gateway (its first alive candidate)."""
        if fip.get(PORT_FORWARDINGS):
            hosts = set()
            for pf in fip[PORT_FORWARDINGS]:
                found = self.s["ports"].get(pf["internal_port_id"])
                hosts.add(found[0].get("binding:host_id") or None if found else None)
            if len(hosts) == 1:
                return hosts.pop()
            router = fip.get("router_id") and self.s["routers"].get(fip["router_id"])
            return next((c for c in (router[0].get(GATEWAY_CHASSIS) or [] if router else [])
                         if c in alive), None)
        found = fip.get("port_id") and self.s["ports"].get(fip["port_id"])
        return found[0].get("binding:host_id") or None if found else None

    def present(self, objs: list[dict]) -> list[dict]:
        """Floating IPs with ``status`` computed from the hosting chassis' liveness and
        report (see ``l3_status``)."""
        if not objs:
            return objs
        reports = self.s["routers"].reports
        alive, reported = reports.alive(), reports.reports(self.c)
        return [dict(o, status=floatingip_status(o, self._host(o, alive), alive,
                                                 reported.get(o["id"], {})))
                for o in objs]

    def set_status(self, ident: str, host: str, status: str,
                   revision_number: int | None = None) -> dict:
        """The chassis hosting the associated port reports the floating IP programmed
        (ACTIVE) or not (DOWN, ERROR) at ``revision_number``; returns the computed status."""
        found = self.get(ident)
        if found is None:
            raise errors.NotFound("floatingip", ident, type_name="FloatingIPNotFound")
        fip = found[0]
        bound = self._host(fip, self.s["routers"].reports.alive())
        if not (fip.get("port_id") or fip.get(PORT_FORWARDINGS)) or bound != host:
            raise errors.Conflict(f"Floating IP {ident} is not hosted on chassis {host} "
                                  f"(its port is on {bound!r}).",
                                  type_name="FloatingIPBindingMismatch")
        self.s["routers"].reports.record(self.c, fip, host, status, revision_number)
        return self.present([self.get(ident)[0]])[0]

    # ---- create / update / delete ----------------------------------------------------

    def plan_create(self, ctx, obj: dict, w: Writes, attempt: int) -> dict:
        """Allocate the address (a port on the external network), then associate. A
        ``dns_name`` and ``dns_domain`` go together (dns-integration; kept, published
        nowhere: Plexus has no external DNS service)."""
        if obj.get("dns_domain") and not obj.get("dns_name"):
            raise bad_request("floatingip", "dns_domain cannot be specified without a dns_name")
        if obj.get("dns_name") and not obj.get("dns_domain"):
            raise bad_request("floatingip", "dns_name cannot be specified without a dns_domain")
        networks = self.s["networks"]
        net_id = obj["floating_network_id"]
        found = networks.get(net_id)
        if found is None or not networks.visible(ctx, found[0]):
            raise errors.NotFound("network", net_id)
        network = found[0]
        if not network.get("router:external"):
            raise bad_request("floatingip", f"Network {net_id} is not a valid external network")
        subnets = [s[0] for sid in network.get("subnets", [])
                   if (s := self.s["subnets"].get(sid))]
        if not any(s["ip_version"] == 4 for s in subnets):
            raise bad_request("floatingip", f"Network {net_id} does not contain any IPv4 subnet")
        wanted = {k: v for k, v in (("subnet_id", obj.pop("subnet_id")),
                                    ("ip_address", obj["floating_ip_address"])) if v}
        port = service_port(ctx, self.s, net_id, obj["project_id"], FLOATINGIP_OWNER, obj["id"],
                            [wanted] if wanted else None)
        port = self.s["ports"].plan_create(ctx, port, w, attempt)
        v4 = [ip for ip in port["fixed_ips"] if ipaddress.ip_address(ip["ip_address"]).version == 4]
        if not v4:
            raise errors.BadRequest(f"Unable to find any IP address on external network "
                                    f"{net_id}.", type_name="ExternalIpAddressExhausted")
        request = {"port_id": obj["port_id"], "fixed_ip_address": obj["fixed_ip_address"]}
        obj.update(floating_ip_address=v4[0]["ip_address"], floating_port_id=port["id"],
                   **UNASSOCIATED)
        obj.update(self._associate(ctx, obj, request, w))
        w.put(self.key(obj["id"]), obj)
        return obj

    def plan_update(self, ctx, old, new, changes, w, attempt):
        """Associate, re-associate (port_id) or disassociate (port_id: null). A blank
        update (``{"floatingip": {}}``) disassociates, as Neutron's (a floating IP once had
        no attribute but its association); one naming only other attributes (a
        description) keeps it."""
        request = {k: changes[k] for k in ("port_id", "fixed_ip_address") if k in changes}
        if not changes:
            request = {"port_id": None}
        new.update(self._associate(ctx, old, request, w))
        return new

    def plan_delete(self, ctx, obj, w):
        """Release the floating IP's port (and address), its association and reports; one
        with port forwardings stays (409, as Neutron's)."""
        if obj.get(PORT_FORWARDINGS):
            raise in_use_by_forwardings(obj["id"])
        delete_port(ctx, self.s, obj["floating_port_id"], w)
        self.s["routers"].reports.plan_forget(self.c, obj["id"], w)
        if obj.get("port_id"):
            self._reindex(obj, (obj["port_id"], obj["fixed_ip_address"]), None, w)

    # ---- association ---------------------------------------------------------------

    def _associate(self, ctx, fip: dict, request: dict, w: Writes) -> dict:
        """The association fields after ``request`` (port_id and fixed_ip_address given)."""
        if request.get("fixed_ip_address") and not request.get("port_id"):
            raise bad_request("floatingip", "fixed_ip_address cannot be specified without a "
                                            "port_id")
        if "port_id" not in request:
            return {k: fip[k] for k in UNASSOCIATED}
        if fip.get(PORT_FORWARDINGS):
            if request["port_id"]:          # Neutron: only a "free" floating IP forwards
                raise in_use_by_forwardings(fip["id"])
            return {k: fip[k] for k in UNASSOCIATED}
        new = dict(UNASSOCIATED)
        if request["port_id"]:
            if self.s.port_forwardings.has_forwardings(request["port_id"], w):
                raise bad_request("floatingip", f"Cannot associate floating IP to port "
                                                f"{request['port_id']} because it already "
                                                f"has a Port Forwarding binding")
            new = self._target(ctx, fip, request["port_id"], request.get("fixed_ip_address"), w)
        old_ref = (fip["port_id"], fip["fixed_ip_address"]) if fip.get("port_id") else None
        new_ref = (new["port_id"], new["fixed_ip_address"]) if new["port_id"] else None
        self._reindex(fip, old_ref, new_ref, w)
        return new

    def _target(self, ctx, fip: dict, port_id: str, fixed_ip: str | None, w: Writes) -> dict:
        """Check the port and its fixed IP, and find the router that reaches them."""
        ports = self.s["ports"]
        found = ports.get(port_id)
        if found is None or not ports.visible(ctx, found[0]):
            raise errors.NotFound("port", port_id)
        port, rev = found
        if port["project_id"] != fip["project_id"] and not ctx.is_admin:
            raise bad_request("floatingip", f"Cannot process floating IP association with Port "
                                            f"{port_id}, since that port is owned by a "
                                            f"different tenant")
        if port.get("device_owner") == "network:dhcp":
            raise bad_request("floatingip", f"Port {port_id} is unable to be assigned a "
                                            f"floating IP")
        if fixed_ip:
            if ipaddress.ip_address(fixed_ip).version != 4:
                raise bad_request("floatingip", f"Cannot process floating IP association with "
                                                f"{fixed_ip}, since that is not an IPv4 address")
            chosen = [ip for ip in port["fixed_ips"] if ip["ip_address"] == fixed_ip]
            if not chosen:
                raise bad_request("floatingip", f"Port {port_id} does not have fixed ip "
                                                f"{fixed_ip}")
        else:
            chosen = [ip for ip in port["fixed_ips"]
                      if ipaddress.ip_address(ip["ip_address"]).version == 4]
            if not chosen:
                raise bad_request("floatingip", f"Cannot add floating IP to port {port_id} that "
                                                f"has no fixed IPv4 addresses")
            if len(chosen) > 1:
                raise bad_request("floatingip", f"Port {port_id} has multiple fixed IPv4 "
                                                f"addresses.  Must provide a specific IPv4 "
                                                f"address when assigning a floating IP")
        ip = chosen[0]
        router, router_rev = self._router_for(port, ip["subnet_id"], fip["floating_network_id"])
        routers = self.s["routers"]
        w.expect(ports.key(port_id), rev)
        w.expect(routers.key(router["id"]), router_rev)
        w.unguarded(routers.c, router["id"])
        return {"port_id": port_id, "fixed_ip_address": ip["ip_address"],
                "router_id": router["id"]}

    def _router_for(self, port: dict, subnet_id: str, network_id: str) -> tuple[dict, int]:
        """A router with a gateway on ``network_id`` and an interface on ``subnet_id``,
        preferring the one at the subnet's gateway IP (as Neutron does)."""
        interfaces: dict[str, list[tuple[str, str]]] = {}   # router -> (port, address)
        for p in self.s.where("ports", "network_id", port["network_id"]):
            if p.get("device_owner") not in INTERFACE_OWNERS:
                continue
            for ip in p["fixed_ips"]:
                if ip["subnet_id"] == subnet_id:
                    interfaces.setdefault(p["device_id"], []).append((p["id"], ip["ip_address"]))
        found = self.s["subnets"].get(subnet_id)
        gateway_ip = found[0].get("gateway_ip") if found else None
        routers = self.s["routers"]
        first = None
        for router_id, held in sorted(interfaces.items()):
            got = routers.get(router_id)
            if got is None:
                continue
            gw = routers.gateway_port(got[0])
            attached = [ip for pid, ip in held if pid in got[0].get("interface_ports", [])]
            if not attached or gw is None or gw["network_id"] != network_id:
                continue
            if gateway_ip in attached:
                return got
            first = first or got
        if first is None:
            raise errors.ResourceNotFound(
                f"External network {network_id} is not reachable from subnet {subnet_id}.  "
                f"Therefore, cannot associate Port {port['id']} with a Floating IP.",
                type_name="ExternalGatewayForFloatingIPNotFound")
        return first

    def _reindex(self, fip: dict, old: tuple | None, new: tuple | None, w: Writes) -> None:
        """Move the floating IP's entry in the per-port index from ``old`` to ``new``
        (each a (port_id, fixed_ip) or None); 409 when the fixed IP already has one."""
        if old == new:
            return
        net = fip["floating_network_id"]
        entries = IndexRecords(self.s, w, assoc_key)
        if old:
            entries[old[0]].pop(_entry(old[1], net), None)
        if new:
            held = entries[new[0]]
            holder = held.get(_entry(new[1], net))
            if holder not in (None, fip["id"]):
                raise errors.Conflict(
                    f"Cannot associate floating IP {fip['floating_ip_address']} ({fip['id']}) "
                    f"with port {new[0]} using fixed IP {new[1]}, as that fixed IP already has "
                    f"a floating IP on external network {net}.",
                    type_name="FloatingIPPortAlreadyAssociated")
            held[_entry(new[1], net)] = fip["id"]
        entries.flush()

    def _on_port_delete(self, ctx, port: dict, w: Writes) -> None:
        """Disassociate the floating IPs of a port in the port's delete transaction."""
        key = assoc_key(port["id"])
        found = self.s.get(key)
        if found is None:
            w.expect(key, 0)
            return
        data, rev = found
        w.expect(key, rev)
        w.delete(key)
        for fip_id in sorted(set(data.values())):
            got = self.get(fip_id)
            if got is not None:
                w.expect(self.key(fip_id), got[1])
                w.put(self.key(fip_id), bumped(got[0], **UNASSOCIATED))
