"""The origin: an HTTP + WebSocket echo service whose every answer says who answered.

* ``GET /health`` -> ``{"status": "ok", "origin": NAME}``.
* ``/ws`` (WebSocket) -> first a text message ``{"type": "hello", "origin": NAME, "request_id":
  ..., "headers": {...}}``, then every message echoed exactly (text as text, binary as binary)
  until the client closes. ``/ws?hello=0`` skips the hello (a pure echo).
* Any other method and path -> 200 JSON ``{origin, method, path, query, host, request_id,
  body_sha256, body_len, headers}`` where ``headers`` holds ``content-type``, ``user-agent``
  and every ``x-*`` request header (and ``cf-warp-tag-*``: the tags cloudflared adds, e.g.
  the tunnel id the stack gives it). Response headers ``X-Origin-Name``, ``X-Request-Id`` (echo
  of the request's) and ``X-Body-Sha256`` (SHA-256 of the request body as received).
  Query parameters for tests: ``delay=S`` waits S seconds (<= 60) before answering,
  ``status=N`` answers with status N, ``size=N`` answers with N deterministic bytes
  (digest in ``X-Response-Sha256``) instead of JSON.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

from aiohttp import WSMsgType, web

NAME_KEY = web.AppKey("origin_name", str)
MAX_DELAY = 60.0
MAX_SIZE = 256 * 1024 * 1024


def deterministic_bytes(size: int) -> bytes:
    """``size`` bytes of a fixed pattern (so a client can check what it received)."""
    block = hashlib.sha256(b"outlast-origin").digest() * 2048  # 64 KiB
    whole, rest = divmod(size, len(block))
    return block * whole + block[:rest]


def _echoed_headers(request: web.Request) -> dict[str, str]:
    return {
        key.lower(): value
        for key, value in request.headers.items()
        if key.lower().startswith(("x-", "cf-warp-tag-"))
        or key.lower() in ("content-type", "user-agent")
    }


def _query_number(request: web.Request, key: str, high: float) -> float | None:
    raw = request.query.get(key)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"query parameter {key}={raw!r} is not a number\n") from None
    if not 0 <= value <= high:
        raise web.HTTPBadRequest(text=f"query parameter {key}={raw!r} is outside 0..{high}\n")
    return value


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "origin": request.app[NAME_KEY]})


async def websocket_echo(request: web.Request) -> web.StreamResponse:
    if request.headers.get("Upgrade", "").lower() != "websocket":
        return await echo(request)
    name = request.app[NAME_KEY]
    ws = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024)
    ws.headers["X-Origin-Name"] = name
    await ws.prepare(request)
    if request.query.get("hello", "1") != "0":
        await ws.send_str(
            json.dumps(
                {
                    "type": "hello",
                    "origin": name,
                    "request_id": request.headers.get("X-Request-Id"),
                    "headers": _echoed_headers(request),
                }
            )
        )
    async for message in ws:
        if message.type == WSMsgType.TEXT:
            await ws.send_str(message.data)
        elif message.type == WSMsgType.BINARY:
            await ws.send_bytes(message.data)
        else:
            break
    return ws


async def echo(request: web.Request) -> web.StreamResponse:
    name = request.app[NAME_KEY]
    digest = hashlib.sha256()
    length = 0
    async for chunk in request.content.iter_any():
        digest.update(chunk)
        length += len(chunk)
    delay = _query_number(request, "delay", MAX_DELAY)
    if delay:
        await asyncio.sleep(delay)
    status = int(_query_number(request, "status", 599) or 200)
    if status < 200:
        raise web.HTTPBadRequest(text="status must be 200..599\n")
    request_id = request.headers.get("X-Request-Id", "")
    headers = {
        "X-Origin-Name": name,
        "X-Request-Id": request_id,
        "X-Body-Sha256": digest.hexdigest(),
    }
    size = _query_number(request, "size", MAX_SIZE)
    if size is not None:
        body = deterministic_bytes(int(size))
        headers["X-Response-Sha256"] = hashlib.sha256(body).hexdigest()
        return web.Response(
            status=status, body=body, headers=headers, content_type="application/octet-stream"
        )
    payload: dict[str, Any] = {
        "origin": name,
        "method": request.method,
        "path": request.path,
        "query": request.query_string,
        "host": request.host,
        "request_id": request_id or None,
        "body_sha256": digest.hexdigest(),
        "body_len": length,
        "headers": _echoed_headers(request),
    }
    return web.json_response(payload, status=status, headers=headers)


def create_app(name: str) -> web.Application:
    """The origin application named ``name``."""
    app = web.Application(client_max_size=MAX_SIZE)
    app[NAME_KEY] = name
    app.router.add_get("/health", health)
    app.router.add_route("GET", "/ws", websocket_echo)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app
