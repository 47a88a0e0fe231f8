"""The route table on a clock: every input is stamped with the current time, and every state
change it causes is logged and counted. The relay, the health checker and the admin API all
go through one :class:`Router`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from reference.anycast.metrics import AnycastMetrics
from reference.anycast.routing import Route, RouteTable
from reference.logs import log_event

logger = logging.getLogger("reference.anycast")

Clock = Callable[[], float]


class Router:
    """A :class:`RouteTable` with a clock, structured logs and metrics."""

    def __init__(self, table: RouteTable, clock: Clock) -> None:
        self.table = table
        self.clock = clock
        self.metrics = AnycastMetrics(table.pops, self.routed_pops)

    def choose(self, region: str | None = None) -> Route:
        """Where a new connection goes now (from ``region``, when a visitor tries again)."""
        route = self.table.choose(self.clock(), region)
        self._publish()
        return route

    def observe(self, pop: str, ok: bool, *, source: str, detail: str = "") -> None:
        """A health check result, or (``source="dial"``) a relay dial that failed."""
        if source == "dial" and not ok:
            self.metrics.dial_failures.labels(pop=pop).inc()
        self.table.observe(pop, ok, self.clock(), source=source, detail=detail)
        self._publish()

    def withdraw(self, pop: str) -> None:
        """Operator withdrawal of ``pop`` (KeyError for an unknown PoP)."""
        log_event(logger, "operator withdraws PoP", pop=pop)
        self.table.withdraw(pop, self.clock())
        self._publish()

    def announce(self, pop: str) -> None:
        """Undo an operator withdrawal of ``pop`` (KeyError for an unknown PoP)."""
        log_event(logger, "operator announces PoP", pop=pop)
        self.table.announce(pop, self.clock())
        self._publish()

    def snapshot(self) -> dict[str, Any]:
        snapshot = self.table.snapshot(self.clock())
        self._publish()
        return snapshot

    def routed_pops(self) -> dict[str, bool]:
        now = self.clock()
        routed = {pop: self.table.routed(pop, now) for pop in self.table.pops}
        self._publish()
        return routed

    def _publish(self) -> None:
        now = self.clock()
        for change in self.table.changes():
            if change.route_flipped:
                label = "announced" if change.routed else "withdrawn"
                self.metrics.route_changes.labels(pop=change.pop, change=label).inc()
            log_event(
                logger,
                f"route {'announced' if change.routed else 'withdrawn'}"
                if change.route_flipped
                else "PoP state changed",
                logging.WARNING if change.route_flipped and not change.routed else logging.INFO,
                pop=change.pop,
                signal=change.signal,
                old=change.old,
                new=change.new,
                routed=change.routed,
                seconds_ago=round(max(0.0, now - change.at), 3),
            )
