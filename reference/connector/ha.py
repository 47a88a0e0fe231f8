"""The HA connection manager: N connection slots kept registered at the edges, a rebalancer
that spreads them over PoPs, and graceful shutdown. Decisions come from
:class:`~reference.connector.supervisor.ConnectionSupervisor`; this module does the I/O."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import platform
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata

from reference.connector.edge_memory import EdgeMemory
from reference.connector.metrics import ConnectorMetrics, SlotInfo
from reference.connector.proxy import ConnectionIdentity, OriginProxy
from reference.connector.supervisor import (
    ConnectionSupervisor,
    Decision,
    EdgeAddress,
    Move,
    permanent_message,
)
from reference.logs import log_event
from reference.tunnel_auth import compute_proof, derive_verifier
from reference.wire import (
    ConnectorStream,
    ConnectorTunnel,
    DialError,
    HandshakeFailed,
    HeartbeatConfig,
    LegacyRegistration,
    RegistrationRefused,
    RegistrationRequest,
    connect_tunnel,
)

logger = logging.getLogger("reference.connector")

EXIT_OK = 0
EXIT_PERMANENT = 1
EXIT_FORCED = 130


def connector_version() -> str:
    try:
        return f"outlast {metadata.version('outlast')}"
    except metadata.PackageNotFoundError:
        return "outlast dev"


def connector_arch() -> str:
    return f"{sys.platform}_{platform.machine().lower() or 'unknown'}"


@dataclass
class HAConfig:
    """Everything the manager needs (credentials are reduced to the verifier at once)."""

    tunnel_id: str
    account_tag: str
    verifier: str = field(repr=False)
    connector_id: str
    credentials_path: str
    ssl_context: ssl.SSLContext | None
    ha_connections: int = 4
    grace_period: float = 30.0
    heartbeat: HeartbeatConfig = field(default_factory=HeartbeatConfig)
    dial_timeout: float = 2.0
    registration_timeout: float = 5.0
    rebalance_interval: float = 0.5
    start_stagger: float = 0.05
    #: Set for a legacy (classic) run: every registration presents the account's API token
    #: and hostname instead of a proof of a tunnel secret (``verifier`` is then empty).
    legacy: LegacyRegistration | None = field(default=None, repr=False)
    #: The tunnel secret, sent inside TLS at every named registration (the edge checks it
    #: against its verifier); empty for a legacy run.
    tunnel_secret: bytes = field(default=b"", repr=False)

    @staticmethod
    def verifier_of(secret: bytes, tunnel_id: str) -> str:
        return derive_verifier(secret, tunnel_id)


class HAConnector:
    """Runs the slots until shutdown (exit 0) or a permanent refusal (exit 1)."""

    def __init__(
        self,
        config: HAConfig,
        supervisor: ConnectionSupervisor,
        proxy: OriginProxy,
        metrics: ConnectorMetrics,
        memory: EdgeMemory | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.supervisor = supervisor
        self.proxy = proxy
        self.metrics = metrics
        self.memory = memory
        self.clock = clock
        self._tunnels: dict[int, ConnectorTunnel] = {}
        self._addresses: dict[int, EdgeAddress] = {}
        self._stopping = asyncio.Event()
        self._done = asyncio.Event()
        self._exit_code = EXIT_OK
        self._fatal_message: str | None = None
        self._first_attempt = asyncio.Event()
        self._retiring: set[asyncio.Task[None]] = set()

    @property
    def exit_message(self) -> str | None:
        return self._fatal_message

    # --- lifecycle ----------------------------------------------------------------------------

    async def run(self) -> int:
        """Serve until :meth:`shutdown` completes or a permanent error; returns the exit code."""
        slots: list[asyncio.Task[None]] = []
        rebalancer = asyncio.ensure_future(self._rebalance_loop())
        try:
            slots.append(asyncio.ensure_future(self._run_slot(0)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._first_attempt.wait(),
                    self.config.dial_timeout + self.config.registration_timeout + 1,
                )
            for index in range(1, self.config.ha_connections):
                if self._stopping.is_set():
                    break
                await asyncio.sleep(self.config.start_stagger)
                slots.append(asyncio.ensure_future(self._run_slot(index)))
            await self._done.wait()
        finally:
            rebalancer.cancel()
            for task in slots:
                task.cancel()
            for task in [rebalancer, *slots, *self._retiring]:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for tunnel in list(self._tunnels.values()):
                await tunnel.close("connector stopped")
        return self._exit_code

    async def shutdown(self) -> None:
        """Graceful: unregister every connection, drain in-flight requests up to the grace
        period, then close."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        log_event(
            logger,
            "Initiating graceful shutdown",
            event="shutdown",
            gracePeriod=self.config.grace_period,
        )
        tunnels = dict(self._tunnels)
        for index, tunnel in tunnels.items():
            self.metrics.unregistered(index, tunnel.connection_id)

        async def unregister(index: int, tunnel: ConnectorTunnel) -> None:
            ok = await tunnel.unregister(min(2.0, max(self.config.grace_period, 0.1)))
            log_event(
                logger,
                "Unregistered tunnel connection" if ok else "Unregister not confirmed",
                event="unregistered",
                connIndex=index,
                location=tunnel.location,
                connection=tunnel.connection_id,
            )

        await asyncio.gather(*(unregister(i, t) for i, t in tunnels.items()))
        deadline = self.clock() + self.config.grace_period
        remaining = await asyncio.gather(
            *(t.drain(max(deadline - self.clock(), 0.0)) for t in tunnels.values())
        )
        if sum(remaining):
            log_event(
                logger,
                "Grace period over, abandoning requests",
                logging.WARNING,
                event="drain_timeout",
                abandoned=sum(remaining),
            )
        await asyncio.gather(*(t.close("connector shutting down") for t in tunnels.values()))
        log_event(logger, "Tunnel server stopped", event="stopped")
        self._done.set()

    def force_stop(self) -> None:
        """Second signal: stop at once."""
        self._stopping.set()
        self._exit_code = EXIT_FORCED
        log_event(logger, "Second signal: exiting now", logging.WARNING, event="forced_exit")
        self._done.set()

    def _fatal(self, message: str, reason: str) -> None:
        if self._done.is_set():
            return
        self._fatal_message = message
        self._exit_code = EXIT_PERMANENT
        self._stopping.set()
        log_event(
            logger,
            f"Stopping: {message}",
            logging.ERROR,
            event="permanent_error",
            reason=reason,
        )
        self._done.set()

    # --- one slot -----------------------------------------------------------------------------

    def _registration(self, index: int, nonce: str) -> RegistrationRequest:
        cfg = self.config
        return RegistrationRequest(
            tunnel_id=cfg.tunnel_id,
            account_tag=cfg.account_tag,
            conn_index=index,
            connector_id=cfg.connector_id,
            proof=""
            if cfg.legacy is not None
            else compute_proof(
                cfg.verifier, nonce, cfg.tunnel_id, cfg.account_tag, index, cfg.connector_id
            ),
            attempt=self.supervisor.attempts(index),
            version=connector_version(),
            arch=connector_arch(),
            features=("websocket", "unregister"),
            legacy=cfg.legacy,
            tunnel_secret=""
            if cfg.legacy is not None
            else base64.b64encode(cfg.tunnel_secret).decode(),
        )

    async def _handle(self, stream: ConnectorStream) -> None:
        tunnel = stream.tunnel
        index = tunnel.registration.conn_index if tunnel.registration else -1
        identity = ConnectionIdentity(self.config.tunnel_id, index, tunnel.location)
        await self.proxy.handle(stream, identity)

    async def _dial(self, index: int, address: EdgeAddress) -> ConnectorTunnel:
        return await connect_tunnel(
            address.host,
            address.port,
            self.config.ssl_context,
            build_registration=lambda nonce: self._registration(index, nonce),
            handle_stream=self._handle,
            heartbeat=self.config.heartbeat,
            dial_timeout=self.config.dial_timeout,
            registration_timeout=self.config.registration_timeout,
        )

    def _log_failure(
        self, index: int, address: EdgeAddress, decision: Decision, error: str
    ) -> None:
        level = logging.ERROR if not self.metrics.ready_connections else logging.WARNING
        log_event(
            logger,
            "Unable to establish connection with the edge"
            if decision.reason in ("dial_error", "handshake")
            else "Register tunnel error from server side",
            level,
            event="register_failed",
            connIndex=index,
            edge=str(address),
            error=error,
        )

    async def _run_slot(self, index: int) -> None:
        while not self._stopping.is_set():
            address = self.supervisor.choose_address(index, self.clock())
            log_event(
                logger,
                "Registering tunnel connection",
                logging.DEBUG,
                event="registering",
                connIndex=index,
                edge=str(address),
            )
            try:
                tunnel = await self._dial(index, address)
            except (DialError, HandshakeFailed) as exc:
                reason = "dial_error" if isinstance(exc, DialError) else "handshake"
                decision = self.supervisor.on_dial_failed(index, address, self.clock())
                decision = Decision(decision.delay, reason=reason)
                self.metrics.registration_failed(reason)
                self._log_failure(index, address, decision, str(exc))
            except RegistrationRefused as exc:
                decision = self.supervisor.on_refused(index, address, exc.response, self.clock())
                self.metrics.registration_failed(exc.response.cause or "refused")
                self._log_failure(index, address, decision, exc.response.cause or "refused")
            else:
                self._first_attempt.set()
                outcome = await self._serve(index, address, tunnel)
                if outcome is None:
                    return
                decision = outcome
            self._first_attempt.set()
            if decision.permanent:
                self._fatal(decision.message, decision.reason)
                return
            log_event(
                logger,
                f"Retrying connection in up to {self.supervisor.bound(index):.2f}s",
                event="retrying",
                connIndex=index,
                delay=round(decision.delay, 3),
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), decision.delay)

    def _registered(self, index: int, address: EdgeAddress, tunnel: ConnectorTunnel) -> None:
        self._tunnels[index] = tunnel
        self._addresses[index] = address
        self.supervisor.on_registered(index, address, tunnel.location)
        self.metrics.registered(
            SlotInfo(index, tunnel.connection_id, tunnel.location, str(address))
        )
        if self.memory is not None:
            self.memory.save(self.supervisor.addresses, self.supervisor.known_locations())
        log_event(
            logger,
            "Registered tunnel connection",
            event="registered",
            connIndex=index,
            connection=tunnel.connection_id,
            location=tunnel.location,
            edge=str(address),
        )

    async def _serve(
        self, index: int, address: EdgeAddress, tunnel: ConnectorTunnel
    ) -> Decision | None:
        if self._stopping.is_set():
            await tunnel.close("connector shutting down")
            return None
        self._registered(index, address, tunnel)
        while True:
            current = self._tunnels[index]
            reason = await current.wait_closed()
            if self._tunnels.get(index) is current:
                break  # not replaced by a rebalancing move
        self.metrics.unregistered(index, current.connection_id)
        if self._stopping.is_set():
            return None
        if reason == "heartbeat timeout":
            self.metrics.heartbeat_timeouts.inc()
        level = logging.ERROR if not self.metrics.ready_connections else logging.WARNING
        log_event(
            logger,
            "Lost connection with the edge",
            level,
            event="disconnected",
            connIndex=index,
            location=current.location,
            connection=current.connection_id,
            reason=reason,
            edgeCause=current.disconnect.cause if current.disconnect else None,
        )
        return self.supervisor.on_connection_lost(
            index, self._addresses[index], reason, current.disconnect, self.clock()
        )

    # --- spreading ----------------------------------------------------------------------------

    async def _rebalance_loop(self) -> None:
        """Check the spread every ``rebalance_interval`` (jittered between half and all of it,
        so connectors restarted together do not move in step); after a move that worked, check
        again at once, so 4 + 0 becomes 2 + 2 in one go."""
        moved = False
        while not self._stopping.is_set():
            if not moved:
                wait = self.config.rebalance_interval * self.supervisor.rng.uniform(0.5, 1.0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), wait)
            if self._stopping.is_set():
                return
            move = self.supervisor.rebalance(self.clock())
            moved = move is not None and await self._move(move)

    async def _move(self, move: Move) -> bool:
        """Make-before-break: register on the new address, then retire the old connection.
        True when the slot now serves from the new address."""
        log_event(
            logger,
            "Rebalancing connection",
            event="rebalance",
            connIndex=move.slot,
            edge=str(move.address),
        )
        try:
            tunnel = await self._dial(move.slot, move.address)
        except (DialError, HandshakeFailed) as exc:
            self.supervisor.on_move_failed(move.address, self.clock())
            log_event(
                logger,
                "Rebalance target unreachable",
                logging.DEBUG,
                event="rebalance_failed",
                connIndex=move.slot,
                edge=str(move.address),
                error=str(exc),
            )
            return False
        except RegistrationRefused as exc:
            cause = exc.response.cause or "refused"
            self.metrics.registration_failed(cause)
            if not exc.response.should_retry:
                self._fatal(
                    permanent_message(cause, self.config.tunnel_id, self.config.credentials_path),
                    cause,
                )
            else:
                self.supervisor.on_move_failed(move.address, self.clock(), exc.response)
            return False
        old = self._tunnels.get(move.slot)
        if self._stopping.is_set() or old is None or old.closed:
            await tunnel.close("rebalance abandoned")
            return False
        self._registered(move.slot, move.address, tunnel)
        task = asyncio.ensure_future(self._retire(move.slot, old))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        return True

    async def _retire(self, index: int, tunnel: ConnectorTunnel) -> None:
        await tunnel.unregister()
        await tunnel.drain(self.config.grace_period)
        await tunnel.close("moved to another edge")
