"""``latency``: delay each chunk by ``latency`` ms, plus or minus up to ``jitter`` ms."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from harness.faultproxy.toxics.base import Chunk, Emit, Toxic, ToxicStub


class LatencyToxic(Toxic):
    """Chunks leave ``latency + offset`` ms after they arrived; the offset is a seeded draw in
    ``[-jitter, jitter)``. Timing is from arrival, so a stream is delayed, not throttled."""

    type_name: ClassVar[str] = "latency"
    defaults: ClassVar[dict[str, int]] = {"latency": 0, "jitter": 0}

    async def pipe(self, chunk: Chunk, emit: Emit, stub: ToxicStub) -> None:
        delay_ms = self.attr("latency") + self.random.offset(self.attr("jitter"))
        loop = asyncio.get_running_loop()
        wait = chunk.arrived + max(delay_ms, 0) / 1000.0 - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        await emit(chunk)
