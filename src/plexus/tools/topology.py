"""``plexus topology``: a picture of networks, routers, ports and chassis, coloured by
status, drawn by graphviz (the ``graphviz`` Python package writes DOT; Debian's
``graphviz`` renders it: SVG always, PNG too).

``graph`` is a pure function of the API's objects (as JSON dicts): networks (external
ones drawn apart), routers joined to the networks they have interfaces or a gateway
on, each port on its network and on the chassis it is bound to, chassis green when
alive and red when not. Port and router status colour their nodes (ACTIVE green, DOWN
grey, BUILD orange, ERROR red). Router interface and gateway ports are drawn as the
router's edges, not as ports. Cost: O(objects shown); an operator's command, not a
per-event path."""

from __future__ import annotations

import shutil
from pathlib import Path

import graphviz

STATUS_COLOURS = {"ACTIVE": "#2e7d32", "DOWN": "#9e9e9e", "BUILD": "#ef6c00",
                  "ERROR": "#c62828"}
ROUTER_OWNERS = ("network:router_interface", "network:router_gateway",
                 "network:router_interface_distributed", "network:ha_router_replicated_interface")


def _colour(status: str | None) -> str:
    return STATUS_COLOURS.get((status or "").upper(), "#616161")


def _label(obj: dict, *extra: str) -> str:
    name = obj.get("name") or obj["id"][:8]
    return "\n".join([name, *[e for e in extra if e]])


def graph(networks: list[dict], subnets: list[dict], routers: list[dict],
          ports: list[dict], agents: list[dict], floatingips: list[dict] = ()) -> graphviz.Graph:
    """The DOT graph of these objects (node ids ``kind_id``: DOT reads ``:`` as a port)."""
    g = graphviz.Graph("plexus", graph_attr={"rankdir": "LR", "fontname": "Helvetica",
                                             "label": "Plexus topology", "labelloc": "t"},
                       node_attr={"fontname": "Helvetica", "fontsize": "10"})
    cidrs: dict[str, list[str]] = {}
    for s in subnets:
        cidrs.setdefault(s["network_id"], []).append(s["cidr"])
    fips = {f.get("port_id"): f["floating_ip_address"] for f in floatingips if f.get("port_id")}
    with g.subgraph(name="cluster_chassis", graph_attr={"label": "chassis",
                                                        "style": "dashed"}) as c:
        for a in sorted(agents, key=lambda a: a["host"]):
            alive = a.get("alive", a.get("is_alive"))
            extra = "gateway" if (a.get("configurations") or {}).get("gateway") else ""
            c.node(f"chassis_{a['host']}", f"{a['host']}\n{'alive' if alive else 'DEAD'}"
                   + (f"\n{extra}" if extra else ""), shape="box3d", style="filled",
                   fillcolor="#c8e6c9" if alive else "#ffcdd2",
                   color=_colour("ACTIVE" if alive else "ERROR"))
    for n in networks:
        external = n.get("router:external")
        g.node(f"network_{n['id']}", _label(n, *cidrs.get(n["id"], []),
                                            "external" if external else ""),
               shape="box", style="rounded,filled,bold",
               fillcolor="#bbdefb" if not external else "#fff9c4", color=_colour(n.get("status")))
    for r in routers:
        g.node(f"router_{r['id']}", _label(r, r.get("status", "")), shape="octagon",
               style="filled", fillcolor="#e1bee7", color=_colour(r.get("status")))
        gw = (r.get("external_gateway_info") or {}).get("network_id")
        if gw:
            g.edge(f"router_{r['id']}", f"network_{gw}", label="gateway", style="bold")
    known = {n["id"] for n in networks}
    hosts = {a["host"] for a in agents}
    for p in ports:
        owner = p.get("device_owner") or ""
        if owner in ROUTER_OWNERS:
            if owner != "network:router_gateway" and p["network_id"] in known:
                ip = ",".join(f["ip_address"] for f in p.get("fixed_ips", []))
                g.edge(f"router_{p['device_id']}", f"network_{p['network_id']}", label=ip)
            continue
        if owner.startswith("network:") or p["network_id"] not in known:
            continue                       # DHCP and other service ports: not drawn
        ips = [f["ip_address"] for f in p.get("fixed_ips", [])]
        if p["id"] in fips:
            ips.append(f"fip {fips[p['id']]}")
        g.node(f"port_{p['id']}", _label(p, *ips, p.get("status", "")), shape="ellipse",
               style="filled", fillcolor="white", color=_colour(p.get("status")), penwidth="2")
        g.edge(f"network_{p['network_id']}", f"port_{p['id']}")
        host = p.get("binding:host_id")
        if host in hosts:
            g.edge(f"port_{p['id']}", f"chassis_{host}", style="dotted", label="bound")
    return g


def render(g: graphviz.Graph, out: str | Path) -> list[Path]:
    """Write ``out``.svg (and ``out``.png) next to ``out``.dot; the files written.
    Raises ``RuntimeError`` when Graphviz' ``dot`` is missing (scripts/bootstrap.sh
    installs it)."""
    base = Path(out)
    if base.suffix in (".svg", ".png", ".dot"):
        base = base.with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    dot = base.with_suffix(".dot")
    dot.write_text(g.source)
    if shutil.which("dot") is None:
        raise RuntimeError(f"Graphviz' dot is not installed (apt graphviz; "
                           f"scripts/bootstrap.sh): wrote only {dot}")
    written = [dot]
    for fmt in ("svg", "png"):
        path = base.with_suffix(f".{fmt}")
        try:
            path.write_bytes(g.pipe(format=fmt))
            written.append(path)
        except graphviz.backend.ExecutableNotFound:
            raise
        except graphviz.backend.CalledProcessError:
            if fmt == "svg":
                raise
    return written


def from_api(get) -> graphviz.Graph:
    """The graph of what ``get(path)`` (an admin's GET, JSON back) lists."""
    return graph(get("/v2.0/networks")["networks"], get("/v2.0/subnets")["subnets"],
                 get("/v2.0/routers")["routers"], get("/v2.0/ports")["ports"],
                 get("/v2.0/agents")["agents"], get("/v2.0/floatingips")["floatingips"])
