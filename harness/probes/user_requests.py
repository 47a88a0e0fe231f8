"""Judging the user's requests (``traffic.requests``) against the user's own service.

The user's service echoes nothing, so only what can be known is judged, and each answer says
which integrity checks applied to it (``integrity`` in the operation's value):

* ``status`` — the status is one of ``expect_status`` (default: any below 400);
* ``body`` — the body contains ``expect_body_contains`` (WebSocket: the answer contains
  ``expect``);
* ``static_digest`` — for a ``static: true`` GET, the SHA-256 of the first accepted body of
  each hostname and path; a later different body is ``response_digest_ok: false``
  (corruption, what ``no_corruption`` counts);
* ``tunnel`` — the edge names the tunnel that carried the answer (``X-Outlast-Tunnel-Id``),
  so ``no_misroute`` can tell a hostname served by another tunnel.

Besides, the tunnel itself checks every response body: the connector sends a SHA-256 of it, the
edge compares (``tunnel_digest``, read from the edges' metrics by ``no_corruption``). Not
available: the request-id and body echoes of the reference origin.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.scenario.origin import UserRequest

#: Integrity checks a user request can have (see module docstring).
INTEGRITY_CHECKS = ("status", "body", "static_digest", "tunnel")
#: What a user origin cannot give (said in reports, never silently counted as checked).
NOT_AVAILABLE = {
    "echo": "the reference origin's request-id and body-digest echo (not your service)",
}
TUNNEL_ID_HEADER = "X-Outlast-Tunnel-Id"


def function_of(request: UserRequest) -> str:
    """The journal operation: ``ws_roundtrip``, ``http_get`` (GET/HEAD) or ``http_post``."""
    if request.kind == "ws":
        return "ws_roundtrip"
    return "http_get" if request.http_method in ("GET", "HEAD") else "http_post"


@dataclass
class UserTraffic:
    """The user's requests, drawn by weight, and the digests of their static bodies."""

    requests: Sequence[UserRequest]
    rng: random.Random
    digests: dict[tuple[str, str], str] = field(default_factory=dict)

    def draw(self) -> UserRequest:
        return self.rng.choices(list(self.requests), [r.weight for r in self.requests])[0]

    def judge_http(
        self,
        request: UserRequest,
        hostname: str,
        status: int,
        payload: bytes,
        headers: Mapping[str, str],
        tunnel_ids: Mapping[str, str],
    ) -> tuple[str, dict[str, Any], str | None]:
        """``(phase, value, error)`` of an HTTP answer."""
        value: dict[str, Any] = {"status": status, "request": request.label()}
        checks = ["status"]
        wrong: list[str] = []
        value.update(_served_tunnel(headers, tunnel_ids, checks))
        accepted = status in request.statuses if request.statuses else status < 400
        if not accepted:
            wanted = ", ".join(map(str, request.statuses)) if request.statuses else "below 400"
            wrong.append(f"HTTP {status} (expected {wanted}): {payload[:120]!r}")
        if request.expect_body_contains is not None:
            checks.append("body")
            value["body_ok"] = request.expect_body_contains.encode() in payload
            if not value["body_ok"]:
                wrong.append(f"body lacks {request.expect_body_contains!r}: {payload[:120]!r}")
        if request.static and accepted:
            checks.append("static_digest")
            digest = hashlib.sha256(payload).hexdigest()
            first = self.digests.setdefault((hostname, str(request.path)), digest)
            value["response_sha256"] = digest
            value["response_digest_ok"] = digest == first
            if digest != first:
                wrong.append(f"static body changed: sha256 {digest[:12]}, first {first[:12]}")
        value["integrity"] = checks
        return ("fail", value, "; ".join(wrong)) if wrong else ("ok", value, None)

    def judge_ws(
        self,
        request: UserRequest,
        answer: str | None,
        headers: Mapping[str, str],
        tunnel_ids: Mapping[str, str],
    ) -> tuple[str, dict[str, Any], str | None]:
        """``(phase, value, error)`` of a WebSocket exchange (``answer``: the text received)."""
        value: dict[str, Any] = {"status": 101, "request": request.label()}
        checks = ["status"]
        value.update(_served_tunnel(headers, tunnel_ids, checks))
        error = None
        if request.expect is not None:
            checks.append("body")
            value["body_ok"] = answer is not None and request.expect in answer
            if not value["body_ok"]:
                error = f"answer {answer!r:.120} lacks {request.expect!r}"
        value["integrity"] = checks
        return ("fail" if error else "ok"), value, error


def _served_tunnel(
    headers: Mapping[str, str], tunnel_ids: Mapping[str, str], checks: list[str]
) -> dict[str, Any]:
    """``served_tunnel`` from the edge's ``X-Outlast-Tunnel-Id`` (tunnel name when known)."""
    served = headers.get(TUNNEL_ID_HEADER)
    if not served:
        return {}
    checks.append("tunnel")
    return {"served_tunnel": tunnel_ids.get(served, served)}
