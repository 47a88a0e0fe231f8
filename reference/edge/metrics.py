"""Prometheus metrics of one edge PoP (its own registry, never the global one).

Gauges that mirror live state (connections per tunnel, config version and age, broker link) are
computed at scrape time from the objects themselves, so they can never drift from the truth.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from reference.edge.config_cache import ConfigCache

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ConnectionCounts(Protocol):
    """What the metrics read from the connection registry."""

    def counts_by_tunnel(self) -> dict[str, int]: ...
    def __len__(self) -> int: ...


class _LiveStateCollector(Collector):
    def __init__(self, metrics: EdgeMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        m = self.metrics
        connections = GaugeMetricFamily(
            "outlast_edge_tunnel_connections",
            "Registered tunnel connections at this edge, per tunnel",
            labels=["tunnel_id"],
        )
        counts = m.connections.counts_by_tunnel()
        for tunnel in m.cache.tunnels():
            if not tunnel.deleted:
                counts.setdefault(tunnel.tunnel_id, 0)
        for tunnel_id, count in sorted(counts.items()):
            connections.add_metric([tunnel_id], count)
        yield connections
        yield GaugeMetricFamily(
            "outlast_edge_connections",
            "Registered tunnel connections at this edge (all tunnels)",
            value=len(m.connections),
        )
        yield GaugeMetricFamily(
            "outlast_edge_config_version",
            "Highest configuration version held",
            value=m.cache.version,
        )
        yield GaugeMetricFamily(
            "outlast_edge_config_persisted_version",
            "Configuration version last written to the on-disk cache",
            value=m.persisted_version(),
        )
        yield GaugeMetricFamily(
            "outlast_edge_config_entries",
            "Configuration objects held (tombstones included)",
            value=len(m.cache),
        )
        if m.cache.applied_at is not None:
            yield GaugeMetricFamily(
                "outlast_edge_config_age_seconds",
                "Seconds since the last configuration update was applied (survives restarts)",
                value=max(0.0, time.time() - m.cache.applied_at),
            )
        yield GaugeMetricFamily(
            "outlast_edge_broker_connected",
            "1 while subscribed to the configuration broker",
            value=1.0 if m.broker_connected() else 0.0,
        )


class EdgeMetrics:
    """All metrics of one edge. Counters are incremented by the components; gauges are read live."""

    def __init__(
        self,
        cache: ConfigCache,
        connections: ConnectionCounts,
        *,
        persisted_version: Callable[[], int] = lambda: 0,
        broker_connected: Callable[[], bool] = lambda: False,
    ) -> None:
        self.cache = cache
        self.connections = connections
        self.persisted_version = persisted_version
        self.broker_connected = broker_connected
        self.registry = CollectorRegistry(auto_describe=True)
        self.registrations = Counter(
            "outlast_edge_registrations",
            "Registration attempts by result (ok/failed) and reason",
            ["result", "reason"],
            registry=self.registry,
        )
        self.unregistrations = Counter(
            "outlast_edge_unregistrations",
            "Registered connections that ended, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.visitor_requests = Counter(
            "outlast_edge_visitor_requests",
            "Visitor HTTP requests by response status",
            ["status"],
            registry=self.registry,
        )
        self.visitor_retries = Counter(
            "outlast_edge_visitor_retries",
            "Idempotent visitor requests retried on another connection after a failure "
            "before the response started",
            registry=self.registry,
        )
        self.control_plane_calls = Counter(
            "outlast_edge_control_plane_calls",
            "Calls this edge made to the control plane (always 0 for named tunnels)",
            ["kind"],
            registry=self.registry,
        )
        self.control_plane_calls.labels(kind="named").inc(0)
        self.control_plane_calls.labels(kind="legacy").inc(0)
        self.config_updates = Counter(
            "outlast_edge_config_updates",
            "Configuration payloads received, by outcome (applied/stale/invalid/...)",
            ["outcome"],
            registry=self.registry,
        )
        self.dns_queries = Counter(
            "outlast_edge_dns_queries",
            "DNS replies sent, by transport and rcode",
            ["transport", "rcode"],
            registry=self.registry,
        )
        self.forwarded = Counter(
            "outlast_edge_forwarded_requests",
            "Visitor requests this PoP had no connection for and forwarded to a peer PoP, by "
            "peer and outcome (ok: the peer answered; unreachable: the peer could not be used)",
            ["peer", "outcome"],
            registry=self.registry,
        )
        self.served_for_peers = Counter(
            "outlast_edge_served_for_peer_requests",
            "Requests a peer PoP forwarded here, by the PoP they came from",
            ["peer"],
            registry=self.registry,
        )
        self.visitor_slow_clients = Counter(
            "outlast_edge_visitor_slow_clients",
            "Visitor connections or requests cut by a slow-client limit, by reason "
            "(header_timeout, body_timeout, connection_cap; see reference/http_limits.py)",
            ["reason"],
            registry=self.registry,
        )
        self.tunnel_digests = Counter(
            "outlast_edge_tunnel_digests",
            "HTTP response bodies relayed from a tunnel, by the tunnel digest's verdict "
            "(verified; absent: the connector sent none, e.g. cloudflared's transport; "
            "reference/wire/body_digest.py)",
            ["result"],
            registry=self.registry,
        )
        for result in ("verified", "absent"):
            self.tunnel_digests.labels(result=result).inc(0)
        self.tunnel_digest_mismatches = Counter(
            "outlast_edge_tunnel_digest_mismatches",
            "HTTP response bodies whose bytes did not match the connector's SHA-256 of them; "
            "the visitor's response was aborted (never shown as complete)",
            registry=self.registry,
        )
        self.registry.register(_LiveStateCollector(self))

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
