"""Trunks (``trunk``, ``trunk-details``): VLAN-aware VMs. A trunk names a parent port,
whose VIF the VM plugs, and subports, each a port on its own network that rides the
parent's VIF in its VLAN (``segmentation_id``).

What the data plane needs is written onto the ports themselves, in the transaction that
changes the trunk (nothing half written): the parent carries the trunk's id
(``plexus:trunk``), each subport its parent and VLAN (``plexus:subport``), the owner
``trunk:subport``, the trunk's id as ``device_id`` and its parent's host as
``binding:host_id`` (it follows the parent's binding, as Neutron's trunk drivers keep
it). So an agent needs no trunk objects: a subport bound to it rides the VIF of its
parent (``agent.relevant.with_subports``), and a trunk change is one event per port it
touches. The trunk object itself (``model/trunks/<id>``) is for the API only.
"""

from __future__ import annotations

from plexus.api import errors
from plexus.api.schemas.trunks import SUBPORT, SUBPORT_REF, TRUNK
from plexus.api.schemas.base import Invalid
from plexus.api.services.base import ResourceService, Writes, now
from plexus.model.keys import SUBPORT_KEY, SUBPORT_OWNER, TRUNK_KEY


class TrunkService(ResourceService):
    """Neutron trunks."""

    resource = TRUNK

    # ---- reading -------------------------------------------------------------------

    def present(self, objs: list[dict]) -> list[dict]:
        """``status``: ACTIVE while the parent port is (its VIF plugged and programmed),
        DOWN otherwise; one read of the parent per trunk."""
        out = []
        for trunk in objs:
            found = self.s["ports"].get(trunk["port_id"])
            up = found is not None and found[0].get("status") == "ACTIVE"
            out.append(dict(trunk, status="ACTIVE" if up else "DOWN"))
        return out

    def details(self, trunk_id: str) -> dict | None:
        """A parent port's ``trunk_details`` (``trunk-details``): the trunk and its
        subports with their MACs."""
        found = self.get(trunk_id)
        if found is None:
            return None
        subs = []
        for sub in found[0].get("sub_ports", []):
            port = self.s["ports"].get(sub["port_id"])
            subs.append(dict(sub, mac_address=port[0]["mac_address"] if port else None))
        return {"trunk_id": trunk_id, "sub_ports": subs}

    def subports(self, ctx, ident: str) -> dict:
        """``GET /trunks/{id}/get_subports``."""
        trunk, _ = self.load(ctx, ident)
        self.owned(ctx, trunk, "get_subports")
        return {"sub_ports": trunk.get("sub_ports", [])}

    # ---- writing -------------------------------------------------------------------

    def _port(self, ctx, port_id: str, w: Writes) -> dict:
        """A port the caller may put in a trunk (404 when it cannot see it; another
        project's port, unless an admin asks, is not its to trunk: 404 too), guarded
        against concurrent change."""
        ports = self.s["ports"]
        found = ports.get(port_id)
        if found is None or not ports.visible(ctx, found[0]) or (
                not ctx.is_admin and found[0].get("project_id") != ctx.project_id):
            raise errors.NotFound("port", port_id)
        w.expect(ports.key(port_id), found[1])
        return found[0]

    def _free(self, port: dict) -> None:
        """A port in no trunk (409 as Neutron: ``TrunkPortInUse``, ``PortInUseAsSubPort``)."""
        if port.get(TRUNK_KEY):
            raise errors.Conflict(f"Port {port['id']} is in use by another trunk.",
                                  type_name="TrunkPortInUse")
        if port.get(SUBPORT_KEY):
            raise errors.Conflict(f"Port {port['id']} is currently a subport for trunk "
                                  f"{port.get('device_id')}.", type_name="PortInUseAsSubPort")

    def _mtu(self, port: dict) -> int | None:
        found = self.s["networks"].get(port["network_id"])
        return found[0].get("mtu") if found else None

    def _attach(self, ctx, trunk: dict, parent: dict, subs: list[dict], w: Writes) -> list[dict]:
        """Validate new subports against the trunk and write them onto their ports."""
        taken = {s["segmentation_id"] for s in trunk.get("sub_ports", [])}
        seen: set[str] = set()
        parent_mtu = self._mtu(parent)
        added = []
        for sub in subs:
            if sub["port_id"] in seen:
                raise errors.Conflict(f"Port {sub['port_id']} is listed twice.",
                                      type_name="DuplicateSubPort")
            seen.add(sub["port_id"])
            if sub["port_id"] == parent["id"]:
                raise errors.Conflict(f"Port {parent['id']} is in use by another trunk.",
                                      type_name="TrunkPortInUse")
            if sub["segmentation_id"] in taken:
                raise errors.Conflict(
                    f"segmentation_type {sub['segmentation_type']} and segmentation_id "
                    f"{sub['segmentation_id']} already in use on trunk {trunk['id']}.",
                    type_name="DuplicateSubPort")
            taken.add(sub["segmentation_id"])
            port = self._port(ctx, sub["port_id"], w)
            self._free(port)
            mtu = self._mtu(port)
            if parent_mtu is not None and mtu is not None and mtu > parent_mtu:
                raise errors.Conflict(
                    f"Subport {port['id']} has an MTU {mtu} greater than the trunk's MTU "
                    f"{parent_mtu}", type_name="SubPortMtuGreaterThanTrunkPortMtu")
            changed = dict(port, device_owner=SUBPORT_OWNER, device_id=trunk["id"])
            changed[SUBPORT_KEY] = {"parent": parent["id"], "vlan": sub["segmentation_id"]}
            self._follow(parent, changed)
            self._write_port(port, changed, w)
            added.append(sub)
        return added

    def _follow(self, parent: dict, sub: dict) -> None:
        """A subport is bound where its parent is."""
        host = parent.get("binding:host_id") or ""
        if sub.get("binding:host_id") != host:
            sub["binding:host_id"] = host
            sub["status"] = "DOWN"          # until its chassis programs it
        self.s["ports"].settle_binding(sub)

    def _write_port(self, old: dict, new: dict, w: Writes) -> None:
        if new != old:
            new["revision_number"] = old.get("revision_number", 0) + 1
            new["updated_at"] = now()
            w.put(self.s["ports"].key(new["id"]), new)

    def _detach(self, port_id: str, w: Writes) -> None:
        """A subport leaves its trunk: unbound, no owner (as Neutron leaves it)."""
        ports = self.s["ports"]
        found = ports.get(port_id)
        if found is None:
            return
        port, rev = found
        w.expect(ports.key(port_id), rev)
        changed = {k: v for k, v in port.items() if k != SUBPORT_KEY}
        changed.update(device_owner="", device_id="", status="DOWN")
        changed["binding:host_id"] = ""
        ports.settle_binding(changed)
        self._write_port(port, changed, w)

    def plan_create(self, ctx, obj, w, attempt):
        """The parent must be free; the subports valid and free (module doc)."""
        parent = self._port(ctx, obj["port_id"], w)
        self._free(parent)
        obj["sub_ports"] = self._attach(ctx, {**obj, "sub_ports": []}, parent,
                                        obj.get("sub_ports", []), w)
        self._write_port(parent, dict(parent, **{TRUNK_KEY: obj["id"]}), w)
        w.put(self.key(obj["id"]), obj)
        return obj

    def plan_delete(self, ctx, obj, w):
        """The subports leave, the parent is a plain port again."""
        for sub in obj.get("sub_ports", []):
            self._detach(sub["port_id"], w)
        ports = self.s["ports"]
        found = ports.get(obj["port_id"])
        if found is not None:
            w.expect(ports.key(obj["port_id"]), found[1])
            self._write_port(found[0], {k: v for k, v in found[0].items() if k != TRUNK_KEY}, w)

    def change_subports(self, ctx, ident: str, body, add: bool) -> dict:
        """``PUT /trunks/{id}/add_subports`` and ``remove_subports``: the trunk, unwrapped
        (as Neutron answers)."""
        if not isinstance(body, dict) or not isinstance(body.get("sub_ports"), list):
            raise errors.BadRequest("Invalid input: a 'sub_ports' list is required")
        try:
            subs = [(SUBPORT if add else SUBPORT_REF)(s) for s in body["sub_ports"]]
        except Invalid as exc:
            raise errors.InvalidInput(f"Invalid input for sub_ports. Reason: {exc}") from None

        def plan(attempt: int) -> dict:
            trunk, rev = self.load(ctx, ident)
            self.owned(ctx, trunk, "add_subports" if add else "remove_subports")
            if not trunk.get("admin_state_up", True):
                raise errors.Conflict(f"Trunk {ident} is currently disabled.",
                                      type_name="TrunkDisabled")
            w = Writes()
            w.expect(self.key(ident), rev)
            current = list(trunk.get("sub_ports", []))
            if add:
                parent = self._port(ctx, trunk["port_id"], w)
                current += self._attach(ctx, trunk, parent, subs, w)
            else:
                held = {s["port_id"] for s in current}
                for sub in subs:
                    if sub["port_id"] not in held:
                        raise errors.NotFound("subport", sub["port_id"],
                                              type_name="SubPortNotFound")
                gone = {s["port_id"] for s in subs}
                for port_id in gone:
                    self._detach(port_id, w)
                current = [s for s in current if s["port_id"] not in gone]
            new = dict(trunk, sub_ports=current, updated_at=now(),
                       revision_number=trunk.get("revision_number", 0) + 1)
            w.put(self.key(ident), new)
            self.s.commit(w)
            return new
        return self.view(ctx, self.present([self.s.retrying(plan)])[0])

    def plan_rebind(self, parent: dict, w: Writes) -> None:
        """The parent's binding changed (in ``w``): its subports follow it."""
        found = self.get(parent[TRUNK_KEY])
        if found is None:
            return
        ports = self.s["ports"]
        for sub in found[0].get("sub_ports", []):
            got = ports.get(sub["port_id"])
            if got is None:
                continue
            port, rev = got
            w.expect(ports.key(port["id"]), rev)
            changed = dict(port)
            self._follow(parent, changed)
            self._write_port(port, changed, w)

    def holding(self, port: dict) -> errors.NeutronError | None:
        """Why a port in a trunk cannot be deleted (409, as Neutron), or None."""
        if port.get(TRUNK_KEY):
            return errors.Conflict(f"Port {port['id']} is currently a parent port for trunk "
                                   f"{port[TRUNK_KEY]}.", type_name="PortInUseAsTrunkParent")
        if port.get(SUBPORT_KEY):
            return errors.Conflict(f"Port {port['id']} is currently a subport for trunk "
                                   f"{port.get('device_id')}.", type_name="PortInUseAsSubPort")
        return None
