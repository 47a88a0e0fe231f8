"""The tunnel's end-to-end body digest on the sans-I/O cores: the connector ends every HTTP
response body with a SHA-256 trailer, the edge checks it over the bytes it received."""

from __future__ import annotations

import hashlib
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference.wire import events as ev
from reference.wire.body_digest import DIGEST_TRAILER, BodyDigest
from reference.wire.messages import StreamRequest, WireSettings
from tests.unit.test_wire_core import Pair, body_of, of_type


class TamperingPair(Pair):
    """A pair whose connector-to-edge bytes pass through ``tamper`` (a broken middle)."""

    def __init__(self, tamper: object, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.tamper = tamper

    def _deliver(self, core, data, sink) -> None:  # type: ignore[no-untyped-def,override]
        if core is self.edge:
            assert callable(self.tamper)
            data = self.tamper(data)
        super()._deliver(core, data, sink)


def _respond(pair: Pair, body: bytes, pieces: int = 3) -> tuple[int, ev.StreamEnded]:
    pair.register()
    sid = pair.edge.open_stream(StreamRequest("GET", "/f", "h"), end_stream=True)
    pair.pump()
    pair.conn.send_response(sid, 200, [("content-length", str(len(body)))])
    step = max(1, len(body) // pieces)
    for start in range(0, len(body), step):
        pair.conn.send_data(sid, body[start : start + step])
        pair.pump()
    pair.conn.end_stream(sid)
    pair.pump(rounds=2000)
    [ended] = [e for e in of_type(pair.edge_events, ev.StreamEnded) if e.stream_id == sid]
    return sid, ended


def test_an_intact_body_is_verified() -> None:
    body = os.urandom(200_000)  # many DATA frames, flow control in between
    pair = Pair()
    sid, ended = _respond(pair, body)
    assert ended.body_digest == "verified"
    assert body_of(pair.edge_events, sid) == body


def test_a_byte_changed_in_the_tunnel_is_a_mismatch() -> None:
    body = b"A" * 50_000

    def flip(data: bytes) -> bytes:
        at = data.find(b"AAAA")
        return data if at < 0 else data[:at] + b"B" + data[at + 1 :]

    pair = TamperingPair(flip)
    sid, ended = _respond(pair, body)
    assert body_of(pair.edge_events, sid) != body  # the broken middle did change it
    assert ended.body_digest == "mismatch"


def test_no_trailer_is_absent_and_a_bodyless_response_has_nothing_to_check() -> None:
    pair = Pair()
    pair.register()
    sid = pair.edge.open_stream(StreamRequest("GET", "/", "h"), end_stream=True)
    pair.pump()
    pair.conn.send_response(sid, 204, [], end_stream=True)  # no body frames at all
    pair.pump()
    assert of_type(pair.edge_events, ev.StreamEnded) == [ev.StreamEnded(sid, None)]

    # A peer that ends a body with END_STREAM and no trailer (as cloudflared's transport does).
    sid = pair.edge.open_stream(StreamRequest("GET", "/", "h"), end_stream=True)
    pair.pump()
    pair.conn.send_response(sid, 200, [])
    pair.conn._streams[sid].sent_digest = None  # what a connector without the digest sends
    pair.conn.send_data(sid, b"body", end_stream=True)
    pair.pump()
    assert of_type(pair.edge_events, ev.StreamEnded)[-1] == ev.StreamEnded(sid, "absent")


def test_request_bodies_and_websockets_carry_no_digest() -> None:
    pair = Pair()
    pair.register()
    sid = pair.edge.open_stream(StreamRequest("POST", "/", "h"))
    pair.edge.send_data(sid, b"upload", end_stream=True)
    pair.pump()
    assert of_type(pair.conn_events, ev.StreamEnded) == [ev.StreamEnded(sid, None)]


@pytest.mark.parametrize(
    ("claimed", "verdict"),
    [
        (hashlib.sha256(b"abc").hexdigest(), "verified"),
        (hashlib.sha256(b"abc").hexdigest().upper(), "verified"),
        (hashlib.sha256(b"abd").hexdigest(), "mismatch"),
        ("not-hex", "mismatch"),
        ("", "mismatch"),
    ],
)
def test_the_verdict_of_a_claim(claimed: str, verdict: str) -> None:
    digest = BodyDigest()
    digest.update(b"abc")
    digest.claim([("x-other", "1"), (DIGEST_TRAILER, claimed)])
    assert digest.verdict() == verdict


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.binary(max_size=150_000),
    pieces=st.integers(min_value=1, max_value=40),
    window=st.integers(min_value=65_535, max_value=300_000),
)
def test_any_body_chunking_and_window_is_verified(body: bytes, pieces: int, window: int) -> None:
    pair = Pair(
        settings=WireSettings(
            stream_window=window, connection_window=window, max_ws_message=window - 5
        )
    )
    sid, ended = _respond(pair, body, pieces)
    assert body_of(pair.edge_events, sid) == body
    assert ended.body_digest == "verified"
