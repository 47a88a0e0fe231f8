"""Slow clients against a real stack's listeners on 127.0.0.1 (issue 21, docs/security.md),
each bounded to a few seconds. The tunnel listener drops a client that never finishes its TLS
handshake; the visitor listener and the control plane API have no header or body read timeout
yet (strict xfail: these turn red, as they should, once a timeout is added)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

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


@pytest.mark.xfail(strict=True, reason="no header read timeout on the visitor listener yet")
async def test_visitor_listener_drops_stalled_headers(stack: LocalStack) -> None:
    visitor = _address(stack.visitor_url("ams"))
    partial = b"GET / HTTP/1.1\r\nHost: app.example.com\r\n"
    assert await closed_within(visitor, partial, WAIT) is not None


@pytest.mark.xfail(strict=True, reason="no header read timeout on the control plane API yet")
async def test_control_plane_api_drops_stalled_headers(stack: LocalStack) -> None:
    api = _address(stack.api_url)
    assert await closed_within(api, b"GET /client/v4/zones HTTP/1.1\r\nHost: x\r\n", WAIT)
