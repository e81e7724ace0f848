"""Networks: segments (VXLAN VNIs, VLAN ids, flat physical networks), MTU, sharing,
external networks, and deletion with Neutron's in-use rules."""

from __future__ import annotations

from plexus.api import errors, policy
from plexus.api.schemas.core import NETWORK
from plexus.api.services.base import ALLOC, ResourceService, Retry, Writes
from plexus.api.schemas.rbac import ACCESS_EXTERNAL, ACCESS_SHARED, WILDCARD
from plexus.api.services.rbac import OBJECT_TYPES, external_network_in_use
from plexus.api.services.subnets import check_mtu
from plexus.ipam import choose_segment
from plexus.model.keys import FLOATINGIP_OWNER, KEY, PORT_FORWARDINGS, SERVICE_OWNERS

VXLAN_MAX = 2 ** 24 - 1
# Ports that Neutron deletes along with their network.
AUTO_DELETE_OWNERS = ("network:dhcp",)


def segment_key(network_type: str, physnet: str | None, seg_id: int | None) -> str:
    """Store key that makes a segment unique."""
    return f"{ALLOC}seg/{network_type}/{physnet or '-'}/{seg_id or 0}"


class NetworkService(ResourceService):
    """Neutron networks."""

    resource = NETWORK
    grant_types = ("network",)

    def policy_target(self, ctx, obj: dict, access=None) -> policy.Target:
        """The network, with its sharing and external flags for this caller as the rules
        name them (read from the RBAC grants only if a rule gets that far)."""
        def facts() -> dict:
            return policy.network_facts(obj, access or self.access(ctx))
        return policy.Target(obj, {key: facts for key in policy.network_facts(None)})

    def for_caller(self, ctx, obj: dict, access=None) -> dict:
        """``shared`` as Neutron shows it: true when shared with the caller's project (a
        `*` policy, or one targeting the project)."""
        if obj.get("shared") or not ctx.project_id:
            return obj
        if (access or self.access(ctx)).granted("network", obj["id"], ACCESS_SHARED):
            return dict(obj, shared=True)
        return obj

    def plan_create(self, ctx, obj: dict, w: Writes, attempt: int) -> dict:
        """Choose the segment, the MTU and the derived fields."""
        net = self.s.config.network
        ntype = obj.get("provider:network_type") or net.default_network_type
        physnet = obj.get("provider:physical_network")
        seg = obj.get("provider:segmentation_id")
        if ntype == "vxlan":
            if physnet:
                raise errors.InvalidInput("provider:physical_network specified for vxlan network")
            if seg is not None and not 1 <= seg <= VXLAN_MAX:
                raise errors.InvalidInput(f"segmentation_id out of range (1 through {VXLAN_MAX})")
            ranges = net.vni_ranges
        elif ntype == "vlan":
            if not physnet:
                raise errors.InvalidInput("provider:physical_network required for vlan provider "
                                          "network")
            if physnet not in net.vlan_ranges and physnet not in net.flat_networks:
                raise errors.InvalidInput(f"physical_network '{physnet}' unknown for VLAN "
                                          f"provider network")
            if seg is not None and not 1 <= seg <= 4094:
                raise errors.InvalidInput("segmentation_id out of range (1 through 4094)")
            ranges = net.vlan_ranges.get(physnet, [])
        else:
            if not physnet:
                raise errors.InvalidInput("provider:physical_network required for flat provider "
                                          "network")
            if physnet not in net.flat_networks:
                raise errors.InvalidInput(f"physical_network '{physnet}' unknown for flat "
                                          f"provider network")
            if seg is not None:
                raise errors.InvalidInput("provider:segmentation_id specified for flat network")
            ranges = []
        if ntype != "flat" and seg is None:
            seg = self._free_segment(ntype, physnet, ranges, w, attempt)
        key = segment_key(ntype, physnet, seg)
        if not w.claim(key, obj["id"]):
            raise Retry()
        # Every network gets a datapath key from the VNI space: the VNI itself for VXLAN,
        # a VNI of its own for VLAN and flat networks (tunnelled between chassis).
        obj[KEY] = seg if ntype == "vxlan" else self._free_segment(
            "vxlan", None, net.vni_ranges, w, attempt)
        if ntype != "vxlan" and not w.claim(segment_key("vxlan", None, obj[KEY]), obj["id"]):
            raise Retry()
        max_mtu = net.physical_mtu - (net.vxlan_overhead if ntype == "vxlan" else 0)
        mtu = obj.get("mtu") or max_mtu
        if mtu > max_mtu:
            raise errors.InvalidInput(f"Requested MTU is too big, maximum is {max_mtu}")
        self.s["availability_zones"].check_hints(obj.get("availability_zone_hints") or [])
        obj.update({"provider:network_type": ntype, "provider:physical_network": physnet,
                    "provider:segmentation_id": seg, "mtu": mtu, "status": "ACTIVE",
                    "subnets": [], "availability_zones": sorted(set(
                        obj.get("availability_zone_hints") or [])), "ipv4_address_scope": None,
                    "ipv6_address_scope": None, "l2_adjacency": True})
        qos = self.s["qos-policies"]
        if obj.get("qos_policy_id") is None:            # qos-default
            obj["qos_policy_id"] = qos.default_for(obj["project_id"])
        qos.plan_attach(ctx, obj, None, w)
        w.put(self.key(obj["id"]), obj)
        rbac = self.s["rbac-policies"]
        for action, flag in ((ACCESS_SHARED, "shared"), (ACCESS_EXTERNAL, "router:external")):
            if obj.get(flag):      # shared / router:external mean a `*` policy, as Neutron
                rbac.plan_add(rbac.wildcard(obj, "network", action), w)
        return obj

    def create_bulk(self, ctx, bodies):
        """Create networks; a taken segment is a 409 rather than an endless retry."""
        for body in bodies:
            if not isinstance(body, dict):
                continue
            ntype = body.get("provider:network_type")
            seg = body.get("provider:segmentation_id")
            if ntype and (seg is not None or ntype == "flat"):
                physnet = body.get("provider:physical_network")
                try:
                    seg_key = segment_key(ntype, physnet, int(seg) if seg is not None else None)
                except (TypeError, ValueError):
                    continue
                if self.s.store.get(seg_key) is not None:
                    if ntype == "flat":
                        raise errors.Conflict(
                            f"Unable to create the flat network. Physical network {physnet} "
                            f"is in use.", type_name="FlatNetworkInUse")
                    raise errors.Conflict(
                        f"Unable to create the network. The VLAN {seg} on physical network "
                        f"{physnet} is in use." if ntype == "vlan" else
                        f"Unable to create the network. The tunnel ID {seg} is in use.",
                        type_name="SegmentationIdInUse" if ntype != "vlan" else "VlanIdInUse")
        return super().create_bulk(ctx, bodies)

    def _free_segment(self, ntype, physnet, ranges, w: Writes, attempt: int) -> int:
        """A segment id from the configured ranges that is not taken."""
        used: set[int] = set()
        if attempt > 0:
            kvs, _ = self.s.store.range(f"{ALLOC}seg/{ntype}/{physnet or '-'}/")
            used = {int(kv.key.rsplit("/", 1)[1]) for kv in kvs}
        used |= {int(k.rsplit("/", 1)[1]) for k in w.written
                 if k.startswith(f"{ALLOC}seg/{ntype}/{physnet or '-'}/")}
        seg = choose_segment(ranges, used, self.s.rng)
        if seg is None:
            raise errors.Conflict("Unable to create the network. No tenant network is "
                                  "available for allocation.", type_name="NoNetworkAvailable")
        return seg

    def plan_update(self, ctx, old, new, changes, w, attempt):
        """MTU limits and un-sharing a network others use."""
        net = self.s.config.network
        if "mtu" in changes:
            max_mtu = net.physical_mtu - (net.vxlan_overhead
                                          if old["provider:network_type"] == "vxlan" else 0)
            if new["mtu"] is None:
                new["mtu"] = max_mtu
            if new["mtu"] > max_mtu:
                raise errors.InvalidInput(f"Requested MTU is too big, maximum is {max_mtu}")
            subnets = self.s["subnets"]
            for version in sorted({s[0]["ip_version"] for sid in old.get("subnets", [])
                                   if (s := subnets.get(sid))}):
                check_mtu(old, version, new["mtu"])
        self._plan_policies(old, new, changes, w)
        self.s["qos-policies"].plan_attach(ctx, new, old, w)
        return new

    def _plan_policies(self, old, new, changes, w) -> None:
        """``shared`` and ``router:external`` are `*` RBAC policies: setting one adds the
        policy, clearing ``shared`` removes the `*` policy (409 while a project uses the
        network only through it), clearing ``router:external`` removes every
        ``access_as_external`` policy."""
        rbac = self.s["rbac-policies"]
        kind = OBJECT_TYPES["network"]
        policies = rbac.on_object("network", old["id"])
        for action, flag in ((ACCESS_SHARED, "shared"), (ACCESS_EXTERNAL, "router:external")):
            if flag not in changes or bool(changes[flag]) == bool(old.get(flag)):
                continue
            if changes[flag]:
                rbac.plan_add(rbac.wildcard(old, "network", action), w)
                continue
            if action == ACCESS_EXTERNAL:        # Neutron: any router gateway keeps it
                external_network_in_use(self.s, old)
                for p in policies:
                    if p["action"] == action:
                        rbac.plan_remove(p, w)
                continue
            going = [p for p in policies if p["action"] == action
                     and p["target_tenant"] == WILDCARD]
            for p in going:
                remaining = [r for r in policies if r not in going]
                try:
                    rbac.check_removable(kind, old, p, remaining)
                except errors.NeutronError:
                    raise errors.Conflict(
                        f"Unable to reconfigure sharing settings for network {old['id']}. "
                        f"Multiple tenants are using it.", type_name="InvalidSharedSetting")
                rbac.plan_remove(p, w)

    def delete(self, ctx, ident, if_match=None):
        """Delete a network with its subnets, refusing while ports use it."""
        obj, _ = self.load(ctx, ident)
        self.owned(ctx, obj, "delete")
        with self.s.guarding("networks", ident):
            super().delete(ctx, ident, if_match)

    def plan_delete(self, ctx, obj, w):
        """Refuse while user ports exist; remove subnets, their allocations and the segment.
        DHCP ports, and service ports that no router or floating IP holds any more
        (stale), go with the network; so do the floating IPs of an external network that
        are not associated with a port (Neutron's ``delete_disassociated_floatingips``),
        with their ports, in the same transaction. An associated one keeps the network
        in use (409), as in Neutron."""
        ports_svc = self.s["ports"]
        fips = self.s["floatingips"]
        ports = self.s.where("ports", "network_id", obj["id"])
        stale = []
        for port in ports:
            if port.get("device_owner") not in SERVICE_OWNERS:
                continue
            holder = ports_svc.holder(port)
            if holder is None:
                stale.append(port)
            elif port.get("device_owner") == FLOATINGIP_OWNER and not holder.get("port_id") \
                    and not holder.get(PORT_FORWARDINGS):
                found = fips.get(holder["id"])
                if found is None or found[0].get("port_id") or found[0].get(PORT_FORWARDINGS):
                    raise Retry()          # changed since the port was read
                w.expect(fips.key(holder["id"]), found[1])
                w.delete(fips.key(holder["id"]))
                self.s["routers"].reports.plan_forget(fips.c, holder["id"], w)
                stale.append(port)
        if len(stale) + sum(p.get("device_owner") in AUTO_DELETE_OWNERS for p in ports) \
                < len(ports):
            raise errors.Conflict(
                f"Unable to complete operation on network {obj['id']}. There are one or more "
                f"ports still in use on the network.", type_name="NetworkInUse")
        for port in ports:
            w.delete(ports_svc.key(port["id"]))
            if port in stale:
                ports_svc.plan_delete(ctx, port, w)
            else:
                ports_svc.release(port, w)
        subnets = self.s["subnets"]
        for subnet_id in obj.get("subnets", []):
            w.delete(subnets.key(subnet_id))
            found = subnets.get(subnet_id)
            if found is not None:
                subnets.release(found[0], w)
        w.delete(segment_key(obj["provider:network_type"], obj["provider:physical_network"],
                             obj["provider:segmentation_id"]))
        self.s["rbac-policies"].plan_remove_all("network", obj["id"], w)
        if obj.get(KEY) and obj["provider:network_type"] != "vxlan":
            w.delete(segment_key("vxlan", None, obj[KEY]))
