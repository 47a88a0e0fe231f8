"""A visitor's request body that can be sent again on another connection (while small enough)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from aiohttp import StreamReader

#: Bodies up to this size are kept so an idempotent request can be retried elsewhere.
DEFAULT_REPLAY_LIMIT = 1024 * 1024
READ_CHUNK = 64 * 1024


class BodyStalled(TimeoutError):
    """The visitor sent no byte of its body for the idle timeout."""


class ReplayableBody:
    """Reads the visitor's body once from ``content`` and keeps the bytes read so far while the
    total stays within ``limit``. ``chunks()`` can then be iterated again for a retry as long as
    ``replayable`` is True (everything read so far was kept)."""

    def __init__(
        self,
        content: StreamReader,
        limit: int = DEFAULT_REPLAY_LIMIT,
        *,
        idle_timeout: float | None = None,
        on_stall: Callable[[], None] = lambda: None,
    ) -> None:
        self._content = content
        self._idle_timeout = idle_timeout
        self._on_stall = on_stall
        self._limit = limit
        self._kept: list[bytes] = []
        self._kept_size = 0
        self.replayable = True
        self.exhausted = False
        self.size = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        """All chunks from the start (replayed ones first, then fresh ones from the visitor)."""
        if not self.replayable:
            raise RuntimeError("request body was larger than the replay limit; cannot resend it")
        for chunk in list(self._kept):
            yield chunk
        while not self.exhausted:
            try:
                async with asyncio.timeout(self._idle_timeout):
                    chunk = await self._content.readany()
            except TimeoutError:
                self._on_stall()
                raise BodyStalled(
                    f"no byte of the request body for {self._idle_timeout:g} s "
                    f"({self.size} bytes received)"
                ) from None
            if not chunk:
                self.exhausted = True
                return
            self.size += len(chunk)
            if self.replayable:
                if self._kept_size + len(chunk) <= self._limit:
                    self._kept.append(chunk)
                    self._kept_size += len(chunk)
                else:
                    self.replayable = False
                    self._kept.clear()
            yield chunk
