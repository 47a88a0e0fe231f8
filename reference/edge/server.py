"""An edge PoP assembled: config cache + broker link + tunnel listener + visitor proxy + DNS +
metrics. ``async with EdgeServer(config) as edge:`` runs it until the block ends."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import ssl
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from reference.broker.auth import BrokerCredential
from reference.broker.tls import client_context
from reference.config_signing import load_verifier
from reference.edge.cache_store import CachePersister, load_cache
from reference.edge.cloudflared_tunnel import accept_cloudflared
from reference.edge.config_cache import ConfigCache
from reference.edge.config_sync import ConfigSync
from reference.edge.connections import ConnectionRegistry, LiveConnection, utc_now_iso
from reference.edge.dns_answers import DnsIdentity
from reference.edge.dns_server import DnsServer
from reference.edge.forwarding import PeerForwarder
from reference.edge.health import Readiness, health_application, health_routes
from reference.edge.legacy_registration import DEFAULT_LEGACY_API_TIMEOUT, LegacyRegistrar
from reference.edge.metrics import EdgeMetrics
from reference.edge.peers import (
    REGISTRATIONS_PATH,
    PeerDirectory,
    RegistrationBoard,
    RegistrationPoller,
)
from reference.edge.registrar import Registrar
from reference.edge.registration import DEFAULT_UNKNOWN_TUNNEL_RETRY_AFTER
from reference.edge.visitor import VisitorProxy, VisitorSettings
from reference.http_limits import GuardedSite, SlowClientLimits
from reference.logs import log_event
from reference.wire import (
    EdgeTunnel,
    HeartbeatConfig,
    RefusalCause,
    RegistrationRequest,
    RegistrationResponse,
    accept_tunnel,
)

logger = logging.getLogger("reference.edge")

Address = tuple[str, int]


@dataclass(frozen=True)
class EdgeConfig:
    """Everything ``outlast serve edge`` is told on its command line."""

    pop: str
    tunnel_listen: Address
    visitor_listen: Address
    dns_listen: Address
    broker: Address
    cache_dir: Path
    tls_cert: Path
    tls_key: Path
    metrics_listen: Address | None = None
    heartbeat: HeartbeatConfig = field(default_factory=HeartbeatConfig)
    unknown_tunnel_retry_after: float = DEFAULT_UNKNOWN_TUNNEL_RETRY_AFTER
    registration_timeout: float = 10.0
    visitor: VisitorSettings = field(default_factory=VisitorSettings)
    shutdown_timeout: float = 3.0
    #: The control plane API (through the ``edge-<pop>-api`` link), for legacy registrations
    #: only; without it legacy registrations are refused permanently.
    api: Address | None = None
    legacy_api_timeout: float = DEFAULT_LEGACY_API_TIMEOUT
    #: Listener for the other PoPs: requests they forward here, and this PoP's registration
    #: summary (``reference.edge.peers``).
    peer_listen: Address | None = None
    #: Peer PoPs by name -> the address that reaches their peer listener (the
    #: ``pop-<this>-<peer>`` fault-proxy link in a stack).
    peers: dict[str, Address] = field(default_factory=dict)
    peer_poll_wait: float = 5.0
    #: The control plane's configuration public key (PEM): only messages it signed are applied
    #: and cached. Required: an edge without it could be configured by anyone on the broker.
    config_key: Path | None = None
    #: This PoP's broker username and password (``edge-<pop>``, JSON file, mode 0600); None
    #: connects anonymously (only an anonymous test broker accepts that).
    broker_credentials: Path | None = None
    #: CA certificate (PEM) of the broker's TLS listener: the broker link speaks TLS and checks
    #: the broker's certificate against it; None: plaintext MQTT.
    broker_ca: Path | None = None
    #: Second tunnel listener speaking cloudflared's HTTP/2 transport (docs/cloudflared.md); its
    #: certificate must name ``h2.cftunnel.com`` (default: ``tls_cert``/``tls_key``).
    cloudflared_listen: Address | None = None
    cloudflared_tls_cert: Path | None = None
    cloudflared_tls_key: Path | None = None


#: The SNI cloudflared's HTTP/2 transport sends; on the tunnel listener it selects that transport.
CLOUDFLARED_SNI = "h2.cftunnel.com"


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """TLS server context for the tunnel listener (TLS 1.2+)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(
            f"cannot load the edge TLS certificate {cert} / key {key}: {exc}. Pass the PEM files "
            "the stack issued (--tls-cert, --tls-key)"
        ) from exc
    return context


