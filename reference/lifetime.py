"""Child processes that die with their parent: no orphan survives a SIGKILLed supervisor."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, sig: int = signal.SIGKILL) -> None:
    """Run in a child between fork and exec (``preexec_fn``): the kernel sends ``sig`` to it
    when the thread that forked it dies (Linux ``PR_SET_PDEATHSIG``; a no-op elsewhere). If the
    parent is already gone, the child signals itself at once."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), sig)
