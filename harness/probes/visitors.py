"""Visitor traffic at a fixed rate: GET, POST with a body digest, WebSocket round trips.

Requests go to one or more *entries*: ``anycast`` (the edge network's one visitor address, the
default: what a real visitor uses) or a PoP's own visitor address (a diagnostic view). Which PoP
the visitor reached and which PoP's tunnel connection served it are read off the response
(``X-Outlast-Pop``, ``X-Outlast-Tunnel-Pop``) and recorded as ``pop`` and ``tunnel_pop``.

Open loop: requests start on a fixed schedule whatever the previous ones are doing (so a slow
system cannot slow the probe down and hide its own unavailability), bounded by ``max_in_flight``.
Every request is an operation in the journal: ``invoke`` then ``ok`` (the right tunnel answered
with our request id and body digest), ``fail`` (an error status, a refused connection, a wrong
answer) or ``info`` (timed out: it may or may not have been served). An edge's own error
response also records its ``error_code`` (e.g. 1016: the tunnel was deleted).

With ``requests`` (the scenario's ``traffic.requests``, for the user's own service) the probe
sends those instead of the echo mix, judged as ``harness.probes.user_requests`` says.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from harness.journal import Journal
from harness.probes.user_requests import TUNNEL_ID_HEADER, UserTraffic, function_of
from harness.scenario.origin import UserRequest

KINDS = ("get", "post", "ws")
FUNCTION = {"get": "http_get", "post": "http_post", "ws": "ws_roundtrip"}
#: Entry name of the edge network's anycast visitor address.
ANYCAST = "anycast"


CLOUDFLARED_TUNNEL_TAG = "cf-warp-tag-tunnel-id"
"""Header cloudflared adds to origin requests for ``--tag tunnel-id=UUID``."""


@dataclass(frozen=True)
class VisitorTarget:
    """A hostname to visit and the tunnel that must answer for it."""

    hostname: str
    tunnel: str
    tunnel_id: str


class VisitorProbe:
    """Sends visitor requests through every entry, round robin, at ``rate`` per second."""

    def __init__(
        self,
        journal: Journal,
        *,
        entries: Mapping[str, str],
        targets: Sequence[VisitorTarget],
        rate: float,
        mix: Mapping[str, float],
        body_size: int = 1024,
        body_sizes: Sequence[int] = (),
        response_sizes: Sequence[int] = (),
        timeout: float = 5.0,
        seed: int = 0,
        max_in_flight: int = 200,
        requests: Sequence[UserRequest] = (),
    ) -> None:
        if not entries or not targets:
            raise ValueError("a visitor probe needs at least one entry and one target")
        self.journal = journal
        self.entries = dict(entries)  # "anycast" or a PoP name -> visitor base URL
        self.targets = list(targets)
        self.interval = 1.0 / rate
        weights = [max(0.0, float(mix.get(k, 0.0))) for k in KINDS]
        self.kinds = [k for k, w in zip(KINDS, weights, strict=True) if w > 0] or ["get"]
        self.weights = [w for w in weights if w > 0] or [1.0]
        self.body_size = body_size
        self.body_sizes = tuple(body_sizes)
        # None: the JSON echo; a size: a body of that many bytes from the origin (?size=N).
        self.get_sizes: tuple[int | None, ...] = (None, *response_sizes)
        self.timeout = timeout
        self.random = random.Random(seed)
        self.slots = asyncio.Semaphore(max_in_flight)
        self.tasks: set[asyncio.Task[None]] = set()
        self.sent = 0
        self.outcomes = {"ok": 0, "fail": 0, "info": 0}
        self.user = UserTraffic(requests, random.Random(seed)) if requests else None
        self.tunnel_names = {t.tunnel_id: t.tunnel for t in self.targets if t.tunnel_id}

    async def run(self, stop: asyncio.Event) -> None:
        """Send requests on schedule until ``stop`` is set, then wait for those in flight."""
        # A new connection per request: each is a different visitor, so the anycast entry draws
        # a region for each (a kept-alive connection would stay with one PoP).
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
            names = sorted(self.entries)
            started = time.monotonic()
            while not stop.is_set():
                entry = names[self.sent % len(names)]
                target = self.targets[(self.sent // len(names)) % len(self.targets)]
                user = self.user.draw() if self.user else None
                if user is None:
                    kind = self.random.choices(self.kinds, self.weights)[0]
                    body = self.random.randbytes(self._body_size(kind))
                    function = FUNCTION[kind]
                else:
                    kind, body, function = "user", (user.body or "").encode(), function_of(user)
                if self.slots.locked():
                    op = self.journal.invoke("visitor", function, self._invoke(entry, target))
                    self.journal.complete(op, "fail", error="probe overloaded: too many in flight")
                    self.outcomes["fail"] += 1
                else:
                    await self.slots.acquire()
                    one = self._one(session, kind, entry, target, body, user)
                    task = asyncio.create_task(one)
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
                self.sent += 1
                next_at = started + self.sent * self.interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    try:
                        await asyncio.wait_for(stop.wait(), delay)
                    except TimeoutError:
                        pass
            if self.tasks:
                await asyncio.wait(self.tasks, timeout=self.timeout + 2)

    def _body_size(self, kind: str) -> int:
        """Bytes to send: none for a GET; a POST draws from ``body_sizes`` when given; a
        WebSocket message is ``body_size`` (an edge refuses messages above 1 MiB)."""
        if kind == "get":
            return 0
        if kind == "post" and self.body_sizes:
            return self.random.choice(self.body_sizes)
        return self.body_size

    def _invoke(self, entry: str, target: VisitorTarget) -> dict[str, Any]:
        invoke: dict[str, Any] = {
            "entry": entry,
            "hostname": target.hostname,
            "tunnel": target.tunnel,
            "request_id": uuid.uuid4().hex,
        }
        if entry != ANYCAST:
            invoke["pop"] = entry  # sent to this PoP's own address
        return invoke

    async def _one(
        self,
        session: aiohttp.ClientSession,
        kind: str,
        entry: str,
        target: VisitorTarget,
        body: bytes,
        user: UserRequest | None = None,
    ) -> None:
        invoke = self._invoke(entry, target)
        if user is not None:
            invoke["request"] = user.label()
        op = self.journal.invoke("visitor", function_of(user) if user else FUNCTION[kind], invoke)
        started = time.monotonic_ns()
        try:
            async with asyncio.timeout(self.timeout):
                if user is not None:
                    phase, value, error = await self._user(session, user, entry, target, invoke)
                elif kind == "ws":
                    phase, value, error = await self._ws(session, entry, target, invoke, body)
                else:
                    phase, value, error = await self._http(
                        session, kind, entry, target, invoke, body
                    )
        except TimeoutError:
            phase, value, error = "info", {}, f"no answer within {self.timeout:g} s"
        except (aiohttp.ClientError, OSError) as exc:
            # The request never got an answer: refused, reset, or dropped mid-way.
            phase, value, error = "fail", {}, f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a probe bug or an answer it cannot read: never an open invoke
            phase, value, error = "fail", {}, f"probe could not judge the answer: {exc!r}"
        finally:
            self.slots.release()
        value["latency_ns"] = time.monotonic_ns() - started
        self.outcomes[phase] += 1
        self.journal.complete(op, phase, value, error)  # type: ignore[arg-type]

    async def _http(
        self,
        session: aiohttp.ClientSession,
        kind: str,
        entry: str,
        target: VisitorTarget,
        invoke: dict[str, Any],
        body: bytes,
    ) -> tuple[str, dict[str, Any], str | None]:
        url = f"{self.entries[entry]}/probe/{invoke['request_id']}"
        headers = {"Host": target.hostname, "X-Request-Id": invoke["request_id"]}
        method = "GET" if kind == "get" else "POST"
        size = self.random.choice(self.get_sizes) if kind == "get" else None
        if size is not None:
            url += f"?size={size}"
            invoke["response_size"] = size
        async with session.request(method, url, data=body or None, headers=headers) as response:
            payload = await response.read()
            value: dict[str, Any] = {"status": response.status, **served_by(response.headers)}
            if response.status != 200:
                value.update(edge_error(payload))
                return "fail", value, f"HTTP {response.status}: {payload[:200]!r}"
            if size is not None:
                value.update(
                    judge_sized(response.headers, payload, size, invoke["request_id"], target)
                )
                return _verdict(value, target)
            try:
                echo = json.loads(payload)
            except ValueError:
                echo = None
            if not isinstance(echo, dict):
                return "fail", value, f"response is not the origin's JSON echo: {payload[:80]!r}"
            value.update(self._judge(echo, invoke, body, target))
            return _verdict(value, target)

    def _judge(
        self, echo: Mapping[str, Any], invoke: Mapping[str, Any], body: bytes, target: VisitorTarget
    ) -> dict[str, Any]:
        """What the origin's echo says about routing and integrity."""
        headers = {str(k).lower(): v for k, v in (echo.get("headers") or {}).items()}
        # The reference connector names its tunnel to the origin; cloudflared does it with the
        # tag the stack gives it (``--tag tunnel-id=UUID``: header Cf-Warp-Tag-Tunnel-Id).
        served_id = headers.get("x-outlast-tunnel-id") or headers.get(CLOUDFLARED_TUNNEL_TAG)
        served = target.tunnel if served_id == target.tunnel_id else (served_id or "unknown")
        return {
            "origin": echo.get("origin"),
            "served_tunnel": served,
            "request_id_echo_ok": echo.get("request_id") == invoke["request_id"],
            "digest_ok": echo.get("body_sha256") == hashlib.sha256(body).hexdigest(),
        }

    async def _user(
        self,
        session: aiohttp.ClientSession,
        request: UserRequest,
        entry: str,
        target: VisitorTarget,
        invoke: dict[str, Any],
    ) -> tuple[str, dict[str, Any], str | None]:
        """One of the user's requests, judged by its expectations (``user_requests``)."""
        assert self.user is not None
        headers = {"Host": target.hostname, "X-Request-Id": invoke["request_id"]}
        headers.update(request.headers)
        base = self.entries[entry]
        if request.ws is not None:
            url = base.replace("http", "ws", 1) + request.ws
            answer: str | None = None
            async with session.ws_connect(url, headers=headers, autoping=True) as ws:
                response_headers = ws._response.headers
                if request.send is not None:
                    await ws.send_str(request.send)
                if request.expect is not None:
                    message = await ws.receive()
                    if message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                        data = message.data
                        answer = data if isinstance(data, str) else bytes(data).decode("replace")
                await ws.close()
            phase, value, error = self.user.judge_ws(
                request, answer, response_headers, self.tunnel_names
            )
            value.update(served_by(response_headers))
        else:
            body = request.body.encode() if request.body is not None else None
            async with session.request(
                request.http_method, base + str(request.path), data=body, headers=headers
            ) as response:
                payload = await response.read()
                phase, value, error = self.user.judge_http(
                    request,
                    target.hostname,
                    response.status,
                    payload,
                    response.headers,
                    self.tunnel_names,
                )
                value.update(served_by(response.headers))
                if response.status >= 500:
                    value.update(edge_error(payload))
        served = value.get("served_tunnel")
        if served is not None and served != target.tunnel:
            wrong = f"served by {served!r}, expected {target.tunnel!r}"
            error = f"{error}; {wrong}" if error else wrong
            phase = "fail"
        return phase, value, error

    async def _ws(
        self,
        session: aiohttp.ClientSession,
        entry: str,
        target: VisitorTarget,
        invoke: dict[str, Any],
        body: bytes,
    ) -> tuple[str, dict[str, Any], str | None]:
        url = f"{self.entries[entry].replace('http', 'ws', 1)}/ws"
        headers = {"Host": target.hostname, "X-Request-Id": invoke["request_id"]}
        async with session.ws_connect(url, headers=headers, autoping=True) as ws:
            served = served_by(ws._response.headers)
            hello = await ws.receive()
            await ws.send_bytes(body)
            message = await ws.receive()
            await ws.close()
        value: dict[str, Any] = {"status": 101, **served}
        if hello.type != aiohttp.WSMsgType.TEXT:
            return "fail", value, f"expected the origin's hello, got {hello.type.name}"
        if message.type != aiohttp.WSMsgType.BINARY:
            return "fail", value, f"expected the echo of our message, got {message.type.name}"
        try:
            greeting = json.loads(hello.data)
        except ValueError:
            greeting = None
        if not isinstance(greeting, dict):
            return "fail", value, "the origin's hello is not its JSON greeting"
        value.update(self._judge(greeting, invoke, b"", target))
        value["digest_ok"] = bytes(message.data) == body
        return _verdict(value, target)


