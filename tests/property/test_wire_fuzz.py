"""Property tests of the sans-I/O wire cores: any chunking works; garbage only ever raises the
protocol's own error."""

from __future__ import annotations

import hashlib
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference.wire import events as ev
from reference.wire.core import ConnectorProtocol, EdgeProtocol, TunnelProtocol
from reference.wire.errors import WireProtocolError
from reference.wire.messages import (
    RegistrationRequest,
    RegistrationResponse,
    StreamRequest,
    WsMessage,
)

REQUEST = RegistrationRequest("t", "a", 0, "c", "p" * 64)


class ChunkedPair:
    """Edge and connector cores; every write is delivered in hypothesis-chosen chunk sizes."""

    def __init__(self, splits: list[int]) -> None:
        self.edge = EdgeProtocol(now=0)
        self.conn = ConnectorProtocol(now=0)
        self.splits = splits or [1]
        self.index = 0
        self.edge_events: list[ev.WireEvent] = []
        self.conn_events: list[ev.WireEvent] = []
        self.conn.start(0)
        self.edge.start("n", 0)

    def _chunks(self, data: bytes) -> list[bytes]:
        out = []
        while data:
            size = self.splits[self.index % len(self.splits)]
            self.index += 1
            out.append(data[:size])
            data = data[size:]
        return out

    def _deliver(self, core: TunnelProtocol, data: bytes, sink: list[ev.WireEvent]) -> None:
        for chunk in self._chunks(data):
            events = core.receive_data(chunk, 0)
            sink.extend(events)
            for event in events:
                if isinstance(event, ev.BodyReceived | ev.WsMessageReceived):
                    core.acknowledge(event.stream_id, event.flow_length)

    def pump(self) -> None:
        for _ in range(5000):
            to_conn, to_edge = self.edge.data_to_send(), self.conn.data_to_send()
            if not to_conn and not to_edge:
                return
            self._deliver(self.conn, to_conn, self.conn_events)
            self._deliver(self.edge, to_edge, self.edge_events)
        raise AssertionError("did not settle")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    splits=st.lists(st.integers(min_value=1, max_value=5000), min_size=1, max_size=20),
    body=st.binary(min_size=0, max_size=70_000),
    texts=st.lists(st.text(max_size=300), max_size=5),
)
def test_any_chunking_delivers_the_same_conversation(
    splits: list[int], body: bytes, texts: list[str]
) -> None:
    pair = ChunkedPair(splits)
    pair.pump()
    pair.conn.send_registration(REQUEST)
    pair.pump()
    pair.edge.answer_registration(RegistrationResponse.success("x", "ams"))
    pair.pump()
    sid = pair.edge.open_stream(StreamRequest("POST", "/", "h"))
    pair.edge.send_data(sid, body, end_stream=True)
    ws = pair.edge.open_stream(StreamRequest("GET", "/ws", "h", websocket=True))
    pair.pump()
    pair.conn.accept_websocket(ws, [])
    pair.pump()
    for text in texts:
        pair.edge.send_ws(ws, WsMessage.text(text))
    pair.pump()
    received = b"".join(
        e.data for e in pair.conn_events if isinstance(e, ev.BodyReceived) and e.stream_id == sid
    )
    assert hashlib.sha256(received).digest() == hashlib.sha256(body).digest()
    assert ev.StreamEnded(sid) in pair.conn_events
    messages = [e.message for e in pair.conn_events if isinstance(e, ev.WsMessageReceived)]
    assert messages == [WsMessage.text(t) for t in texts]


def _valid_prefix_for_connector() -> bytes:
    edge = EdgeProtocol(now=0)
    edge.start("n", 0)
    return edge.data_to_send()


def _valid_prefix_for_edge() -> tuple[EdgeProtocol, bytes]:
    edge = EdgeProtocol(now=0)
    conn = ConnectorProtocol(now=0)
    conn.start(0)
    edge.start("n", 0)
    conn.receive_data(edge.data_to_send(), 0)
    return edge, conn.data_to_send()


def frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", stream_id)
        + payload
    )


frames = st.lists(
    st.builds(
        frame,
        kind=st.integers(min_value=0, max_value=12),
        flags=st.integers(min_value=0, max_value=255),
        stream_id=st.sampled_from([0, 1, 2, 3, 5, 7, 0x7FFFFFFF]),
        payload=st.binary(max_size=64),
    ),
    max_size=8,
)


def feed_expecting_only_protocol_errors(core: TunnelProtocol, chunks: list[bytes]) -> None:
    for chunk in chunks:
        try:
            core.receive_data(chunk, 0)
            core.tick(0.5)
        except WireProtocolError:
            assert core.closed
            core.data_to_send()
            return
        core.data_to_send()


@settings(max_examples=300, deadline=None)
@given(garbage=st.lists(st.binary(max_size=200), max_size=6))
def test_connector_core_survives_raw_garbage(garbage: list[bytes]) -> None:
    conn = ConnectorProtocol(now=0)
    conn.start(0)
    feed_expecting_only_protocol_errors(conn, garbage)


@settings(max_examples=300, deadline=None)
@given(raw=frames, cut=st.integers(min_value=1, max_value=50))
def test_connector_core_survives_random_frames_after_a_valid_preface(
    raw: list[bytes], cut: int
) -> None:
    conn = ConnectorProtocol(now=0)
    conn.start(0)
    data = _valid_prefix_for_connector() + b"".join(raw)
    feed_expecting_only_protocol_errors(conn, [data[i : i + cut] for i in range(0, len(data), cut)])


@settings(max_examples=300, deadline=None)
@given(raw=frames, garbage=st.binary(max_size=100))
def test_edge_core_survives_random_frames_after_a_valid_preface(
    raw: list[bytes], garbage: bytes
) -> None:
    edge, prefix = _valid_prefix_for_edge()
    feed_expecting_only_protocol_errors(edge, [prefix, *raw, garbage])


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=300), kind=st.integers(min_value=0, max_value=255))
def test_garbage_on_the_control_stream_is_a_protocol_error_or_ignored(
    payload: bytes, kind: int
) -> None:
    edge, prefix = _valid_prefix_for_edge()
    # A control-stream DATA frame (stream 1) carrying arbitrary framed content.
    message = bytes([kind]) + struct.pack(">I", len(payload)) + payload
    feed_expecting_only_protocol_errors(edge, [prefix, frame(0, 0, 1, message)])
