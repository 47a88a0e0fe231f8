"""``timeout``: black-hole the link; close the connection after ``timeout`` ms (0 = never).

Removing the toxic closes the connections it was holding, as Toxiproxy does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from typing import Any, ClassVar

from harness.faultproxy.toxics.base import MS_LIMIT, Chunk, Emit, Toxic, ToxicStub


class TimeoutToxic(Toxic):
    """Drops every chunk. With ``timeout`` > 0 the connection closes that long after the toxic
    started on the link; with 0 it stays open (and silent) until the toxic is removed."""

    type_name: ClassVar[str] = "timeout"
    defaults: ClassVar[dict[str, int]] = {"timeout": 0}
    limits: ClassVar[Mapping[str, tuple[int, str]]] = {"timeout": MS_LIMIT}

    async def pipe(self, chunk: Chunk, emit: Emit, stub: ToxicStub) -> None:
        return  # dropped

    def on_start(self, stub: ToxicStub) -> Coroutine[Any, Any, None] | None:
        if self.attr("timeout") <= 0:
            return None
        return self._close_later(stub, self.attr("timeout") / 1000.0)

    @staticmethod
    async def _close_later(stub: ToxicStub, seconds: float) -> None:
        await asyncio.sleep(seconds)
        stub.link.close()

    def on_remove(self, stub: ToxicStub) -> None:
        stub.link.close()
