"""Telling Nova about ports, as Neutron's nova notifier does.

Nova waits for ``network-vif-plugged`` before it resumes a booting VM (with its default
``vif_plugging_is_fatal`` it fails the boot without one). The server sends Nova's
``os-server-external-events`` API:

- ``network-vif-plugged`` (status ``completed``; ``failed`` for ERROR) when a port goes
  from DOWN/BUILD (or nothing) to ACTIVE/ERROR, ``network-vif-unplugged`` when it goes
  from ACTIVE to DOWN (``[nova] notify_nova_on_port_status_changes``);
- ``network-changed`` when a port's addresses (fixed IPs, MAC) change or a floating IP
  is associated with or removed from it (both ports when a floating IP moves), and
  ``network-vif-deleted`` when it is deleted (``notify_nova_on_port_data_changes``);

only for ports whose ``device_owner`` starts with ``compute:`` and whose ``device_id``
is a UUID (the server's id). Events are queued in O(1) by the request that made the
change and sent by one thread: the first at once, the ones that come during the
following ``send_events_interval`` together in the next request. A send that fails
(Nova or Keystone unreachable, 5xx, 401) is retried with exponential backoff; events
wait in a bounded queue meanwhile (the oldest are dropped, logged and counted, when it
overflows). 400/403 are logged and dropped (retrying cannot fix them); 404 means Nova
knows none of the servers (logged at debug level, as Neutron does)."""

from __future__ import annotations

import collections
import logging
import threading
import uuid
from typing import Callable

from plexus.config import NovaConfig

LOG = logging.getLogger(__name__)

VIF_PLUGGED = "network-vif-plugged"
VIF_UNPLUGGED = "network-vif-unplugged"
VIF_DELETED = "network-vif-deleted"
NETWORK_CHANGED = "network-changed"
# Neutron's NEUTRON_NOVA_EVENT_STATUS_MAP
EVENT_STATUS = {"ACTIVE": "completed", "ERROR": "failed", "DOWN": "completed"}
COMPUTE_PREFIX = "compute:"
API_VERSION = "2.1"

# what a send did with its batch
SENT, RETRY, DROP = "sent", "retry", "drop"


# ---- which events (pure) ----------------------------------------------------------------

def is_compute_port(port: dict | None) -> bool:
    """A port of a Nova server: owner ``compute:*`` and a UUID device id."""
    if not port:
        return False
    device, owner = port.get("device_id") or "", port.get("device_owner") or ""
    if not owner.startswith(COMPUTE_PREFIX) or not device:
        return False
    try:
        uuid.UUID(device)
    except ValueError:
        return False
    return True


def status_event(port: dict, previous: str | None, current: str) -> dict | None:
    """The event of a status transition (Neutron's ``record_port_status_changed``)."""
    if not is_compute_port(port):
        return None
    if previous == "ACTIVE" and current == "DOWN":
        name = VIF_UNPLUGGED
    elif previous in (None, "DOWN", "BUILD") and current in ("ACTIVE", "ERROR"):
        name = VIF_PLUGGED
    else:
        return None
    return {"name": name, "server_uuid": port["device_id"], "tag": port["id"],
            "status": EVENT_STATUS[current]}


def changed_event(port: dict) -> dict | None:
    """``network-changed`` for a compute port."""
    if not is_compute_port(port):
        return None
    return {"name": NETWORK_CHANGED, "server_uuid": port["device_id"], "tag": port["id"]}


def _addresses(port: dict) -> tuple:
    return (port.get("mac_address"),
            sorted((ip.get("subnet_id"), ip.get("ip_address"))
                   for ip in port.get("fixed_ips") or []))


def port_events(old: dict | None, new: dict | None, config: NovaConfig) -> list[dict]:
    """The events one port write means for Nova (``old``/``new`` None: created/deleted)."""
    out: list[dict] = []
    if new is None:
        if old is not None and config.notify_nova_on_port_data_changes \
                and is_compute_port(old):
            out.append({"name": VIF_DELETED, "server_uuid": old["device_id"], "tag": old["id"]})
        return out
    if config.notify_nova_on_port_status_changes:
        previous = old.get("status") if old is not None else None
        if previous != new.get("status"):
            event = status_event(new, previous, new.get("status"))
            if event:
                out.append(event)
    if old is not None and config.notify_nova_on_port_data_changes \
            and _addresses(old) != _addresses(new):
        event = changed_event(new)
        if event:
            out.append(event)
    return out


def floatingip_events(old: dict | None, new: dict | None, config: NovaConfig,
                      port: Callable[[str], dict | None]) -> list[dict]:
    """``network-changed`` for the port a floating IP was associated with or removed from
    (both, when it moved); ``port(id)`` reads one port (None when it is gone)."""
    if not config.notify_nova_on_port_data_changes:
        return []
    before = (old or {}).get("port_id")
    after = (new or {}).get("port_id")
    if before == after:
        return []
    out = []
    for ident in dict.fromkeys(p for p in (before, after) if p):
        event = changed_event(port(ident))
        if event:
            out.append(event)
    return out


# ---- batching and retry -----------------------------------------------------------------

