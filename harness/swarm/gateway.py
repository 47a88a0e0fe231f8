"""The Swarm stack's gateway: TCP and UDP relays from published container ports to services.

Swarm publishes a service port on every interface of a node (ingress and ``mode: host`` alike),
which the house rules forbid. So the stack publishes nothing; a plain container on the manager
(``outlast swarm gateway``) joins the stack's attachable ``pub-<service>`` networks and relays

    127.0.0.1:HOST  --(docker -p, on the manager)-->  gateway:LISTEN  -->  service:PORT

resolving ``service`` at every new connection (``endpoint_mode: dnsrr``: a rescheduled task is
found again). UDP (DNS) is relayed per client address with an idle timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Literal, cast

log = logging.getLogger("harness.swarm.gateway")
UDP_IDLE_SECONDS = 30.0


@dataclass(frozen=True)
class Forward:
    """``tcp:LISTEN_PORT=HOST:PORT`` (or ``udp:``): one relay of the gateway."""

    protocol: Literal["tcp", "udp"]
    listen_port: int
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Forward:
        """Parse ``tcp:9001=anycast:8080``; ``ValueError`` says what is wrong."""
        try:
            protocol, rest = text.split(":", 1)
            listen, upstream = rest.split("=", 1)
            host, port = upstream.rsplit(":", 1)
            if protocol not in ("tcp", "udp"):
                raise ValueError(f"protocol {protocol!r} (use tcp or udp)")
            return cls(protocol, int(listen), host, int(port))  # type: ignore[arg-type]
        except ValueError as exc:
            raise ValueError(
                f"forward {text!r}: expected tcp|udp:LISTEN=HOST:PORT ({exc})"
            ) from None

    def argument(self) -> str:
        return f"{self.protocol}:{self.listen_port}={self.host}:{self.port}"


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()


async def _serve_tcp(forward: Forward) -> asyncio.Server:
    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(forward.host, forward.port), 10.0
            )
        except (OSError, TimeoutError) as exc:
            log.info(
                "tcp %s: upstream %s:%s: %s", forward.listen_port, forward.host, forward.port, exc
            )
            writer.close()
            return
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                w.close()

    return await asyncio.start_server(relay, "0.0.0.0", forward.listen_port)


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, downstream: asyncio.DatagramTransport, client: tuple[str, int]) -> None:
        self.downstream = downstream
        self.client = client
        self.last = time.monotonic()

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.last = time.monotonic()
        self.downstream.sendto(data, self.client)


class _UdpListener(asyncio.DatagramProtocol):
    def __init__(self, forward: Forward) -> None:
        self.forward = forward
        self.transport: asyncio.DatagramTransport | None = None
        self.clients: dict[tuple[str, int], tuple[asyncio.DatagramTransport, _Upstream]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        asyncio.get_running_loop().create_task(self._relay(data, addr))

    async def _relay(self, data: bytes, client: tuple[str, int]) -> None:
        assert self.transport is not None
        known = self.clients.get(client)
        if known is None or known[0].is_closing():
            loop = asyncio.get_running_loop()
            try:
                transport, protocol = await loop.create_datagram_endpoint(
                    lambda: _Upstream(self.transport, client),  # type: ignore[arg-type]
                    remote_addr=(self.forward.host, self.forward.port),
                )
            except OSError as exc:
                log.info("udp %s: upstream: %s", self.forward.listen_port, exc)
                return
            known = (transport, protocol)
            self.clients[client] = known
        known[1].last = time.monotonic()
        known[0].sendto(data)

    def expire(self) -> None:
        now = time.monotonic()
        for client, (transport, protocol) in list(self.clients.items()):
            if now - protocol.last > UDP_IDLE_SECONDS:
                transport.close()
                del self.clients[client]


async def serve(forwards: list[Forward]) -> None:
    """Run every relay until cancelled."""
    loop = asyncio.get_running_loop()
    servers = [await _serve_tcp(f) for f in forwards if f.protocol == "tcp"]
    listeners: list[_UdpListener] = []
    for forward in (f for f in forwards if f.protocol == "udp"):
        listener = _UdpListener(forward)
        await loop.create_datagram_endpoint(
            lambda listener=listener: listener,  # type: ignore[misc]
            local_addr=("0.0.0.0", forward.listen_port),
        )
        listeners.append(listener)
    log.info("gateway: %s", " ".join(f.argument() for f in forwards))
    try:
        while True:
            await asyncio.sleep(5)
            for listener in listeners:
                listener.expire()
    finally:
        for server in servers:
            server.close()
