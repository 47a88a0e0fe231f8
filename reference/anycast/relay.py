"""The anycast data path: TCP and UDP relays that send each new connection (or DNS query) to
the PoP the router chooses, like a router forwarding packets. The relay never parses HTTP, so a
keep-alive connection or a WebSocket stays with the PoP that took its first byte.

A router does not retry, but the visitor's TCP does: a PoP that is down answers nothing (its
packets are black-holed until its route is withdrawn), so the visitor's kernel sends its SYN
again after the retransmission timeout (1 s, then doubled), and a SYN sent after the withdrawal
reaches the next PoP. The relay models that: when the chosen PoP's dial fails, the failure counts
as a health observation and the dial is tried again — route chosen anew for the same region —
after ``syn_rto`` seconds, doubling, at most ``syn_retries`` times, while the visitor's
connection waits; only then is it reset. ``syn_retries=0`` resets at once (a refused port).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable, Mapping
from types import TracebackType

from reference.anycast.router import Router
from reference.anycast.routing import Route
from reference.logs import log_event

logger = logging.getLogger("reference.anycast.relay")

Address = tuple[str, int]
ByteTap = Callable[[bytes], None]
"""Sees every chunk a visitor sends to its PoP (for counting; it must not keep or alter it)."""
ConnectionHook = Callable[[Route], ByteTap | None]
"""Called once per relayed connection with its route; may return a :data:`ByteTap`."""

CHUNK = 64 * 1024
DEFAULT_DIAL_TIMEOUT = 2.0
#: Linux's initial SYN retransmission timeout, and how many SYN retransmissions the relay
#: models before it gives up (the kernel's default tries 6; clients time out sooner).
DEFAULT_SYN_RTO = 1.0
DEFAULT_SYN_RETRIES = 2
DEFAULT_UDP_REPLY_TIMEOUT = 2.0
MAX_UDP_IN_FLIGHT = 1024


def reset(writer: asyncio.StreamWriter) -> None:
    """Close ``writer``'s connection with a TCP RST (SO_LINGER 0), not a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, tap: ByteTap | None) -> None:
    """Copy ``src`` to ``dst`` until EOF, then half-close ``dst``."""
    while data := await src.read(CHUNK):
        if tap is not None:
            tap(data)
        dst.write(data)
        await dst.drain()
    if dst.can_write_eof():
        dst.write_eof()


async def splice(
    visitor: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    pop: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    tap: ByteTap | None = None,
) -> None:
    """Relay both ways until both directions reached EOF (each EOF is passed on as a
    half-close); when either side fails, or the relay is cancelled, reset both."""
    forward = asyncio.create_task(_pump(visitor[0], pop[1], tap))
    backward = asyncio.create_task(_pump(pop[0], visitor[1], None))
    clean = False
    try:
        pending: set[asyncio.Task[None]] = {forward, backward}
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if any(task.exception() is not None for task in done):
                break
        else:
            clean = True
    finally:
        for task in (forward, backward):
            task.cancel()
        await asyncio.gather(forward, backward, return_exceptions=True)
        for writer in (visitor[1], pop[1]):
            if clean:
                writer.close()
            else:
                reset(writer)


