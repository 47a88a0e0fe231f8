"""One proxied connection: the client socket, the upstream socket, and the two links between.

A link reads its source socket up to 256 KiB at a time. With no toxic on it the bytes are written
straight to the other socket. Otherwise the chunks go through a pipeline, as in Toxiproxy: each
toxic is a *stage* with its own task and its own inbox (one chunk deep, or the toxic's
``buffer_bytes``: a latency toxic holds up to 32 MiB in flight, as Toxiproxy's 1024 chunks of
32 KiB), so a toxic that waits (latency, bandwidth) does not hold up the ones before it.

End of stream is Toxiproxy's too: when a link's source ends (EOF or a read error) the end passes
through the toxics behind the data, then the destination socket is closed. That makes the other
link's source end, so the other direction delivers what it already has and closes as well. A
client that shuts down its write side therefore sees the connection close once its data is
through, even if the server never answers or closes.

Toxics are started, restarted (update: a new toxicity draw) and removed on live links without
losing data: a toxic interrupted while it holds a chunk passes the unsent rest on at once, and a
removed toxic's stage forwards what is queued in it, then leaves the pipeline.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import struct

from harness.faultproxy.toxic_chain import Stream, ToxicChain, ToxicWrapper
from harness.faultproxy.toxics import Chunk, ToxicStub

READ_SIZE = 256 * 1024

log = logging.getLogger("harness.faultproxy.link")

Item = Chunk | None  # None: end of stream


class _Inbox:
    """A stage's queue: one reader (the stage), any number of writers that wait for space.

    It is full once it holds ``capacity`` bytes, or one chunk when ``capacity`` is 0."""

    def __init__(self, capacity: int) -> None:
        self.items: collections.deque[Item] = collections.deque()
        self.capacity = capacity
        self.size = 0
        self._getter: asyncio.Future[None] | None = None
        self._space: list[asyncio.Future[None]] = []

    def full(self) -> bool:
        return bool(self.items) and self.size >= self.capacity

    def push(self, item: Item) -> None:
        self.items.append(item)
        if item is not None:
            self.size += len(item.data)
        if self._getter is not None and not self._getter.done():
            self._getter.set_result(None)

    async def pop(self) -> Item:
        while not self.items:
            self._getter = asyncio.get_running_loop().create_future()
            await self._getter
        item = self.items.popleft()
        if item is not None:
            self.size -= len(item.data)
        self.wake_writers()
        return item

    async def wait_for_space(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._space.append(waiter)
        await waiter

    def wake_writers(self) -> None:
        waiters, self._space = self._space, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


class _Stage:
    """One toxic on one link: its inbox, its task, and the ``LinkHandle`` its stub acts on."""

    def __init__(self, link: Link, wrapper: ToxicWrapper) -> None:
        toxic = wrapper.toxic
        self.link = link
        self.wrapper = wrapper
        self.inbox = _Inbox(toxic.buffer_bytes)
        self.stub = ToxicStub(toxic, self, toxic.random.chance(wrapper.toxicity))
        self.stub.state = toxic.new_state()
        self.task: asyncio.Task[None] | None = None
        self.holding: Chunk | None = None  # the chunk the toxic is working on
        self.sent = 0  # bytes of ``holding`` already passed on
        self.removed = False  # the toxic was removed: forward what is queued, then leave
        self.ended = False  # the toxic ended the stream here (close)

    # -- LinkHandle --------------------------------------------------------------------------

    def close(self) -> None:
        """End the stream at this toxic: what it already passed on is delivered, then the
        connection closes (Toxiproxy's ``stub.Close``)."""
        self.link.end_at(self)

    def reset(self) -> None:
        """Reset the whole connection now (both peers get RST)."""
        self.link.connection.reset()

    # -- running -----------------------------------------------------------------------------

    def start(self, tail: Chunk | None = None) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run(tail))

    def interrupt(self) -> Chunk | None:
        """Stop the task; return what the toxic held and had not passed on yet (or None)."""
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()
        self.task = None
        held, self.holding = self.holding, None
        if held is None or self.sent >= len(held.data):
            return None
        return Chunk(held.data[self.sent :], held.arrived) if self.sent else held

    async def emit(self, chunk: Chunk) -> None:
        await self.link.place(chunk, self)

    async def _run(self, tail: Chunk | None) -> None:
        link, stub, inbox = self.link, self.stub, self.inbox
        try:
            if tail is not None:
                await link.place(tail, self)
            while not self.ended:
                item = await inbox.pop()
                active = stub.applies and not self.removed
                if item is None:
                    if active:
                        await stub.toxic.at_eof(stub)
                    await link.place(None, self)
                    return
                if not active:
                    await link.place(item, self)
                else:
                    self.holding, self.sent = item, 0
                    await stub.toxic.pipe(item, self.emit, stub)
                    self.holding = None
                if self.removed and not inbox.items:
                    link.prune(self)
                    return
            await link.place(None, self)  # the toxic closed the stream (limit_data, ...)
        except (ConnectionError, OSError) as exc:
            log.debug("link %s ended in a toxic: %s", link.stream, exc)
            link.connection.close()


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
        self._stages: list[_Stage] = []
        self.done = False

    # -- toxics ------------------------------------------------------------------------------

    def attach(self, wrapper: ToxicWrapper) -> None:
        """Start ``wrapper`` at the end of this link (one seeded toxicity draw decides if it
        applies)."""
        stage = _Stage(self, wrapper)
        self._stages.append(stage)
        self._start_background(stage)
        stage.start()

    def reattach(self, wrapper: ToxicWrapper) -> None:
        """Restart ``wrapper`` after an update: a new toxicity draw, per-link state kept."""
        for stage in self._find(wrapper):
            tail = stage.interrupt()
            self._stop_background(stage)
            stage.stub.applies = wrapper.toxic.random.chance(wrapper.toxicity)
            self._start_background(stage)
            stage.start(tail)

    def detach(self, wrapper: ToxicWrapper) -> None:
        """Remove ``wrapper`` from this link (a timeout toxic closes the connection it held)."""
        for stage in self._find(wrapper):
            tail = stage.interrupt()
            self._stop_background(stage)
            stage.removed = True
            if stage.stub.applies:
                stage.stub.toxic.on_remove(stage.stub)
            if stage.ended:
                continue
            if tail is None and not stage.inbox.items:
                self.prune(stage)
            else:
                stage.start(tail)

    def _find(self, wrapper: ToxicWrapper) -> list[_Stage]:
        return [s for s in self._stages if s.wrapper is wrapper and not s.removed]

    def prune(self, stage: _Stage) -> None:
        """Take a removed, empty stage out of the pipeline; writers waiting on it move on."""
        with contextlib.suppress(ValueError):
            self._stages.remove(stage)
        stage.inbox.wake_writers()

    def end_at(self, stage: _Stage) -> None:
        """A toxic closed the stream: after what it passed on, only the end of stream follows."""
        if stage.ended:
            return
        stage.ended = True
        if stage.task is not None and stage.task is asyncio.current_task():
            return  # its own loop passes the end on when the toxic returns
        stage.interrupt()
        stage.task = asyncio.get_running_loop().create_task(self.place(None, stage))

    @staticmethod
    def _start_background(stage: _Stage) -> None:
        if stage.stub.applies:
            coroutine = stage.stub.toxic.on_start(stage.stub)
            if coroutine is not None:
                stage.stub.background = asyncio.get_running_loop().create_task(coroutine)

    @staticmethod
    def _stop_background(stage: _Stage) -> None:
        if stage.stub.background is not None:
            stage.stub.background.cancel()
            stage.stub.background = None

    def stop(self) -> None:
        """Cancel every stage and background task (the connection is closing)."""
        for stage in self._stages:
            stage.interrupt()
            self._stop_background(stage)

    # -- data path ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Copy until the source ends (EOF or error), then pass the end on."""
        loop = asyncio.get_running_loop()
        reader, writer = self._reader, self._writer
        try:
            while True:
                data = await reader.read(READ_SIZE)
                if not data:
                    break
                if self._stages:
                    await self.place(Chunk(data, loop.time()), None)
                elif not self.done:
                    writer.write(data)
                    await writer.drain()
        except (ConnectionError, OSError) as exc:
            log.debug("link %s source ended: %s", self.stream, exc)
        try:
            await self.place(None, None)
        except (ConnectionError, OSError) as exc:
            log.debug("link %s ended: %s", self.stream, exc)
            self.connection.close()

    async def place(self, item: Item, origin: _Stage | None) -> None:
        """Hand ``item`` to the stage after ``origin`` (None: the first), or write it out when
        there is none; waits while that stage's inbox is full. The next stage is looked up
        again after every wait, so toxics can come and go meanwhile."""
        while True:
            stages = self._stages
            if origin is None:
                index = 0
            elif origin in stages:
                index = stages.index(origin) + 1
            else:  # a stage that already left the pipeline
                index = len(stages)
            if index < len(stages):
                inbox = stages[index].inbox
                if not inbox.full() or item is None:
                    inbox.push(item)
                    self._count(origin, item)
                    return
                await inbox.wait_for_space()
                continue
            if item is None:
                self._finish()
                return
            self._count(origin, item)
            if self.done:
                return  # the destination is gone: the data goes nowhere, as in Toxiproxy
            self._writer.write(item.data)
            await self._writer.drain()
            return

    @staticmethod
    def _count(origin: _Stage | None, item: Item) -> None:
        if origin is not None and item is not None and origin.holding is not None:
            origin.sent += len(item.data)

    def _finish(self) -> None:
        """End of stream reached the destination: close it (the other link's source ends)."""
        if self.done:
            return
        self.done = True
        self._writer.close()
        self.connection.link_done()


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
        self._ended = asyncio.get_running_loop().create_future()
        self.closed = False
        for stream, link in self.links.items():
            for wrapper in toxics.for_stream(stream):
                link.attach(wrapper)

    async def run(self) -> None:
        """Run both links until both have closed their destination, or the connection closed."""
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(link.run()) for link in self.links.values()]
        try:
            await self._ended
        finally:
            self.close()
            for task in self._tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    log.error("link failed", exc_info=task.exception())

    def link_done(self) -> None:
        if all(link.done for link in self.links.values()) and not self._ended.done():
            self._ended.set_result(None)

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
        if not self._ended.done():
            self._ended.set_result(None)
