"""Slow-client limits for the aiohttp listeners (edge visitor listener, control plane API).

aiohttp bounds an idle keep-alive connection (``keepalive_timeout``) but nothing else: a client
may take forever to send its first request's headers, or hold any number of connections.
:class:`GuardedSite` (a ``web.TCPSite``) puts a thin protocol in front of aiohttp's handler:

- **connection cap**: beyond ``max_connections`` open connections a new one is answered
  ``503`` with ``Retry-After`` and closed (aiohttp never sees it);
- **header timeout**: every request's headers (up to the blank line) must be complete within
  ``header_timeout`` seconds, else ``408`` and the connection is closed. The first request's
  timer starts when the connection opens; on a keep-alive connection each later request's timer
  starts at its first byte, once the previous request's handler has returned (a connection
  waiting between requests is bounded by the idle timeout instead);
- **idle timeout**: aiohttp's ``keepalive_timeout`` closes a keep-alive connection with no
  complete request for ``idle_timeout`` seconds (:meth:`SlowClientLimits.runner_kwargs`);
- **body idle timeout**: applied where a body is read (``reference.edge.request_body``,
  :func:`body_timeout_middleware`): a body that sends no byte for ``body_idle_timeout``
  seconds is cut; a slow body that keeps progressing is never cut.

WebSocket sessions and streamed responses are not affected: the header timer stops at the end
of a request's headers and starts again only after its handler has returned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

#: Why a connection or request was cut: ``header_timeout``, ``connection_cap``, ``body_timeout``.
LimitHook = Callable[[str], None]


@dataclass(frozen=True)
class SlowClientLimits:
    """Bounds on slow clients (seconds, connections). Defaults fit browsers and long uploads."""

    header_timeout: float = 10.0
    idle_timeout: float = 75.0
    body_idle_timeout: float = 30.0
    max_connections: int = 1024
    retry_after: int = 1

    def runner_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``web.AppRunner`` (aiohttp's own keep-alive bound)."""
        return {"keepalive_timeout": self.idle_timeout}


def _plain_response(status: str, extra: str = "") -> bytes:
    body = f"{status}\n".encode()
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        f"{extra}Connection: close\r\n\r\n"
    )
    return head.encode() + body


class _GuardedProtocol(asyncio.Protocol):
    """Forwards everything to aiohttp's handler, with the cap and header timer around it."""

    def __init__(self, inner: asyncio.Protocol, guard: GuardedSite) -> None:
        self.inner = inner
        self.guard = guard
        self.transport: asyncio.Transport | None = None
        self.refused = False
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""
        self._awaiting_headers = True
        """True between requests: the next bytes are a request's headers (and timed)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        limits = self.guard.limits
        if len(self.guard.open_connections) >= limits.max_connections:
            self.refused = True
            retry = f"Retry-After: {limits.retry_after}\r\n"
            transport.write(_plain_response("503 Service Unavailable", retry))
            transport.close()
            self.guard.on_limit("connection_cap")
            return
        self.guard.open_connections.add(self)
        self.guard.by_handler[self.inner] = self
        self._start_header_timer()
        self.inner.connection_made(transport)

    def _start_header_timer(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.guard.limits.header_timeout, self._headers_timed_out)

    def request_finished(self) -> None:
        """The handler of the current request returned: the next bytes start a new request."""
        self._awaiting_headers = True
        self._tail = b""

    def _headers_timed_out(self) -> None:
        self._timer = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_plain_response("408 Request Timeout"))
            self.transport.close()
            self.guard.on_limit("header_timeout")

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        if self._awaiting_headers:
            if self._timer is None:
                self._start_header_timer()
            seen = self._tail + data
            if b"\r\n\r\n" in seen:
                assert self._timer is not None
                self._timer.cancel()
                self._timer = None
                self._awaiting_headers = False
            self._tail = seen[-3:]
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return None if self.refused else self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.refused:
            return
        self.guard.open_connections.discard(self)
        self.guard.by_handler.pop(self.inner, None)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if not self.refused:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if not self.refused:
            self.inner.resume_writing()


class GuardedSite(web.TCPSite):
    """A ``web.TCPSite`` with :class:`SlowClientLimits`; ``on_limit(reason)`` counts cuts."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        limits: SlowClientLimits,
        on_limit: LimitHook = lambda reason: None,
        **kwargs: Any,
    ) -> None:
        super().__init__(runner, host, port, **kwargs)
        self.limits = limits
        self.on_limit = on_limit
        self.open_connections: set[_GuardedProtocol] = set()
        self.by_handler: dict[object, _GuardedProtocol] = {}
        """The guard of each connection, by aiohttp's protocol (``request.protocol``)."""

    async def start(self) -> None:
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        factory = server
        handler = server.request_handler
        guards = self.by_handler

        async def handle_then_rearm(request: web.BaseRequest) -> web.StreamResponse:
            # aiohttp takes server.request_handler for each new connection: after every
            # request the connection's header timer is armed for the next one.
            try:
                return await handler(request)
            finally:
                guard = guards.get(request.protocol)
                if guard is not None:
                    guard.request_finished()

        server.request_handler = handle_then_rearm

        def protocol() -> asyncio.Protocol:
            return _GuardedProtocol(factory(), self)

        self._server = await loop.create_server(
            protocol, self._host, self._port, backlog=self._backlog, reuse_address=True
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port


def body_timeout_middleware(
    limits: SlowClientLimits, on_limit: LimitHook = lambda reason: None
) -> Middleware:
    """Middleware for APIs with small bodies: the whole body must arrive within
    ``body_idle_timeout`` seconds, else ``408`` (``request.read()`` keeps its size limit)."""

    @web.middleware
    async def read_body_in_time(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.body_exists:
            try:
                async with asyncio.timeout(limits.body_idle_timeout):
                    await request.read()  # cached: the handler's read()/json() get it
            except TimeoutError:
                on_limit("body_timeout")
                return web.Response(
                    status=408, text="request body stalled\n", headers={"Connection": "close"}
                )
        return await handler(request)

    return read_body_in_time
