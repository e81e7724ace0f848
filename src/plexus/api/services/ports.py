"""Ports: MAC and fixed-IP allocation (unique through store transactions, never a
process lock), security groups, allowed address pairs, binding, status."""

from __future__ import annotations

import ipaddress
import logging

from plexus.api import errors
from plexus.api.schemas.core import PORT
from plexus.api.services.base import ALLOC, ResourceService, Retry, Writes, now
from plexus.api.services.l3_status import router_status
from plexus.api.services.subnets import auto_addressed, ip_key, pools_tuples
from plexus.ipam import choose_address, eui64_address, is_valid_fixed_ip, random_mac
from plexus.model import dns
from plexus.model.keys import (
    FLOATINGIP_OWNER, INTERFACE_OWNERS, KEY, ROUTER_OWNERS, SERVICE_OWNERS, TRUNK_KEY,
)

# what os-vif's OVS plugin reads (datapath_type: the chassis' br-int's, as registered)
VIF_DETAILS = {"port_filter": True, "connectivity": "l2", "bridge_name": "br-int",
               "datapath_type": "netdev", "ovs_hybrid_plug": False}
PORT_STATUSES = ("ACTIVE", "DOWN", "BUILD", "ERROR")
PORT_KEY_MAX = 0xFFFE      # 0xFFFF is the pipeline's flood key
STATUS_TXN = 50            # ports written per transaction of a status report (etcd: 128 ops)
LOG = logging.getLogger(__name__)


def port_key_key(network_id: str, key: int) -> str:
    """Store key that makes a port's datapath key unique within its network."""
    return f"{ALLOC}portkey/{network_id}/{key}"


def merge_dhcp_opts(old: list[dict], changes: list[dict]) -> list[dict]:
    """Neutron's update of ``extra_dhcp_opts``: each change names an option by
    (``opt_name``, ``ip_version``) and sets its value, or removes it with ``opt_value``
    null; options not named are kept (a null on create adds nothing)."""
    out = {(o["opt_name"], o["ip_version"]): dict(o) for o in old}
    for opt in changes:
        key = (opt["opt_name"], opt["ip_version"])
        if opt["opt_value"] is None:
            out.pop(key, None)
        else:
            out[key] = dict(opt)
    return list(out.values())


def mac_key(network_id: str, mac: str) -> str:
    """Store key that makes a MAC unique on a network."""
    return f"{ALLOC}mac/{network_id}/{mac}"


