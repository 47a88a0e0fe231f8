"""Each toxic's effect on real sockets through the embedded fault proxy (127.0.0.1 only)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import cast

import pytest

from harness.faultproxy import FaultProxyClient, FaultProxyServer, Proxy
from harness.faultproxy.testing import echo_server
from harness.faults.base import FaultContext
from harness.faults.links import LinkBlackhole
from harness.stack.base import Stack
from harness.stack.ports import free_port

IO_TIMEOUT = 10.0


@pytest.fixture
async def server() -> AsyncIterator[FaultProxyServer]:
    async with FaultProxyServer(("127.0.0.1", 0), seed=42) as fp:
        yield fp


@pytest.fixture
async def client(server: FaultProxyServer) -> AsyncIterator[FaultProxyClient]:
    async with FaultProxyClient(server.url, timeout=10) as fp_client:
        yield fp_client


@pytest.fixture
async def proxy(client: FaultProxyClient) -> AsyncIterator[Proxy]:
    async with echo_server() as port:
        yield await client.create_proxy("echo", "127.0.0.1:0", f"127.0.0.1:{port}")


@contextlib.asynccontextmanager
async def connected(
    proxy: Proxy,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.listen_port)
    try:
        yield reader, writer
    finally:
        writer.close()


async def roundtrip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes = b"ping"
) -> float:
    """Send ``payload`` and wait for it to come back; seconds taken."""
    started = time.monotonic()
    writer.write(payload)
    await writer.drain()
    got = await asyncio.wait_for(reader.readexactly(len(payload)), IO_TIMEOUT)
    assert got == payload
    return time.monotonic() - started


async def read_to_eof(reader: asyncio.StreamReader) -> tuple[bytes, int]:
    """All bytes until EOF and how many reads it took."""
    parts: list[bytes] = []
    while chunk := await asyncio.wait_for(reader.read(65536), IO_TIMEOUT):
        parts.append(chunk)
    return b"".join(parts), len(parts)


class RecordingUpstream:
    """An upstream that records what it receives and answers ``ack:<bytes>``."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.got_data = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                self.received += data
                self.got_data.set()
                writer.write(b"ack:" + data)
                await writer.drain()
        writer.close()


async def test_bytes_pass_unchanged(proxy: Proxy) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    async with connected(proxy) as (reader, writer):
        writer.write(payload)
        echoed = await asyncio.wait_for(reader.readexactly(len(payload)), IO_TIMEOUT)
        writer.write_eof()
        assert await read_to_eof(reader) == (b"", 0)
    assert echoed == payload


