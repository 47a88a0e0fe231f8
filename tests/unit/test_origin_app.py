"""The origin echo application, served on a real 127.0.0.1 socket."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from reference.origin.app import create_app, deterministic_bytes


@pytest.fixture
async def origin_url() -> AsyncIterator[str]:
    runner = web.AppRunner(create_app("origin-a"))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_post_echoes_name_request_id_and_digest(origin_url: str) -> None:
    body = os.urandom(300_000)
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{origin_url}/submit/x?a=1",
            data=body,
            headers={"X-Request-Id": "req-42", "X-Probe": "p", "Cookie": "c=1"},
        ) as response:
            payload = await response.json()
            assert response.status == 200
            assert response.headers["X-Origin-Name"] == "origin-a"
            assert response.headers["X-Request-Id"] == "req-42"
            assert response.headers["X-Body-Sha256"] == hashlib.sha256(body).hexdigest()
    assert payload["origin"] == "origin-a" and payload["method"] == "POST"
    assert payload["path"] == "/submit/x" and payload["query"] == "a=1"
    assert payload["request_id"] == "req-42" and payload["body_len"] == len(body)
    assert payload["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert payload["headers"]["x-probe"] == "p" and "cookie" not in payload["headers"]


async def test_status_and_size_parameters(origin_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{origin_url}/x?status=503") as response:
            assert response.status == 503
        async with session.get(f"{origin_url}/big?size=100000") as response:
            data = await response.read()
            assert data == deterministic_bytes(100_000)
            assert response.headers["X-Response-Sha256"] == hashlib.sha256(data).hexdigest()
        async with session.get(f"{origin_url}/x?delay=nope") as response:
            assert response.status == 400


async def test_health(origin_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{origin_url}/health") as response:
            assert await response.json() == {"status": "ok", "origin": "origin-a"}


async def test_websocket_hello_then_exact_echo(origin_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{origin_url}/ws", headers={"X-Request-Id": "ws-1"}) as ws:
            hello = json.loads(await ws.receive_str())
            assert hello["type"] == "hello" and hello["origin"] == "origin-a"
            assert hello["request_id"] == "ws-1"
            await ws.send_str("text ✓")
            assert await ws.receive_str() == "text ✓"
            await ws.send_bytes(b"\x00\x01binary")
            assert await ws.receive_bytes() == b"\x00\x01binary"
        async with session.ws_connect(f"{origin_url}/ws?hello=0") as ws:
            await ws.send_str("first")
            assert await ws.receive_str() == "first"
