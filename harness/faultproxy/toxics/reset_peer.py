"""``reset_peer``: on the first data, wait ``timeout`` ms, then reset the connection (TCP RST)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import ClassVar

from harness.faultproxy.toxics.base import MS_LIMIT, Chunk, Emit, Toxic, ToxicStub


class ResetPeerToxic(Toxic):
    """The data is dropped; ``timeout`` ms after the first chunk both sockets close with
    SO_LINGER 0, so both peers see "connection reset by peer". As in Toxiproxy, the reset
    still happens if the toxic is removed or updated in between."""

    type_name: ClassVar[str] = "reset_peer"
    defaults: ClassVar[dict[str, int]] = {"timeout": 0}
    limits: ClassVar[Mapping[str, tuple[int, str]]] = {"timeout": MS_LIMIT}

    async def pipe(self, chunk: Chunk, emit: Emit, stub: ToxicStub) -> None:
        if stub.state is None:  # the timer, started by the first chunk
            stub.state = asyncio.get_running_loop().create_task(self._reset_later(stub))

    async def _reset_later(self, stub: ToxicStub) -> None:
        await asyncio.sleep(self.attr("timeout") / 1000.0)
        stub.link.reset()
