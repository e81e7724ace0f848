"""Floating IP port forwardings (``/v2.0/floatingips/{id}/port_forwardings``): a
(protocol, external port or range) of a floating IP forwarded to a port and range of
a fixed IPv4 address of a Neutron port, as Neutron's port forwarding plugin.

A floating IP's forwardings are stored inside the floating IP itself (hidden key
``plexus:port_forwardings``): one object, one compare-and-swap, so a create, update or
delete and the floating IP's ``router_id`` (set by the first forwarding from the
router that reaches its internal port, cleared by the last one's removal, as Neutron)
change together, and two concurrent creates can never both take one external port.
An index record per internal port (``pf-port/<port>``: forwarding id → floating IP id)
is written in the same transaction; it answers "does this port have forwardings"
(floating IP association) and lets a port's deletion remove its forwardings in the
port's own transaction. Every request costs the floating IP, the port and its index
record: nothing scales with the cloud."""

from __future__ import annotations

import ipaddress

from plexus.api import errors, policy
from plexus.api.query import Query, matches, sort_and_page
from plexus.api.schemas.base import new_id
from plexus.api.schemas.l3 import PORT_FORWARDING
from plexus.api.services.base import ALLOC, IndexRecords, Services, Writes, now
from plexus.api.services.floatingips import assoc_key
from plexus.api.services.routers import bad_request
from plexus.model.keys import PORT_FORWARDINGS

NOT_FILTERABLE = ("internal_ip_address", "internal_port")


def pf_port_key(port_id: str) -> str:
    """Store key of a port's forwarding index: {forwarding id: floating IP id}."""
    return f"{ALLOC}pf-port/{port_id}"


def _bad(msg: str) -> errors.NeutronError:
    return bad_request("port_forwarding", msg)


def _range(text: str) -> list[int]:
    lo, _, hi = text.partition(":")
    return [int(lo), int(hi or lo)]


def stored(fip: dict) -> list[dict]:
    """A floating IP's forwardings as stored."""
    return list(fip.get(PORT_FORWARDINGS) or [])


def wire(pf: dict) -> dict:
    """A stored forwarding in Neutron's wire form (a single port shows as both the port
    and a one-port range, as Neutron's)."""
    (elo, ehi), (ilo, ihi) = pf["external"], pf["internal"]
    return {"id": pf["id"], "external_port": elo if elo == ehi else None,
            "internal_port": ilo if ilo == ihi else None,
            "external_port_range": f"{elo}:{ehi}", "internal_port_range": f"{ilo}:{ihi}",
            "internal_ip_address": pf["internal_ip_address"], "protocol": pf["protocol"],
            "internal_port_id": pf["internal_port_id"],
            "description": pf.get("description", "")}


def in_fip(fip: dict) -> list[dict]:
    """``port_forwardings`` of a floating IP's body (expose-port-forwarding-in-fip with
    floating-ip-port-forwarding-detail)."""
    keep = ("id", "internal_ip_address", "protocol", "internal_port", "external_port",
            "internal_port_id")
    return [{k: w[k] for k in keep} for w in map(wire, stored(fip))]


def _overlap(a: list[int], b: list[int]) -> bool:
    return max(a[0], b[0]) <= min(a[1], b[1])


