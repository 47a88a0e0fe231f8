"""The thin asyncio layer around a protocol core: read loop, heartbeat timer, stream channels."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from reference.wire import events as ev
from reference.wire.channel import StreamChannel
from reference.wire.core import TunnelProtocol
from reference.wire.errors import StreamReset, TunnelClosed, WireError, WireProtocolError
from reference.wire.messages import WsMessage

logger = logging.getLogger(__name__)

Clock = Callable[[], float]

READ_SIZE = 65_536
#: Longest sleep of the heartbeat timer (it also wakes at the core's next deadline).
MAX_TICK = 0.25
#: After a graceful close, the transport is aborted if it has not closed within this time
#: (a black-holed peer never takes the buffered GOAWAY).
CLOSE_GRACE = 2.0


class TunnelConnection:
    """Runs ``core`` over an asyncio (reader, writer) pair. Subclassed per role."""

    def __init__(
        self,
        core: TunnelProtocol,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        self._core = core
        self._reader = reader
        self._writer = writer
        self._clock = clock
        self._channels: dict[int, StreamChannel] = {}
        self._closed = asyncio.Event()
        self._close_reason: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._flush_scheduled = False
        peer = writer.get_extra_info("peername")
        self.peer: str = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)

    # --- public -------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def close_reason(self) -> str | None:
        return self._close_reason

    @property
    def active_streams(self) -> int:
        """Visitor streams in progress."""
        return len(self._channels)

    @property
    def rtt(self) -> float | None:
        """Last PING round-trip time in seconds (None before the first ACK)."""
        return self._core.rtt

    async def wait_closed(self) -> str:
        """Wait until the connection is closed; return why ("unregistered", "heartbeat timeout",
        "eof", "closed by peer: ...", "protocol error: ...", or the local close reason)."""
        await self._closed.wait()
        return self._close_reason or "closed"

    # --- running ------------------------------------------------------------------------------

    def _start(self) -> None:
        self._spawn(self._guarded(self._read_loop()), "read")
        self._spawn(self._guarded(self._heartbeat_loop()), "heartbeat")
        self._flush()

    async def _guarded(self, loop: Coroutine[Any, Any, None]) -> None:
        """Run a connection loop; a bug in it closes the connection instead of hanging it."""
        try:
            await loop
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("tunnel connection loop failed")
            with contextlib.suppress(Exception):
                self._core.close(f"internal error: {type(exc).__name__}")
                self._flush_now()
            self._connection_over(f"internal error: {type(exc).__name__}: {exc}", abort=True)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        task.set_name(f"tunnel-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("tunnel task %s failed", task.get_name(), exc_info=task.exception())

    def _flush(self) -> None:
        """Write what the core has to send, once per event-loop iteration: every frame queued
        in this iteration (a response's HEADERS and DATA, window updates, several streams'
        frames) leaves in one ``write`` (one TLS record, one segment) instead of one each."""
        if self._flush_scheduled:
            return
        self._flush_scheduled = True
        asyncio.get_running_loop().call_soon(self._flush_now)

    def _flush_now(self) -> None:
        """Write what the core has to send at once (closing paths, the scheduled flush)."""
        self._flush_scheduled = False
        data = self._core.data_to_send()
        if data and not self._writer.is_closing():
            self._writer.write(data)

    async def _read_loop(self) -> None:
        while not self._core.closed:
            try:
                data = await self._reader.read(READ_SIZE)
            except (OSError, asyncio.IncompleteReadError) as exc:
                self._process(self._core.receive_eof(f"{type(exc).__name__}: {exc}"))
                return
            if not data:
                self._process(self._core.receive_eof())
                return
            try:
                events = self._core.receive_data(data, self._clock())
            except WireProtocolError:
                self._flush_now()
                self._connection_over(self._core.closed_reason or "protocol error", abort=False)
                return
            self._process(events)

    async def _heartbeat_loop(self) -> None:
        while not self._core.closed:
            delay = min(max(self._core.next_deadline() - self._clock(), 0.005), MAX_TICK)
            await asyncio.sleep(delay)
            self._process(self._core.tick(self._clock()))

    def _process(self, events: list[ev.WireEvent]) -> None:
        for event in events:
            self._dispatch(event)
        for channel in list(self._channels.values()):
            channel.capacity_changed()
        self._flush()

    def _dispatch(self, event: ev.WireEvent) -> None:
        if isinstance(event, ev.BodyReceived):
            channel = self._channels.get(event.stream_id)
            if channel is None:
                self._core.acknowledge(event.stream_id, event.flow_length)
            else:
                channel.feed_body(event.data, event.flow_length)
        elif isinstance(event, ev.WsMessageReceived):
            channel = self._channels.get(event.stream_id)
            if channel is None:
                self._core.acknowledge(event.stream_id, event.flow_length)
            else:
                channel.feed_ws(event.message, event.flow_length)
        elif isinstance(event, ev.StreamEnded):
            channel = self._channels.get(event.stream_id)
            if channel is not None:
                channel.feed_end(event.body_digest)
                self._forget_if_finished(event.stream_id)
        elif isinstance(event, ev.StreamWasReset):
            channel = self._channels.pop(event.stream_id, None)
            if channel is not None:
                channel.fail(self._reset_error(event))
        elif isinstance(event, ev.ConnectionClosed):
            self._connection_over(event.reason, abort=event.reason == "heartbeat timeout")
        else:
            self._dispatch_role(event)

    def _reset_error(self, event: ev.StreamWasReset) -> WireError:
        return StreamReset(f"stream reset by peer (error {event.error_code:#x})")

    def _connection_error(self, channel: StreamChannel, reason: str) -> WireError:
        return StreamReset(f"tunnel connection closed: {reason}")

    def _dispatch_role(self, event: ev.WireEvent) -> None:
        """Role-specific events (control stream, stream opened, response started)."""

    def _connection_over(self, reason: str, *, abort: bool) -> None:
        if self._closed.is_set():
            return
        self._close_reason = reason
        for channel in list(self._channels.values()):
            channel.fail(self._connection_error(channel, reason))
        self._channels.clear()
        self._flush_now()
        transport = self._writer.transport
        if abort:
            transport.abort()
        else:
            with contextlib.suppress(Exception):
                self._writer.close()
            asyncio.get_running_loop().call_later(CLOSE_GRACE, transport.abort)
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current and task.get_name() in ("tunnel-read", "tunnel-heartbeat"):
                task.cancel()
        self._closed.set()
        self._on_closed(reason)

    def _on_closed(self, reason: str) -> None:
        """Role hook, called once when the connection is over."""

    async def _close(self, reason: str) -> str:
        self._process(self._core.close(reason))
        return await self.wait_closed()

    def _forget_if_finished(self, stream_id: int) -> None:
        channel = self._channels.get(stream_id)
        if channel is not None and channel.finished:
            del self._channels[stream_id]

    # --- ChannelOwner -------------------------------------------------------------------------

    def _acknowledge(self, stream_id: int, flow_length: int) -> None:
        self._core.acknowledge(stream_id, flow_length)
        self._flush()

    def _send_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        if self._core.closed:
            raise TunnelClosed(self._core.closed_reason or "closed")
        self._core.send_data(stream_id, data, end_stream=end_stream)
        self._flush()
        if end_stream:
            self._forget_if_finished(stream_id)

    def _send_ws(self, stream_id: int, message: WsMessage) -> None:
        if self._core.closed:
            raise TunnelClosed(self._core.closed_reason or "closed")
        self._core.send_ws(stream_id, message)
        self._flush()

    def _reset_stream(self, stream_id: int) -> None:
        self._core.reset_stream(stream_id)
        self._channels.pop(stream_id, None)
        self._flush()

    def _pending_outbound(self, stream_id: int) -> int:
        return self._core.pending_outbound(stream_id)
