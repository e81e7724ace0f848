"""Wire schema of Neutron agents: each Plexus chassis appears as one."""

from __future__ import annotations

from plexus.api.schemas.base import Attr, Resource, string, to_bool

AGENT = Resource("agent", "agents", (
    Attr("id", post=False, put=False),
    Attr("agent_type", post=False, put=False),
    Attr("binary", post=False, put=False),
    Attr("topic", post=False, put=False),
    Attr("host", post=False, put=False),
    Attr("admin_state_up", type="boolean", post=False, convert=to_bool),
    Attr("alive", type="boolean", post=False, put=False),
    Attr("availability_zone", post=False, put=False),
    Attr("configurations", type="object", post=False, put=False, filter=False, sort=False),
    Attr("created_at", post=False, put=False),
    Attr("started_at", post=False, put=False),
    Attr("heartbeat_timestamp", post=False, put=False),
    Attr("description", post=False, convert=string(255)),
    Attr("resources_synced", post=False, put=False),
))
