"""What-if experiments for ``bench/overhead.py --what-if NAME`` (never used by Outlast itself).

``overhead.py`` puts this directory on ``PYTHONPATH`` and names the experiments in
``OUTLAST_BENCH_WHATIF`` for every process of its stack, so each process imports this module at
start-up and applies them. They measure what a change *would* give before anyone makes it:

* ``uvloop``: the libuv event loop instead of asyncio's (needs ``pip install uvloop``).
* ``backlog``: listening sockets get a backlog of 4096 (the kernel's ``somaxconn`` here) where
  the caller gives none — asyncio's default is 100 — e.g. the edge's tunnel listener
  (``reference/edge/server.py`` ``EdgeServer.start``, ``asyncio.start_server``).
* ``heartbeat_wakeups``: each tunnel connection's heartbeat task sleeps until its next deadline
  (PING due or silence timeout) instead of waking at least every 0.25 s (``MAX_TICK`` in
  ``reference/wire/connection.py``).

An experiment that is adopted moves into the reference and leaves this file (``coalesce``, one
write per event-loop iteration, is now ``TunnelConnection._flush`` itself).
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from typing import Any

EXPERIMENTS = {e.strip() for e in os.environ.get("OUTLAST_BENCH_WHATIF", "").split(",") if e}


def _uvloop() -> None:
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        print("what-if uvloop: uvloop is not installed (pip install uvloop)", file=sys.stderr)
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _heartbeat_wakeups() -> None:
    from reference.wire import connection

    connection.MAX_TICK = 3600.0


def _backlog() -> None:
    original = asyncio.base_events.BaseEventLoop.create_server

    async def create_server(self: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("backlog", 4096)
        return await original(self, *args, **kwargs)

    asyncio.base_events.BaseEventLoop.create_server = create_server  # type: ignore[method-assign]


if "backlog" in EXPERIMENTS:
    _backlog()
if "heartbeat_wakeups" in EXPERIMENTS:
    _heartbeat_wakeups()
if "uvloop" in EXPERIMENTS:
    _uvloop()
