"""``reset_peer``: on the first data, wait ``timeout`` ms, then reset the connection (TCP RST)."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from harness.faultproxy.toxics.base import Chunk, Emit, Toxic, ToxicStub


class ResetPeerToxic(Toxic):
    """The first chunk is dropped; after ``timeout`` ms both sockets close with SO_LINGER 0, so
    both peers see "connection reset by peer"."""

    type_name: ClassVar[str] = "reset_peer"
    defaults: ClassVar[dict[str, int]] = {"timeout": 0}

    async def pipe(self, chunk: Chunk, emit: Emit, stub: ToxicStub) -> None:
        await asyncio.sleep(self.attr("timeout") / 1000.0)
        stub.link.reset()
