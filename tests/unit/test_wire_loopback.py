"""The asyncio wire APIs over real TCP + TLS on 127.0.0.1 (edge side and connector side).

Also holds two small helpers other wire/connector tests import: ``TlsMaterial`` and ``Relay``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from reference.pki import create_ca, issue_certificate
from reference.wire import (
    ConnectorStream,
    ConnectorTunnel,
    DialError,
    EdgeTunnel,
    HeartbeatConfig,
    RefusalCause,
    RegistrationRefused,
    RegistrationRequest,
    RegistrationResponse,
    StreamFailedBeforeResponse,
    StreamRequest,
    TunnelClosed,
    WsMessage,
    WsMessageType,
    accept_tunnel,
    connect_tunnel,
)


@dataclass
class TlsMaterial:
    """A CA, an edge certificate for 127.0.0.1, and the files holding them."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    @classmethod
    def create(cls, directory: Path) -> TlsMaterial:
        ca = create_ca("test tunnel CA")
        leaf = issue_certificate(ca, "edge", dns_names=("localhost",), ip_addresses=("127.0.0.1",))
        directory.mkdir(parents=True, exist_ok=True)
        paths = cls(directory / "ca.pem", directory / "edge.pem", directory / "edge.key")
        paths.ca_file.write_bytes(ca.cert_pem)
        paths.cert_file.write_bytes(leaf.cert_pem)
        paths.key_file.write_bytes(leaf.key_pem)
        return paths

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


class Relay:
    """A TCP relay on 127.0.0.1 that can black-hole its connections (keep them open, forward
    nothing, send no FIN or RST) and heal again."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.blackholed = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections = 0

    async def start(self) -> Relay:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.ensure_future(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                if not self.blackholed:
                    dst.write(data)
        except OSError:
            pass
        finally:
            if not self.blackholed:
                dst.close()

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for writer in self._writers:
            writer.transport.abort()


Handler = Callable[[ConnectorStream], Awaitable[None]]


async def echo_handler(stream: ConnectorStream) -> None:
    """Echo origin: digest of the body in a header, body echoed back; WebSocket echo."""
    if stream.request.websocket:
        await stream.accept_websocket([("x-origin-name", "loopback")])
        while (message := await stream.receive_ws()) is not None:
            await stream.send_ws(message)
            if message.type is WsMessageType.CLOSE:
                break
        await stream.end_body()
        return
    digest = hashlib.sha256()
    chunks = []
    while chunk := await stream.read_body_chunk():
        digest.update(chunk)
        chunks.append(chunk)
    await stream.send_response(200, [("x-body-sha256", digest.hexdigest())])
    for chunk in chunks:
        await stream.send_body(chunk)
    await stream.end_body()


class Edge:
    """A minimal edge built from the wire's edge-side API."""

    def __init__(self, tls: TlsMaterial, *, heartbeat: HeartbeatConfig | None = None) -> None:
        self.tls = tls
        self.heartbeat = heartbeat or HeartbeatConfig()
        self.answer: RegistrationResponse = RegistrationResponse.success("conn-1", "ams")
        self.tunnels: asyncio.Queue[EdgeTunnel] = asyncio.Queue()
        self.requests: list[tuple[RegistrationRequest, str]] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def authenticate(request: RegistrationRequest, nonce: str) -> RegistrationResponse:
            self.requests.append((request, nonce))
            return self.answer

        tunnel = await accept_tunnel(
            reader, writer, authenticate=authenticate, heartbeat=self.heartbeat
        )
        if tunnel is not None:
            await self.tunnels.put(tunnel)

    async def start(self) -> Edge:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", 0, ssl=self.tls.server_context()
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        while not self.tunnels.empty():
            tunnel = self.tunnels.get_nowait()
            await tunnel.close("test over")


def registration(nonce: str) -> RegistrationRequest:
    return RegistrationRequest("tun", "acct", 0, "connector", proof=nonce[::-1])