def judge_sized(
    headers: Mapping[str, str], payload: bytes, size: int, request_id: str, target: VisitorTarget
) -> dict[str, Any]:
    """What a sized answer (``?size=N``) says: the tunnel that carried it (the edge's
    ``X-Outlast-Tunnel-Id``), the request id echo, and whether the body has ``size`` bytes
    whose SHA-256 is the origin's ``X-Response-Sha256``."""
    served_id = headers.get(TUNNEL_ID_HEADER)
    served = target.tunnel if served_id == target.tunnel_id else (served_id or "unknown")
    expected = headers.get("X-Response-Sha256")
    return {
        "origin": headers.get("X-Origin-Name"),
        "served_tunnel": served,
        "request_id_echo_ok": headers.get("X-Request-Id") == request_id,
        "digest_ok": expected is not None
        and len(payload) == size
        and hashlib.sha256(payload).hexdigest() == expected,
        "response_size": len(payload),
    }


def served_by(headers: Mapping[str, str]) -> dict[str, str]:
    """``pop`` (the PoP the visitor reached) and ``tunnel_pop`` (the PoP whose connection
    carried the request) from an edge's response headers; empty when there are none."""
    found = {}
    for key, header in (("pop", "X-Outlast-Pop"), ("tunnel_pop", "X-Outlast-Tunnel-Pop")):
        value = headers.get(header)
        if value:
            found[key] = value
    return found


def edge_error(payload: bytes) -> dict[str, Any]:
    """``{"error_code": N}`` of an edge's JSON error body (docs/edge.md), else nothing."""
    try:
        body = json.loads(payload)
    except ValueError:
        return {}
    code = body.get("error_code") if isinstance(body, dict) else None
    return {"error_code": code} if isinstance(code, int) and not isinstance(code, bool) else {}


def _verdict(
    value: dict[str, Any], target: VisitorTarget
) -> tuple[str, dict[str, Any], str | None]:
    """A wrong answer (another tunnel, a lost request id, a changed body) is a failure."""
    wrong = []
    if value.get("served_tunnel") != target.tunnel:
        wrong.append(f"served by {value.get('served_tunnel')!r}, expected {target.tunnel!r}")
    if value.get("request_id_echo_ok") is not True:
        wrong.append("request id not echoed")
    if value.get("digest_ok") is not True:
        wrong.append("body digest differs")
    return ("fail", value, "; ".join(wrong)) if wrong else ("ok", value, None)
