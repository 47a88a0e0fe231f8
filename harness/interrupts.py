"""SIGTERM stops a command that owns a stack the way Ctrl-C does: the running scenario (or
exploration) is cancelled, its faults are undone, the stack is stopped and the journal is
closed. CI systems and process supervisors stop jobs with SIGTERM; without this, Python would
die at once and leave every component it started running."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: Exit status after SIGTERM, as a shell reports a process killed by it (128 + 15).
EXIT_TERMINATED = 128 + signal.SIGTERM
#: Exit status after Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 128 + signal.SIGINT


class Terminated(Exception):
    """The command was stopped by SIGTERM (after tearing down what it started)."""


async def cancel_on_sigterm(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work``; on SIGTERM cancel it (so its cleanup runs) and raise :class:`Terminated`."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    terminated = False

    def on_sigterm() -> None:
        nonlocal terminated
        terminated = True
        task.cancel()

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        return await task
    except asyncio.CancelledError:
        if terminated:
            raise Terminated from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def stopped_by(exc: KeyboardInterrupt | Terminated) -> tuple[str, int]:
    """What stopped the command, for its last message, and the exit status to leave with."""
    if isinstance(exc, Terminated):
        return "terminated (SIGTERM)", EXIT_TERMINATED
    return "interrupted", EXIT_INTERRUPTED
