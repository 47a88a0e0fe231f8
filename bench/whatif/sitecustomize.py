"""What-if experiments for ``bench/overhead.py --what-if NAME`` (never used by Outlast itself).

``overhead.py`` puts this directory on ``PYTHONPATH`` and names the experiments in
``OUTLAST_BENCH_WHATIF`` for every process of its stack, so each process imports this module at
start-up and applies them. They measure what a change *would* give before anyone makes it:

* ``coalesce``: the tunnel connection writes once per event-loop iteration instead of once per
  frame (``reference/wire/connection.py`` ``TunnelConnection._flush``); closing paths still flush
  at once. The reference does this itself since the overhead measurement of issue 9 (it has
  ``TunnelConnection._flush_now``); the experiment is then a no-op, kept so older trees compare.
* ``uvloop``: the libuv event loop instead of asyncio's (needs ``pip install uvloop``).
* ``backlog``: listening sockets get a backlog of 4096 (the kernel's ``somaxconn`` here) where
  the caller gives none — asyncio's default is 100 — e.g. the edge's tunnel listener
  (``reference/edge/server.py`` ``EdgeServer.start``, ``asyncio.start_server``).
* ``heartbeat_wakeups``: each tunnel connection's heartbeat task sleeps until its next deadline
  (PING due or silence timeout) instead of waking at least every 0.25 s (``MAX_TICK`` in
  ``reference/wire/connection.py``).
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from typing import Any

EXPERIMENTS = {e.strip() for e in os.environ.get("OUTLAST_BENCH_WHATIF", "").split(",") if e}


def _coalesce_writes() -> None:
    from reference.wire import connection

    cls: Any = connection.TunnelConnection
    if hasattr(cls, "_flush_now"):
        return  # the reference coalesces its writes already
    flush_now = cls._flush
    connection_over = cls._connection_over

    def flush_soon(self: Any) -> None:
        if getattr(self, "_whatif_flush_pending", False):
            return
        self._whatif_flush_pending = True

        def run() -> None:
            self._whatif_flush_pending = False
            flush_now(self)

        asyncio.get_running_loop().call_soon(run)

    def over(self: Any, reason: str, *, abort: bool) -> None:
        flush_now(self)
        connection_over(self, reason, abort=abort)

    cls._flush = flush_soon
    cls._connection_over = over


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
if "coalesce" in EXPERIMENTS:
    _coalesce_writes()
if "uvloop" in EXPERIMENTS:
    _uvloop()
