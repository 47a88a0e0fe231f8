"""Prometheus metrics of the anycast front (its own registry, never the global one).

``anycast_pop_routed`` is read from the route table at scrape time, so it cannot drift.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

RoutedPops = Callable[[], dict[str, bool]]
"""Each PoP's current route (True = routed)."""


class _RoutedCollector(Collector):
    def __init__(self, routed: RoutedPops) -> None:
        self.routed = routed

    def collect(self) -> Iterable[Metric]:
        gauge = GaugeMetricFamily(
            "anycast_pop_routed", "1 while new connections may go to the PoP", labels=["pop"]
        )
        for pop, routed in self.routed().items():
            gauge.add_metric([pop], 1.0 if routed else 0.0)
        yield gauge


class AnycastMetrics:
    """Counters incremented by the relay, the health checker and the router."""

    def __init__(self, pops: Iterable[str], routed: RoutedPops) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.connections = Counter(
            "anycast_connections",
            "Visitor TCP connections relayed, by visitor region and PoP",
            ["region", "pop"],
            registry=self.registry,
        )
        self.dns_queries = Counter(
            "anycast_dns_queries",
            "DNS queries relayed, by transport (udp/tcp) and PoP",
            ["transport", "pop"],
            registry=self.registry,
        )
        self.unroutable = Counter(
            "anycast_unroutable",
            "Connections or queries dropped because no PoP was routed, by kind",
            ["kind"],
            registry=self.registry,
        )
        self.route_changes = Counter(
            "anycast_route_changes",
            "Times a PoP's route was withdrawn or announced",
            ["pop", "change"],
            registry=self.registry,
        )
        self.dial_failures = Counter(
            "anycast_dial_failures",
            "Relay connections to a PoP that failed (refused, unreachable, timed out)",
            ["pop"],
            registry=self.registry,
        )
        self.syn_retransmissions = Counter(
            "anycast_syn_retransmissions",
            "Dials tried again after a visitor's SYN retransmission timeout (the first PoP "
            "chosen was down or no PoP was routed)",
            ["kind"],
            registry=self.registry,
        )
        for kind in ("visitor", "dns_udp", "dns_tcp"):
            self.unroutable.labels(kind=kind)
            self.syn_retransmissions.labels(kind=kind)
        for pop in pops:
            self.dial_failures.labels(pop=pop)
            for change in ("withdrawn", "announced"):
                self.route_changes.labels(pop=pop, change=change)
        self.registry.register(_RoutedCollector(routed))

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
