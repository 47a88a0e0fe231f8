"""Prometheus metrics of the control plane (its own registry, served on ``/metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class ControlPlaneMetrics:
    """Every metric the control plane exports.

    ``outlast_controlplane_http_requests_total`` counts every API request (everything except
    ``/health`` and ``/metrics``), including refused and unmatched ones: the harness relies on it
    to prove that named-tunnel reconnects cause zero control-plane requests.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "outlast_controlplane_http_requests",
            "API requests by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.slow_clients = Counter(
            "outlast_controlplane_slow_clients",
            "API connections or requests cut by a slow-client limit, by reason "
            "(header_timeout, body_timeout, connection_cap).",
            ["reason"],
            registry=self.registry,
        )
        self.broker_connected = Gauge(
            "outlast_controlplane_broker_connected",
            "1 while the control plane holds a session with the MQTT broker.",
            registry=self.registry,
        )
        self.broker_connects = Counter(
            "outlast_controlplane_broker_connects",
            "Successful (re)connections to the MQTT broker.",
            registry=self.registry,
        )
        self.config_version = Gauge(
            "outlast_controlplane_config_version",
            "Highest configuration version in the database.",
            registry=self.registry,
        )
        self.config_published_version = Gauge(
            "outlast_controlplane_config_published_version",
            "Highest configuration version published to the broker in the current session.",
            registry=self.registry,
        )
        self.config_messages = Counter(
            "outlast_controlplane_config_messages_published",
            "Retained configuration messages published, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.edge_events = Counter(
            "outlast_controlplane_edge_events",
            "Connection events received from edges, by event and outcome.",
            ["event", "outcome"],
            registry=self.registry,
        )
        self.legacy_records_expired = Counter(
            "outlast_controlplane_legacy_records_expired",
            "Legacy tunnels' DNS records removed after the legacy DNS grace period.",
            registry=self.registry,
        )
        self.active_connections = Gauge(
            "outlast_controlplane_active_connections",
            "Connector connections currently reported by the edges' snapshots.",
            registry=self.registry,
        )
