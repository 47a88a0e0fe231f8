"""``limit_data``: let ``bytes`` bytes through on the link, then close the connection."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from harness.faultproxy.toxics.base import Chunk, Emit, Toxic, ToxicStub


@dataclass
class _Count:
    sent: int = 0


class LimitDataToxic(Toxic):
    """Counts bytes per link (kept across attribute updates); at the limit the stream ends
    there: what passed is delivered, then the connection closes."""

    type_name: ClassVar[str] = "limit_data"
    defaults: ClassVar[dict[str, int]] = {"bytes": 0}

    def new_state(self) -> _Count:
        return _Count()

    async def pipe(self, chunk: Chunk, emit: Emit, stub: ToxicStub) -> None:
        count: _Count = stub.state
        remaining = max(self.attr("bytes") - count.sent, 0)
        data = chunk.data[:remaining]
        if data:
            count.sent += len(data)
            await emit(Chunk(data, chunk.arrived))
        if count.sent >= self.attr("bytes"):
            stub.link.close()
