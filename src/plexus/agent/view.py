"""The compiler input of one chassis, read from the catalog through its indexes: only
what matters to the ports bound here, the routers they reach and the routers this
chassis is the gateway of. Cost follows what the chassis hosts and routes, never the
size of the cloud. Pure: no I/O.

``local_view`` is the L2 part (the ports bound here, their networks and subnets, the
other ports on those networks and the chassis hosting them, the security groups of the
ports bound here and the members of the remote groups their rules name);
``with_routing`` adds the L3 part (docs/routing.md): the routers with an interface on a
network with a port bound here or whose active gateway this chassis is, their networks,
subnets and ports, the floating IPs of those routers (wherever bound), every chassis'
SNAT blocks of those routers on their current gateway address, the learned owners of
their networks' shared VIPs, the chassis and tunnels
they involve, and the agent's local facts. ``build`` is both."""

from __future__ import annotations

from dataclasses import replace

from typing import Iterable, Mapping

from plexus.model import keys
from plexus.model.catalog import Catalog
from plexus.model.objects import Chassis, Router
from plexus.pipeline.security import security
from plexus.pipeline.stages import router as rt
from plexus.pipeline.stages.qos import policy_id
from plexus.pipeline.view import FloatingIPView, ForwardingView, RouterView, View


def build(catalog: Catalog, chassis: str, tunnel_ip: str, *,
          vif_ofports: Mapping[str, int], tunnel_ofports: Mapping[str, int],
          alive: Iterable[str] = (), bridge_mappings: Mapping[str, str] | None = None,
          patch_ofports: Mapping[str, int] | None = None,
          external_macs: Mapping[str, str] | None = None,
          problems: list | None = None, metadata_ofport: int = 0,
          dns_domain: str | None = None) -> View:
    """The whole view of ``chassis`` (``local_view`` then ``with_routing``), with the
    OpenFlow port of its metadata namespace (0: it serves no metadata) and the cloud's
    DNS domain (None: the default)."""
    view = local_view(catalog, chassis, tunnel_ip, vif_ofports, tunnel_ofports)
    view = with_routing(view, catalog, alive=alive, bridge_mappings=bridge_mappings,
                        patch_ofports=patch_ofports, tunnel_ofports=tunnel_ofports,
                        external_macs=external_macs, problems=problems)
    view = with_lbs(view, catalog)
    if dns_domain is not None:
        view = replace(view, dns_domain=dns_domain)
    return replace(view, metadata_ofport=metadata_ofport) if metadata_ofport else view


def with_lbs(view: View, catalog: Catalog) -> View:
    """The load balancers whose VIP network the view holds (by the catalog's index: cost
    per network of the view, not per load balancer of the cloud)."""
    lbs = {i: catalog.objects[keys.LOADBALANCERS][i] for n in sorted(view.networks)
           for i in sorted(catalog.lbs_by_network.of(n))}
    return replace(view, lbs=lbs) if lbs else view


def local_view(catalog: Catalog, chassis: str, tunnel_ip: str,
               vif_ofports: Mapping[str, int], tunnel_ofports: Mapping[str, int]) -> View:
    """The L2 part of the view of ``chassis``."""
    ports, networks = catalog.objects[keys.PORTS], catalog.objects[keys.NETWORKS]
    local = catalog.ports_by_chassis.of(chassis)
    nets = {n: networks[n] for n in sorted({ports[p].network_id for p in local})
            if n in networks}
    on_networks = {pid: ports[pid] for n in nets for pid in catalog.ports_by_network.of(n)}
    subnets = {s.id: s for n in nets for s in catalog.each(keys.SUBNETS,
                                                           catalog.subnets_by_network.of(n))}
    hosting = {h for n in nets for h in catalog.hosts_on(n)} | {chassis}
    known = registered(catalog, hosting)
    known[chassis] = Chassis(chassis, tunnel_ip)
    qos_policies = catalog.objects[keys.QOS]
    used = used_policies_of(catalog, local)
    qos = {q: qos_policies[q] for q in sorted(used) if q in qos_policies}
    return View(chassis=chassis, tunnel_ip=tunnel_ip, networks=nets, subnets=subnets, qos=qos,
                ports=on_networks, chassis_by_name=known,
                vif_ofports={pid: ofport for pid, ofport in vif_ofports.items()
                             if pid in on_networks and on_networks[pid].chassis == chassis},
                tunnel_ofports={name: ofport for name, ofport in tunnel_ofports.items()
                                if name in known and name != chassis},
                security=security(catalog, local))


def used_policies_of(catalog: Catalog, local: Iterable[str]) -> set[str]:
    """The QoS policies the ports bound here enforce (``stages.qos.policy_id``)."""
    ports, networks = catalog.objects[keys.PORTS], catalog.objects[keys.NETWORKS]
    return {pid for p in local
            if (pid := policy_id(ports[p], networks.get(ports[p].network_id)))}


