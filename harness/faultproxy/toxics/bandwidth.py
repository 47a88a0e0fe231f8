"""``bandwidth``: limit a link to ``rate`` KB/s (1 KB = 1000 bytes, as Toxiproxy; 0 = no limit)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from harness.faultproxy.toxics.base import Chunk, Emit, Toxic, ToxicStub

# Credit a link may build up when sending took longer than the rate allows (a slow reader),
# spent by sending the next pieces without waiting. Bounded, so no burst follows a stall.
MAX_CREDIT = 0.02
# A wait for input shorter than this is part of a continuous stream and counts as sending
# time; a longer one is idle time, which (as in Toxiproxy) earns nothing.
STREAM_GAP = 0.010


@dataclass
class _Pace:
    debt: float = 0.0  # seconds still owed for data already passed on (negative: credit)
    last: float = float("-inf")  # when the previous piece had been passed on


class BandwidthToxic(Toxic):
    """As Toxiproxy: each piece (at most 100 ms worth, ``rate * 100`` bytes) waits for its own
    transmission time before it goes, and the time waiting for input is not credited. Unlike
    Toxiproxy, the time spent passing a piece on counts too, and so do the timer's overshoot
    and short waits for the next chunk of a continuous stream, so that the achieved rate stays
    within 2 % of ``rate`` up to 100 MB/s (Toxiproxy itself falls behind above ~10 MB/s)."""

    type_name: ClassVar[str] = "bandwidth"
    defaults: ClassVar[dict[str, int]] = {"rate": 0}
    limits: ClassVar[Mapping[str, tuple[int, str]]] = {"rate": (100_000_000, " KB/s (100 GB/s)")}

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
        piece = max(rate * 100, 1)
        data = chunk.data
        for start in range(0, len(data), piece):
            part = data[start : start + piece]
            began = loop.time()
            if began - pace.last < STREAM_GAP:
                began = pace.last
            pace.debt += len(part) / bytes_per_second
            if pace.debt > 0:
                await asyncio.sleep(pace.debt)
            await emit(Chunk(part, chunk.arrived))
            pace.last = loop.time()
            pace.debt = max(pace.debt - (pace.last - began), -MAX_CREDIT)