@pytest.fixture
def tls(tmp_path: Path) -> TlsMaterial:
    return TlsMaterial.create(tmp_path / "tls")


@contextlib.asynccontextmanager
async def running_edge(tls: TlsMaterial, **kwargs: object) -> AsyncIterator[Edge]:
    edge = await Edge(tls, **kwargs).start()  # type: ignore[arg-type]
    try:
        yield edge
    finally:
        await edge.aclose()


async def connect(
    tls: TlsMaterial, port: int, handler: Handler = echo_handler, **kwargs: object
) -> ConnectorTunnel:
    return await connect_tunnel(
        "127.0.0.1",
        port,
        tls.client_context(),
        build_registration=registration,
        handle_stream=handler,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_registration_over_tls_and_proof_uses_the_nonce(tls: TlsMaterial) -> None:
    async with running_edge(tls) as edge:
        tunnel = await connect(tls, edge.port)
        edge_tunnel = await asyncio.wait_for(edge.tunnels.get(), 10)
        [(request, nonce)] = edge.requests
        assert request.proof == nonce[::-1] and len(nonce) == 64
        assert (tunnel.connection_id, tunnel.location) == ("conn-1", "ams")
        assert edge_tunnel.registration == request and edge_tunnel.connection_id == "conn-1"
        await tunnel.close()
        assert await asyncio.wait_for(edge_tunnel.wait_closed(), 10) != ""


async def test_refusal_raises_with_the_edge_answer(tls: TlsMaterial) -> None:
    async with running_edge(tls) as edge:
        edge.answer = RegistrationResponse.refusal(RefusalCause.INVALID_SECRET, should_retry=False)
        with pytest.raises(RegistrationRefused) as refused:
            await connect(tls, edge.port)
        assert refused.value.response.cause == RefusalCause.INVALID_SECRET
        assert refused.value.response.should_retry is False
        assert edge.tunnels.empty()


async def test_dial_failure_is_a_dial_error(tls: TlsMaterial) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(DialError):
        await connect(tls, port)


async def test_tls_with_an_untrusted_ca_is_a_dial_error(tls: TlsMaterial, tmp_path: Path) -> None:
    other = TlsMaterial.create(tmp_path / "other")
    async with running_edge(tls) as edge:
        with pytest.raises(DialError):
            await connect(other, edge.port)


async def test_post_body_and_response_body_keep_their_digest(tls: TlsMaterial) -> None:
    async with running_edge(tls) as edge:
        tunnel = await connect(tls, edge.port)
        edge_tunnel = await asyncio.wait_for(edge.tunnels.get(), 10)
        body = os.urandom(5_000_000)  # larger than the 2 MiB stream window
        stream = await edge_tunnel.open_stream(StreamRequest("POST", "/upload", "app.test"))

        async def send() -> None:
            for offset in range(0, len(body), 256 * 1024):
                await stream.send_body(body[offset : offset + 256 * 1024])
            await stream.end_body()

        sender = asyncio.ensure_future(send())
        status, headers = await asyncio.wait_for(stream.response(), 30)
        echoed = bytearray()
        while chunk := await asyncio.wait_for(stream.read_body_chunk(), 30):
            echoed += chunk
        await sender
        assert status == 200
        assert dict(headers)["x-body-sha256"] == hashlib.sha256(body).hexdigest()
        assert hashlib.sha256(echoed).digest() == hashlib.sha256(body).digest()
        await tunnel.close()


async def test_websocket_round_trip(tls: TlsMaterial) -> None:
    async with running_edge(tls) as edge:
        tunnel = await connect(tls, edge.port)
        edge_tunnel = await asyncio.wait_for(edge.tunnels.get(), 10)
        stream = await edge_tunnel.open_stream(StreamRequest("GET", "/ws", "app", websocket=True))
        status, headers = await asyncio.wait_for(stream.response(), 10)
        assert status == 101 and ("x-origin-name", "loopback") in headers
        big = os.urandom(900_000)
        for message in (WsMessage.text("ping ✓"), WsMessage.binary(big)):
            await stream.send_ws(message)
            assert await asyncio.wait_for(stream.receive_ws(), 10) == message
        await stream.send_ws(WsMessage.close(1000, "done"))
        closing = await asyncio.wait_for(stream.receive_ws(), 10)
        assert closing is not None and closing.type is WsMessageType.CLOSE
        assert await asyncio.wait_for(stream.receive_ws(), 10) is None
        await tunnel.close()


async def test_unregister_drains_then_edge_sees_unregistered(tls: TlsMaterial) -> None:
    release = asyncio.Event()

    async def slow(stream: ConnectorStream) -> None:
        await release.wait()
        await stream.send_response(200, [], end=True)

    async with running_edge(tls) as edge:
        tunnel = await connect(tls, edge.port, slow)
        edge_tunnel = await asyncio.wait_for(edge.tunnels.get(), 10)
        inflight = await edge_tunnel.open_stream(StreamRequest("GET", "/", "h"), end_body=True)
        for _ in range(200):
            if tunnel.in_flight:
                break
            await asyncio.sleep(0.01)
        assert await tunnel.unregister() is True
        assert edge_tunnel.draining and not edge_tunnel.accepting_streams
        await asyncio.wait_for(edge_tunnel.wait_unavailable(), 5)
        with pytest.raises(TunnelClosed):
            await edge_tunnel.open_stream(StreamRequest("GET", "/", "h"), end_body=True)
        assert await tunnel.drain(0.05) == 1, "still running before release"
        release.set()
        assert await tunnel.drain(5) == 0
        status, _ = await asyncio.wait_for(inflight.response(), 5)
        assert status == 200
        await tunnel.close("drained")
        assert await asyncio.wait_for(edge_tunnel.wait_closed(), 5) == "unregistered"


async def test_edge_disconnect_reaches_the_connector(tls: TlsMaterial) -> None:
    async with running_edge(tls) as edge:
        tunnel = await connect(tls, edge.port)
        edge_tunnel = await asyncio.wait_for(edge.tunnels.get(), 10)
        await edge_tunnel.close(RefusalCause.TUNNEL_DELETED, should_retry=False)
        await asyncio.wait_for(tunnel.wait_closed(), 5)
        assert tunnel.disconnect is not None
        assert tunnel.disconnect.cause == "tunnel deleted" and not tunnel.disconnect.should_retry


async def test_black_holed_link_is_detected_on_both_sides(tls: TlsMaterial) -> None:
    heartbeat = HeartbeatConfig(interval=0.2, timeout=0.8)
    hung = asyncio.Event()

    async def hang(stream: ConnectorStream) -> None:
        hung.set()
        await asyncio.Event().wait()

    async with running_edge(tls, heartbeat=heartbeat) as edge:
        relay = await Relay("127.0.0.1", edge.port).start()
        try:
            tunnel = await connect(tls, relay.port, hang, heartbeat=heartbeat)
            edge_tunnel = await asyncio.wait_for(edge.tunnels.get(), 10)
            await asyncio.sleep(0.6)  # several heartbeats pass on a healthy link
            assert not tunnel.closed and tunnel.rtt is not None
            stream = await edge_tunnel.open_stream(StreamRequest("GET", "/", "h"), end_body=True)
            await asyncio.wait_for(hung.wait(), 5)
            relay.blackholed = True
            started = time.monotonic()
            reasons = await asyncio.wait_for(
                asyncio.gather(tunnel.wait_closed(), edge_tunnel.wait_closed()), 10
            )
            elapsed = time.monotonic() - started
            assert reasons == ["heartbeat timeout", "heartbeat timeout"]
            assert elapsed < 5, f"detection took {elapsed:.1f} s"
            with pytest.raises(StreamFailedBeforeResponse):
                await stream.response()
            assert tunnel.in_flight == 0, "handlers of a dead connection are cancelled"
        finally:
            await relay.aclose()
