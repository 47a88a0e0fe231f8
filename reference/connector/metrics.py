"""Connector metrics (own Prometheus registry) and readiness state."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

NAMESPACE = "outlast_tunnel"


@dataclass
class SlotInfo:
    """What ``/connections`` shows about one registered HA connection."""

    conn_index: int
    connection_id: str
    location: str
    edge: str


@dataclass
class ConnectorMetrics:
    """All connector metrics plus the registered-connection table behind ``/ready``."""

    connector_id: str
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    slots: dict[int, SlotInfo] = field(default_factory=dict)

    def __post_init__(self) -> None:
        r = self.registry
        self.ha_connections = Gauge(
            "ha_connections",
            "Registered HA connections (not attempts)",
            namespace=NAMESPACE,
            registry=r,
        )
        self.total_requests = Counter(
            "total_requests", "Visitor requests proxied", namespace=NAMESPACE, registry=r
        )
        self.request_errors = Counter(
            "request_errors", "Errors proxying to the origin", namespace=NAMESPACE, registry=r
        )
        self.concurrent_requests = Gauge(
            "concurrent_requests", "Requests in flight", namespace=NAMESPACE, registry=r
        )
        self.response_by_code = Counter(
            "response_by_code",
            "Responses by HTTP status",
            ["status_code"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.server_locations = Gauge(
            "server_locations",
            "Edge location per connection index (1 = current, 0 = previous)",
            ["connection_id", "edge_location"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.register_success = Counter(
            "register_success", "Successful registrations", namespace=NAMESPACE, registry=r
        )
        self.register_fail = Counter(
            "register_fail",
            "Failed registrations by reason",
            ["reason"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.heartbeat_timeouts = Counter(
            "heartbeat_timeouts",
            "Connections closed because the edge went silent",
            namespace=NAMESPACE,
            registry=r,
        )
        self._locations: dict[int, str] = {}

    def registered(self, info: SlotInfo) -> None:
        self.slots[info.conn_index] = info
        previous = self._locations.get(info.conn_index)
        if previous is not None and previous != info.location:
            self.server_locations.labels(str(info.conn_index), previous).set(0)
        self.server_locations.labels(str(info.conn_index), info.location).set(1)
        self._locations[info.conn_index] = info.location
        self.register_success.inc()
        self.ha_connections.set(len(self.slots))

    def unregistered(self, conn_index: int, connection_id: str | None = None) -> None:
        """Slot ``conn_index`` lost its connection (only if it is still ``connection_id``)."""
        current = self.slots.get(conn_index)
        if current is None or (connection_id and current.connection_id != connection_id):
            return
        del self.slots[conn_index]
        self.ha_connections.set(len(self.slots))

    def registration_failed(self, reason: str) -> None:
        self.register_fail.labels(_reason_label(reason)).inc()

    @property
    def ready_connections(self) -> int:
        return len(self.slots)

    def ready_body(self) -> dict[str, object]:
        ready = self.ready_connections
        return {
            "status": 200 if ready else 503,
            "readyConnections": ready,
            "connectorId": self.connector_id,
        }

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _reason_label(reason: str) -> str:
    """Bounded label values: the cause text up to its first colon detail, lower-cased."""
    text = reason.strip().lower() or "unknown"
    return text[:60]
