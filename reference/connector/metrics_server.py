"""The connector's metrics server: ``/metrics``, ``/ready``, ``/healthcheck``, ``/connections``."""

from __future__ import annotations

import contextlib
import errno
from dataclasses import asdict

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from reference.connector.metrics import ConnectorMetrics

#: Tried in order when no ``--metrics`` address is given (then any free port).
DEFAULT_PORTS = (20241, 20242, 20243, 20244, 20245)


def metrics_app(metrics: ConnectorMetrics) -> web.Application:
    async def exposition(request: web.Request) -> web.Response:
        return web.Response(
            body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def ready(request: web.Request) -> web.Response:
        body = metrics.ready_body()
        return web.json_response(body, status=int(str(body["status"])))

    async def healthcheck(request: web.Request) -> web.Response:
        return web.Response(text="OK\n")

    async def connections(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "connectorId": metrics.connector_id,
                "connections": [asdict(s) for _, s in sorted(metrics.slots.items())],
            }
        )

    app = web.Application()
    app.router.add_get("/metrics", exposition)
    app.router.add_get("/ready", ready)
    app.router.add_get("/healthcheck", healthcheck)
    app.router.add_get("/connections", connections)
    return app


class MetricsServer:
    """Async context manager serving ``metrics_app`` on ``address`` (or a default port)."""

    def __init__(self, metrics: ConnectorMetrics, address: tuple[str, int] | None) -> None:
        self.metrics = metrics
        self.address = address
        self.bound: tuple[str, int] | None = None
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> MetricsServer:
        self._runner = web.AppRunner(metrics_app(self.metrics), access_log=None)
        await self._runner.setup()
        candidates = [self.address] if self.address else [("127.0.0.1", p) for p in DEFAULT_PORTS]
        if not self.address:
            candidates.append(("127.0.0.1", 0))
        last_error: OSError | None = None
        for host, port in candidates:
            site = web.TCPSite(self._runner, host, port)
            try:
                await site.start()
            except OSError as exc:
                last_error = exc
                if exc.errno != errno.EADDRINUSE or self.address:
                    break
                continue
            server = site._server
            sockets = getattr(server, "sockets", None) or []
            self.bound = (host, sockets[0].getsockname()[1] if sockets else port)
            return self
        await self._runner.cleanup()
        raise OSError(
            f"cannot start the metrics server on {candidates[-1][0]}:{candidates[-1][1]}: "
            f"{last_error}; choose another address with --metrics HOST:PORT"
        )

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await self._runner.cleanup()
