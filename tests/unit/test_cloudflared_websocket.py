"""RFC 6455 frames of the edge's WebSocket relay over cloudflared's transport."""

from __future__ import annotations

import struct

import pytest

from reference.cloudflared.websocket import (
    BINARY,
    CONTINUATION,
    PING,
    TEXT,
    ServerFrameReader,
    client_frame,
    message_frame,
)
from reference.wire.errors import WireProtocolError
from reference.wire.messages import WsMessage


def server_frame(opcode: int, payload: bytes, *, final: bool = True) -> bytes:
    size = len(payload)
    head = bytes([(0x80 if final else 0) | opcode])
    if size < 126:
        head += bytes([size])
    elif size < 1 << 16:
        head += bytes([126]) + struct.pack(">H", size)
    else:
        head += bytes([127]) + struct.pack(">Q", size)
    return head + payload


def test_client_frames_are_masked_and_sized() -> None:
    frame = client_frame(TEXT, b"hi", mask=b"\x01\x02\x03\x04")
    assert frame[0] == 0x81 and frame[1] == 0x80 | 2
    assert frame[6:] == bytes([ord("h") ^ 1, ord("i") ^ 2])
    big = client_frame(BINARY, b"x" * 70_000, mask=b"\0\0\0\0")
    assert big[1] == 0x80 | 127 and struct.unpack(">Q", big[2:10])[0] == 70_000
    # The reader reads masked frames too: a round trip of every size class.
    for size in (0, 125, 126, 65_535, 65_536):
        data = bytes(range(256)) * (size // 256) + bytes(size % 256)
        ((message, wire),) = ServerFrameReader().feed(message_frame(WsMessage.binary(data)))
        assert message.data == data and wire == len(message_frame(WsMessage.binary(data)))


def test_fragments_and_pings_between_them_byte_by_byte() -> None:
    stream = (
        server_frame(TEXT, "hé".encode()[:2], final=False)
        + server_frame(PING, b"p1")
        + server_frame(CONTINUATION, "hé".encode()[2:])
        + server_frame(BINARY, b"\x00\xff")
    )
    reader = ServerFrameReader()
    got = [m for i in range(len(stream)) for m in reader.feed(stream[i : i + 1])]
    assert [m.data for m, _ in got] == ["hé", b"\x00\xff"]
    assert reader.pings == [b"p1"] and reader.control_bytes == 4
    assert sum(w for _, w in got) + reader.control_bytes == len(stream)


def test_close_and_bad_frames() -> None:
    ((close, _),) = ServerFrameReader().feed(server_frame(0x8, struct.pack(">H", 1001) + b"bye"))
    assert (close.code, close.reason) == (1001, "bye")
    with pytest.raises(WireProtocolError, match="continuation"):
        ServerFrameReader().feed(server_frame(CONTINUATION, b"x"))
    with pytest.raises(WireProtocolError, match="reserved"):
        ServerFrameReader().feed(bytes([0xC1, 0]))
    with pytest.raises(WireProtocolError, match="limit"):
        ServerFrameReader(max_message=10).feed(server_frame(BINARY, b"x" * 11))
    with pytest.raises(WireProtocolError, match="UTF-8"):
        ServerFrameReader().feed(server_frame(TEXT, b"\xff"))
