"""Sized answers (``?size=N``): a body is judged intact only with its length and the origin's
SHA-256; one flipped byte, a short body or a missing digest is corruption."""

from __future__ import annotations

import hashlib

from harness.probes.visitors import VisitorTarget, judge_sized
from reference.origin.app import deterministic_bytes

TARGET = VisitorTarget("app.example.com", "web", "web-id")


def _headers(body: bytes, **extra: str) -> dict[str, str]:
    return {
        "X-Response-Sha256": hashlib.sha256(body).hexdigest(),
        "X-Request-Id": "r1",
        "X-Outlast-Tunnel-Id": "web-id",
        **extra,
    }


def test_an_intact_large_body_passes() -> None:
    body = deterministic_bytes(1024 * 1024 + 1)
    judged = judge_sized(_headers(body), body, len(body), "r1", TARGET)
    assert judged["digest_ok"] is True
    assert judged["served_tunnel"] == "web" and judged["request_id_echo_ok"] is True


def test_one_flipped_byte_is_corruption() -> None:
    body = deterministic_bytes(65537)
    flipped = body[:1000] + bytes([body[1000] ^ 1]) + body[1001:]
    assert judge_sized(_headers(body), flipped, len(body), "r1", TARGET)["digest_ok"] is False


def test_a_short_body_or_a_missing_digest_is_corruption() -> None:
    body = deterministic_bytes(16385)
    assert judge_sized(_headers(body), body[:-1], len(body), "r1", TARGET)["digest_ok"] is False
    headers = _headers(body)
    del headers["X-Response-Sha256"]
    assert judge_sized(headers, body, len(body), "r1", TARGET)["digest_ok"] is False


def test_another_tunnels_answer_is_named() -> None:
    body = b""
    judged = judge_sized(_headers(body, **{"X-Outlast-Tunnel-Id": "api-id"}), body, 0, "r1", TARGET)
    assert judged["served_tunnel"] == "api-id"