class BatchNotifier:
    """Queue events (O(1), never blocking) and send them from one thread: the first at
    once, then whatever came in the next ``interval`` seconds together; a failed send
    is retried with backoff while new events wait in a bounded queue."""

    def __init__(self, send: Callable[[list[dict]], str], *, interval: float,
                 retry_initial: float, retry_max: float, max_queue: int, max_batch: int,
                 name: str = "nova-notifier"):
        self._send = send
        self.interval = interval
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.max_queue = max_queue
        self.max_batch = max_batch
        self._pending: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.dropped = 0        # events lost to a full queue or refused by Nova
        self.delivered = 0      # events Nova accepted the request of
        self.retries = 0

    def queue(self, event: dict) -> None:
        """Add an event; when the queue is full the oldest one is dropped (logged)."""
        with self._cond:
            if len(self._pending) >= self.max_queue:
                lost = self._pending.popleft()
                self.dropped += 1
                LOG.warning("Nova notification queue full (%d events): dropped %s",
                            self.max_queue, lost)
            self._pending.append(event)
            self._cond.notify()

    def pending(self) -> int:
        """Events waiting to be sent."""
        with self._cond:
            return len(self._pending)

    def start(self) -> "BatchNotifier":
        """Start the sending thread."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop sending (a send in progress finishes); unsent events are logged."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._pending:
            LOG.warning("stopping with %d Nova notification(s) unsent", len(self._pending))

    def _pause(self, seconds: float) -> bool:
        """Wait ``seconds`` (or until stopped); True when stopping."""
        with self._cond:
            return self._cond.wait_for(lambda: self._stopping, timeout=seconds)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._stopping)
                if self._stopping:
                    return
                batch = [self._pending.popleft()
                         for _ in range(min(len(self._pending), self.max_batch))]
            if not self._deliver(batch):
                return
            if self.interval and self._pause(self.interval):
                return

    def _deliver(self, batch: list[dict]) -> bool:
        """Send one batch until Nova took or refused it; False when stopped meanwhile."""
        delay = self.retry_initial
        while True:
            try:
                outcome = self._send(batch)
            except Exception:   # noqa: BLE001 - a bug in a send must not end the thread
                LOG.exception("sending events to Nova failed: %s", batch)
                outcome = RETRY
            if outcome == SENT:
                self.delivered += len(batch)
                return True
            if outcome == DROP:
                self.dropped += len(batch)
                return True
            self.retries += 1
            LOG.warning("could not notify Nova of %d event(s); retrying in %.1fs",
                        len(batch), delay)
            if self._pause(delay):
                with self._cond:
                    self._pending.extendleft(reversed(batch))
                return False
            delay = min(delay * 2, self.retry_max)


# ---- talking to Nova --------------------------------------------------------------------

class NovaClient:
    """POST /os-server-external-events through a keystoneauth session (password plugin
    from ``[nova]``; compute endpoint from the catalog, or ``endpoint_override``)."""

    def __init__(self, config: NovaConfig):
        from keystoneauth1 import session as ks_session
        from keystoneauth1.identity import v3
        self.config = config
        auth = v3.Password(auth_url=config.auth_url, username=config.username,
                           password=config.password, project_name=config.project_name,
                           user_domain_name=config.user_domain_name,
                           project_domain_name=config.project_domain_name)
        verify = config.cafile or not config.insecure
        self.session = ks_session.Session(auth=auth, verify=verify, timeout=config.timeout)

    def send(self, events: list[dict]) -> str:
        """One request; SENT, RETRY or DROP (see the module's docstring)."""
        from keystoneauth1 import exceptions as ks_exc
        c = self.config
        try:
            resp = self.session.post(
                "/os-server-external-events", json={"events": events}, raise_exc=False,
                endpoint_filter={"service_type": "compute", "interface": c.endpoint_type,
                                 "region_name": c.region_name},
                endpoint_override=c.endpoint_override,
                headers={"OpenStack-API-Version": f"compute {API_VERSION}",
                         "X-OpenStack-Nova-API-Version": API_VERSION})
        except ks_exc.ClientException as exc:     # unreachable, no endpoint, login refused
            LOG.warning("Nova unreachable: %s", exc)
            return RETRY
        code = resp.status_code
        if code in (200, 207):
            for result in (resp.json().get("events") or []):
                if result.get("code") != 200:
                    LOG.warning("Nova event %s returned with failed status", result)
                else:
                    LOG.info("Nova event response: %s", result)
            return SENT
        if code == 404:
            LOG.debug("Nova returned NotFound for events: %s", events)
            return SENT
        if code in (401, 408, 429) or code >= 500:
            LOG.warning("Nova answered %d to events: %s", code, resp.text[:300])
            return RETRY
        LOG.error("Nova refused events (%d): %s: %s", code, resp.text[:300], events)
        return DROP


class NovaNotifier:
    """The server's notifier: hooks on port and floating IP writes queue events."""

    def __init__(self, config: NovaConfig, services, send: Callable[[list[dict]], str] | None = None):
        self.config = config
        self.services = services
        self.batch = BatchNotifier(send or NovaClient(config).send,
                                   interval=config.send_events_interval,
                                   retry_initial=config.retry_initial,
                                   retry_max=config.retry_max, max_queue=config.max_queue,
                                   max_batch=config.max_batch)
        services.add_hook("ports_changed", self.port_changed)
        services.add_hook("floatingips_changed", self.floatingip_changed)

    def port_changed(self, old: dict | None, new: dict | None) -> None:
        """After a port write: queue what Nova should hear."""
        for event in port_events(old, new, self.config):
            self.batch.queue(event)

    def floatingip_changed(self, old: dict | None, new: dict | None) -> None:
        """After a floating IP write: network-changed for the port(s) it left or joined."""
        ports = self.services["ports"]

        def port(ident: str) -> dict | None:
            found = ports.get(ident)
            return found[0] if found else None
        for event in floatingip_events(old, new, self.config, port):
            self.batch.queue(event)

    def start(self) -> None:
        self.batch.start()

    def stop(self) -> None:
        self.batch.stop()
