"""The control plane's aiohttp application and the server that runs it.

``ControlPlane(data_dir, ...)`` is an async context manager owning the store, the CA, the admin
token, the broker link and the HTTP site; ``serve_forever`` runs it until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from reference.broker.auth import BrokerCredential
from reference.broker.tls import client_context
from reference.config_signing import PRIVATE_KEY_FILE, load_or_create_signing_key
from reference.controlplane.api import ControlPlaneApi, failure
from reference.controlplane.broker_link import BrokerLink
from reference.controlplane.connections import ConnectionView
from reference.controlplane.errors import ApiProblem, ErrorCode
from reference.controlplane.legacy import DEFAULT_LEGACY_DNS_GRACE, LegacyDnsExpiry
from reference.controlplane.metrics import ControlPlaneMetrics
from reference.controlplane.routes import ROUTES, V4
from reference.controlplane.secrets_dir import load_or_create_admin_token, load_or_create_ca
from reference.controlplane.store import Store
from reference.http_limits import GuardedSite, SlowClientLimits, body_timeout_middleware
from reference.logs import log_event

logger = logging.getLogger("outlast.controlplane")


def count_slow_client(metrics: ControlPlaneMetrics) -> Callable[[str], None]:
    """The slow-client hook: count the cut in ``outlast_controlplane_slow_clients_total``."""
    return lambda reason: metrics.slow_clients.labels(reason=reason).inc()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
UNCOUNTED_PATHS = frozenset({"/health", "/metrics"})
MAX_BODY = 1024 * 1024


def _route_label(request: web.Request) -> str:
    info = request.match_info
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None) if route is not None else None
    if resource is None or getattr(info, "http_exception", None) is not None:
        return "unmatched"
    return str(resource.canonical)


def make_middlewares(metrics: ControlPlaneMetrics) -> list[Middleware]:
    @web.middleware
    async def count_and_log(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.monotonic()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status  # e.g. 404 for a path outside the API: counted as such
            raise
        finally:
            if request.path not in UNCOUNTED_PATHS:
                route = _route_label(request)
                metrics.http_requests.labels(request.method, route, str(status)).inc()
                log_event(
                    logger,
                    "request",
                    method=request.method,
                    route=route,
                    status=status,
                    ms=round((time.monotonic() - started) * 1000, 1),
                )

    @web.middleware
    async def envelope_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiProblem as problem:
            return web.json_response(
                failure(int(problem.code), problem.message), status=problem.status
            )
        except web.HTTPException as exc:
            if not request.path.startswith(V4):
                raise
            if exc.status == 404:
                code, message = ErrorCode.NO_ROUTE, f"no route for {request.method} {request.path}"
            elif exc.status == 405:
                code = ErrorCode.METHOD_NOT_ALLOWED
                message = f"{request.method} is not allowed on {request.path}"
            elif exc.status == 413:
                code = ErrorCode.BODY_TOO_LARGE
                message = f"request body is larger than {MAX_BODY} bytes"
            else:
                raise
            return web.json_response(failure(int(code), message), status=exc.status)
        except Exception:
            logger.exception("unhandled error in %s %s", request.method, request.path)
            return web.json_response(
                failure(int(ErrorCode.INTERNAL), "internal error; see the control plane log"),
                status=500,
            )

    return [count_and_log, envelope_errors]


def create_app(
    api: ControlPlaneApi,
    metrics: ControlPlaneMetrics,
    broker: BrokerLink | None = None,
    limits: SlowClientLimits | None = None,
) -> web.Application:
    """The aiohttp application serving the v4 API, ``/health`` and ``/metrics``."""
    middlewares = make_middlewares(metrics)
    if limits is not None:
        middlewares.append(body_timeout_middleware(limits, count_slow_client(metrics)))
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY)
    for spec in ROUTES:
        app.router.add_route(spec.method, spec.path, api.bind(spec))

    async def health(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "ok",
                "broker": "disabled"
                if broker is None
                else ("connected" if broker.connected else "disconnected"),
                "config_version": api.store.config_version(),
                "published_version": broker.published_version if broker else None,
            }
        )

    async def prometheus(request: web.Request) -> web.Response:
        metrics.config_version.set(api.store.config_version())
        metrics.active_connections.set(api.view.count())
        return web.Response(
            body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app.router.add_get("/health", health)
    app.router.add_get("/metrics", prometheus)
    return app


class ControlPlane:
    """Everything one control plane process runs, as an async context manager."""

    def __init__(
        self,
        data_dir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        broker: tuple[str, int] | None = None,
        tunnel_limit: int = 1000,
        broker_backoff_cap: float = 2.0,
        legacy_dns_grace: float = DEFAULT_LEGACY_DNS_GRACE,
        signing_key: Path | None = None,
        broker_credentials: Path | None = None,
        broker_ca: Path | None = None,
        limits: SlowClientLimits | None = None,
    ) -> None:
        self.broker_ca = broker_ca
        self.limits = limits or SlowClientLimits()
        self.broker_credentials = broker_credentials
        self.data_dir = Path(data_dir)
        self.signing_key = Path(signing_key) if signing_key else self.data_dir / PRIVATE_KEY_FILE
        self.host = host
        self.port = port
        self.broker_address = broker
        self.tunnel_limit = tunnel_limit
        self.broker_backoff_cap = broker_backoff_cap
        self.legacy_dns_grace = legacy_dns_grace
        self.legacy_expiry: LegacyDnsExpiry | None = None
        self.metrics = ControlPlaneMetrics()
        self.view = ConnectionView()
        self.store: Store | None = None
        self.broker: BrokerLink | None = None
        self._runner: web.AppRunner | None = None
        self._broker_task: asyncio.Task[None] | None = None
        self._legacy_task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        admin_token = load_or_create_admin_token(self.data_dir)
        ca = load_or_create_ca(self.data_dir)
        signer = load_or_create_signing_key(self.signing_key)
        self.store = Store(self.data_dir / "controlplane.db")
        if self.broker_address is not None:
            host, port = self.broker_address
            self.broker = BrokerLink(
                host,
                port,
                self.store,
                self.view,
                self.metrics,
                backoff_cap=self.broker_backoff_cap,
                signer=signer,
                credential=(
                    BrokerCredential.load(self.broker_credentials)
                    if self.broker_credentials is not None
                    else None
                ),
                tls=client_context(self.broker_ca) if self.broker_ca is not None else None,
            )
        if self.broker is not None:
            # Connections are only visible through the edges' snapshots (via the broker), so
            # without a broker a legacy tunnel's record is never judged disconnected.
            link = self.broker
            self.legacy_expiry = LegacyDnsExpiry(
                self.store,
                self.view,
                link,
                grace=self.legacy_dns_grace,
                broker_connected=lambda: link.connected,
                on_expired=lambda _record: self.metrics.legacy_records_expired.inc(),
            )
        api = ControlPlaneApi(
            self.store,
            self.view,
            ca,
            admin_token,
            tunnel_limit=self.tunnel_limit,
            notifier=self.broker,
            legacy_expiry=self.legacy_expiry,
            signer=signer,
        )
        app = create_app(api, self.metrics, self.broker, self.limits)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, **self.limits.runner_kwargs()
        )
        await self._runner.setup()
        site = GuardedSite(
            self._runner, self.host, self.port, self.limits, count_slow_client(self.metrics)
        )
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        if self.broker is not None:
            self._broker_task = asyncio.create_task(self.broker.run(), name="broker-link")
        if self.legacy_expiry is not None:
            self._legacy_task = asyncio.create_task(self.legacy_expiry.run(), name="legacy-dns")
        log_event(
            logger,
            "control plane listening",
            url=self.url,
            data_dir=str(self.data_dir),
            tunnel_limit=self.tunnel_limit,
            legacy_dns_grace_s=self.legacy_dns_grace,
            broker=None
            if self.broker_address is None
            else f"{self.broker_address[0]}:{self.broker_address[1]}",
        )

    async def stop(self) -> None:
        if self._legacy_task is not None:
            self._legacy_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._legacy_task
            self._legacy_task = None
        if self._broker_task is not None:
            self._broker_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._broker_task
            self._broker_task = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.store is not None:
            self.store.close()
            self.store = None
        log_event(logger, "control plane stopped")

    async def __aenter__(self) -> ControlPlane:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def serve_forever(control_plane: ControlPlane) -> None:
    """Run until SIGTERM or SIGINT, then stop cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with control_plane:
        await stop.wait()