def registered(catalog: Catalog, names: Iterable[str]) -> dict[str, Chassis]:
    """The registered chassis among ``names``, by name."""
    out = {}
    for name in sorted(names):
        agent = catalog.agent(name)
        if agent is not None:
            out[name] = agent.chassis
    return out


def router_view(catalog: Catalog, router: Router) -> RouterView:
    """A router with its interface and gateway ports (its ports, by device_id and owner)."""
    ports = catalog.each(keys.PORTS, catalog.ports_by_device.of(router.id))
    interfaces = tuple(p.id for p in ports if p.device_owner in keys.INTERFACE_OWNERS)
    gateways = [p.id for p in ports if p.device_owner == keys.GATEWAY_OWNER]
    gateway = router.gw_port_id if router.gw_port_id in gateways else \
        (gateways[0] if gateways else None)
    return RouterView(id=router.id, interfaces=interfaces, gateway=gateway,
                      routes=router.routes, enable_snat=router.enable_snat,
                      admin_up=router.admin_up,
                      gateway_chassis=router.gateway_chassis if gateway else ())


def active_gateway(router: Router, alive: set[str]) -> str | None:
    """A router's active gateway: the first alive chassis of its ordered candidates (the
    same answer on every chassis that sees the same list and the same liveness)."""
    return next((c for c in router.gateway_chassis if c in alive), None)


def with_routing(view: View, catalog: Catalog, *, alive: Iterable[str] = (),
                 bridge_mappings: Mapping[str, str] | None = None,
                 patch_ofports: Mapping[str, int] | None = None,
                 tunnel_ofports: Mapping[str, int] | None = None,
                 external_macs: Mapping[str, str] | None = None,
                 problems: list | None = None) -> View:
    """``view`` (from ``local_view``) with what the L3 stages need (module doc);
    ``alive``: the chassis this one believes alive (it counts itself);
    ``tunnel_ofports``: every tunnel the agent has (chassis → ofport). Floating IPs that
    cannot be used are left out and, when ``problems`` is a list, reported there."""
    me = view.chassis
    up = set(alive) | {me}
    ports, networks = catalog.objects[keys.PORTS], catalog.objects[keys.NETWORKS]
    wire_routers = catalog.objects[keys.ROUTERS]
    bound = {ports[p].network_id for p in catalog.ports_by_chassis.of(me)}
    candidates = set(catalog.routers_by_candidate.of(me))
    for net in bound:
        candidates |= catalog.routers_on(net)
    relevant: dict[str, RouterView] = {}
    active: dict[str, str] = {}
    for rid in sorted(candidates):
        router = wire_routers.get(rid)
        if router is None:
            continue
        rv = router_view(catalog, router)
        gateway = active_gateway(router, up)
        if gateway == me or any(ports[i].network_id in bound for i in rv.interfaces):
            relevant[rid] = rv
            if gateway:
                active[rid] = gateway
    internal = {ports[i].network_id for r in relevant.values() for i in r.interfaces}
    external = {ports[r.gateway].network_id for r in relevant.values() if r.gateway}
    wanted = {n for n in internal | external if n in networks}
    routed = internal & wanted
    added = {pid: ports[pid] for n in sorted(routed) for pid in catalog.ports_by_network.of(n)}
    added.update({r.gateway: ports[r.gateway] for r in relevant.values()
                  if r.gateway and ports[r.gateway].network_id in wanted})
    nets = {n: networks[n] for n in sorted(wanted)}
    nets.update(view.networks)
    subnets = {s.id: s for n in sorted(wanted)
               for s in catalog.each(keys.SUBNETS, catalog.subnets_by_network.of(n))}
    subnets.update(view.subnets)
    new = View(
        chassis=me, tunnel_ip=view.tunnel_ip, networks=nets, subnets=subnets,
        ports={**added, **view.ports}, chassis_by_name=view.chassis_by_name,
        vif_ofports=view.vif_ofports, tunnel_ofports=view.tunnel_ofports,
        security=view.security, routers=relevant,
        floating_ips=floating_ips(catalog, relevant, me, problems),
        port_forwardings=port_forwardings(catalog, relevant, active, me),
        bridge_mappings=dict(bridge_mappings or {}), patch_ofports=dict(patch_ofports or {}),
        active_gateway=active, snat_blocks=snat_blocks(catalog, relevant),
        vip_owners=vip_owners(catalog, routed), qos=view.qos)
    needed = {c for r in relevant.values() for c in rt.router_chassis(new, r)}
    known = dict(new.chassis_by_name)
    known.update(registered(catalog, needed))
    tunnels = dict(new.tunnel_ofports)
    tunnels.update({c: o for c, o in (tunnel_ofports or {}).items() if c in known and c != me})
    cidrs = [s.cidr for s in new.subnets.values() if s.network_id in external]
    macs = {ip: mac.lower() for ip, mac in (external_macs or {}).items()
            if any(rt.contains(c, ip) for c in cidrs)}
    return View(chassis=me, tunnel_ip=new.tunnel_ip, networks=new.networks,
                subnets=new.subnets, ports=new.ports, chassis_by_name=known,
                vif_ofports=new.vif_ofports, tunnel_ofports=tunnels, security=new.security,
                routers=new.routers, floating_ips=new.floating_ips,
                port_forwardings=new.port_forwardings, bridge_mappings=new.bridge_mappings, patch_ofports=new.patch_ofports,
                external_macs=macs, active_gateway=new.active_gateway,
                snat_blocks=new.snat_blocks, vip_owners=new.vip_owners, qos=new.qos)


