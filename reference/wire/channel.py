"""One stream of a tunnel connection as seen by asyncio code (both roles share this)."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol

from reference.wire.body_digest import Verdict
from reference.wire.errors import BodyDigestMismatch, StreamReset, TunnelClosed, WireError
from reference.wire.messages import WsMessage

#: ``send_body``/``send_ws`` wait while more than this many bytes of the stream are queued
#: behind the peer's flow-control window.
SEND_HIGH_WATER = 64 * 1024


class ChannelOwner(Protocol):
    """What a channel needs from its connection."""

    def _acknowledge(self, stream_id: int, flow_length: int) -> None: ...
    def _send_data(self, stream_id: int, data: bytes, end_stream: bool) -> None: ...
    def _send_ws(self, stream_id: int, message: WsMessage) -> None: ...
    def _reset_stream(self, stream_id: int) -> None: ...
    def _pending_outbound(self, stream_id: int) -> int: ...


# ("body", bytes, flow) | ("ws", WsMessage, flow) | ("end", WireError | None, 0)
_Item = tuple[str, object, int]


class StreamChannel:
    """Inbound queue (body chunks or WebSocket messages, acknowledged to flow control as they
    are consumed) and flow-controlled sending for one stream."""

    def __init__(self, owner: ChannelOwner, stream_id: int) -> None:
        self._owner = owner
        self.stream_id = stream_id
        self._inbox: deque[_Item] = deque()
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._failure: WireError | None = None  # reading and writing fail with this
        self._write_failure: WireError | None = None  # only writing (the peer had finished)
        self._remote_ended = False
        self._eof = False
        self._sent_end = False
        #: The tunnel digest's verdict on the peer's body, once it ended (edge, HTTP response).
        self.body_digest: Verdict | None = None

    # --- fed by the connection ---------------------------------------------------------------

    def feed_body(self, data: bytes, flow_length: int) -> None:
        self._inbox.append(("body", data, flow_length))
        self._readable.set()

    def feed_ws(self, message: WsMessage, flow_length: int) -> None:
        self._inbox.append(("ws", message, flow_length))
        self._readable.set()

    def feed_end(self, body_digest: Verdict | None = None) -> None:
        """The peer's side ended; a digest ``mismatch`` makes the end a BodyDigestMismatch."""
        self._remote_ended = True
        self.body_digest = body_digest
        error = None
        if body_digest == "mismatch":
            error = BodyDigestMismatch(
                "the response body does not match the connector's SHA-256 of it "
                "(corrupted in the tunnel)"
            )
        self._inbox.append(("end", error, 0))
        self._readable.set()

    def fail(self, error: WireError) -> None:
        """The stream is over abnormally; readers and writers get ``error``."""
        if self._failure is not None or self._write_failure is not None:
            return
        if self._remote_ended:
            # The peer's side is complete: what it sent stays readable, only writes fail.
            self._write_failure = error
        else:
            self._failure = error
            self._discard_inbox()
        self._readable.set()
        self._writable.set()

    def capacity_changed(self) -> None:
        if self._owner._pending_outbound(self.stream_id) <= SEND_HIGH_WATER:
            self._writable.set()

    @property
    def failed(self) -> bool:
        return self._failure is not None

    @property
    def finished(self) -> bool:
        """Both directions done (end received and sent) or failed."""
        return self._failure is not None or (self._remote_ended and self._sent_end)

    # --- used by the application --------------------------------------------------------------

    async def read_body_chunk(self) -> bytes:
        """Next chunk of the peer's body; ``b""`` once it ended."""
        while True:
            kind, value, flow = await self._next_item()
            if kind == "end":
                if isinstance(value, WireError):
                    raise value
                return b""
            self._owner._acknowledge(self.stream_id, flow)
            if kind == "body":
                assert isinstance(value, bytes)
                return value

    async def receive_ws(self) -> WsMessage | None:
        """Next WebSocket message; None once the peer ended the stream."""
        while True:
            kind, value, flow = await self._next_item()
            if kind == "end":
                return None
            self._owner._acknowledge(self.stream_id, flow)
            if kind == "ws":
                assert isinstance(value, WsMessage)
                return value

    async def send_body(self, chunk: bytes) -> None:
        """Send a body chunk, waiting while the peer's window is full."""
        self._check_open()
        if chunk:
            self._call(lambda: self._owner._send_data(self.stream_id, bytes(chunk), False))
            await self._wait_capacity()

    async def end_body(self) -> None:
        """Finish this side of the stream (idempotent)."""
        if self._sent_end:
            return
        self._check_open()
        self._sent_end = True
        self._call(lambda: self._owner._send_data(self.stream_id, b"", True))

    async def send_ws(self, message: WsMessage) -> None:
        """Send one WebSocket message, waiting while the peer's window is full."""
        self._check_open()
        self._call(lambda: self._owner._send_ws(self.stream_id, message))
        await self._wait_capacity()

    def reset(self) -> None:
        """Abort the stream (RST_STREAM CANCEL); further reads and writes raise StreamReset."""
        if self._failure is None:
            self._owner._reset_stream(self.stream_id)
            self._failure = StreamReset("stream reset locally")
            self._discard_inbox()
            self._readable.set()
            self._writable.set()

    # --- internals ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._write_failure is not None:
            raise self._write_failure
        if self._sent_end:
            raise StreamReset("this side of the stream already ended")

    def _call(self, action: object) -> None:
        assert callable(action)
        try:
            action()
        except TunnelClosed as exc:
            self.fail(self._connection_failure(exc.reason))
            self._check_open_after_wait()
            raise

    def _connection_failure(self, reason: str) -> WireError:
        return StreamReset(f"tunnel connection closed: {reason}")

    async def _wait_capacity(self) -> None:
        while (
            self._failure is None
            and self._write_failure is None
            and self._owner._pending_outbound(self.stream_id) > SEND_HIGH_WATER
        ):
            self._writable.clear()
            await self._writable.wait()
        self._check_open_after_wait()

    def _check_open_after_wait(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._write_failure is not None:
            raise self._write_failure

    async def _next_item(self) -> _Item:
        while True:
            if self._failure is not None:
                raise self._failure
            if self._inbox:
                item = self._inbox[0]
                if item[0] == "end":
                    self._eof = True
                    return item  # stays queued: every later read also sees the end
                return self._inbox.popleft()
            self._readable.clear()
            await self._readable.wait()

    def _discard_inbox(self) -> None:
        for _kind, _value, flow in self._inbox:
            if flow:
                self._owner._acknowledge(self.stream_id, flow)
        self._inbox.clear()
