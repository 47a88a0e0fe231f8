"""reference/http_limits.py and the visitor's body idle timeout on real sockets (127.0.0.1):
the connection cap answers 503 + Retry-After, stalled headers get 408, a slow body that keeps
progressing is served while a stalled one is cut."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from reference.edge.request_body import BodyStalled, ReplayableBody
from reference.http_limits import GuardedSite, SlowClientLimits

pytestmark = pytest.mark.timeout(60)

LIMITS = SlowClientLimits(
    header_timeout=1.0, idle_timeout=5.0, body_idle_timeout=1.0, max_connections=2
)


class Served:
    def __init__(self) -> None:
        self.cuts: list[str] = []
        self.bodies: list[int | str] = []
        self.port = 0


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    record = Served()

    async def upload(request: web.Request) -> web.Response:
        def stalled() -> None:  # as the visitor proxy does: count it, cut the connection
            record.cuts.append("body_timeout")
            assert request.transport is not None
            request.transport.close()

        body = ReplayableBody(
            request.content, idle_timeout=LIMITS.body_idle_timeout, on_stall=stalled
        )
        size = 0
        try:
            async for chunk in body.chunks():
                size += len(chunk)
        except BodyStalled:
            record.bodies.append("stalled")
            raise
        record.bodies.append(size)
        return web.Response(text=f"{size}\n")

    app = web.Application()
    app.router.add_post("/upload", upload)
    runner = web.AppRunner(app, **LIMITS.runner_kwargs())
    await runner.setup()
    site = GuardedSite(runner, "127.0.0.1", 0, LIMITS, record.cuts.append)
    await site.start()
    record.port = site.port
    try:
        yield record
    finally:
        await runner.cleanup()


async def _open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def test_the_connection_cap_answers_503_with_retry_after(served: Served) -> None:
    held = [await _open(served.port) for _ in range(LIMITS.max_connections)]
    await asyncio.sleep(0.1)
    reader, writer = await _open(served.port)
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1\r\n" in answer
    assert served.cuts == ["connection_cap"]
    for _, w in held:
        w.close()


async def test_stalled_headers_get_408_within_the_header_timeout(served: Served) -> None:
    reader, writer = await _open(served.port)
    started = time.monotonic()
    writer.write(b"POST /upload HTTP/1.1\r\nHost: x\r\n")
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - started < LIMITS.header_timeout + 1.5
    assert served.cuts == ["header_timeout"]


async def test_a_slow_progressing_body_is_served_and_a_stalled_one_is_cut(served: Served) -> None:
    # 6 chunks, 0.5 s apart: 3 s in all (longer than the 1 s header and body idle timeouts).
    reader, writer = await _open(served.port)
    writer.write(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 6000\r\n\r\n")
    for _ in range(6):
        await asyncio.sleep(0.5)
        writer.write(b"x" * 1000)
        await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200 ")
    writer.close()

    reader, writer = await _open(served.port)
    writer.write(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 6000\r\n\r\n" + b"x" * 10)
    await asyncio.wait_for(reader.read(), 5)  # the server gives up and closes
    writer.close()
    assert served.bodies == [6000, "stalled"]
    assert served.cuts == ["body_timeout"]


async def _first_response(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    return head + await asyncio.wait_for(reader.readexactly(length), 5)


async def test_a_second_request_whose_headers_stall_is_cut_with_408(served: Served) -> None:
    """The header timer applies to every request of a keep-alive connection, not only the
    first: after a served request, a pause shorter than the idle timeout but longer than the
    header timeout is fine; headers that then start and stall are cut with 408."""
    reader, writer = await _open(served.port)
    request = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
    writer.write(request)
    assert (await _first_response(reader)).startswith(b"HTTP/1.1 200 ")
    await asyncio.sleep(LIMITS.header_timeout * 1.5)  # idle between requests: not timed
    writer.write(request)
    assert (await _first_response(reader)).startswith(b"HTTP/1.1 200 ")
    writer.write(b"POST /upload HTTP/1.1\r\nHost: x\r\n")  # ... and nothing more
    answer = await asyncio.wait_for(reader.read(), LIMITS.idle_timeout)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert served.cuts == ["header_timeout"]
    assert served.bodies == [2, 2]