def floating_ips(catalog: Catalog, routers: Mapping[str, RouterView], chassis: str,
                 problems: list | None = None) -> dict[str, FloatingIPView]:
    """Associated floating IPs of bound ports through ``routers``: those of ports bound to
    ``chassis`` are NATed here (``router.local_fips``); all of them are reached from
    behind their router across the external network (hairpin: ``l3_route`` and
    ``l3_neighbor`` know their addresses and MACs)."""
    ports = catalog.objects[keys.PORTS]
    out = {}
    for rid in sorted(routers):
        for fip in catalog.each(keys.FLOATINGIPS, catalog.fips_by_router.of(rid)):
            port = ports.get(fip.port_id or "")
            if port is None or not port.chassis:
                continue
            own = ports.get(fip.floating_port_id)
            if own is None or fip.fixed_ip is None:
                if problems is not None:
                    problems.append((keys.FLOATINGIPS, fip.id, "unusable: " + (
                        "its own port is unknown" if own is None else "no fixed IP")))
                continue
            out[fip.id] = FloatingIPView(id=fip.id, address=fip.address, mac=own.mac,
                                         network_id=fip.network_id, router_id=rid,
                                         port_id=port.id, fixed_ip=fip.fixed_ip)
    return dict(sorted(out.items()))


def port_forwardings(catalog: Catalog, routers: Mapping[str, RouterView],
                     active: Mapping[str, str], chassis: str) -> dict[str, ForwardingView]:
    """Port forwardings through ``routers`` that this chassis NATs or steers: those to
    ports bound here (found through the catalog's index of floating IPs by forwarded
    port: cost the ports bound here) and, of the routers whose active gateway this
    chassis is, every forwarding of their floating IPs (it answers for a floating IP
    whose forwardings reach ports on several chassis: ``router.forwarding_owner``).
    Forwardings of a floating IP whose own port is unknown, or to unbound ports, are
    left out."""
    ports = catalog.objects[keys.PORTS]
    fips = set()
    for pid in catalog.ports_by_chassis.of(chassis):
        fips |= catalog.fips_by_forwarded_port.of(pid)
    for rid in routers:
        if active.get(rid) == chassis:
            fips |= {f for f in catalog.fips_by_router.of(rid)
                     if catalog.objects[keys.FLOATINGIPS][f].forwardings}
    out = {}
    for fip in catalog.each(keys.FLOATINGIPS, fips):
        own = ports.get(fip.floating_port_id)
        if fip.router_id not in routers or own is None or fip.port_id:
            continue
        for pf in fip.forwardings:
            port = ports.get(pf.port_id)
            if port is None or not port.chassis or pf.protocol not in (6, 17):
                continue
            out[pf.id] = ForwardingView(
                id=pf.id, fip_id=fip.id, address=fip.address, mac=own.mac,
                network_id=fip.network_id, router_id=fip.router_id, port_id=pf.port_id,
                chassis=port.chassis, internal_ip=pf.internal_ip, protocol=pf.protocol,
                external=pf.external, internal=pf.internal)
    return dict(sorted(out.items()))


def vip_owners(catalog: Catalog, networks: Iterable[str]) -> dict[tuple[str, str], str]:
    """(network, VIP) → the port learned to hold it, on the routed ``networks`` (through
    the catalog's index: cost the owners of those networks)."""
    return {(o.network_id, o.ip): o.port_id for n in sorted(networks)
            for o in catalog.each(keys.VIP_OWNERS, catalog.vip_owners_by_network.of(n))}


def snat_blocks(catalog: Catalog, routers: Mapping[str, RouterView]
                ) -> dict[str, tuple[tuple[str, int, int], ...]]:
    """Every chassis' SNAT blocks of the SNATing ``routers``, on their current gateway
    IPv4 address (a block leased on an old address is ignored)."""
    ports, subnets = catalog.objects[keys.PORTS], catalog.objects[keys.SUBNETS]
    out = {}
    for rid, router in sorted(routers.items()):
        port = ports.get(router.gateway or "")
        if port is None or not router.enable_snat:
            continue
        v4 = [ip for sid, ip in sorted(port.ips)
              if sid in subnets and subnets[sid].ip_version == 4]
        if not v4:
            continue
        found = {(b.chassis, b.port_min, b.port_max)
                 for b in catalog.each(keys.SNAT_BLOCKS, catalog.snat_by_router.of(rid))
                 if b.ip == v4[0]}
        if found:
            out[rid] = tuple(sorted(found))
    return out
