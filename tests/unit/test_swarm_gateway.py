"""The gateway's TCP and UDP relays, against real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket

import pytest

from harness.stack.ports import free_port
from harness.swarm.gateway import Forward, serve


def test_forward_parse_and_errors() -> None:
    forward = Forward.parse("udp:30001=anycast:5353")
    assert forward == Forward("udp", 30001, "anycast", 5353)
    assert Forward.parse(forward.argument()) == forward
    with pytest.raises(ValueError, match="tcp\\|udp:LISTEN=HOST:PORT"):
        Forward.parse("sctp:1=a:2")
    with pytest.raises(ValueError, match="expected"):
        Forward.parse("tcp:1-a:2")


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(b"echo:" + data, addr)  # type: ignore[attr-defined]


async def test_tcp_and_udp_are_relayed() -> None:
    loop = asyncio.get_running_loop()

    async def tcp_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"echo:" + await reader.readline())
        await writer.drain()
        writer.close()

    upstream_tcp = await asyncio.start_server(tcp_echo, "127.0.0.1", 0)
    tcp_port = upstream_tcp.sockets[0].getsockname()[1]
    udp_transport, _ = await loop.create_datagram_endpoint(_Echo, local_addr=("127.0.0.1", 0))
    udp_port = udp_transport.get_extra_info("sockname")[1]
    listen_tcp, listen_udp = free_port(), free_port()
    gateway = asyncio.create_task(
        serve(
            [
                Forward("tcp", listen_tcp, "127.0.0.1", tcp_port),
                Forward("udp", listen_udp, "127.0.0.1", udp_port),
            ]
        )
    )
    try:
        for _ in range(50):
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", listen_tcp)
                break
            except OSError:
                await asyncio.sleep(0.1)
        writer.write(b"hello\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b"echo:hello\n"
        writer.close()

        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(5)
        sock.sendto(b"query", ("127.0.0.1", listen_udp))
        data = await asyncio.to_thread(sock.recv, 100)
        assert data == b"echo:query"
        sock.close()
    finally:
        gateway.cancel()
        upstream_tcp.close()
        udp_transport.close()
