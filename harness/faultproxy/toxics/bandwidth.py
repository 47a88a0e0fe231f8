"""``bandwidth``: limit a link to ``rate`` KB/s (1 KB = 1000 bytes, as Toxiproxy; 0 = no limit)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import ClassVar

from harness.faultproxy.toxics.base import Chunk, Emit, Toxic, ToxicStub


@dataclass
class _Pace:
    next_send: float = 0.0


class BandwidthToxic(Toxic):
    """Sends at most ``rate * 100`` bytes per piece, each piece when the rate allows it."""

    type_name: ClassVar[str] = "bandwidth"
    defaults: ClassVar[dict[str, int]] = {"rate": 0}

    def new_state(self) -> _Pace:
        return _Pace()

    async def pipe(self, chunk: Chunk, emit: Emit, stub: ToxicStub) -> None:
        rate = self.attr("rate")
        if rate <= 0:
            await emit(chunk)
            return
        pace: _Pace = stub.state
        loop = asyncio.get_running_loop()
        bytes_per_second = rate * 1000.0
        piece = max(rate * 100, 1)  # 100 ms worth of data
        data = chunk.data
        for start in range(0, len(data), piece):
            part = data[start : start + piece]
            pace.next_send = max(pace.next_send, loop.time()) + len(part) / bytes_per_second
            wait = pace.next_send - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            await emit(Chunk(part, chunk.arrived))
