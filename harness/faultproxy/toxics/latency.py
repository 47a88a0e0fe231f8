"""``latency``: delay each chunk by ``latency`` ms, plus or minus up to ``jitter`` ms."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import ClassVar

from harness.faultproxy.toxics.base import MS_LIMIT, Chunk, Emit, Toxic, ToxicStub


class LatencyToxic(Toxic):
    """Chunks leave ``latency + offset`` ms after they arrived; the offset is a seeded draw in
    ``[-jitter, jitter)``. Timing is from arrival and up to 32 MiB may wait in front of the
    toxic (as Toxiproxy's 1024 chunks), so a stream is delayed, not throttled. The chunk leaves
    stamped with the time it was due, so a second latency toxic adds its own delay."""

    type_name: ClassVar[str] = "latency"
    defaults: ClassVar[dict[str, int]] = {"latency": 0, "jitter": 0}
    limits: ClassVar[Mapping[str, tuple[int, str]]] = {"latency": MS_LIMIT, "jitter": MS_LIMIT}
    buffer_bytes: ClassVar[int] = 1024 * 32 * 1024

    async def pipe(self, chunk: Chunk, emit: Emit, stub: ToxicStub) -> None:
        delay = (self.attr("latency") + self.random.offset(self.attr("jitter"))) / 1000.0
        loop = asyncio.get_running_loop()
        wait = chunk.arrived + delay - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        await emit(Chunk(chunk.data, chunk.arrived + wait))
