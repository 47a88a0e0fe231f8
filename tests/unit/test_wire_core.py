"""The sans-I/O wire cores, driven with bytes only (edge core <-> connector core in memory)."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from reference.wire import events as ev
from reference.wire.core import ConnectorProtocol, EdgeProtocol
from reference.wire.errors import StreamFailedBeforeResponse, TunnelClosed, WireProtocolError
from reference.wire.framing import decode_control, encode_control
from reference.wire.messages import (
    Disconnect,
    HeartbeatConfig,
    RefusalCause,
    RegistrationRequest,
    RegistrationResponse,
    StreamRequest,
    WireSettings,
    WsMessage,
    WsMessageType,
)

REQUEST = RegistrationRequest(
    tunnel_id="6f1c0e7e-0000-4000-8000-000000000001",
    account_tag="acct",
    conn_index=2,
    connector_id="c0ffee00-0000-4000-8000-000000000002",
    proof="ab" * 32,
    attempt=3,
    version="test",
    arch="linux_amd64",
)


class Pair:
    """An edge core and a connector core wired together in memory."""

    def __init__(
        self,
        *,
        settings: WireSettings | None = None,
        heartbeat: HeartbeatConfig | None = None,
        auto_ack: bool = True,
    ) -> None:
        self.now = 0.0
        self.edge = EdgeProtocol(now=self.now, settings=settings, heartbeat=heartbeat)
        self.conn = ConnectorProtocol(now=self.now, settings=settings, heartbeat=heartbeat)
        self.edge_events: list[ev.WireEvent] = []
        self.conn_events: list[ev.WireEvent] = []
        self.auto_ack = auto_ack
        self.conn.start(self.now)
        self.edge.start("nonce-1", self.now)

    def pump(self, rounds: int = 200) -> None:
        for _ in range(rounds):
            to_conn = self.edge.data_to_send()
            to_edge = self.conn.data_to_send()
            if not to_conn and not to_edge:
                return
            if to_conn:
                self._deliver(self.conn, to_conn, self.conn_events)
            if to_edge:
                self._deliver(self.edge, to_edge, self.edge_events)
        raise AssertionError("pump did not settle")

    def _deliver(self, core: EdgeProtocol | ConnectorProtocol, data: bytes, sink: list) -> None:
        events = core.receive_data(data, self.now)
        sink.extend(events)
        if self.auto_ack:
            for event in events:
                if isinstance(event, ev.BodyReceived | ev.WsMessageReceived):
                    core.acknowledge(event.stream_id, event.flow_length)

    def register(self, response: RegistrationResponse | None = None) -> None:
        self.pump()
        self.conn.send_registration(REQUEST)
        self.pump()
        self.edge.answer_registration(response or RegistrationResponse.success("cid-1", "ams"))
        self.pump()


def of_type(events: list[ev.WireEvent], kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


def body_of(events: list[ev.WireEvent], stream_id: int) -> bytes:
    return b"".join(
        e.data for e in events if isinstance(e, ev.BodyReceived) and e.stream_id == stream_id
    )


def test_registration_success_carries_every_field_and_hides_the_proof() -> None:
    pair = Pair()
    pair.pump()
    assert of_type(pair.conn_events, ev.ChallengeReceived) == [ev.ChallengeReceived("nonce-1", 1)]
    pair.conn.send_registration(REQUEST)
    pair.pump()
    [received] = of_type(pair.edge_events, ev.RegistrationReceived)
    assert received.request == REQUEST
    assert "proof" not in repr(received.request) and REQUEST.proof not in repr(received.request)
    pair.edge.answer_registration(RegistrationResponse.success("cid-1", "fra"))
    pair.pump()
    [answered] = of_type(pair.conn_events, ev.RegistrationAnswered)
    assert answered.response == RegistrationResponse.success("cid-1", "fra")
    assert pair.edge.accepting_streams and pair.conn.state == "registered"


def test_refusal_reaches_the_connector_and_closes_the_connection() -> None:
    pair = Pair()
    refusal = RegistrationResponse.refusal(
        RefusalCause.UNKNOWN_TUNNEL, should_retry=True, retry_after=1.5
    )
    pair.register(refusal)
    [answered] = of_type(pair.conn_events, ev.RegistrationAnswered)
    assert answered.response == refusal
    assert answered.response.retry_after == 1.5 and answered.response.should_retry
    assert pair.edge.closed and pair.conn.closed
    assert pair.conn.closed_reason is not None and "closed by peer" in pair.conn.closed_reason
    with pytest.raises(TunnelClosed):
        pair.edge.open_stream(StreamRequest("GET", "/", "h"))


def test_permanent_refusal_round_trips_should_retry_false() -> None:
    pair = Pair()
    pair.register(RegistrationResponse.refusal(RefusalCause.TUNNEL_DELETED, should_retry=False))
    [answered] = of_type(pair.conn_events, ev.RegistrationAnswered)
    assert not answered.response.ok and not answered.response.should_retry
    assert answered.response.retry_after is None


def test_request_and_response_headers_and_body() -> None:
    pair = Pair()
    pair.register()
    sid = pair.edge.open_stream(
        StreamRequest(
            "post",
            "/upload?x=1",
            "app.example.com",
            [("X-Request-Id", "r1"), ("Connection", "close"), ("Host", "evil"), ("TE", "x")],
        )
    )
    pair.edge.send_data(sid, b"hello ", end_stream=False)
    pair.edge.send_data(sid, b"world", end_stream=True)
    pair.pump()
    [opened] = of_type(pair.conn_events, ev.StreamOpened)
    assert opened.request.method == "POST" and opened.request.path == "/upload?x=1"
    assert opened.request.host == "app.example.com" and not opened.request.websocket
    assert opened.request.headers == [("x-request-id", "r1")]
    assert body_of(pair.conn_events, sid) == b"hello world"
    assert of_type(pair.conn_events, ev.StreamEnded) == [ev.StreamEnded(sid)]
    pair.conn.send_response(sid, 201, [("X-Origin-Name", "o1"), ("Transfer-Encoding", "chunked")])
    pair.conn.send_data(sid, b"done", end_stream=True)
    pair.pump()
    [started] = of_type(pair.edge_events, ev.ResponseStarted)
    assert started.status == 201 and started.headers == [("x-origin-name", "o1")]
    assert body_of(pair.edge_events, sid) == b"done"
    assert not pair.edge.open_stream_ids and not pair.conn.open_stream_ids


def test_body_larger_than_the_windows_flows_only_as_it_is_acknowledged() -> None:
    settings = WireSettings(stream_window=65_535, connection_window=65_535, max_ws_message=60_000)
    pair = Pair(settings=settings, auto_ack=False)
    pair.register()
    body = os.urandom(1_000_000)
    sid = pair.edge.open_stream(StreamRequest("POST", "/", "h"))
    pair.edge.send_data(sid, body, end_stream=True)
    pair.pump()
    first = body_of(pair.conn_events, sid)
    assert 0 < len(first) <= 65_535, "the sender must stop at the receiver's window"
    assert pair.edge.pending_outbound(sid) == len(body) - len(first)
    received = len(first)
    for _ in range(200):
        news = [e for e in pair.conn_events if isinstance(e, ev.BodyReceived)]
        pair.conn_events.clear()
        for event in news:
            pair.conn.acknowledge(event.stream_id, event.flow_length)
        pair.pump()
        received += len(body_of(pair.conn_events, sid))
        if of_type(pair.conn_events, ev.StreamEnded):
            break
    else:
        raise AssertionError("body never completed")
    assert received == len(body)
    assert pair.edge.pending_outbound(sid) == 0


def test_full_body_digest_survives_flow_control() -> None:
    settings = WireSettings(stream_window=65_535, connection_window=100_000, max_ws_message=60_000)
    pair = Pair(settings=settings)
    pair.register()
    body = os.urandom(777_777)
    sid = pair.edge.open_stream(StreamRequest("PUT", "/", "h"))
    pair.edge.send_data(sid, body, end_stream=True)
    pair.pump(rounds=2000)
    assert hashlib.sha256(body_of(pair.conn_events, sid)).digest() == hashlib.sha256(body).digest()


def test_websocket_accept_and_messages_both_ways() -> None:
    pair = Pair()
    pair.register()
    sid = pair.edge.open_stream(StreamRequest("GET", "/ws", "h", websocket=True))
    pair.pump()
    [opened] = of_type(pair.conn_events, ev.StreamOpened)
    assert opened.request.websocket
    pair.conn.accept_websocket(sid, [("sec-websocket-protocol", "chat")])
    pair.pump()
    [started] = of_type(pair.edge_events, ev.ResponseStarted)
    assert started.status == 101 and started.headers == [("sec-websocket-protocol", "chat")]
    big = os.urandom(300_000)  # spans many DATA frames
    pair.edge.send_ws(sid, WsMessage.text("héllo"))
    pair.edge.send_ws(sid, WsMessage.binary(big))
    pair.conn.send_ws(sid, WsMessage.text("from origin"))
    pair.pump()
    got = [e.message for e in of_type(pair.conn_events, ev.WsMessageReceived)]
    assert got == [WsMessage.text("héllo"), WsMessage.binary(big)]
    assert [e.message for e in of_type(pair.edge_events, ev.WsMessageReceived)] == [
        WsMessage.text("from origin")
    ]
    pair.conn.send_ws(sid, WsMessage.close(4001, "bye"))
    pair.conn.end_stream(sid)
    pair.pump()
    closing = of_type(pair.edge_events, ev.WsMessageReceived)[-1].message
    assert closing.type is WsMessageType.CLOSE and (closing.code, closing.reason) == (4001, "bye")
    assert ev.StreamEnded(sid) in pair.edge_events


def test_websocket_declined_is_an_ordinary_response() -> None:
    pair = Pair()
    pair.register()
    sid = pair.edge.open_stream(StreamRequest("GET", "/ws", "h", websocket=True), end_stream=True)
    pair.pump()
    pair.conn.send_response(sid, 404, [("content-type", "text/plain")])
    pair.conn.send_data(sid, b"no route", end_stream=True)
    pair.pump()
    [started] = of_type(pair.edge_events, ev.ResponseStarted)
    assert started.status == 404
    assert body_of(pair.edge_events, sid) == b"no route"


def test_oversized_websocket_message_is_refused_before_sending() -> None:
    pair = Pair()
    pair.register()
    sid = pair.edge.open_stream(StreamRequest("GET", "/ws", "h", websocket=True))
    pair.pump()
    pair.conn.accept_websocket(sid, [])
    with pytest.raises(ValueError, match="exceeds"):
        pair.conn.send_ws(sid, WsMessage.binary(b"x" * (pair.conn.settings.max_ws_message + 1)))


def test_reset_before_response_is_reported_as_such() -> None:
    pair = Pair()
    pair.register()
    sid = pair.edge.open_stream(StreamRequest("GET", "/", "h"), end_stream=True)
    pair.pump()
    pair.conn.reset_stream(sid)
    pair.pump()
    [reset] = of_type(pair.edge_events, ev.StreamWasReset)
    assert reset.stream_id == sid and not reset.response_started


def test_reset_after_response_is_reported_as_started() -> None:
    pair = Pair()
    pair.register()
    sid = pair.edge.open_stream(StreamRequest("GET", "/", "h"), end_stream=True)
    pair.pump()
    pair.conn.send_response(sid, 200, [])
    pair.conn.send_data(sid, b"partial")
    pair.conn.reset_stream(sid)
    pair.pump()
    [reset] = of_type(pair.edge_events, ev.StreamWasReset)
    assert reset.response_started


def test_unregister_stops_new_streams_and_is_acknowledged() -> None:
    pair = Pair()
    pair.register()
    inflight = pair.edge.open_stream(StreamRequest("GET", "/slow", "h"), end_stream=True)
    pair.pump()
    pair.conn.send_unregister()
    pair.pump()
    assert of_type(pair.edge_events, ev.UnregisterRequested)
    assert of_type(pair.conn_events, ev.UnregisterAcknowledged)
    assert not pair.edge.accepting_streams
    with pytest.raises(TunnelClosed):
        pair.edge.open_stream(StreamRequest("GET", "/", "h"))
    # the in-flight request still completes
    pair.conn.send_response(inflight, 200, [], end_stream=True)
    pair.pump()
    assert of_type(pair.edge_events, ev.ResponseStarted)[0].stream_id == inflight
    pair.conn.close("drained")
    pair.pump()
    assert pair.edge.closed_reason == "unregistered"


def test_edge_disconnect_tells_the_connector_why() -> None:
    pair = Pair()
    pair.register()
    pair.edge.send_disconnect(Disconnect(RefusalCause.TUNNEL_DELETED, should_retry=False))
    pair.pump()
    [notice] = of_type(pair.conn_events, ev.DisconnectReceived)
    assert notice.disconnect == Disconnect("tunnel deleted", False, None)
    assert pair.conn.closed and pair.conn.disconnect == notice.disconnect


def test_silent_peer_times_out_with_a_fake_clock() -> None:
    pair = Pair(heartbeat=HeartbeatConfig(interval=1.0, timeout=3.0))
    pair.register()
    # Healthy: PINGs delivered both ways for a long time, no timeout.
    for step in range(1, 41):
        pair.now = step * 0.25
        assert pair.edge.tick(pair.now) == [] and pair.conn.tick(pair.now) == []
        pair.pump()
    assert pair.edge.rtt is not None and pair.conn.rtt is not None
    # Black hole: nothing is delivered any more, but both keep ticking.
    start = pair.now
    closed_at = None
    for step in range(1, 41):
        pair.now = start + step * 0.25
        pair.edge.data_to_send()  # dropped on the floor
        events = pair.conn.tick(pair.now)
        pair.edge.tick(pair.now)
        if events:
            assert events == [ev.ConnectionClosed("heartbeat timeout")]
            closed_at = pair.now
            break
    assert closed_at is not None, "silence was never detected"
    assert 2.9 <= closed_at - start <= 3.3
    assert pair.conn.closed_reason == "heartbeat timeout"


def test_pings_are_sent_at_the_interval() -> None:
    pair = Pair(heartbeat=HeartbeatConfig(interval=1.0, timeout=3.0))
    pair.register()
    pair.now = 0.5
    pair.conn.tick(pair.now)
    assert pair.conn.data_to_send() == b""
    pair.now = 1.0
    pair.conn.tick(pair.now)
    frame = pair.conn.data_to_send()
    assert frame[3] == 0x6, "an HTTP/2 PING frame is sent once the interval has passed"


def test_first_stream_must_be_the_control_stream() -> None:
    conn = ConnectorProtocol(now=0)
    conn.start(0)
    edge = EdgeProtocol(now=0)
    edge._conn.initiate_connection()
    edge._conn.send_headers(
        1, [(":method", "GET"), (":scheme", "https"), (":authority", "h"), (":path", "/")]
    )
    with pytest.raises(WireProtocolError, match="control stream"):
        conn.receive_data(edge._conn.data_to_send(), 0)
    assert conn.closed and conn.data_to_send()  # GOAWAY queued


def test_wrong_protocol_version_is_a_protocol_error() -> None:
    pair = Pair()
    pair.pump()
    pair.conn.state = "challenged"
    pair.conn._send_control({"type": "register", "protocol_version": 99, "request": {}})
    with pytest.raises(WireProtocolError, match="protocol 99"):
        pair.edge.receive_data(pair.conn.data_to_send(), 0)


def test_malformed_registration_is_a_protocol_error() -> None:
    pair = Pair()
    pair.pump()
    pair.conn.state = "challenged"
    bad = dict(REQUEST.to_json(), conn_index=999)
    pair.conn._send_control({"type": "register", "protocol_version": 1, "request": bad})
    with pytest.raises(WireProtocolError, match="conn_index"):
        pair.edge.receive_data(pair.conn.data_to_send(), 0)


def test_unknown_control_messages_are_ignored() -> None:
    pair = Pair()
    pair.register()
    control_id = pair.conn._control_id
    assert control_id is not None
    pair.conn.send_data(control_id, encode_control({"type": "future-feature", "x": 1}))
    pair.pump()
    assert pair.edge.accepting_streams and not pair.edge.closed


def test_control_payload_is_json() -> None:
    frame = encode_control({"type": "challenge", "nonce": "n"})
    assert frame[0] == 0x43 and json.loads(frame[5:]) == {"type": "challenge", "nonce": "n"}


def test_concurrency_limit_surfaces_as_failed_before_response() -> None:
    settings = WireSettings(max_concurrent_streams=3)  # control stream + 2
    pair = Pair(settings=settings)
    pair.register()
    pair.edge.open_stream(StreamRequest("GET", "/", "h"), end_stream=True)
    pair.edge.open_stream(StreamRequest("GET", "/", "h"), end_stream=True)
    pair.pump()
    with pytest.raises(StreamFailedBeforeResponse):
        pair.edge.open_stream(StreamRequest("GET", "/", "h"), end_stream=True)


def test_a_deeply_nested_control_message_is_a_protocol_error() -> None:
    with pytest.raises(WireProtocolError, match="nests too deeply"):
        decode_control(b"[" * 100_000 + b"]" * 100_000)