class PortService(ResourceService):
    """Neutron ports."""

    resource = PORT

    # ---- authorization --------------------------------------------------------------

    def new_object(self, ctx, attrs: dict) -> dict:
        """A new port, if the policy allows it and the device it claims to belong to is
        the caller's."""
        obj = super().new_object(ctx, attrs)
        self.check_device(ctx, obj)
        return obj

    def check_device(self, ctx, port: dict) -> None:
        """A port that says it belongs to a router (or floating IP) must belong to the
        router's (floating IP's) project, unless an admin makes it (Neutron's
        ``_enforce_device_owner_not_router_intf_or_device_id``)."""
        owner, device = port.get("device_owner") or "", port.get("device_id")
        if ctx.is_admin or not device or owner not in SERVICE_OWNERS:
            return
        collection = "floatingips" if owner == FLOATINGIP_OWNER else "routers"
        service = self.s.by_collection.get(collection)
        found = service.get(device) if service is not None else None
        if found is not None and found[0].get("project_id") != port["project_id"]:
            err = errors.NeutronError(f"The following device_id {device} is not owned by your "
                                      f"tenant or matches another tenants router.",
                                      type_name="DeviceIDNotOwnedByTenant")
            err.status = 403
            raise err

    def present(self, objs: list[dict]) -> list[dict]:
        """Router interface ports with ``status`` computed, as OVN's are: a distributed
        router has no single host to report its interfaces, so an interface is ACTIVE
        when the router holding it is programmed (its computed status is ACTIVE: at once
        without a gateway, once its active gateway chassis reported it with one) and the
        port is up; DOWN otherwise. A trunk's parent shows its ``trunk_details``. Every
        port shows its ``dns_assignment`` (dns-integration), computed from its fixed IPs,
        its ``dns_name`` and the server's ``dns_domain`` as Neutron's: current whatever
        changed its addresses (an update, a SLAAC subnet added or removed, a router).
        Never written back."""
        domain = self.s.config.network.dns_domain
        objs = [dict(o, dns_name=o.get("dns_name", ""), dns_domain=o.get("dns_domain", ""),
                     dns_assignment=dns.assignment(
                         o.get("dns_name", ""),
                         [ip["ip_address"] for ip in o.get("fixed_ips") or ()], domain))
                for o in objs]
        if any(o.get(TRUNK_KEY) for o in objs) and "trunks" in self.s.by_collection:
            trunks = self.s["trunks"]
            objs = [dict(o, trunk_details=trunks.details(o[TRUNK_KEY])) if o.get(TRUNK_KEY)
                    else o for o in objs]
        if not any(o.get("device_owner") in INTERFACE_OWNERS for o in objs):
            return objs
        routers = self.s.by_collection.get("routers")
        if routers is None:
            return objs
        facts: dict = {}
        out = []
        for o in objs:
            if o.get("device_owner") not in INTERFACE_OWNERS:
                out.append(o)
                continue
            found = routers.get(o.get("device_id") or "")
            held = found is not None and o["id"] in found[0].get("interface_ports", ())
            up = False
            if held and o.get("admin_state_up", True):
                if not facts:
                    facts.update(alive=routers.reports.alive(),
                                 reports=routers.reports.reports(routers.c))
                up = router_status(found[0], facts["alive"],
                                   facts["reports"].get(found[0]["id"], {})) == "ACTIVE"
            out.append(dict(o, status="ACTIVE" if up else "DOWN"))
        return out

    def holder(self, port: dict) -> dict | None:
        """The router or floating IP that holds a service port, if it still does; None
        for any other port and for a stale one (nothing behind it, or no address)."""
        owner, device = port.get("device_owner") or "", port.get("device_id")
        if owner not in SERVICE_OWNERS or not device or not port.get("fixed_ips"):
            return None
        if owner == FLOATINGIP_OWNER:
            service = self.s.by_collection.get("floatingips")
            found = service.get(device) if service is not None else None
            held = found is not None and found[0].get("floating_port_id") == port["id"]
        else:
            service = self.s.by_collection.get("routers")
            found = service.get(device) if service is not None else None
            held = found is not None and (found[0].get("gw_port_id") == port["id"] or
                                          port["id"] in found[0].get("interface_ports", ()))
        return found[0] if held else None

    # ---- create -----------------------------------------------------------------

    def plan_create(self, ctx, obj: dict, w: Writes, attempt: int) -> dict:
        """Allocate MAC and addresses, settle security, and write the port."""
        networks = self.s["networks"]
        found = networks.get(obj["network_id"])
        if found is None or not networks.visible(ctx, found[0]):
            raise errors.NotFound("network", obj["network_id"])
        network, rev = found
        # The network must not be deleted under the port: its guard stops new ports
        # while a delete checks for them, and its unchanged revision stops a port
        # planned before the delete from committing after it.
        w.unguarded("networks", network["id"])
        w.expect(networks.key(network["id"]), rev)
        obj["mac_address"] = self._claim_mac(network["id"], obj["mac_address"], obj["id"], w)
        obj["extra_dhcp_opts"] = merge_dhcp_opts([], obj.get("extra_dhcp_opts") or [])
        self._settle_dns(obj, {"dns_name": "", "dns_domain": ""})
        obj[KEY] = self._claim_key(network["id"], obj["id"], w)
        subnets = self._subnets(network, w)
        obj["fixed_ips"] = self._claim_ips(network, subnets, obj["fixed_ips"], obj, w, attempt,
                                           keep=())
        self._settle_security(ctx, network, obj, w, creating=True)
        self.s["qos-policies"].plan_attach(ctx, obj, None, w)
        self.settle_binding(obj)
        obj["status"] = "DOWN"
        w.put(self.key(obj["id"]), obj)
        return obj

    def _settle_dns(self, port: dict, old: dict) -> None:
        """``dns_name`` and ``dns_domain`` as Neutron's DNS extension driver keeps them:
        with the server's ``dns_domain`` at its default (or empty) neither is kept (the
        port keeps what it had); otherwise ``dns_name`` is checked against that domain
        (400: a PQDN too long for it, an FQDN outside it)."""
        domain = self.s.config.network.dns_domain
        if not dns.names_kept(domain):
            port["dns_name"] = old.get("dns_name", "")
            port["dns_domain"] = old.get("dns_domain", "")
            return
        if port.get("dns_name") != old.get("dns_name"):
            try:
                port["dns_name"] = dns.check_dns_name(port.get("dns_name", ""), domain)
            except dns.BadName as exc:
                raise errors.InvalidInput(str(exc)) from None
        port.setdefault("dns_name", "")
        port.setdefault("dns_domain", "")

    def _subnets(self, network: dict, w: Writes) -> dict[str, dict]:
        """The network's subnets, each required unchanged when the transaction commits."""
        subnets = self.s["subnets"]
        out = {}
        for sid in network.get("subnets", []):
            found = subnets.get(sid)
            if found is not None:
                out[sid] = found[0]
                w.expect(subnets.key(sid), found[1])
        return out

    def _claim_mac(self, network_id: str, mac: str | None, port_id: str, w: Writes) -> str:
        """Claim a requested MAC (409 if taken) or a random one from the configured base."""
        if mac is not None:
            if not w.claim(mac_key(network_id, mac), port_id):
                raise self._mac_in_use(network_id, mac)
            if self.s.store.get(mac_key(network_id, mac)) is not None:
                raise self._mac_in_use(network_id, mac)
            return mac
        for _ in range(16):
            mac = random_mac(self.s.config.network.base_mac, self.s.rng)
            if w.claim(mac_key(network_id, mac), port_id):
                return mac
        raise Retry()

    @staticmethod
    def _mac_in_use(network_id: str, mac: str) -> errors.NeutronError:
        return errors.Conflict(f"Unable to complete operation for network {network_id}. The "
                               f"mac address {mac} is in use.", type_name="MacAddressInUse")

    def _claim_ips(self, network: dict, subnets: dict[str, dict], requested: list | None,
                   port: dict, w: Writes, attempt: int, keep) -> list[dict]:
        """The port's fixed IPs: requested ones checked and claimed, others allocated.

        ``keep`` are (subnet_id, ip) pairs the port already holds (on update)."""
        router_port = port.get("device_owner") in ROUTER_OWNERS
        if requested is None:
            # As Neutron: one address of IPv4, one of a stateful IPv6 subnet, and the
            # EUI-64 address of every auto-addressed (SLAAC, DHCPv6-stateless) subnet;
            # router ports take auto-addressed subnets as stateful ones.
            auto = [] if router_port else [s for s in subnets.values() if auto_addressed(s)]
            wanted = []
            for version in (4, 6):
                of_version = [s for s in subnets.values()
                              if s["ip_version"] == version and s not in auto]
                if of_version:
                    wanted.append({"subnets": of_version})
            wanted += [{"subnet": s, "ip_address": eui64_address(s["cidr"], port["mac_address"])}
                       for s in auto]
        else:
            wanted = [self._resolve(network, subnets, item, port, keep) for item in requested]
        out = []
        for want in wanted:
            if "ip_address" in want:
                subnet, ip = want["subnet"], want["ip_address"]
                if (subnet["id"], ip) not in keep:
                    key = ip_key(subnet["id"], ip)
                    if self.s.store.get(key) is not None or not w.claim(key, port["id"]):
                        raise errors.Conflict(
                            f"IP address {ip} already allocated in subnet {subnet['id']}",
                            type_name="IpAddressAlreadyAllocated")
                    w.unguarded("subnets", subnet["id"])
                out.append({"subnet_id": subnet["id"], "ip_address": ip})
                continue
            for subnet in want["subnets"]:
                ip = self._allocate(subnet, port["id"], w, attempt)
                if ip is not None:
                    out.append({"subnet_id": subnet["id"], "ip_address": ip})
                    break
            else:
                raise errors.Conflict(f"No more IP addresses available on network "
                                      f"{network['id']}.", type_name="IpAddressGenerationFailure")
        return out

    def _resolve(self, network, subnets, item: dict, port: dict, keep) -> dict:
        """A requested fixed IP tied to its subnet, validated as Neutron does. On an
        auto-addressed IPv6 subnet a port (not a router's) takes its EUI-64 address and
        may not name another (400), unless it holds that address already."""
        router_port = port.get("device_owner") in ROUTER_OWNERS
        sid, ip = item.get("subnet_id"), item.get("ip_address")
        if sid is not None and sid not in subnets:
            raise errors.BadRequest(f"Failed to create port on network {network['id']}, "
                                    f"because fixed_ips included invalid subnet {sid}.",
                                    type_name="InvalidInput")
        if ip is None and not router_port and auto_addressed(subnets[sid]):
            subnet = subnets[sid]
            return {"subnet": subnet,
                    "ip_address": eui64_address(subnet["cidr"], port["mac_address"])}
        if ip is None:
            return {"subnets": [subnets[sid]]}
        if sid is None:
            addr = ipaddress.ip_address(ip)
            matching = [s for s in subnets.values() if addr in ipaddress.ip_network(s["cidr"])]
            if not matching:
                raise errors.BadRequest(f"IP address {ip} is not a valid IP for any of the "
                                        f"subnets on the specified network.",
                                        type_name="InvalidIpForNetwork")
            subnet = matching[0]
        else:
            subnet = subnets[sid]
        if not router_port and auto_addressed(subnet) and (subnet["id"], ip) not in keep \
                and ip != eui64_address(subnet["cidr"], port["mac_address"]):
            raise errors.BadRequest(
                f"IPv6 address {ip} cannot be directly assigned to a port on subnet "
                f"{subnet['id']} as the subnet is configured for automatic addresses",
                type_name="AllocationOnAutoAddressSubnet")
        if not is_valid_fixed_ip(ip, subnet["cidr"], subnet.get("gateway_ip"),
                                 router_port=router_port):
            if ip == subnet.get("gateway_ip"):
                raise errors.Conflict(f"Unable to complete operation for network "
                                      f"{network['id']}. The IP address {ip} is in use.",
                                      type_name="IpAddressInUse")
            raise errors.BadRequest(f"IP address {ip} is not a valid IP for the specified "
                                    f"subnet.", type_name="InvalidIpForSubnet")
        return {"subnet": subnet, "ip_address": ip}

    def _allocate(self, subnet: dict, port_id: str, w: Writes, attempt: int) -> str | None:
        """Claim a free address of the subnet; None when its pools are exhausted.

        Early attempts pick at random and probe each pick with a point read (the
        transaction's guard still catches a race); once picks keep hitting taken
        addresses (a nearly full pool) or attempts repeat, read the subnet's allocations
        and choose among the free ones."""
        prefix = f"{ALLOC}ip/{subnet['id']}/"
        used = {k[len(prefix):] for k in w.written if k.startswith(prefix)}
        pools = pools_tuples(subnet.get("allocation_pools", []))
        if attempt < 3:
            for _ in range(8):
                ip = choose_address(pools, used, self.s.rng)
                if ip is None:
                    return None
                if self.s.store.get(ip_key(subnet["id"], ip)) is None:
                    if w.claim(ip_key(subnet["id"], ip), port_id):
                        w.unguarded("subnets", subnet["id"])
                        return ip
                used.add(ip)
        kvs, _ = self.s.store.range(prefix)
        used.update(kv.key[len(prefix):] for kv in kvs)
        for _ in range(8):
            ip = choose_address(pools, used, self.s.rng)
            if ip is None:
                return None
            if w.claim(ip_key(subnet["id"], ip), port_id):
                w.unguarded("subnets", subnet["id"])
                return ip
            used.add(ip)
        raise Retry()

    def _settle_security(self, ctx, network: dict, port: dict, w: Writes,
                         creating: bool) -> None:
        """Port security default, security groups and allowed address pairs rules."""
        if port.get("port_security_enabled") is None:
            port["port_security_enabled"] = network.get("port_security_enabled", True)
        groups = self.s.by_collection.get("security-groups")
        if port.get("security_groups") is None:
            owner = port.get("device_owner") or ""
            if (port["port_security_enabled"] and groups is not None
                    and not owner.startswith("network:")):
                port["security_groups"] = [groups.default_group(port["project_id"], w)]
            else:
                port["security_groups"] = []
        elif port["security_groups"] and groups is not None:
            groups.check_usable(ctx, port["project_id"], port["security_groups"], w)
        if not port["port_security_enabled"]:
            if port["security_groups"]:
                raise errors.Conflict(
                    "Port has security group associated. Cannot disable port security or ip "
                    "address until security group is removed",
                    type_name="PortSecurityPortHasSecurityGroup")
            if port.get("allowed_address_pairs"):
                raise errors.Conflict(
                    "Port Security must be enabled in order to have allowed address pairs on "
                    "a port.", type_name="AddressPairAndPortSecurityRequired")
        for pair in port.get("allowed_address_pairs", []):
            pair.setdefault("mac_address", port["mac_address"])

    def _claim_key(self, network_id: str, port_id: str, w: Writes) -> int:
        """A datapath key for the port, unique within its network (pipeline registers)."""
        for _ in range(16):
            key = self.s.rng.randint(1, PORT_KEY_MAX)
            if w.claim(port_key_key(network_id, key), port_id):
                return key
        raise Retry()

    def settle_binding(self, port: dict) -> None:
        """binding:vif_type and vif_details from binding:host_id: ``ovs`` on a registered
        chassis, ``binding_failed`` on a host no chassis has registered as."""
        host = port.get("binding:host_id")
        agents = self.s.by_collection.get("agents")
        if host and (agents is None or agents.exists(host)):
            port["binding:vif_type"] = "ovs"
            port["binding:vif_details"] = dict(
                VIF_DETAILS, datapath_type=agents.datapath_type(host) if agents else "netdev")
        elif host:
            LOG.warning("port %s bound to host %r, which no chassis has registered as",
                        port["id"], host)
            port["binding:vif_type"] = "binding_failed"
            port["binding:vif_details"] = {}
        else:
            port["binding:vif_type"] = "unbound"
            port["binding:vif_details"] = {}

    def rebind_host(self, host: str) -> int:
        """Complete the binding of ports that were bound to ``host`` before it registered."""
        done = 0
        for port in self.s.where("ports", "binding:host_id", host):
            if port.get("binding:vif_type") == "binding_failed":
                def plan(attempt: int, ident=port["id"]) -> None:
                    found = self.get(ident)
                    if found is None:
                        return
                    current, rev = found
                    fixed = dict(current)
                    self.settle_binding(fixed)
                    w = Writes()
                    w.expect(self.key(ident), rev)
                    w.put(self.key(ident), fixed)
                    self.s.commit(w)
                self.s.retrying(plan)
                done += 1
        return done

    # ---- update / delete --------------------------------------------------------

    def plan_update(self, ctx, old, new, changes, w, attempt):
        """Re-allocate changed MACs and addresses; re-settle security and binding."""
        found = self.s["networks"].get(old["network_id"])
        if found is None:
            raise errors.NotFound("network", old["network_id"])
        network = found[0]
        if "device_owner" in changes or "device_id" in changes:
            self.check_device(ctx, new)
        if "mac_address" in changes and changes["mac_address"] != old["mac_address"]:
            if old.get("binding:vif_type") not in ("unbound", None) and old["status"] == "ACTIVE":
                raise errors.Conflict(f"Port {old['id']} is bound; its MAC address cannot be "
                                      f"changed.", type_name="PortBound")
            new["mac_address"] = self._claim_mac(network["id"], changes["mac_address"],
                                                 old["id"], w)
            w.delete(mac_key(network["id"], old["mac_address"]))
            for pair in new.get("allowed_address_pairs", []):
                if pair.get("mac_address") == old["mac_address"]:
                    pair["mac_address"] = new["mac_address"]
        requested = changes.get("fixed_ips")
        if requested is None and new["mac_address"] != old["mac_address"] \
                and old.get("device_owner") not in ROUTER_OWNERS:
            # EUI-64 addresses follow the MAC: re-derive those of auto-addressed subnets
            subnets = self._subnets(network, w)
            auto = {sid for sid, sub in subnets.items() if auto_addressed(sub)}
            if any(ip["subnet_id"] in auto for ip in old.get("fixed_ips", [])):
                requested = [{"subnet_id": ip["subnet_id"]} if ip["subnet_id"] in auto
                             else dict(ip) for ip in old["fixed_ips"]]
        if requested is not None:
            held = {(ip["subnet_id"], ip["ip_address"]) for ip in old.get("fixed_ips", [])}
            wanted = self._claim_ips(network, self._subnets(network, w), requested,
                                     new, w, attempt, keep=held)
            kept = {(ip["subnet_id"], ip["ip_address"]) for ip in wanted}
            for sid, ip in held - kept:
                w.delete(ip_key(sid, ip))
            new["fixed_ips"] = wanted
            self.s.run_hooks("port_fixed_ips", ctx, old, new, w)
        if "extra_dhcp_opts" in changes:
            new["extra_dhcp_opts"] = merge_dhcp_opts(old.get("extra_dhcp_opts") or [],
                                                     changes["extra_dhcp_opts"])
        if "allowed_address_pairs" in changes:
            new["allowed_address_pairs"] = [dict(p) for p in changes["allowed_address_pairs"]]
        if "dns_name" in changes or "dns_domain" in changes:
            self._settle_dns(new, old)
        self._settle_security(ctx, network, new, w, creating=False)
        self.s["qos-policies"].plan_attach(ctx, new, old, w)
        if "binding:host_id" in changes:
            self.settle_binding(new)
            if changes["binding:host_id"] != old.get("binding:host_id"):
                new["status"] = "DOWN"
                if new.get(TRUNK_KEY) and "trunks" in self.s.by_collection:
                    self.s["trunks"].plan_rebind(new, w)      # its subports follow it
        return new

    def delete(self, ctx, ident, if_match=None):
        """Delete a port; one a router or floating IP still holds is refused (a stale
        one, with nothing behind it, goes as Neutron lets it)."""
        obj, _ = self.load(ctx, ident)
        self.owned(ctx, obj, "delete")
        if self.holder(obj) is not None:
            raise errors.Conflict(f"Port {ident} cannot be deleted directly via the port API: "
                                  f"has device owner {obj['device_owner']}.",
                                  type_name="ServicePortInUse")
        trunks = self.s.by_collection.get("trunks")
        refused = trunks.holding(obj) if trunks is not None else None
        if refused is not None:
            raise refused
        super().delete(ctx, ident, if_match)

    def plan_delete(self, ctx, obj, w):
        """Release the port's addresses and MAC; let dependants (floating IPs) react."""
        self.release(obj, w)
        for hook in self.s.hooks.get("port_delete", ()):
            hook(ctx, obj, w)

    def release(self, port: dict, w: Writes) -> None:
        """Add the deletes that free a port's MAC and addresses."""
        w.delete(mac_key(port["network_id"], port["mac_address"]))
        if KEY in port:
            w.delete(port_key_key(port["network_id"], port[KEY]))
        for ip in port.get("fixed_ips", []):
            w.delete(ip_key(ip["subnet_id"], ip["ip_address"]))

    # ---- southbound ---------------------------------------------------------------

    def set_status(self, ident: str, status: str, host: str | None = None) -> dict:
        """Record the status an agent observed (ACTIVE when plugged, DOWN when not)."""
        if status not in PORT_STATUSES:
            raise errors.InvalidInput(f"status '{status}' is not one of {PORT_STATUSES}")

        def plan(attempt: int) -> tuple[dict, dict]:
            found = self.get(ident)
            if found is None:
                raise errors.NotFound("port", ident)
            port, rev = found
            if host is not None and port.get("binding:host_id") != host:
                raise errors.Conflict(f"Port {ident} is bound to "
                                      f"'{port.get('binding:host_id')}', not '{host}'",
                                      type_name="PortBindingMismatch")
            if port["status"] == status:
                return port, port
            w = Writes()
            w.expect(self.key(ident), rev)
            new = dict(port, status=status, updated_at=now(),
                       revision_number=port.get("revision_number", 0) + 1)
            w.put(self.key(ident), new)
            self.s.commit(w)
            return port, new
        old, new = self.s.retrying(plan)
        if new is not old:
            self.changed(old, new)
        return new

    def set_statuses(self, reports: list[tuple[str, str]], host: str) -> list[dict]:
        """Several ports' statuses reported by the agent of ``host`` at once (the ports
        one reconcile made ACTIVE or DOWN): the ports whose status changes are written
        in one transaction (``STATUS_TXN`` ports at most each, etcd's limit on a
        transaction's operations), then each change runs the ``ports_changed`` hooks as
        ``set_status`` does (Nova's per-port events). Answers, in order, ``{"id",
        "status"}`` for each port, or ``{"id", "error": <NeutronError body>, "code"}``
        for one that does not exist or is bound elsewhere (the others are written all
        the same). A status that is not a port status fails the whole report (400),
        before anything is written. Cost: one read per port, one transaction per
        ``STATUS_TXN`` ports."""
        for ident, status in reports:
            if status not in PORT_STATUSES:
                raise errors.InvalidInput(f"status '{status}' is not one of {PORT_STATUSES}")
        if len({ident for ident, _ in reports}) != len(reports):
            raise errors.InvalidInput("each port may be reported once")
        results: list[dict] = []
        for at in range(0, len(reports), STATUS_TXN):
            results += self._set_statuses(reports[at:at + STATUS_TXN], host)
        return results

    def _set_statuses(self, reports: list[tuple[str, str]], host: str) -> list[dict]:
        def plan(attempt: int) -> tuple[list[dict], list[tuple[dict, dict]]]:
            w = Writes()
            out, changes = [], []
            for ident, status in reports:
                found = self.get(ident)
                if found is None:
                    exc: errors.NeutronError = errors.NotFound("port", ident)
                elif found[0].get("binding:host_id") != host:
                    exc = errors.Conflict(f"Port {ident} is bound to "
                                          f"'{found[0].get('binding:host_id')}', not '{host}'",
                                          type_name="PortBindingMismatch")
                else:
                    port, rev = found
                    if port["status"] != status:
                        new = dict(port, status=status, updated_at=now(),
                                   revision_number=port.get("revision_number", 0) + 1)
                        w.expect(self.key(ident), rev)
                        w.put(self.key(ident), new)
                        changes.append((port, new))
                    out.append({"id": ident, "status": status})
                    continue
                out.append({"id": ident, "code": exc.status, "error": exc.body()})
            if w.ops:
                self.s.commit(w)
            return out, changes
        results, changes = self.s.retrying(plan)
        for old, new in changes:
            self.changed(old, new)
        return results