class TcpRelay:
    """Listens on ``host:port`` and splices every accepted connection to the chosen PoP's
    address in ``targets``. ``kind`` names it in metrics (``visitor``, ``dns_tcp``)."""

    def __init__(
        self,
        router: Router,
        targets: Mapping[str, Address],
        host: str,
        port: int,
        *,
        kind: str,
        on_connection: ConnectionHook | None = None,
        dial_timeout: float = DEFAULT_DIAL_TIMEOUT,
        syn_rto: float = DEFAULT_SYN_RTO,
        syn_retries: int = DEFAULT_SYN_RETRIES,
    ) -> None:
        self.router = router
        self.targets = dict(targets)
        self.host = host
        self.port = port
        self.kind = kind
        self.on_connection = on_connection
        self.dial_timeout = dial_timeout
        self.syn_rto = syn_rto
        self.syn_retries = syn_retries
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._relay(reader, writer)
        except asyncio.CancelledError:
            # The relay is stopping (splice reset both sides). End this top-level task normally:
            # Python 3.11's stream callback logs a cancelled handler task as an error.
            reset(writer)
        except Exception:
            logger.exception("relay connection failed")
            reset(writer)
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        route = self.router.choose()
        rto = self.syn_rto
        for attempt in range(self.syn_retries + 1):
            if attempt:
                await asyncio.sleep(rto)  # the visitor's SYN retransmission timeout
                rto *= 2
                self.router.metrics.syn_retransmissions.labels(kind=self.kind).inc()
                route = self.router.choose(route.region)
            if route.pop is None:
                continue
            try:
                async with asyncio.timeout(self.dial_timeout):
                    upstream = await asyncio.open_connection(*self.targets[route.pop])
            except (OSError, TimeoutError) as exc:
                detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                self.router.observe(route.pop, False, source="dial", detail=detail)
                continue
            tap = self.on_connection(route) if self.on_connection is not None else None
            await splice((reader, writer), upstream, tap)
            return
        if route.pop is None:
            self.router.metrics.unroutable.labels(kind=self.kind).inc()
        reset(writer)

    async def __aenter__(self) -> TcpRelay:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        log_event(logger, "relay listening", kind=self.kind, address=f"{self.host}:{self.port}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, relay: UdpRelay) -> None:
        self.relay = relay

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.relay.on_query(data, addr)


class _Upstream(asyncio.DatagramProtocol):
    """A socket of its own for one forwarded query; resolves with the first answer."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.answer: asyncio.Future[bytes] = loop.create_future()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.answer.done():
            self.answer.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)


class UdpRelay:
    """Forwards each DNS query received on ``host:port`` from its own socket to the chosen
    PoP's DNS address and relays the first answer back; dropped after ``reply_timeout``."""

    def __init__(
        self,
        router: Router,
        targets: Mapping[str, Address],
        host: str,
        port: int,
        *,
        reply_timeout: float = DEFAULT_UDP_REPLY_TIMEOUT,
    ) -> None:
        self.router = router
        self.targets = dict(targets)
        self.host = host
        self.port = port
        self.reply_timeout = reply_timeout
        self._listener: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def on_query(self, data: bytes, client: tuple[str, int]) -> None:
        if len(self._tasks) >= MAX_UDP_IN_FLIGHT:
            return  # a full router queue drops packets
        route = self.router.choose()
        if route.pop is None:
            self.router.metrics.unroutable.labels(kind="dns_udp").inc()
            return
        self.router.metrics.dns_queries.labels(transport="udp", pop=route.pop).inc()
        task = asyncio.create_task(self._forward(route.pop, data, client))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forward(self, pop: str, data: bytes, client: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, upstream = await loop.create_datagram_endpoint(
                lambda: _Upstream(loop), remote_addr=self.targets[pop]
            )
        except OSError as exc:
            self.router.observe(pop, False, source="dial", detail=f"udp: {exc}")
            return
        try:
            transport.sendto(data)
            async with asyncio.timeout(self.reply_timeout):
                answer = await upstream.answer
        except TimeoutError:
            return  # lost, like any datagram
        except OSError as exc:  # ICMP port unreachable: nothing listens there
            self.router.observe(pop, False, source="dial", detail=f"udp: {exc}")
            return
        finally:
            transport.close()
        if self._listener is not None and not self._listener.is_closing():
            self._listener.sendto(answer, client)

    async def __aenter__(self) -> UdpRelay:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Listener(self), local_addr=(self.host, self.port)
        )
        self._listener = transport
        self.port = int(self._listener.get_extra_info("sockname")[1])
        log_event(logger, "relay listening", kind="dns_udp", address=f"{self.host}:{self.port}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._listener is not None:
            self._listener.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
