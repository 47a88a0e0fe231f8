"""One proxied connection: the client socket, the upstream socket, and the two links between.

Data path: each link reads up to 64 KiB at a time. While no toxic applies to the link (and
nothing is queued) the bytes are written straight to the other socket; otherwise each chunk is
stamped and queued, and a processor task passes it through the link's toxics in order. Half-close
is kept: end of stream on one side becomes ``write_eof`` on the other, and the connection closes
once both directions have ended (or a toxic, an error or the proxy closes it).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import struct
from collections.abc import Sequence

from harness.faultproxy.toxic_chain import Stream, ToxicChain, ToxicWrapper
from harness.faultproxy.toxics import Chunk, ToxicStub

READ_SIZE = 64 * 1024
QUEUE_CHUNKS = 16

log = logging.getLogger("harness.faultproxy.link")


class Link:
    """One direction of a connection: reads one socket, writes the other, through its toxics."""

    def __init__(
        self,
        connection: Connection,
        stream: Stream,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.connection = connection
        self.stream = stream
        self._reader = reader
        self._writer = writer
        self._stubs: list[tuple[ToxicWrapper, ToxicStub]] = []
        self._applied: tuple[ToxicStub, ...] = ()
        self._queue: asyncio.Queue[Chunk | None] = asyncio.Queue(QUEUE_CHUNKS)
        self._backlog = 0
        self._processor: asyncio.Task[None] | None = None

    # -- toxics ------------------------------------------------------------------------------

    def attach(self, wrapper: ToxicWrapper) -> None:
        """Start ``wrapper`` on this link (one seeded toxicity draw decides if it applies)."""
        toxic = wrapper.toxic
        stub = ToxicStub(toxic, self.connection, toxic.random.chance(wrapper.toxicity))
        stub.state = toxic.new_state()
        self._stubs.append((wrapper, stub))
        self._start(stub)
        self._refresh()

    def reattach(self, wrapper: ToxicWrapper) -> None:
        """Restart ``wrapper`` after an update: a new toxicity draw, per-link state kept."""
        for owner, stub in self._stubs:
            if owner is wrapper:
                self._stop(stub)
                stub.applies = wrapper.toxic.random.chance(wrapper.toxicity)
                self._start(stub)
        self._refresh()

    def detach(self, wrapper: ToxicWrapper) -> None:
        """Remove ``wrapper`` from this link (a timeout toxic closes the connection it held)."""
        for entry in list(self._stubs):
            owner, stub = entry
            if owner is wrapper:
                self._stubs.remove(entry)
                self._stop(stub)
                if stub.applies:
                    stub.toxic.on_remove(stub)
        self._refresh()

    def _start(self, stub: ToxicStub) -> None:
        if stub.applies:
            coroutine = stub.toxic.on_start(stub)
            if coroutine is not None:
                stub.background = asyncio.get_running_loop().create_task(coroutine)

    @staticmethod
    def _stop(stub: ToxicStub) -> None:
        if stub.background is not None:
            stub.background.cancel()
            stub.background = None

    def _refresh(self) -> None:
        self._applied = tuple(stub for _, stub in self._stubs if stub.applies)

    def stop(self) -> None:
        """Cancel the processor and every toxic's background task (the connection is closing)."""
        for _, stub in self._stubs:
            self._stop(stub)
        if self._processor is not None:
            self._processor.cancel()

    # -- data path ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Copy until end of stream, then half-close the other side."""
        loop = asyncio.get_running_loop()
        reader, writer = self._reader, self._writer
        try:
            while True:
                data = await reader.read(READ_SIZE)
                if not data:
                    break
                if self._applied or self._backlog:
                    self._backlog += 1
                    if self._processor is None:
                        self._processor = loop.create_task(self._process())
                    await self._queue.put(Chunk(data, loop.time()))
                else:
                    writer.write(data)
                    await writer.drain()
            if self._processor is None:
                self._write_eof()
            else:
                self._backlog += 1
                await self._queue.put(None)
                await asyncio.wait([self._processor])
        except (ConnectionError, OSError) as exc:
            log.debug("link %s ended: %s", self.stream, exc)
            self.connection.close()

    async def _process(self) -> None:
        try:
            while True:
                chunk = await self._queue.get()
                try:
                    if chunk is None:
                        for stub in self._applied:
                            await stub.toxic.at_eof(stub)
                        self._write_eof()
                        return
                    await self._through(self._applied, 0, chunk)
                finally:
                    self._backlog -= 1
        except (ConnectionError, OSError) as exc:
            log.debug("link %s ended in a toxic: %s", self.stream, exc)
            self.connection.close()

    async def _through(self, stubs: Sequence[ToxicStub], index: int, chunk: Chunk) -> None:
        if index == len(stubs):
            self._writer.write(chunk.data)
            await self._writer.drain()
            return
        stub = stubs[index]
        await stub.toxic.pipe(chunk, functools.partial(self._through, stubs, index + 1), stub)

    def _write_eof(self) -> None:
        writer = self._writer
        if writer.is_closing():
            return
        try:
            if writer.can_write_eof():
                writer.write_eof()
            else:
                writer.close()
        except OSError:
            self.connection.close()


class Connection:
    """A client connection and its upstream connection; closes or resets both sides together."""

    def __init__(
        self,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        toxics: ToxicChain,
    ) -> None:
        self._writers = (client[1], upstream[1])
        self.links: dict[Stream, Link] = {
            "upstream": Link(self, "upstream", client[0], upstream[1]),
            "downstream": Link(self, "downstream", upstream[0], client[1]),
        }
        self._tasks: list[asyncio.Task[None]] = []
        self.closed = False
        for stream, link in self.links.items():
            for wrapper in toxics.for_stream(stream):
                link.attach(wrapper)

    async def run(self) -> None:
        """Run both links until both directions ended or the connection was closed."""
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(link.run()) for link in self.links.values()]
        try:
            await asyncio.wait(self._tasks)
        finally:
            self.close()
            for task in self._tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    log.error("link failed", exc_info=task.exception())

    def close(self) -> None:
        """Close both sockets gracefully (buffered bytes are flushed first)."""
        if self.closed:
            return
        self.closed = True
        self._cancel()
        for writer in self._writers:
            writer.close()

    def reset(self) -> None:
        """Close both sockets with RST (SO_LINGER 0): peers see "connection reset by peer"."""
        if self.closed:
            return
        self.closed = True
        self._cancel()
        for writer in self._writers:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()

    def _cancel(self) -> None:
        current = asyncio.current_task()
        for link in self.links.values():
            link.stop()
        for task in self._tasks:
            if task is not current:
                task.cancel()
