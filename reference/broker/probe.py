"""A bare MQTT 3.1.1 client that sends and receives raw packets, for probes and tests.

Unlike a full client library it does exactly what it is told: it can go silent (to trip a
keepalive), drop the TCP connection without DISCONNECT (to fire a will), or send bytes that
are not valid MQTT (to check that only that connection is closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from types import TracebackType
from typing import TypeVar

from reference.broker.auth import BrokerCredential
from reference.broker.packets import (
    Connack,
    Connect,
    Disconnect,
    Packet,
    PacketDecoder,
    Will,
    encode,
)

PacketT = TypeVar("PacketT")


class ConnectionClosed(ConnectionError):
    """The broker closed the connection."""


class RawMqttClient:
    """One TCP connection to a broker, speaking MQTT packet by packet."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._decoder = PacketDecoder()
        self._pending: deque[Packet] = deque()
        self.credential: BrokerCredential | None = None
        """Username and password :meth:`connect` sends unless told otherwise."""

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        timeout: float = 5.0,
        credential: BrokerCredential | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> RawMqttClient:
        """Open the TCP connection, TLS with ``tls`` (no CONNECT is sent yet)."""
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=tls), timeout
        )
        client = cls(reader, writer)
        client.credential = credential
        return client

    def send(self, packet: Packet) -> None:
        """Send one packet."""
        self.writer.write(encode(packet))

    def send_bytes(self, data: bytes) -> None:
        """Send raw bytes, valid MQTT or not."""
        self.writer.write(data)

    async def receive(self, timeout: float = 5.0) -> Packet:
        """The next packet; ConnectionClosed on EOF, TimeoutError if none within ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._pending:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no packet from the broker within {timeout:g} s")
            try:
                data = await asyncio.wait_for(self.reader.read(65536), remaining)
            except (ConnectionResetError, BrokenPipeError) as exc:
                raise ConnectionClosed(f"connection reset: {exc}") from exc
            if not data:
                raise ConnectionClosed("the broker closed the connection")
            self._pending.extend(self._decoder.feed(data))
        return self._pending.popleft()

    async def expect(self, packet_type: type[PacketT], timeout: float = 5.0) -> PacketT:
        """The next packet, which must be of ``packet_type``."""
        packet = await self.receive(timeout)
        if not isinstance(packet, packet_type):
            raise AssertionError(f"expected {packet_type.__name__}, got {packet!r}")
        return packet

    async def connect(
        self,
        client_id: str,
        *,
        clean_session: bool = True,
        keepalive: int = 60,
        will: Will | None = None,
        protocol_level: int = 4,
        username: str | None = None,
        password: bytes | None = None,
        timeout: float = 5.0,
    ) -> Connack:
        """Send CONNECT and return the CONNACK (with :attr:`credential` unless ``username``
        or ``password`` is given)."""
        if username is None and password is None and self.credential is not None:
            username = self.credential.username
            password = self.credential.password.encode()
        self.send(
            Connect(
                client_id=client_id,
                clean_session=clean_session,
                keepalive=keepalive,
                will=will,
                protocol_level=protocol_level,
                username=username,
                password=password,
            )
        )
        return await self.expect(Connack, timeout)

    async def wait_closed_by_broker(self, timeout: float = 5.0) -> list[Packet]:
        """Wait until the broker closes the connection; return the packets received meanwhile."""
        received: list[Packet] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            try:
                received.append(await self.receive(max(remaining, 0.0)))
            except ConnectionClosed:
                return received

    def disconnect(self) -> None:
        """Send DISCONNECT (a clean goodbye: no will)."""
        self.send(Disconnect())

    def abort(self) -> None:
        """Drop the TCP connection at once, without DISCONNECT (the will fires)."""
        self.writer.transport.abort()

    async def close(self) -> None:
        """Close the TCP connection (without DISCONNECT)."""
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)

    async def __aenter__(self) -> RawMqttClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
