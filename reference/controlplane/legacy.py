"""Legacy ("classic") tunnels on the control plane: the registration an edge asks for
synchronously, and the removal of a disconnected legacy tunnel's DNS record after a grace period.

The legacy model conflates the persistent objects (DNS record) with the ephemeral ones
(connections): every registration goes through here, and a tunnel that stays disconnected loses
its record. Named tunnels never touch this module. See docs/legacy.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from pydantic import Field

from reference.controlplane import validation as v
from reference.controlplane.connections import ConnectionView
from reference.controlplane.errors import ApiProblem, ErrorCode
from reference.controlplane.models import DnsRecord, Zone
from reference.controlplane.store import Store
from reference.logs import log_event

logger = logging.getLogger("outlast.controlplane.legacy")

#: Default grace period (s) before a disconnected legacy tunnel's DNS record is removed: the
#: provider's classic FAQ says records were deleted "after 24-48 hours of being unregistered";
#: 24 h is the documented lower bound, so a stored run never loses a record a real one would keep.
DEFAULT_LEGACY_DNS_GRACE = 86_400.0


class LegacyRegisterBody(v.StrictBody):
    """``POST /zones/{zone_id}/legacy_tunnels``: sent by an edge for every legacy registration,
    with the user's API token (from the connector's cert.pem) as bearer token."""

    hostname: str = Field(description="Subdomain to route to the legacy tunnel (not the apex).")
    tunnel_id: str = Field(description="reference.legacy_tunnel.legacy_tunnel_id(zone, hostname)")
    connector_id: str = Field(description="The registering connector process (a UUID).")
    conn_index: int = Field(ge=0, le=255, description="HA connection index.")
    pop: str = Field(description="The edge PoP asking.")


def legacy_hostname(zone: Zone, raw: str) -> str:
    """The normalized hostname, or ApiProblem: outside the zone, the apex, or a wildcard."""
    host = v.hostname(raw)
    if not zone.contains(host):
        raise ApiProblem(
            ErrorCode.HOSTNAME_OUTSIDE_ZONE,
            f"hostname {host} is not in zone {zone.name}; use a name ending in .{zone.name}",
        )
    if host == zone.name:
        raise ApiProblem(
            ErrorCode.LEGACY_APEX,
            f"legacy tunnels only create records for subdomains, not the zone apex {zone.name}; "
            f"use a hostname like www.{zone.name}, or run a named tunnel (`outlast tunnel "
            "create` + `outlast tunnel route dns`), which may use the apex",
        )
    if host.startswith("*"):
        raise ApiProblem(
            ErrorCode.INVALID_NAME,
            f"legacy tunnels route one hostname, not a wildcard ({host}); name one subdomain",
        )
    return host


def refuse_other_connectors(
    view: ConnectionView, tunnel_id: str, hostname: str, connector_id: str
) -> None:
    """ApiProblem TUNNEL_ALREADY_ACTIVE when another connector holds connections of the tunnel
    (the classic edge's "There is already an active tunnel" refusal)."""
    others = sorted(
        {c.connector_id for c in view.for_tunnel(tunnel_id) if c.connector_id != connector_id}
    )
    if others:
        raise ApiProblem(
            ErrorCode.TUNNEL_ALREADY_ACTIVE,
            f'There is already an active tunnel for "{hostname}" (connector {others[0]}). Stop '
            "that connector first; to distribute requests between several origins use named "
            "tunnels behind a load balancer",
        )


class ConfigNotifier(Protocol):
    def notify(self) -> None: ...


class LegacyDnsExpiry:
    """Removes a legacy tunnel's DNS record once no edge has reported a connection of it for
    ``grace`` seconds.

    The control plane sees connections only through the edges' retained snapshots, so it judges
    only while its broker session is up; while it is down (or while the control plane itself is
    down) nothing is removed and every "disconnected since" clock starts again afterwards.
    """

    def __init__(
        self,
        store: Store,
        view: ConnectionView,
        notifier: ConfigNotifier,
        *,
        grace: float = DEFAULT_LEGACY_DNS_GRACE,
        broker_connected: Callable[[], bool],
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_expired: Callable[[DnsRecord], None] | None = None,
    ) -> None:
        if grace < 0:
            raise ValueError("the legacy DNS grace period must not be negative")
        self.store = store
        self.view = view
        self.notifier = notifier
        self.grace = grace
        self.broker_connected = broker_connected
        self.interval = interval if interval is not None else min(1.0, max(grace / 4, 0.05))
        self.clock = clock
        self.on_expired = on_expired
        self._since: dict[str, float] = {}

    def touch(self, tunnel_id: str) -> None:
        """A registration just succeeded: the tunnel is connected, whatever the view says yet."""
        self._since.pop(tunnel_id, None)

    def disconnected_since(self, tunnel_id: str) -> float | None:
        return self._since.get(tunnel_id)

    def sweep(self) -> list[DnsRecord]:
        """One pass: start, stop or act on every legacy tunnel's "disconnected since" clock."""
        if not self.broker_connected():
            self._since.clear()
            return []
        now = self.clock()
        expired: list[DnsRecord] = []
        live: set[str] = set()
        for tunnel, record in self.store.legacy_records():
            live.add(tunnel.id)
            if self.view.for_tunnel(tunnel.id):
                self._since.pop(tunnel.id, None)
                continue
            since = self._since.setdefault(tunnel.id, now)
            if now - since < self.grace:
                continue
            reason = (
                f"legacy tunnel had no connection for {self.grace:g} s (the legacy DNS grace "
                "period)"
            )
            deleted = self.store.expire_legacy_record(tunnel, record.id, reason)
            self._since.pop(tunnel.id, None)
            if deleted is not None:
                expired.append(deleted)
                log_event(
                    logger,
                    "legacy DNS record removed",
                    hostname=deleted.name,
                    tunnel_id=tunnel.id,
                    grace_s=self.grace,
                )
                if self.on_expired is not None:
                    self.on_expired(deleted)
        for tunnel_id in set(self._since) - live:
            del self._since[tunnel_id]
        if expired:
            self.notifier.notify()
        return expired

    async def run(self) -> None:
        """Sweep every ``interval`` seconds until cancelled."""
        while True:
            try:
                self.sweep()
            except Exception:  # a bug must not stop the sweeper for good
                logger.exception("legacy DNS sweep failed")
            await asyncio.sleep(self.interval)