def _dns_visitor_ip(host: str) -> str:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "127.0.0.1"
    return host if address.version == 4 and not address.is_unspecified else "127.0.0.1"


class EdgeServer:
    """One running edge PoP."""

    def __init__(self, config: EdgeConfig) -> None:
        self.config = config
        self.pop = config.pop
        self.cache = ConfigCache()
        self.connections: ConnectionRegistry[EdgeTunnel] = ConnectionRegistry()
        self.persister: CachePersister | None = None
        self.sync: ConfigSync | None = None
        self.metrics: EdgeMetrics | None = None
        self.legacy: LegacyRegistrar | None = None
        self.tunnel_port = config.tunnel_listen[1]
        self.visitor_port = config.visitor_listen[1]
        self.dns_port = config.dns_listen[1]
        self.metrics_port = config.metrics_listen[1] if config.metrics_listen else None
        self.peer_port = config.peer_listen[1] if config.peer_listen else None
        self.cloudflared_port = config.cloudflared_listen[1] if config.cloudflared_listen else None
        self.board = RegistrationBoard(config.pop, self.connections.counts_by_tunnel)
        self.peers = PeerDirectory(tuple(sorted(config.peers)))
        self._stopping = False
        self._stack = contextlib.AsyncExitStack()
        self._tunnel_server: asyncio.Server | None = None
        self._cloudflared_server: asyncio.Server | None = None
        #: SNI of each TLS connection on the tunnel listener (filled during the handshake).
        self._sni_names: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        self._tunnel_tasks: set[asyncio.Task[None]] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._retired: set[str] = set()
        self.registrar = Registrar(
            config.pop,
            lambda: self.cache,
            self._on_config_payload,
            unknown_tunnel_retry_after=config.unknown_tunnel_retry_after,
        )

    # ---- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        tls = server_tls_context(cfg.tls_cert, cfg.tls_key)
        if cfg.config_key is None:
            raise ValueError("no configuration key: pass the control plane's config-signing.pub")
        verifier = load_verifier(cfg.config_key)
        self.cache = await asyncio.to_thread(load_cache, cfg.cache_dir, verifier)
        self.persister = await self._stack.enter_async_context(
            CachePersister(self.cache, cfg.cache_dir)
        )
        self.sync = ConfigSync(
            self.pop,
            cfg.broker[0],
            cfg.broker[1],
            on_payload=self._on_config_payload,
            snapshot=self.connections.snapshot_entries,
            credential=(
                BrokerCredential.load(cfg.broker_credentials)
                if cfg.broker_credentials is not None
                else None
            ),
            tls=client_context(cfg.broker_ca) if cfg.broker_ca is not None else None,
        )
        persister, sync = self.persister, self.sync
        metrics = EdgeMetrics(
            self.cache,
            self.connections,
            persisted_version=lambda: persister.persisted_version,
            broker_connected=lambda: sync.connected,
        )
        self.metrics = metrics
        self.registrar.state.metrics = metrics
        self.registrar.state.broker_connected = lambda: sync.connected
        if cfg.api is not None:
            self.legacy = await self._stack.enter_async_context(
                LegacyRegistrar(
                    cfg.api,
                    self.pop,
                    timeout=cfg.legacy_api_timeout,
                    on_call=lambda kind: metrics.control_plane_calls.labels(kind=kind).inc(),
                )
            )
            self.registrar.state.legacy = self.legacy
        self.connections.on_change(sync.snapshot_changed)
        self.connections.on_change(self.board.changed)
        sync_task = asyncio.create_task(sync.run(), name="edge-config-sync")
        self._stack.push_async_callback(self._stop_sync, sync_task)

        dns = DnsServer(
            self.cache,
            DnsIdentity(self.pop, _dns_visitor_ip(cfg.visitor_listen[0])),
            cfg.dns_listen[0],
            cfg.dns_listen[1],
            observer=lambda transport, rcode: metrics.dns_queries.labels(
                transport=transport, rcode=str(rcode)
            ).inc(),
        )
        await self._stack.enter_async_context(dns)
        self.dns_port = dns.port

        readiness = Readiness(
            pop=self.pop,
            config_version=lambda: self.cache.version,
            broker_connected=lambda: sync.connected,
            subscribed_once=sync.subscribed.is_set,
            connections=lambda: len(self.connections),
            peers=lambda: self.peers.snapshot(asyncio.get_running_loop().time()),
        )
        routes = health_routes(metrics, readiness)
        forwarder = None
        if cfg.peers:
            forwarder = await self._stack.enter_async_context(PeerForwarder(self.pop, cfg.peers))
            await self._stack.enter_async_context(
                RegistrationPoller(self.pop, cfg.peers, self.peers, wait=cfg.peer_poll_wait)
            )
        proxy = VisitorProxy(
            self.pop,
            self.cache,
            self.connections,
            metrics,
            settings=cfg.visitor,
            local_routes=routes,
            peers=self.peers,
            forwarder=forwarder,
        )
        if cfg.peer_listen is not None:
            self.peer_port = await self._serve_http(
                proxy.peer_application({REGISTRATIONS_PATH: self.board.handle}), cfg.peer_listen
            )
            # Runs before the listener's cleanup (LIFO): release the peers' long polls.
            self._stack.callback(self.board.close)
        self.visitor_port = await self._serve_http(
            proxy.application(),
            cfg.visitor_listen,
            cfg.visitor.limits,
            lambda reason: metrics.visitor_slow_clients.labels(reason=reason).inc(),
        )
        if cfg.metrics_listen is not None:
            self.metrics_port = await self._serve_http(
                health_application(routes), cfg.metrics_listen
            )

        # One tunnel listener, both transports: cloudflared names h2.cftunnel.com in its TLS
        # hello (the reference connector never does), so a fault on this PoP's link acts on both.
        sni_names = self._sni_names

        def remember_sni(tls_object: Any, server_name: str | None, _context: Any) -> None:
            if server_name:
                sni_names[tls_object] = server_name

        tls.sni_callback = remember_sni
        self._tunnel_server = await asyncio.start_server(
            self._on_tunnel_connection,
            cfg.tunnel_listen[0],
            cfg.tunnel_listen[1],
            ssl=tls,
            ssl_handshake_timeout=10.0,
            limit=2**20,
        )
        self.tunnel_port = int(self._tunnel_server.sockets[0].getsockname()[1])
        self._stack.push_async_callback(self._stop_tunnels)
        if cfg.cloudflared_listen is not None:
            cloudflared_tls = server_tls_context(
                cfg.cloudflared_tls_cert or cfg.tls_cert, cfg.cloudflared_tls_key or cfg.tls_key
            )
            self._cloudflared_server = await asyncio.start_server(
                self._on_cloudflared_connection,
                cfg.cloudflared_listen[0],
                cfg.cloudflared_listen[1],
                ssl=cloudflared_tls,
                ssl_handshake_timeout=10.0,
                limit=2**20,
            )
            self.cloudflared_port = int(self._cloudflared_server.sockets[0].getsockname()[1])
        log_event(
            logger,
            "edge started",
            pop=self.pop,
            tunnel_listen=f"{cfg.tunnel_listen[0]}:{self.tunnel_port}",
            visitor_listen=f"{cfg.visitor_listen[0]}:{self.visitor_port}",
            dns_listen=f"{cfg.dns_listen[0]}:{self.dns_port}",
            metrics_listen=(
                f"{cfg.metrics_listen[0]}:{self.metrics_port}" if cfg.metrics_listen else None
            ),
            peer_listen=f"{cfg.peer_listen[0]}:{self.peer_port}" if cfg.peer_listen else None,
            cloudflared_listen=(
                f"{cfg.cloudflared_listen[0]}:{self.cloudflared_port}"
                if cfg.cloudflared_listen
                else None
            ),
            peers=",".join(f"{p}={h}:{port}" for p, (h, port) in sorted(cfg.peers.items())),
            broker=f"{cfg.broker[0]}:{cfg.broker[1]}",
            api=f"{cfg.api[0]}:{cfg.api[1]}" if cfg.api else None,
            config_version=self.cache.version,
        )

    async def _serve_http(
        self,
        app: web.Application,
        address: Address,
        limits: SlowClientLimits | None = None,
        on_limit: Callable[[str], None] = lambda reason: None,
    ) -> int:
        """Serve ``app`` on ``address``; with ``limits``, slow clients are bounded."""
        extra = limits.runner_kwargs() if limits is not None else {}
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0, **extra)
        await runner.setup()
        self._stack.push_async_callback(runner.cleanup)
        site: web.TCPSite = (
            GuardedSite(runner, address[0], address[1], limits, on_limit)
            if limits is not None
            else web.TCPSite(runner, address[0], address[1])
        )
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else address[1]

    async def stop(self) -> None:
        """Close tunnels (telling connectors to retry elsewhere), stop listeners, flush the cache,
        mark this PoP offline at the broker."""
        self._stopping = True
        self.registrar.state.stopping = True
        await self._stack.aclose()
        for task in list(self._background):
            task.cancel()
        log_event(logger, "edge stopped", pop=self.pop)

    async def _stop_tunnels(self) -> None:
        for server in (self._tunnel_server, self._cloudflared_server):
            if server is not None:
                server.close()
        closing = [
            self._close_connection(
                live, RefusalCause.UNAVAILABLE, "edge shutting down", should_retry=True
            )
            for live in self.connections.all()
        ]
        if closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.shutdown_timeout):
                    await asyncio.gather(*closing, return_exceptions=True)
        for task in list(self._tunnel_tasks):
            task.cancel()
        if self._tunnel_tasks:
            await asyncio.gather(*self._tunnel_tasks, return_exceptions=True)

    async def _stop_sync(self, task: asyncio.Task[None]) -> None:
        if self.sync is not None:
            await self.sync.publish_offline()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def __aenter__(self) -> EdgeServer:
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

    # ---- configuration -----------------------------------------------------------------------

    def _on_config_payload(self, topic: str, payload: bytes) -> None:
        result = self.cache.apply(topic, payload)
        if self.metrics is not None:
            self.metrics.config_updates.labels(outcome=result.reason).inc()
        if result.reason == "invalid":
            log_event(
                logger, "ignored an invalid configuration payload", logging.WARNING, topic=topic
            )
        if not result.applied:
            return
        if self.persister is not None:
            self.persister.mark_dirty()
        if result.deleted_tunnel_id is not None:
            self._on_tunnel_deleted(result.deleted_tunnel_id)

    def _on_tunnel_deleted(self, tunnel_id: str) -> None:
        victims = self.connections.for_tunnel(tunnel_id)
        log_event(
            logger,
            "tunnel deleted; closing its connections",
            tunnel_id=tunnel_id,
            connections=len(victims),
        )
        for live in victims:
            self._spawn(
                self._close_connection(
                    live, RefusalCause.TUNNEL_DELETED, "tunnel deleted", should_retry=False
                )
            )

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ---- tunnel connections ------------------------------------------------------------------

    async def _on_tunnel_connection(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        cloudflared: bool = False,
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tunnel_tasks.add(task)
        try:
            await self._serve_tunnel_connection(reader, writer, cloudflared=cloudflared)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("tunnel connection handler failed")
        finally:
            if task is not None:
                self._tunnel_tasks.discard(task)
            if not writer.is_closing():
                writer.close()

    async def _on_cloudflared_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await self._on_tunnel_connection(reader, writer, cloudflared=True)

    async def _serve_tunnel_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, cloudflared: bool
    ) -> None:
        tls_object = writer.get_extra_info("ssl_object")
        if tls_object is not None and self._sni_names.get(tls_object) == CLOUDFLARED_SNI:
            cloudflared = True
        peer = writer.get_extra_info("peername")
        origin_ip = str(peer[0]) if isinstance(peer, tuple) else ""

        async def authenticate(request: RegistrationRequest, nonce: str) -> RegistrationResponse:
            if cloudflared:  # no challenge on cloudflared's transport: the secret decides
                return await self.registrar.authenticate(
                    origin_ip, request, None, transport="cloudflared"
                )
            return await self.registrar.authenticate(origin_ip, request, nonce)

        tunnel: EdgeTunnel | None
        if cloudflared:
            tunnel = await accept_cloudflared(
                reader,
                writer,
                authenticate=authenticate,
                pop=self.pop,
                heartbeat=self.config.heartbeat,
                registration_timeout=self.config.registration_timeout,
            )
        else:
            tunnel = await accept_tunnel(
                reader,
                writer,
                authenticate=authenticate,
                heartbeat=self.config.heartbeat,
                registration_timeout=self.config.registration_timeout,
            )
        if tunnel is None:
            return
        request = tunnel.registration
        assert request is not None
        live: LiveConnection[EdgeTunnel] = LiveConnection(
            connection_id=tunnel.connection_id,
            tunnel_id=request.tunnel_id,
            account_tag=request.account_tag,
            conn_index=request.conn_index,
            connector_id=request.connector_id,
            handle=tunnel,
            connector_version=request.version,
            arch=request.arch,
            origin_ip=origin_ip,
        )
        config = self.cache.tunnel(request.tunnel_id)
        if self._stopping or config is None or config.deleted or tunnel.closed:
            # The tunnel was deleted (or the edge began stopping) while it registered.
            deleted = config is None or config.deleted
            await tunnel.close(
                RefusalCause.TUNNEL_DELETED if deleted else RefusalCause.UNAVAILABLE,
                should_retry=not deleted,
            )
            return
        replaced = self.connections.add(live)
        self._publish_event("registered", live)
        log_event(
            logger,
            "Registered tunnel connection",
            connection=live.connection_id,
            tunnel_id=live.tunnel_id,
            connIndex=live.conn_index,
            connector_id=live.connector_id,
            origin_ip=origin_ip,
            location=self.pop,
        )
        if replaced is not None:
            self._spawn(
                self._close_connection(
                    replaced,
                    RefusalCause.DUPLICATE_CONNECTION,
                    "replaced by a new connection of the same connector and index",
                    should_retry=True,
                )
            )
        try:
            await tunnel.wait_unavailable()
            reason = "unregistered" if not tunnel.closed else (tunnel.close_reason or "closed")
            self._retire(live, reason)
            await tunnel.wait_closed()
        finally:
            self._retire(live, tunnel.close_reason or "edge closed the connection")
            self._retired.discard(live.connection_id)

    def _retire(self, live: LiveConnection[EdgeTunnel], reason: str) -> None:
        """Stop routing to ``live`` and announce it unregistered (once)."""
        live.closing = True
        if live.connection_id in self._retired:
            return
        self._retired.add(live.connection_id)
        self.connections.remove(live.connection_id)
        self._publish_event("unregistered", live, reason=reason)
        if self.metrics is not None:
            self.metrics.unregistrations.labels(reason=_reason_label(reason)).inc()
        log_event(
            logger,
            "Unregistered tunnel connection",
            connection=live.connection_id,
            tunnel_id=live.tunnel_id,
            connIndex=live.conn_index,
            reason=reason,
            location=self.pop,
        )

    async def _close_connection(
        self, live: LiveConnection[EdgeTunnel], cause: str, reason: str, *, should_retry: bool
    ) -> None:
        self._retire(live, reason)
        with contextlib.suppress(Exception):
            await live.handle.close(cause, should_retry=should_retry)

    def _publish_event(
        self, kind: str, live: LiveConnection[EdgeTunnel], *, reason: str | None = None
    ) -> None:
        if self.sync is None:
            return
        event: dict[str, Any] = {
            "event": kind,
            "pop": self.pop,
            "tunnel_id": live.tunnel_id,
            "account_tag": live.account_tag,
            "connection_id": live.connection_id,
            "conn_index": live.conn_index,
            "connector_id": live.connector_id,
            "connector_version": live.connector_version,
            "arch": live.arch,
            "origin_ip": live.origin_ip,
            "at": utc_now_iso(),
        }
        if reason is not None:
            event["reason"] = reason
        self.sync.publish_event(event)


def _reason_label(reason: str) -> str:
    """A bounded metrics label for a free-text close reason."""
    for known in (
        "unregistered",
        "heartbeat timeout",
        "eof",
        "tunnel deleted",
        "edge shutting down",
        "replaced",
    ):
        if reason.startswith(known):
            return known.replace(" ", "_")
    if reason.startswith("closed by peer"):
        return "closed_by_peer"
    if reason.startswith("protocol error"):
        return "protocol_error"
    return "other"
