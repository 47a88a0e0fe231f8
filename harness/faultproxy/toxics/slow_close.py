"""``slow_close``: hold the end of the stream back for ``delay`` ms before passing it on."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import ClassVar

from harness.faultproxy.toxics.base import MS_LIMIT, Toxic, ToxicStub


class SlowCloseToxic(Toxic):
    """Data passes unchanged; the close (EOF) reaches the other side ``delay`` ms late."""

    type_name: ClassVar[str] = "slow_close"
    defaults: ClassVar[dict[str, int]] = {"delay": 0}
    limits: ClassVar[Mapping[str, tuple[int, str]]] = {"delay": MS_LIMIT}

    async def at_eof(self, stub: ToxicStub) -> None:
        await asyncio.sleep(self.attr("delay") / 1000.0)
