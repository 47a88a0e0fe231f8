"""Message framing inside a stream's DATA: control messages and WebSocket messages.

Every message is ``kind (1 byte) | length (4 bytes, big-endian) | payload (length bytes)``.
A message may span several DATA frames, and one DATA frame may hold several messages.

=====  ============  =========================================================
kind   name          payload
=====  ============  =========================================================
0x01   TEXT          UTF-8 text of a WebSocket text message
0x02   BINARY        bytes of a WebSocket binary message
0x08   CLOSE         2-byte close code (big-endian) + UTF-8 reason
0x43   CONTROL       one JSON object (control stream only)
=====  ============  =========================================================
"""

from __future__ import annotations

import json
import struct
from typing import Any, Final

from reference.wire.errors import WireProtocolError
from reference.wire.messages import WsMessage, WsMessageType

KIND_CONTROL: Final = 0x43
HEADER = struct.Struct(">BI")
WS_KINDS: Final = frozenset(int(k) for k in WsMessageType)


def encode_frame(kind: int, payload: bytes) -> bytes:
    """One framed message."""
    return HEADER.pack(kind, len(payload)) + payload


def encode_control(message: dict[str, Any]) -> bytes:
    """A framed control message (JSON object with a ``type`` field)."""
    return encode_frame(KIND_CONTROL, json.dumps(message, separators=(",", ":")).encode())


def decode_control(payload: bytes) -> dict[str, Any]:
    """The JSON object of a control message; WireProtocolError if it is not one."""
    try:
        value = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise WireProtocolError(f"control message is not JSON: {exc}") from None
    except RecursionError:
        raise WireProtocolError(
            "control message nests too deeply to be a control message"
        ) from None
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise WireProtocolError("control message must be a JSON object with a string 'type'")
    return value


def encode_ws(message: WsMessage) -> bytes:
    """A framed WebSocket message."""
    if message.type is WsMessageType.TEXT:
        if not isinstance(message.data, str):
            raise TypeError("a TEXT message carries str data")
        return encode_frame(WsMessageType.TEXT, message.data.encode("utf-8"))
    if message.type is WsMessageType.BINARY:
        if not isinstance(message.data, bytes | bytearray | memoryview):
            raise TypeError("a BINARY message carries bytes data")
        return encode_frame(WsMessageType.BINARY, bytes(message.data))
    if not 0 <= message.code <= 0xFFFF:
        raise ValueError(f"close code {message.code} is outside 0..65535")
    return encode_frame(
        WsMessageType.CLOSE, struct.pack(">H", message.code) + message.reason.encode("utf-8")
    )


def decode_ws(kind: int, payload: bytes) -> WsMessage:
    """The WebSocket message of a ``kind``/``payload`` pair; WireProtocolError if malformed."""
    try:
        if kind == WsMessageType.TEXT:
            return WsMessage.text(payload.decode("utf-8"))
        if kind == WsMessageType.BINARY:
            return WsMessage.binary(payload)
        if kind == WsMessageType.CLOSE:
            if len(payload) < 2:
                return WsMessage.close()
            (code,) = struct.unpack(">H", payload[:2])
            return WsMessage.close(code, payload[2:].decode("utf-8"))
    except UnicodeDecodeError:
        raise WireProtocolError("WebSocket text is not valid UTF-8") from None
    raise WireProtocolError(f"frame kind {kind:#x} is not a WebSocket message")


class FrameDecoder:
    """Reassembles framed messages from DATA chunks.

    ``feed`` returns ``(kind, payload, wire_length)`` for each message completed by the chunk,
    where ``wire_length`` is header + payload bytes (what flow control counted for it).
    """

    def __init__(self, allowed_kinds: frozenset[int], max_payload: int) -> None:
        self._allowed = allowed_kinds
        self._max = max_payload
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes of a message not yet complete."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[tuple[int, bytes, int]]:
        self._buffer += data
        out: list[tuple[int, bytes, int]] = []
        while len(self._buffer) >= HEADER.size:
            kind, length = HEADER.unpack_from(self._buffer)
            if kind not in self._allowed:
                raise WireProtocolError(f"unexpected frame kind {kind:#x}")
            if length > self._max:
                raise WireProtocolError(f"message of {length} bytes exceeds limit {self._max}")
            end = HEADER.size + length
            if len(self._buffer) < end:
                break
            out.append((kind, bytes(self._buffer[HEADER.size : end]), end))
            del self._buffer[:end]
        return out
