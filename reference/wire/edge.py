"""Edge-side asyncio API: accept a connector's connection, register it, open visitor streams."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from reference.tunnel_auth import new_nonce
from reference.wire import events as ev
from reference.wire.channel import StreamChannel
from reference.wire.connection import Clock, TunnelConnection
from reference.wire.core import EdgeProtocol
from reference.wire.errors import (
    StreamFailedBeforeResponse,
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

Authenticate = Callable[[RegistrationRequest, str], Awaitable[RegistrationResponse]]


class EdgeStream(StreamChannel):
    """A visitor request forwarded to the connector.

    Send the request body with ``send_body``/``end_body``; ``response()`` gives (status, headers)
    (status 101 = WebSocket accepted); then ``read_body_chunk()`` until ``b""``, or for a
    WebSocket ``send_ws``/``receive_ws``. ``response()`` raises StreamFailedBeforeResponse when the
    stream or connection failed before response headers (safe to retry an idempotent request
    elsewhere); later failures raise StreamReset.
    """

    def __init__(self, owner: EdgeTunnel, stream_id: int, request: StreamRequest) -> None:
        super().__init__(owner, stream_id)
        self.request = request
        self._response: asyncio.Future[tuple[int, Headers]] = (
            asyncio.get_running_loop().create_future()
        )

    @property
    def response_started(self) -> bool:
        return self._response.done() and self._response.exception() is None

    def _set_response(self, status: int, headers: Headers) -> None:
        if not self._response.done():
            self._response.set_result((status, headers))

    def fail(self, error: WireError) -> None:
        if not self._response.done():
            if not isinstance(error, StreamFailedBeforeResponse):
                error = StreamFailedBeforeResponse(str(error))
            self._response.set_exception(error)
            self._response.exception()  # mark retrieved: nobody may ask for the response
        super().fail(error)

    def reset(self) -> None:
        if not self._response.done():
            self._response.set_exception(StreamFailedBeforeResponse("stream reset locally"))
            self._response.exception()
        super().reset()

    async def response(self, timeout: float | None = None) -> tuple[int, Headers]:
        """Response status and headers. On timeout the stream is reset and
        StreamFailedBeforeResponse raised."""
        try:
            return await asyncio.wait_for(asyncio.shield(self._response), timeout)
        except TimeoutError:
            self.reset()
            raise StreamFailedBeforeResponse(f"no response headers within {timeout} s") from None


class EdgeTunnel(TunnelConnection):
    """A registered connector connection, seen from the edge."""

    _core: EdgeProtocol

    def __init__(
        self,
        core: EdgeProtocol,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        clock: Clock,
    ) -> None:
        super().__init__(core, reader, writer, clock=clock)
        self.registration: RegistrationRequest | None = None
        self.response: RegistrationResponse | None = None
        self._registered: asyncio.Future[RegistrationRequest] = (
            asyncio.get_running_loop().create_future()
        )
        self._unavailable = asyncio.Event()

    @property
    def nonce(self) -> str:
        return self._core.nonce or ""

    @property
    def connection_id(self) -> str:
        return (self.response.connection_id if self.response else None) or ""

    @property
    def location(self) -> str:
        return (self.response.location if self.response else None) or ""

    @property
    def draining(self) -> bool:
        """The connector unregistered this connection: route no new requests to it."""
        return self._core.state == "draining"

    @property
    def accepting_streams(self) -> bool:
        return self._core.accepting_streams and not self.closed

    async def wait_unavailable(self) -> None:
        """Wait until the connection stops accepting streams (unregistered or closed)."""
        await self._unavailable.wait()

    async def open_stream(self, request: StreamRequest, *, end_body: bool = False) -> EdgeStream:
        """Open a stream for a visitor request (``end_body=True``: no request body follows).

        Raises TunnelClosed if the connection is closed or draining (pick another one), and
        StreamFailedBeforeResponse if the stream cannot be opened right now.
        """
        stream_id = self._core.open_stream(request, end_stream=end_body)
        stream = EdgeStream(self, stream_id, request)
        if end_body:
            stream._sent_end = True
        self._channels[stream_id] = stream
        self._flush()
        return stream

    async def close(
        self, reason: str, *, should_retry: bool = True, retry_after: float | None = None
    ) -> str:
        """Tell the connector why (``should_retry=False``: it must not come back, e.g. the tunnel
        was deleted), then close. Returns the close reason."""
        if not self.closed:
            self._process(self._core.send_disconnect(Disconnect(reason, should_retry, retry_after)))
        return await self.wait_closed()

    def _dispatch_role(self, event: ev.WireEvent) -> None:
        if isinstance(event, ev.RegistrationReceived):
            if not self._registered.done():
                self._registered.set_result(event.request)
        elif isinstance(event, ev.ResponseStarted):
            channel = self._channels.get(event.stream_id)
            if isinstance(channel, EdgeStream):
                channel._set_response(event.status, event.headers)
        elif isinstance(event, ev.UnregisterRequested):
            self._unavailable.set()

    def _reset_error(self, event: ev.StreamWasReset) -> WireError:
        message = f"stream reset by connector (error {event.error_code:#x})"
        if event.response_started:
            return StreamReset(message)
        return StreamFailedBeforeResponse(message)

    def _connection_error(self, channel: StreamChannel, reason: str) -> WireError:
        if isinstance(channel, EdgeStream) and not channel.response_started:
            return StreamFailedBeforeResponse(f"tunnel connection closed: {reason}")
        return StreamReset(f"tunnel connection closed: {reason}")

    def _on_closed(self, reason: str) -> None:
        self._unavailable.set()
        if not self._registered.done():
            self._registered.set_exception(TunnelClosed(reason))
            self._registered.exception()


async def accept_tunnel(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    authenticate: Authenticate,
    heartbeat: HeartbeatConfig | None = None,
    settings: WireSettings | None = None,
    registration_timeout: float = 10.0,
    clock: Clock = time.monotonic,
) -> EdgeTunnel | None:
    """Run the edge side of a new connection (TLS, if any, is already done by the server).

    Sends the challenge nonce, waits for the RegistrationRequest, calls
    ``authenticate(request, nonce)`` (heartbeats keep running meanwhile) and sends its answer.
    Returns the registered EdgeTunnel, or None when the registration was refused, timed out or
    the connector misbehaved (the connection is then closed). An exception raised by
    ``authenticate`` closes the connection (the connector retries) and propagates.
    """
    core = EdgeProtocol(heartbeat=heartbeat, settings=settings, now=clock())
    core.start(new_nonce(), clock())
    tunnel = EdgeTunnel(core, reader, writer, clock=clock)
    tunnel._start()
    response = await answer_registration(tunnel, authenticate, registration_timeout)
    if response is None:
        return None
    if not response.ok:
        await tunnel.wait_closed()
        return None
    return tunnel


async def answer_registration(
    tunnel: EdgeTunnel, authenticate: Authenticate, registration_timeout: float
) -> RegistrationResponse | None:
    """Wait for the started ``tunnel``'s registration, decide it with ``authenticate`` and send
    the answer (every edge transport). None when no registration came in time or the
    connection closed meanwhile; an exception of ``authenticate`` closes it and propagates."""
    try:
        request = await asyncio.wait_for(asyncio.shield(tunnel._registered), registration_timeout)
    except (TimeoutError, TunnelClosed):
        await tunnel._close("no registration received")
        return None
    tunnel.registration = request
    try:
        response = await authenticate(request, tunnel.nonce)
    except BaseException:
        await tunnel._close("registration failed at the edge")
        raise
    if tunnel.closed:
        return None
    tunnel.response = response
    tunnel._process(tunnel._core.answer_registration(response))
    return response
