"""Waiting for a component to be ready by probing it (never by sleeping a fixed time)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx

from harness.stack.process import ManagedProcess


async def wait_tcp(
    host: str, port: int, *, timeout: float = 15.0, process: ManagedProcess | None = None
) -> None:
    """Wait until ``host:port`` accepts a TCP connection."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None:
            process.check_running()
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
            writer.close()
            return
        except (OSError, TimeoutError):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"nothing accepted connections on {host}:{port} within {timeout:.0f} s"
                ) from None
            await asyncio.sleep(0.05)


async def wait_http(
    url: str,
    *,
    timeout: float = 15.0,
    process: ManagedProcess | None = None,
    expect_status: int | Callable[[int], bool] | None = 200,
    headers: dict[str, str] | None = None,
    expect_body: Callable[[bytes], bool] | None = None,
) -> httpx.Response:
    """Poll ``url`` until it answers (with ``expect_status``, a status or a test of it, unless
    None, and a body ``expect_body`` accepts, if given); return the response."""
    accept: Callable[[int], bool] = (
        expect_status
        if callable(expect_status)
        else (lambda status: expect_status is None or status == expect_status)
    )
    deadline = time.monotonic() + timeout
    last: str = "no answer"
    async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
        while True:
            if process is not None:
                process.check_running()
            try:
                response = await client.get(url, headers=headers)
                if accept(response.status_code) and (
                    expect_body is None or expect_body(response.content)
                ):
                    return response
                last = f"status {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} not ready within {timeout:.0f} s (last: {last})")
            await asyncio.sleep(0.05)
