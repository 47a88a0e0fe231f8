"""Connector-side asyncio API: dial an edge, register, serve the streams the edge opens."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable

from reference.wire import events as ev
from reference.wire.channel import StreamChannel
from reference.wire.connection import Clock, TunnelConnection
from reference.wire.core import INTERNAL_ERROR, NO_ERROR, ConnectorProtocol
from reference.wire.errors import (
    DialError,
    HandshakeFailed,
    RegistrationRefused,
    StreamReset,
    TunnelClosed,
    WireError,
)
from reference.wire.messages import (
    Disconnect,
    Headers,
    HeartbeatConfig,
    RegistrationRequest,
    RegistrationResponse,
    StreamRequest,
    WireSettings,
)

logger = logging.getLogger(__name__)

BuildRegistration = Callable[[str], RegistrationRequest]


class ConnectorStream(StreamChannel):
    """A visitor request the edge opened. Read the request body with ``read_body_chunk``;
    answer with ``send_response`` (+ ``send_body``/``end_body``), or accept a WebSocket with
    ``accept_websocket`` and exchange ``send_ws``/``receive_ws``."""

    _owner: ConnectorTunnel

    def __init__(self, owner: ConnectorTunnel, stream_id: int, request: StreamRequest) -> None:
        super().__init__(owner, stream_id)
        self.request = request
        self.response_started = False

    @property
    def tunnel(self) -> ConnectorTunnel:
        """The connection this stream arrived on."""
        return self._owner

    async def send_response(self, status: int, headers: Headers, *, end: bool = False) -> None:
        """Response status and headers (``end=True``: no body)."""
        self._check_open()
        self._owner._send_response(self.stream_id, status, headers, end)
        self.response_started = True
        if end:
            self._sent_end = True
            self._owner._forget_if_finished(self.stream_id)

    async def accept_websocket(self, headers: Headers | None = None) -> None:
        """Accept the WebSocket (the edge sees 101); messages may then flow both ways."""
        self._check_open()
        self._owner._accept_websocket(self.stream_id, headers or [])
        self.response_started = True


StreamHandler = Callable[[ConnectorStream], Awaitable[None]]


class ConnectorTunnel(TunnelConnection):
    """One registered HA connection, seen from the connector."""

    _core: ConnectorProtocol

    def __init__(
        self,
        core: ConnectorProtocol,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        handle_stream: StreamHandler,
        clock: Clock,
    ) -> None:
        super().__init__(core, reader, writer, clock=clock)
        self._handle_stream = handle_stream
        loop = asyncio.get_running_loop()
        self._challenge: asyncio.Future[str] = loop.create_future()
        self._answer: asyncio.Future[RegistrationResponse] = loop.create_future()
        self._unregistered = asyncio.Event()
        self._handlers: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self.registration: RegistrationRequest | None = None

    @property
    def response(self) -> RegistrationResponse:
        assert self._core.response is not None
        return self._core.response

    @property
    def connection_id(self) -> str:
        return self._core.response.connection_id or "" if self._core.response else ""

    @property
    def location(self) -> str:
        return self._core.response.location or "" if self._core.response else ""

    @property
    def disconnect(self) -> Disconnect | None:
        """What the edge said when it closed this connection (None if it said nothing)."""
        return self._core.disconnect

    @property
    def in_flight(self) -> int:
        """Visitor requests whose handler is still running."""
        return len(self._handlers)

    @property
    def active_streams(self) -> int:
        return len(self._handlers)

    async def unregister(self, ack_within: float = 2.0) -> bool:
        """Ask the edge to stop sending new requests here; True once it confirmed (waits up to
        ``ack_within`` seconds)."""
        if self.closed:
            return False
        self._core.send_unregister()
        self._flush()
        try:
            await asyncio.wait_for(self._unregistered.wait(), ack_within)
        except TimeoutError:
            return False
        return not self.closed

    async def drain(self, grace: float) -> int:
        """Wait up to ``grace`` s for in-flight requests; returns how many are still running."""
        if self._handlers:
            try:
                await asyncio.wait_for(self._idle.wait(), grace)
            except TimeoutError:
                pass
        return len(self._handlers)

    async def close(self, reason: str = "connector closing") -> str:
        """Close now (GOAWAY); running handlers are cancelled. Returns the close reason."""
        return await self._close(reason)

    # --- internals ----------------------------------------------------------------------------

    def _dispatch_role(self, event: ev.WireEvent) -> None:
        if isinstance(event, ev.ChallengeReceived):
            if not self._challenge.done():
                self._challenge.set_result(event.nonce)
        elif isinstance(event, ev.RegistrationAnswered):
            if not self._answer.done():
                self._answer.set_result(event.response)
        elif isinstance(event, ev.UnregisterAcknowledged):
            self._unregistered.set()
        elif isinstance(event, ev.DisconnectReceived):
            logger.debug("edge announced disconnect: %s", event.disconnect.cause)
        elif isinstance(event, ev.StreamOpened):
            stream = ConnectorStream(self, event.stream_id, event.request)
            self._channels[event.stream_id] = stream
            task = asyncio.ensure_future(self._run_handler(stream))
            self._handlers.add(task)
            self._idle.clear()
            task.add_done_callback(self._handler_done)

    async def _run_handler(self, stream: ConnectorStream) -> None:
        try:
            await self._handle_stream(stream)
        except WireError:
            stream.reset()
            return
        except asyncio.CancelledError:
            stream.reset()
            raise
        except Exception:
            logger.exception("stream handler failed on stream %d", stream.stream_id)
            if not stream.failed:
                self._core.reset_stream(stream.stream_id, INTERNAL_ERROR)
                self._channels.pop(stream.stream_id, None)
                self._flush()
            return
        if stream.failed or self.closed:
            return
        try:
            if not stream.response_started:
                await stream.send_response(502, [("content-type", "text/plain")])
                await stream.send_body(b"connector handler sent no response\n")
            await stream.end_body()
        except WireError:
            return
        if not stream.finished:
            # The handler is done but the edge is still sending: stop it (RST_STREAM NO_ERROR
            # after a complete response, as HTTP/2 allows) so no unread data holds the window.
            self._core.reset_stream(stream.stream_id, NO_ERROR)
            self._channels.pop(stream.stream_id, None)
            stream.fail(StreamReset("handler finished"))
            self._flush()

    def _handler_done(self, task: asyncio.Task[None]) -> None:
        self._handlers.discard(task)
        if not self._handlers:
            self._idle.set()

    def _send_response(self, stream_id: int, status: int, headers: Headers, end: bool) -> None:
        if self._core.closed:
            raise TunnelClosed(self._core.closed_reason or "closed")
        self._core.send_response(stream_id, status, headers, end_stream=end)
        self._flush()

    def _accept_websocket(self, stream_id: int, headers: Headers) -> None:
        if self._core.closed:
            raise TunnelClosed(self._core.closed_reason or "closed")
        self._core.accept_websocket(stream_id, headers)
        self._flush()

    def _on_closed(self, reason: str) -> None:
        for future in (self._challenge, self._answer):
            if not future.done():
                future.set_exception(TunnelClosed(reason))
                future.exception()
        for task in list(self._handlers):
            task.cancel()


async def connect_tunnel(
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    *,
    build_registration: BuildRegistration,
    handle_stream: StreamHandler,
    heartbeat: HeartbeatConfig | None = None,
    settings: WireSettings | None = None,
    server_hostname: str | None = None,
    dial_timeout: float = 5.0,
    registration_timeout: float = 5.0,
    clock: Clock = time.monotonic,
) -> ConnectorTunnel:
    """Dial ``host:port`` (TLS with ``ssl_context``; None = plain TCP, for tests), answer the
    edge's challenge with ``build_registration(nonce)`` and return the registered connection.
    Each visitor stream runs ``handle_stream(stream)`` in its own task.

    Raises DialError (TCP/TLS failed: try another edge address), HandshakeFailed (connected but
    no registration answer), RegistrationRefused (the edge said no; see ``.response``).
    """
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                host,
                port,
                ssl=ssl_context,
                server_hostname=(server_hostname or host) if ssl_context else None,
                limit=2**20,
            ),
            dial_timeout,
        )
    except TimeoutError:
        raise DialError(f"dialling {host}:{port} timed out after {dial_timeout} s") from None
    except (OSError, ssl.SSLError) as exc:
        raise DialError(f"dialling {host}:{port} failed: {exc}") from exc
    core = ConnectorProtocol(heartbeat=heartbeat, settings=settings, now=clock())
    core.start(clock())
    tunnel = ConnectorTunnel(core, reader, writer, handle_stream=handle_stream, clock=clock)
    tunnel._start()
    deadline = clock() + registration_timeout
    try:
        nonce = await asyncio.wait_for(asyncio.shield(tunnel._challenge), registration_timeout)
        tunnel.registration = build_registration(nonce)
        core.send_registration(tunnel.registration)
        tunnel._flush()
        response = await asyncio.wait_for(
            asyncio.shield(tunnel._answer), max(deadline - clock(), 0.01)
        )
    except TimeoutError:
        await tunnel._close("registration timed out")
        raise HandshakeFailed(
            f"{host}:{port} did not complete the registration within {registration_timeout} s"
        ) from None
    except TunnelClosed as exc:
        raise HandshakeFailed(f"{host}:{port} closed during registration: {exc.reason}") from None
    except BaseException:
        await tunnel._close("registration aborted")
        raise
    if not response.ok:
        await tunnel._close("registration refused")
        raise RegistrationRefused(response)
    return tunnel
