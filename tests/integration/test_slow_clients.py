"""Slow clients against a real stack's listeners on 127.0.0.1 (issue 21, docs/security.md),
each bounded to a few seconds. The tunnel listener drops a client that never finishes its TLS
handshake; the visitor listener and the control plane API answer 408 to a request whose headers
never complete (reference/http_limits.py), and cap their connections with 503 + Retry-After."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from harness.stack.local import LocalStack

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

WAIT = 12.0  # longer than the tunnel listener's 10 s handshake timeout


@pytest.fixture
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalStack]:
    async with LocalStack(tmp_path_factory.mktemp("slow") / "stack") as running:
        yield running


def _address(url_or_address: str) -> tuple[str, int]:
    host, _, port = url_or_address.split("//")[-1].rpartition(":")
    return host, int(port)


async def answer_when_closed(
    address: tuple[str, int], sent: bytes, seconds: float
) -> tuple[float, bytes] | None:
    """Send ``sent`` and stall; (seconds until the server closed, what it sent), or None."""
    reader, writer = await asyncio.open_connection(*address)
    started = time.monotonic()
    try:
        writer.write(sent)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), seconds)
        return time.monotonic() - started, answer
    except TimeoutError:
        return None
    finally:
        writer.close()


async def closed_within(address: tuple[str, int], sent: bytes, seconds: float) -> float | None:
    """Send ``sent`` and stall; seconds until the server closed, or None if it never did."""
    reader, writer = await asyncio.open_connection(*address)
    started = time.monotonic()
    try:
        writer.write(sent)
        await writer.drain()
        await asyncio.wait_for(reader.read(), seconds)
        return time.monotonic() - started
    except TimeoutError:
        return None
    finally:
        writer.close()


async def test_tunnel_listener_drops_a_stalled_tls_handshake(stack: LocalStack) -> None:
    tunnel = _address(stack.endpoints()["pops"]["ams"]["tunnel"])
    closed = await closed_within(tunnel, b"\x16\x03\x01", WAIT)
    assert closed is not None and closed < WAIT


async def test_visitor_listener_drops_stalled_headers(stack: LocalStack) -> None:
    visitor = _address(stack.visitor_url("ams"))
    partial = b"GET / HTTP/1.1\r\nHost: app.example.com\r\n"
    closed = await answer_when_closed(visitor, partial, WAIT)
    assert closed is not None, "a request whose headers never end is still open"
    assert closed[1].startswith(b"HTTP/1.1 408 ")
    async with httpx.AsyncClient(trust_env=False) as client:
        text = (await client.get(stack.pop_metrics_url("ams"))).text
    assert 'outlast_edge_visitor_slow_clients_total{reason="header_timeout"} 1.0' in text


async def test_control_plane_api_drops_stalled_headers(stack: LocalStack) -> None:
    api = _address(stack.api_url)
    closed = await answer_when_closed(api, b"GET /client/v4/zones HTTP/1.1\r\nHost: x\r\n", WAIT)
    assert closed is not None, "a request whose headers never end is still open"
    assert closed[1].startswith(b"HTTP/1.1 408 ")
    async with httpx.AsyncClient(trust_env=False) as client:
        text = (await client.get(f"{stack.api_url}/metrics")).text
    assert 'outlast_controlplane_slow_clients_total{reason="header_timeout"} 1.0' in text