class PortForwardingService:
    """Neutron's port forwarding plugin over the floating IPs' store objects."""

    resource = PORT_FORWARDING

    def __init__(self, services: Services):
        self.s = services
        services.port_forwardings = self
        services.add_hook("port_delete", self._on_port_delete)
        services.add_hook("port_fixed_ips", self._on_fixed_ips)

    # ---- reading -------------------------------------------------------------------

    def _target(self, fip: dict, pf: dict | None = None) -> policy.Target:
        obj = dict(pf or {}, project_id=fip["project_id"], tenant_id=fip["project_id"])
        return policy.Target(obj, {"ext_parent_tenant_id": lambda: {
            "ext_parent_tenant_id": fip["project_id"]}})

    def _fip(self, ctx, fip_id: str) -> tuple[dict, int]:
        return self.s["floatingips"].load(ctx, fip_id)

    def _find(self, fip: dict, pf_id: str) -> dict:
        for pf in stored(fip):
            if pf["id"] == pf_id:
                return pf
        raise errors.NotFound("port_forwarding", pf_id, type_name="PortForwardingNotFound")

    def list(self, ctx, fip_id: str, q: Query) -> tuple[list[dict], bool, bool]:
        """The floating IP's forwardings passing the query, sorted and paged."""
        for name in q.filters:
            if name in NOT_FILTERABLE:
                raise errors.BadRequest(f"Port Forwarding filter {name} is not supported.",
                                        type_name="PortForwardingNotSupportFilterField")
        fip, _ = self._fip(ctx, fip_id)
        items = [w for w in map(wire, stored(fip))
                 if policy.check(ctx, "get_floatingip_port_forwarding", self._target(fip, w))
                 and matches(self.resource, w, q)]
        page, more, before = sort_and_page(items, q)
        return [self.resource.view(ctx, w, q.fields) for w in page], more, before

    def show(self, ctx, fip_id: str, pf_id: str, fields: list[str] | None = None) -> dict:
        """One forwarding of a floating IP the caller sees (404 otherwise)."""
        fip, _ = self._fip(ctx, fip_id)
        found = wire(self._find(fip, pf_id))
        if not policy.check(ctx, "get_floatingip_port_forwarding", self._target(fip, found)):
            raise errors.NotFound("port_forwarding", pf_id,
                                  type_name="PortForwardingNotFound")
        return self.resource.view(ctx, found, fields)

    # ---- writing -------------------------------------------------------------------

    def create(self, ctx, fip_id: str, body) -> dict:
        """Validate, then store the forwarding with the floating IP atomically."""
        attrs = self.resource.validate_create(ctx, body)
        external = self._ports(attrs, "external")
        internal = self._ports(attrs, "internal")
        pf = {"id": new_id(), "protocol": attrs["protocol"],
              "internal_port_id": attrs["internal_port_id"],
              "internal_ip_address": attrs["internal_ip_address"],
              "external": external, "internal": internal,
              "description": attrs.get("description") or ""}

        def plan(attempt: int) -> tuple[dict, dict]:
            fip, rev = self._fip(ctx, fip_id)
            policy.enforce(ctx, "create_floatingip_port_forwarding",
                           self._target(fip, wire(pf)))
            self._check_ranges(pf)
            self._check_collisions(fip, pf)
            w = Writes()
            w.expect(self.s["floatingips"].key(fip_id), rev)
            self._check_no_fip_on(pf["internal_port_id"], pf["internal_ip_address"], w)
            if fip.get("port_id"):
                raise errors.Conflict(
                    f"Cannot associate floating IP {fip['floating_ip_address']} ({fip['id']}) "
                    f"with port {pf['internal_port_id']} using fixed IP "
                    f"{pf['internal_ip_address']}, as that fixed IP already has a floating IP "
                    f"on external network {fip['floating_network_id']}.",
                    type_name="FloatingIPPortAlreadyAssociated")
            router_id = self._router(ctx, fip, pf, w)
            new = self._stored(fip, stored(fip) + [pf], router_id)
            self._reindex(None, pf, fip_id, w)
            w.put(self.s["floatingips"].key(fip_id), new)
            self.s.commit(w)
            return fip, new
        old, new = self.s.retrying(plan)
        self.s["floatingips"].changed(old, new)
        return self.resource.view(ctx, wire(pf))

    def update(self, ctx, fip_id: str, pf_id: str, body) -> dict:
        """Change a forwarding (ports, address, internal port, protocol, description)."""
        changes = self.resource.validate_update(ctx, body)

        def plan(attempt: int) -> tuple[dict, dict, dict]:
            fip, rev = self._fip(ctx, fip_id)
            old = self._find(fip, pf_id)
            policy.enforce(ctx, "update_floatingip_port_forwarding",
                           self._target(fip, wire(old)), changes)
            pf = dict(old)
            for key in ("protocol", "internal_ip_address", "description"):
                if key in changes and changes[key] is not None:
                    pf[key] = changes[key]
            for side in ("external", "internal"):
                if changes.get(f"{side}_port") is not None or \
                        changes.get(f"{side}_port_range") is not None:
                    pf[side] = self._ports(changes, side)
            w = Writes()
            w.expect(self.s["floatingips"].key(fip_id), rev)
            moved = changes.get("internal_port_id") not in (None, old["internal_port_id"])
            if moved:
                pf["internal_port_id"] = changes["internal_port_id"]
                if not changes.get("internal_ip_address"):
                    pf["internal_ip_address"] = None          # its first IPv4 address
            if moved or pf["internal_ip_address"] != old["internal_ip_address"]:
                self._check_no_fip_on(pf["internal_port_id"], pf["internal_ip_address"], w)
            router_id = self._router(ctx, fip, pf, w, others=[
                p for p in stored(fip) if p["id"] != pf_id])
            self._check_ranges(pf)
            self._check_collisions(fip, pf)
            forwardings = [pf if p["id"] == pf_id else p for p in stored(fip)]
            new = self._stored(fip, forwardings, router_id)
            self._reindex(old, pf, fip_id, w)
            w.put(self.s["floatingips"].key(fip_id), new)
            self.s.commit(w)
            return fip, new, pf
        old, new, pf = self.s.retrying(plan)
        if new != old:
            self.s["floatingips"].changed(old, new)
        return self.resource.view(ctx, wire(pf))

    def delete(self, ctx, fip_id: str, pf_id: str) -> None:
        """Remove a forwarding; the last one of a floating IP clears its router_id."""
        def plan(attempt: int) -> tuple[dict, dict]:
            fip, rev = self._fip(ctx, fip_id)
            pf = self._find(fip, pf_id)
            policy.enforce(ctx, "delete_floatingip_port_forwarding",
                           self._target(fip, wire(pf)))
            w = Writes()
            w.expect(self.s["floatingips"].key(fip_id), rev)
            left = [p for p in stored(fip) if p["id"] != pf_id]
            new = self._stored(fip, left, fip.get("router_id") if left else None)
            self._reindex(pf, None, fip_id, w)
            w.put(self.s["floatingips"].key(fip_id), new)
            self.s.commit(w)
            return fip, new
        old, new = self.s.retrying(plan)
        self.s["floatingips"].changed(old, new)

    # ---- checks --------------------------------------------------------------------

    @staticmethod
    def _ports(attrs: dict, side: str) -> list[int]:
        """[first, last] of one side from ``<side>_port`` or ``<side>_port_range``."""
        port, ranged = attrs.get(f"{side}_port"), attrs.get(f"{side}_port_range")
        if port is not None and ranged is not None and _range(ranged) != [port, port]:
            raise _bad(f"{side}_port and {side}_port_range cannot both be given")
        if port is not None:
            return [port, port]
        if ranged is None:
            raise _bad(f"{side}_port or {side}_port_range is required")
        return _range(ranged)

    @staticmethod
    def _check_ranges(pf: dict) -> None:
        """Neutron's: N external ports to N internal ones, or to one."""
        (elo, ehi), (ilo, ihi) = pf["external"], pf["internal"]
        if ihi > ilo and ihi - ilo != ehi - elo:
            raise _bad("Invalid ranges of internal and/or external ports. The relation "
                       "between internal and external ports must be N-N or 1-N")

    def _check_collisions(self, fip: dict, pf: dict) -> None:
        """No two forwardings of a floating IP share an external port of one protocol;
        no two forwardings (of any floating IP: the internal port's index names them)
        share an internal address and port (400, as Neutron's)."""
        others = [(o, True) for o in stored(fip)]
        found = self.s.get(pf_port_key(pf["internal_port_id"]))
        for fip_id in sorted(set(found[0].values()) if found else ()):
            if fip_id != fip["id"] and (got := self.s["floatingips"].get(fip_id)):
                others += [(o, False) for o in stored(got[0])]
        for other, same_fip in others:
            if other["id"] == pf["id"] or other["protocol"] != pf["protocol"]:
                continue
            for side, same in (("external", same_fip),
                               ("internal", other["internal_port_id"] == pf["internal_port_id"]
                                and other["internal_ip_address"] == pf["internal_ip_address"])):
                if same and _overlap(other[side], pf[side]):
                    a, b = other[side], pf[side]
                    raise _bad(f"There is a port collision with the {side}_port_range. The "
                               f"following ranges collides: {a[0]}:{a[1]} and {b[0]}:{b[1]}")

    def _check_no_fip_on(self, port_id: str, fixed_ip: str | None, w: Writes) -> None:
        """A port with a floating IP of its own takes no forwarding (409, Neutron's
        PortHasBindingFloatingIP); the association index is compared at commit."""
        found = self.s.get(assoc_key(port_id))
        data, rev = found if found else ({}, 0)
        w.expect(assoc_key(port_id), rev)
        if data:
            fip_id = sorted(data.values())[0]
            got = self.s["floatingips"].get(fip_id)
            address = got[0]["floating_ip_address"] if got else None
            raise errors.Conflict(
                f"Cannot create port forwarding to floating IP {address} ({fip_id}) with port "
                f"{port_id} using fixed IP {fixed_ip}, as that port already has a binding "
                f"floating IP.", type_name="PortHasBindingFloatingIP")

    def _router(self, ctx, fip: dict, pf: dict, w: Writes, others: list | None = None) -> str:
        """Check the internal port and address (filling in the port's first IPv4 address
        when none was given) and find the router that reaches it from the floating IP's
        network; it must be the floating IP's router when it has one (400 otherwise)."""
        ports = self.s["ports"]
        port_id = pf["internal_port_id"]
        found = ports.get(port_id)
        if found is None or not ports.visible(ctx, found[0]):
            raise errors.NotFound("port", port_id)
        port, rev = found
        v4 = [ip for ip in port["fixed_ips"]
              if ipaddress.ip_address(ip["ip_address"]).version == 4]
        if not v4:
            raise _bad(f"Requested internal port {port_id} must allocate an IPv4 address at "
                       f"least")
        if pf["internal_ip_address"] is None:
            pf["internal_ip_address"] = v4[0]["ip_address"]
        chosen = [ip for ip in v4 if ip["ip_address"] == pf["internal_ip_address"]]
        if not chosen:
            raise _bad(f"Requested internal IP address {pf['internal_ip_address']} is not "
                       f"suitable for internal neutron port {port_id}, as its fixed_ips are "
                       f"{v4}")
        fips = self.s["floatingips"]
        try:
            router, router_rev = fips._router_for(port, chosen[0]["subnet_id"],
                                                  fip["floating_network_id"])
        except errors.ResourceNotFound:
            raise _bad(f"External network {fip['floating_network_id']} is not reachable from "
                       f"subnet {chosen[0]['subnet_id']}. Cannot set Port forwarding for port "
                       f"{port_id} with Floating IP {fip['id']}") from None
        current = fip.get("router_id") if (others is None and stored(fip)) or others else None
        if current and current != router["id"]:
            raise _bad(f"The Floating IP {fip['id']} had been set on router {current}, the "
                       f"internal Neutron port {port_id} can not reach it")
        routers = self.s["routers"]
        w.expect(ports.key(port_id), rev)
        w.expect(routers.key(router["id"]), router_rev)
        w.unguarded(routers.c, router["id"])
        return router["id"]

    @staticmethod
    def _stored(fip: dict, forwardings: list[dict], router_id: str | None) -> dict:
        new = dict(fip, router_id=router_id, revision_number=fip.get("revision_number", 0) + 1,
                   updated_at=now())
        new[PORT_FORWARDINGS] = forwardings
        if not forwardings:
            new.pop(PORT_FORWARDINGS)
        return new

    def _reindex(self, old: dict | None, new: dict | None, fip_id: str, w: Writes) -> None:
        """Move a forwarding's entry in the per-port index from ``old``'s internal port
        to ``new``'s (either None)."""
        entries = IndexRecords(self.s, w, pf_port_key)
        if old:
            entries[old["internal_port_id"]].pop(old["id"], None)
        if new:
            entries[new["internal_port_id"]][new["id"]] = fip_id
        entries.flush()

    def has_forwardings(self, port_id: str, w: Writes | None = None) -> bool:
        """Whether a port is the internal port of a forwarding (compared at commit when
        ``w`` is given)."""
        found = self.s.get(pf_port_key(port_id))
        if w is not None:
            w.expect(pf_port_key(port_id), found[1] if found else 0)
        return bool(found and found[0])

    def _on_port_delete(self, ctx, port: dict, w: Writes) -> None:
        """A deleted port's forwardings go with it, in the port's delete transaction (the
        last one of a floating IP clears its router_id, as Neutron's)."""
        self._drop(port["id"], set(), w)

    def _on_fixed_ips(self, ctx, old: dict, new: dict, w: Writes) -> None:
        """A port update that removes a fixed IP removes the forwardings to it, in the
        same transaction (Neutron's port AFTER_UPDATE handler)."""
        self._drop(new["id"], {ip["ip_address"] for ip in new.get("fixed_ips") or ()}, w)

    def _drop(self, port_id: str, keep: set[str], w: Writes) -> None:
        """Remove the forwardings to ``port_id`` whose internal address is not in
        ``keep`` from their floating IPs and from the port's index record."""
        entries = IndexRecords(self.s, w, pf_port_key)
        index = entries[port_id]
        fips = self.s["floatingips"]
        for fip_id in sorted(set(index.values())):
            got = fips.get(fip_id)
            if got is None:
                continue
            fip, frev = got
            gone = {p["id"] for p in stored(fip)
                    if p["internal_port_id"] == port_id and p["internal_ip_address"] not in keep}
            if not gone:
                continue
            left = [p for p in stored(fip) if p["id"] not in gone]
            w.expect(fips.key(fip_id), frev)
            w.put(fips.key(fip_id),
                  self._stored(fip, left, fip.get("router_id") if left else None))
            for pf_id in gone:
                index.pop(pf_id, None)
        entries.flush()
