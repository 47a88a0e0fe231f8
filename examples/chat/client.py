"""A WebSocket client that reconnects: what the example's users run against ``/ws``.

It sends ``ping`` every ``interval`` seconds and counts the ``pong``s; when the connection
drops (a link of the tunnel goes down under it) it dials again with a capped backoff.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp


@dataclass
class ReconnectingClient:
    """``run(stop)`` until ``stop`` is set; ``pongs``, ``connects`` and ``last_pong`` say how it
    went (``last_pong`` is a ``time.monotonic()`` reading)."""

    url: str
    host: str
    interval: float = 0.1
    backoff_cap: float = 1.0
    pongs: int = 0
    connects: int = 0
    last_pong: float = 0.0
    errors: list[str] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.05
        async with aiohttp.ClientSession(trust_env=False) as session:
            while not stop.is_set():
                try:
                    await self._session(session, stop)
                    backoff = 0.05
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.backoff_cap)

    async def _session(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        headers = {"Host": self.host}
        async with session.ws_connect(self.url, headers=headers, heartbeat=2.0) as ws:
            self.connects += 1
            while not stop.is_set():
                await ws.send_str("ping")
                message = await asyncio.wait_for(ws.receive(), 2.0)
                if message.type != aiohttp.WSMsgType.TEXT:
                    raise aiohttp.ClientConnectionError(f"connection ended: {message.type.name}")
                if message.data == "pong":
                    self.pongs += 1
                    self.last_pong = time.monotonic()
                await asyncio.sleep(self.interval)
