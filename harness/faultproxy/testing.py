"""Upstream servers on 127.0.0.1 for tests and benchmarks of the fault proxy."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

READ_SIZE = 64 * 1024


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(READ_SIZE):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def _sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Count bytes until EOF, then answer the count as decimal text and close."""
    total = 0
    try:
        while data := await reader.read(READ_SIZE):
            total += len(data)
        writer.write(str(total).encode())
        await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def echo_server(host: str = "127.0.0.1") -> AsyncIterator[int]:
    """An echo server (half-close aware); yields its port."""
    server = await asyncio.start_server(_echo, host, 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()


@contextlib.asynccontextmanager
async def sink_server(host: str = "127.0.0.1") -> AsyncIterator[int]:
    """A server that reads to EOF and answers how many bytes it got; yields its port."""
    server = await asyncio.start_server(_sink, host, 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