async def _hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads to end of stream, then neither answers nor closes (ignores the half-close)."""
    with contextlib.suppress(ConnectionError, OSError):
        while await reader.read(65536):
            pass
        await asyncio.sleep(30)
    writer.close()


@pytest.mark.parametrize("toxic", [None, "latency"])
async def test_half_close_closes_once_the_data_is_through(
    client: FaultProxyClient, toxic: str | None
) -> None:
    """As Toxiproxy: when the client shuts its write side, the upstream gets the data and is
    closed, and so is the client, even though the upstream server never closes."""
    hold = await asyncio.start_server(_hold, "127.0.0.1", 0)
    try:
        port = hold.sockets[0].getsockname()[1]
        proxy = await client.create_proxy("hold", "127.0.0.1:0", f"127.0.0.1:{port}")
        if toxic:
            await proxy.add_toxic(toxic, {"latency": 200}, stream="upstream")
        async with connected(proxy) as (reader, writer):
            writer.write(b"x" * 1_000_000)
            started = time.monotonic()
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), 5.0) == b""
            assert time.monotonic() - started < 2.0
    finally:
        hold.close()


async def test_latency_adds_delay_to_each_roundtrip(proxy: Proxy) -> None:
    async with connected(proxy) as (reader, writer):
        baseline = await roundtrip(reader, writer)
        async with proxy.toxic("latency", latency=300):
            delayed = await roundtrip(reader, writer)
        after = await roundtrip(reader, writer)
    assert delayed >= 0.28, f"latency toxic added only {delayed:.3f} s"
    assert delayed < 3.0
    assert baseline < 0.25 and after < 0.25


async def test_latency_on_upstream_stream_delays_too(proxy: Proxy) -> None:
    await proxy.add_toxic("latency", {"latency": 250}, stream="upstream")
    async with connected(proxy) as (reader, writer):
        assert await roundtrip(reader, writer) >= 0.23


async def test_toxicity_zero_never_applies(proxy: Proxy) -> None:
    await proxy.add_toxic("latency", {"latency": 2000}, toxicity=0.0)
    async with connected(proxy) as (reader, writer):
        assert await roundtrip(reader, writer) < 1.0


async def test_upstream_and_downstream_toxics_act_on_their_own_direction(
    client: FaultProxyClient,
) -> None:
    upstream = RecordingUpstream()
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        proxy = await client.create_proxy("rec", "127.0.0.1:0", f"127.0.0.1:{port}")
        # downstream black hole: the request reaches the upstream, the answer never comes back
        async with proxy.toxic("timeout", timeout=0, stream="downstream"):
            async with connected(proxy) as (reader, writer):
                writer.write(b"hello")
                await asyncio.wait_for(upstream.got_data.wait(), IO_TIMEOUT)
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(reader.read(100), 0.5)
        assert bytes(upstream.received) == b"hello"
        # upstream black hole: the upstream never sees the request
        upstream.received.clear()
        upstream.got_data.clear()
        async with proxy.toxic("timeout", timeout=0, stream="upstream"):
            async with connected(proxy) as (reader, writer):
                writer.write(b"lost")
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(reader.read(100), 0.5)
        assert bytes(upstream.received) == b""
    finally:
        server.close()


async def test_timeout_zero_holds_then_closes_when_removed(proxy: Proxy) -> None:
    await proxy.add_toxic("timeout", {"timeout": 0})
    async with connected(proxy) as (reader, writer):
        writer.write(b"anyone?")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(100), 0.6)  # black hole, still open
        await proxy.remove_toxic("timeout_downstream")
        assert await asyncio.wait_for(reader.read(100), IO_TIMEOUT) == b""  # closed


async def test_timeout_positive_closes_after_the_timeout(proxy: Proxy) -> None:
    await proxy.add_toxic("timeout", {"timeout": 300})
    async with connected(proxy) as (reader, writer):
        started = time.monotonic()
        writer.write(b"x")
        data, _ = await read_to_eof(reader)
        elapsed = time.monotonic() - started
    assert data == b""
    assert 0.25 <= elapsed < 5.0


async def test_reset_peer_resets_the_connection(proxy: Proxy) -> None:
    await proxy.add_toxic("reset_peer", {"timeout": 0})
    async with connected(proxy) as (reader, writer):
        writer.write(b"x")
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(100), IO_TIMEOUT)


async def test_reset_peer_waits_its_timeout_first(proxy: Proxy) -> None:
    await proxy.add_toxic("reset_peer", {"timeout": 300}, stream="upstream")
    async with connected(proxy) as (reader, writer):
        started = time.monotonic()
        writer.write(b"x")
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(100), IO_TIMEOUT)
        assert time.monotonic() - started >= 0.25


async def test_limit_data_closes_after_n_bytes(proxy: Proxy) -> None:
    await proxy.add_toxic("limit_data", {"bytes": 100})
    payload = bytes(range(250)) * 4
    async with connected(proxy) as (reader, writer):
        writer.write(payload)
        data, _ = await read_to_eof(reader)
    assert data == payload[:100]


async def test_bandwidth_limits_throughput(proxy: Proxy) -> None:
    size = 60_000
    async with connected(proxy) as (reader, writer):
        fast = await roundtrip(reader, writer, b"a" * size)
        async with proxy.toxic("bandwidth", rate=100):  # 100 KB/s -> about 0.6 s for 60 kB
            slow = await roundtrip(reader, writer, b"b" * size)
    assert fast < 0.3
    assert 0.4 <= slow < 6.0, f"60 kB at 100 KB/s took {slow:.3f} s"


async def test_slicer_delivers_in_several_smaller_writes(proxy: Proxy) -> None:
    payload = bytes(range(200)) * 10  # 2000 bytes
    async with connected(proxy) as (reader, writer):
        await proxy.add_toxic("slicer", {"average_size": 100, "size_variation": 20, "delay": 5000})
        writer.write(payload)
        data, reads = b"", 0
        while len(data) < len(payload):
            data += await asyncio.wait_for(reader.read(65536), IO_TIMEOUT)
            reads += 1
    assert data == payload
    assert reads >= 5, f"only {reads} reads: the data was not sliced"


async def test_slow_close_delays_the_close(proxy: Proxy) -> None:
    await proxy.add_toxic("slow_close", {"delay": 400})
    async with connected(proxy) as (reader, writer):
        writer.write(b"bye")
        assert await asyncio.wait_for(reader.readexactly(3), IO_TIMEOUT) == b"bye"
        writer.write_eof()  # the proxy closes the upstream, whose end reaches us late
        got_data = time.monotonic()
        assert await asyncio.wait_for(reader.read(10), IO_TIMEOUT) == b""
        assert time.monotonic() - got_data >= 0.3


async def test_toxic_added_to_open_connection_applies_to_it(proxy: Proxy) -> None:
    async with connected(proxy) as (reader, writer):
        assert await roundtrip(reader, writer) < 0.25
        await proxy.add_toxic("latency", {"latency": 300})
        assert await roundtrip(reader, writer) >= 0.28
        await proxy.update_toxic("latency_downstream", {"latency": 0})
        assert await roundtrip(reader, writer) < 0.25


async def test_disable_closes_connections_and_refuses_new_ones(proxy: Proxy) -> None:
    async with connected(proxy) as (reader, writer):
        await roundtrip(reader, writer)
        async with proxy.down():
            assert await asyncio.wait_for(reader.read(10), IO_TIMEOUT) == b""
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection("127.0.0.1", proxy.listen_port)
        assert proxy.enabled
    async with connected(proxy) as (reader, writer):  # same port again
        await roundtrip(reader, writer)


async def test_deleting_a_proxy_closes_its_connections(proxy: Proxy) -> None:
    async with connected(proxy) as (reader, writer):
        await roundtrip(reader, writer)
        await proxy.delete()
        try:
            data = await asyncio.wait_for(reader.read(10), IO_TIMEOUT)
        except ConnectionResetError:
            data = b""
        assert data == b""
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", proxy.listen_port)


async def test_unreachable_upstream_closes_the_client(client: FaultProxyClient) -> None:
    proxy = await client.create_proxy("dead", "127.0.0.1:0", f"127.0.0.1:{free_port()}")
    async with connected(proxy) as (reader, _writer):
        try:
            data = await asyncio.wait_for(reader.read(10), IO_TIMEOUT)
        except ConnectionResetError:
            data = b""
    assert data == b""


async def test_reset_removes_toxics_from_open_connections(
    client: FaultProxyClient, proxy: Proxy
) -> None:
    await proxy.add_toxic("latency", {"latency": 400})
    async with connected(proxy) as (reader, writer):
        assert await roundtrip(reader, writer) >= 0.35
        await client.reset()
        assert await roundtrip(reader, writer) < 0.3


async def _blackhole_against_a_closing_upstream(client: FaultProxyClient, close: str) -> bool:
    """A link_blackhole (``close``) over a connection whose upstream closes its end while the
    hole lasts (an edge whose heartbeat gave up): whether that close reached the client before
    the heal. After the heal the connection is closed either way."""
    closing = asyncio.Event()

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await closing.wait()
        writer.close()

    server = await asyncio.start_server(upstream, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        await client.create_proxy("conn-ams", "127.0.0.1:0", f"127.0.0.1:{port}")
        proxy = await client.get_proxy("conn-ams")
        ctx = FaultContext(
            stack=cast(Stack, None), faultproxy=client, api_url="", admin_token_file=""
        )
        fault = LinkBlackhole("conn-ams", {"close": close})
        async with connected(proxy) as (reader, _writer):
            await fault.inject(ctx)
            closing.set()
            try:
                crossed = await asyncio.wait_for(reader.read(10), 1.0) == b""
            except TimeoutError:
                crossed = False
            await fault.heal(ctx)
            assert await asyncio.wait_for(reader.read(10), IO_TIMEOUT) == b""
        return crossed
    finally:
        server.close()


async def test_blackhole_passes_the_peers_close_like_toxiproxys_timeout(
    client: FaultProxyClient,
) -> None:
    assert await _blackhole_against_a_closing_upstream(client, "pass") is True


async def test_blackhole_with_close_hold_keeps_the_peers_close_in_the_hole(
    client: FaultProxyClient,
) -> None:
    assert await _blackhole_against_a_closing_upstream(client, "hold") is False
