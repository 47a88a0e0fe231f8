"""Faults on a component: stop, kill, pause for the fault's duration; restart once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from harness.faults.base import FaultContext, register


@register
@dataclass
class Stop:
    """The component is stopped gracefully (SIGTERM) and started again at heal."""

    kind: ClassVar[str] = "stop"
    target: str
    params: dict[str, Any] = field(default_factory=dict)
    _done: bool = False

    async def inject(self, ctx: FaultContext) -> None:
        await ctx.stack.stop(self.target)
        self._done = True

    async def heal(self, ctx: FaultContext) -> None:
        if self._done:
            await ctx.stack.start(self.target)
            self._done = False


@register
@dataclass
class Kill(Stop):
    """The component is killed (SIGKILL: no drain, no goodbye) and started again at heal."""

    kind: ClassVar[str] = "kill"

    async def inject(self, ctx: FaultContext) -> None:
        if self.params.get("signal", "KILL") == "KILL":
            await ctx.stack.kill(self.target)
        else:  # TERM and INT both ask the process to shut down cleanly
            await ctx.stack.stop(self.target)
        self._done = True


@register
@dataclass
class Pause(Stop):
    """The component is frozen (SIGSTOP / docker pause) and resumed at heal."""

    kind: ClassVar[str] = "pause"

    async def inject(self, ctx: FaultContext) -> None:
        await ctx.stack.pause(self.target)
        self._done = True

    async def heal(self, ctx: FaultContext) -> None:
        if self._done:
            await ctx.stack.resume(self.target)
            self._done = False


@register
@dataclass
class Restart:
    """The component is restarted (stop then start) at the fault's start; heal does nothing."""

    kind: ClassVar[str] = "restart"
    target: str
    params: dict[str, Any] = field(default_factory=dict)

    async def inject(self, ctx: FaultContext) -> None:
        graceful = self.params.get("graceful", True)
        if self.params.get("fresh", False):
            await (ctx.stack.stop if graceful else ctx.stack.kill)(self.target)
            await ctx.stack.forget_state(self.target)
            await ctx.stack.start(self.target)
        elif not graceful:
            await ctx.stack.kill(self.target)
            await ctx.stack.start(self.target)
        else:
            await ctx.stack.restart(self.target)

    async def heal(self, ctx: FaultContext) -> None:
        return None
