"""DNS over UDP and TCP (same address and port) answering from the configuration cache."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Callable
from types import TracebackType
from typing import cast

from dnslib import RCODE, DNSError, DNSHeader, DNSRecord
from dnslib.buffer import Buffer

from reference.edge.config_cache import ConfigCache
from reference.edge.dns_answers import DnsIdentity, answer_query
from reference.logs import log_event

logger = logging.getLogger("reference.edge.dns")

#: Largest UDP reply before it is truncated (TC bit, client retries over TCP).
MAX_UDP_REPLY = 1232
TCP_IDLE_TIMEOUT = 10.0
MAX_TCP_QUERIES_PER_CONNECTION = 1000

QueryObserver = Callable[[str, int], None]
"""Called with (transport, rcode) for every reply sent (for metrics)."""


def reply_bytes(
    cache: ConfigCache, packet: bytes, identity: DnsIdentity
) -> tuple[bytes, int] | None:
    """The wire reply to ``packet`` and its rcode; None when the packet is not even a header."""
    try:
        request = DNSRecord.parse(packet)
    except (DNSError, struct.error, IndexError, ValueError, UnicodeDecodeError):
        try:
            header = DNSHeader.parse(Buffer(packet))
        except Exception:  # garbage shorter than a header: drop silently
            return None
        reply = DNSRecord(DNSHeader(id=header.id, qr=1, rcode=RCODE.FORMERR))
        return bytes(reply.pack()), RCODE.FORMERR
    if request.header.qr:  # a response, not a query: ignore (prevents reflection loops)
        return None
    reply = answer_query(cache, request, identity)
    return bytes(reply.pack()), reply.header.rcode


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        answered = reply_bytes(self.server.cache, data, self.server.identity)
        if answered is None or self.transport is None:
            return
        packet, rcode = answered
        if len(packet) > MAX_UDP_REPLY:
            truncated = DNSRecord.parse(packet)
            truncated.rr, truncated.auth, truncated.ar = [], [], []
            truncated.header.tc = 1
            packet = truncated.pack()
        self.transport.sendto(packet, addr)
        self.server.observe("udp", rcode)


class DnsServer:
    """Serves DNS for ``cache`` on ``host:port`` over UDP and TCP.

    Use as ``async with DnsServer(...) as dns:``; ``dns.port`` is the bound port (useful with 0).
    """

    def __init__(
        self,
        cache: ConfigCache,
        identity: DnsIdentity,
        host: str,
        port: int,
        *,
        observer: QueryObserver | None = None,
    ) -> None:
        self.cache = cache
        self.identity = identity
        self.host = host
        self.port = port
        self._observer = observer
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tcp_tasks: set[asyncio.Task[None]] = set()

    def observe(self, transport: str, rcode: int) -> None:
        if self._observer is not None:
            self._observer(transport, rcode)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tcp = await asyncio.start_server(self._serve_tcp, self.host, self.port)
        bound = self._tcp.sockets[0].getsockname()
        self.port = int(bound[1])
        self._udp, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), local_addr=(self.host, self.port)
        )
        log_event(logger, "DNS listening", address=f"{self.host}:{self.port}", transports="udp,tcp")

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            for task in list(self._tcp_tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await self._tcp.wait_closed()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tcp_tasks.add(task)
        try:
            for _ in range(MAX_TCP_QUERIES_PER_CONNECTION):
                try:
                    length_bytes = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_TIMEOUT)
                    (length,) = struct.unpack("!H", length_bytes)
                    packet = await asyncio.wait_for(reader.readexactly(length), TCP_IDLE_TIMEOUT)
                except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                    return
                answered = reply_bytes(self.cache, packet, self.identity)
                if answered is None:
                    return
                reply, rcode = answered
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
                self.observe("tcp", rcode)
        except ConnectionError:
            return
        finally:
            if task is not None:
                self._tcp_tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def __aenter__(self) -> DnsServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
