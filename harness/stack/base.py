"""What every stack backend offers the harness (local processes, Docker Compose)."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from harness.stack.topology import Topology


class StackError(RuntimeError):
    """The stack could not be brought up, or a component operation failed."""


@runtime_checkable
class Stack(Protocol):
    """A running reference system with a fault proxy on every link."""

    topology: Topology

    async def up(self) -> None:
        """Start everything and wait until visitors are served through every PoP."""

    async def down(self) -> None:
        """Stop everything this stack started (always safe to call, also after a failed up)."""

    def endpoints(self) -> dict[str, Any]:
        """The addresses a user or probe needs (the content of ``stack.json``)."""
        ...

    async def stop(self, component: str) -> None:
        """Stop ``component`` gracefully (SIGTERM)."""

    async def kill(self, component: str) -> None:
        """Kill ``component`` at once (SIGKILL)."""

    async def start(self, component: str) -> None:
        """Start a stopped or killed ``component`` again, with the same addresses and data."""

    async def restart(self, component: str) -> None:
        """Stop then start ``component``."""

    async def forget_state(self, component: str) -> None:
        """Delete a stopped edge's on-disk state (its configuration cache), so that it starts
        as a freshly installed PoP would."""

    async def pause(self, component: str) -> None:
        """Freeze ``component`` (it keeps its sockets but answers nothing)."""

    async def resume(self, component: str) -> None:
        """Unfreeze a paused ``component``."""
