"""RFC 6455 frames, the edge's side (sans-I/O), for WebSocket over cloudflared's transport.

After cloudflared accepts a WebSocket stream (request header
``cf-cloudflared-proxy-connection-upgrade: websocket``, answer 200 in place of 101), it pipes the
stream's bytes to and from the origin's socket unchanged: the edge writes client frames (masked)
and reads the origin's server frames. :func:`client_frame` encodes one message;
:class:`ServerFrameReader` reassembles messages (fragments, interleaved control frames).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

from reference.wire.errors import WireProtocolError
from reference.wire.messages import WsMessage, WsMessageType

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_CONTROL = frozenset({CLOSE, PING, PONG})


def client_frame(opcode: int, payload: bytes, mask: bytes | None = None) -> bytes:
    """One final, masked frame (a client's frames are always masked, RFC 6455 section 5.3)."""
    mask = mask if mask is not None else os.urandom(4)
    if len(mask) != 4:
        raise ValueError("a frame mask is 4 bytes")
    size = len(payload)
    head = bytes([0x80 | opcode])
    if size < 126:
        head += bytes([0x80 | size])
    elif size < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack(">H", size)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", size)
    return head + mask + _unmask(payload, mask)


def message_frame(message: WsMessage, mask: bytes | None = None) -> bytes:
    """The client frame of a relayed message (TEXT, BINARY or CLOSE)."""
    if message.type is WsMessageType.TEXT:
        data = message.data
        return client_frame(TEXT, data.encode() if isinstance(data, str) else bytes(data), mask)
    if message.type is WsMessageType.BINARY:
        data = message.data
        return client_frame(BINARY, data if isinstance(data, bytes) else data.encode(), mask)
    payload = struct.pack(">H", message.code) + message.reason.encode() if message.code else b""
    return client_frame(CLOSE, payload, mask)


def _unmask(data: bytes, mask: bytes) -> bytes:
    if not data:
        return b""
    key = int.from_bytes((mask * (len(data) // 4 + 1))[: len(data)], "big")
    return (int.from_bytes(data, "big") ^ key).to_bytes(len(data), "big")


@dataclass
class ServerFrameReader:
    """Feed the bytes of the origin's side; get messages and the pings to answer.

    ``feed`` returns ``(message, wire_length)`` for each complete TEXT/BINARY/CLOSE message
    (``wire_length``: the bytes of every frame that made it, for flow control) and keeps the
    payload of each PING in :attr:`pings` (answer each with a PONG). A malformed frame or a
    message above ``max_message`` bytes raises :class:`WireProtocolError`.
    """

    max_message: int = 16 * 1024 * 1024
    pings: list[bytes] = field(default_factory=list)
    #: Bytes of frames that carried no message (pings, pongs), to acknowledge at once.
    control_bytes: int = 0
    _buffer: bytearray = field(default_factory=bytearray)
    _fragments: bytearray = field(default_factory=bytearray)
    _fragment_opcode: int | None = None
    _fragment_wire: int = 0

    def feed(self, data: bytes) -> list[tuple[WsMessage, int]]:
        self._buffer += data
        out: list[tuple[WsMessage, int]] = []
        while (frame := self._next_frame()) is not None:
            final, opcode, payload, wire = frame
            if opcode in _CONTROL:
                if not final or len(payload) > 125:
                    raise WireProtocolError("fragmented or oversized WebSocket control frame")
                if opcode == CLOSE:
                    out.append((_close_message(payload), wire))
                else:
                    if opcode == PING:
                        self.pings.append(payload)
                    self.control_bytes += wire
                continue
            if opcode == CONTINUATION:
                if self._fragment_opcode is None:
                    raise WireProtocolError("WebSocket continuation frame without a message")
            elif self._fragment_opcode is not None:
                raise WireProtocolError("WebSocket message started inside another")
            else:
                if opcode not in (TEXT, BINARY):
                    raise WireProtocolError(f"unknown WebSocket opcode {opcode:#x}")
                self._fragment_opcode = opcode
            self._fragments += payload
            self._fragment_wire += wire
            if len(self._fragments) > self.max_message:
                raise WireProtocolError(
                    f"WebSocket message above the limit of {self.max_message} bytes"
                )
            if final:
                out.append((self._complete(), self._fragment_wire))
                self._fragments, self._fragment_opcode, self._fragment_wire = bytearray(), None, 0
        return out

    def _complete(self) -> WsMessage:
        payload = bytes(self._fragments)
        if self._fragment_opcode == TEXT:
            try:
                return WsMessage.text(payload.decode("utf-8"))
            except UnicodeDecodeError:
                raise WireProtocolError("WebSocket text is not valid UTF-8") from None
        return WsMessage.binary(payload)

    def _next_frame(self) -> tuple[bool, int, bytes, int] | None:
        buf = self._buffer
        if len(buf) < 2:
            return None
        first, second = buf[0], buf[1]
        if first & 0x70:
            raise WireProtocolError("WebSocket frame with reserved bits set (no extension agreed)")
        size, offset = second & 0x7F, 2
        if size == 126:
            if len(buf) < 4:
                return None
            (size,) = struct.unpack(">H", buf[2:4])
            offset = 4
        elif size == 127:
            if len(buf) < 10:
                return None
            (size,) = struct.unpack(">Q", buf[2:10])
            offset = 10
        if size > self.max_message:
            raise WireProtocolError(f"WebSocket frame above the limit of {self.max_message} bytes")
        mask = b""
        if second & 0x80:  # a server must not mask; tolerated, as most clients do
            if len(buf) < offset + 4:
                return None
            mask = bytes(buf[offset : offset + 4])
            offset += 4
        if len(buf) < offset + size:
            return None
        payload = bytes(buf[offset : offset + size])
        del buf[: offset + size]
        if mask:
            payload = _unmask(payload, mask)
        return bool(first & 0x80), first & 0x0F, payload, offset + size


def _close_message(payload: bytes) -> WsMessage:
    if len(payload) < 2:
        return WsMessage.close()
    (code,) = struct.unpack(">H", payload[:2])
    return WsMessage.close(code, payload[2:].decode("utf-8", "replace"))
