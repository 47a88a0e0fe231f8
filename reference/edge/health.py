"""``/metrics`` and ``/ready`` of an edge (served on --metrics-listen and, for requests whose
Host is an IP address or ``localhost``, on the visitor listener too)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from reference.edge.metrics import CONTENT_TYPE, EdgeMetrics
from reference.edge.visitor import LocalHandler
from reference.edge.visitor_errors import POP_HEADER


@dataclass
class Readiness:
    """What ``/ready`` reports. Ready = the edge can route: it holds configuration (from its
    cache or the broker) or it has subscribed to the broker at least once (an empty system)."""

    pop: str
    config_version: Callable[[], int]
    broker_connected: Callable[[], bool]
    subscribed_once: Callable[[], bool]
    connections: Callable[[], int]
    peers: Callable[[], dict[str, Any]] = dict

    def state(self) -> dict[str, Any]:
        ready = self.config_version() > 0 or self.subscribed_once()
        return {
            "status": 200 if ready else 503,
            "pop": self.pop,
            "config_version": self.config_version(),
            "broker_connected": self.broker_connected(),
            "connections": self.connections(),
            "peers": self.peers(),
        }


def health_routes(metrics: EdgeMetrics, readiness: Readiness) -> dict[str, LocalHandler]:
    """Handlers by path: ``/metrics``, ``/ready``."""

    async def metrics_handler(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=metrics.render(),
            headers={"Content-Type": CONTENT_TYPE, POP_HEADER: readiness.pop},
        )

    async def ready_handler(request: web.Request) -> web.StreamResponse:
        state = readiness.state()
        return web.json_response(state, status=state["status"], headers={POP_HEADER: readiness.pop})

    return {"/metrics": metrics_handler, "/ready": ready_handler}


def health_application(routes: dict[str, LocalHandler]) -> web.Application:
    """A small app serving only the health routes (for --metrics-listen)."""
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    return app
