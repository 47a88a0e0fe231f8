"""Watching a running stack from the outside, as the benchmarks need it: where the connector's
HA connections are, whether a PoP serves a hostname, and how busy a process is."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


async def connection_spread(session: aiohttp.ClientSession, metrics_url: str) -> dict[str, int]:
    """Registered HA connections per PoP, from the connector's ``/connections``."""
    try:
        async with session.get(
            f"{metrics_url}/connections", timeout=aiohttp.ClientTimeout(total=2)
        ) as response:
            body = await response.json()
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return {}
    return dict(Counter(str(c["location"]) for c in body.get("connections", [])))


async def visit(
    session: aiohttp.ClientSession, visitor_url: str, hostname: str, timeout: float = 2.0
) -> int | None:
    """Status of one GET through ``visitor_url`` for ``hostname`` (None: no answer)."""
    try:
        async with session.get(
            f"{visitor_url}/bench",
            headers={"Host": hostname},
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            await response.read()
            return response.status
    except (aiohttp.ClientError, TimeoutError, OSError):
        return None


async def poll_until(
    check: Callable[[], Awaitable[bool]],
    *,
    timeout: float,
    interval: float = 0.02,
) -> float | None:
    """Await ``check()`` (an awaitable returning truthy when done) every ``interval`` seconds;
    the monotonic time it first held, or None after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return time.monotonic()
        await asyncio.sleep(interval)
    return None


@dataclass(frozen=True)
class ProcessSample:
    """CPU seconds used so far and resident memory of one process at one moment."""

    at: float
    cpu_seconds: float
    rss_bytes: int


def sample_process(pid: int) -> ProcessSample | None:
    """Read ``/proc/<pid>/stat`` and ``statm``; None when the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        statm = Path(f"/proc/{pid}/statm").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime
    return ProcessSample(time.monotonic(), cpu, int(statm.split()[1]) * PAGE_SIZE)


class ProcessWatcher:
    """Samples a set of processes every ``interval`` seconds while running (bounded)."""

    def __init__(self, pids: dict[str, int], interval: float = 0.25) -> None:
        self.pids = dict(pids)
        self.interval = interval
        self.samples: dict[str, list[ProcessSample]] = {name: [] for name in pids}
        self._task: asyncio.Task[None] | None = None

    def set_pid(self, name: str, pid: int) -> None:
        """Follow a restarted process under the same name (samples continue in one series)."""
        self.pids[name] = pid

    async def _run(self) -> None:
        while True:
            for name, pid in self.pids.items():
                sample = sample_process(pid)
                if sample is not None:
                    self.samples.setdefault(name, []).append(sample)
            await asyncio.sleep(self.interval)

    async def __aenter__(self) -> ProcessWatcher:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def peak_cpu_percent(self, name: str, since: float = 0.0) -> float | None:
        """Highest CPU use (percent of one core) between two consecutive samples after
        ``since``; restarts (CPU counter going down) are skipped."""
        series = [s for s in self.samples.get(name, []) if s.at >= since]
        peaks = [
            (b.cpu_seconds - a.cpu_seconds) / (b.at - a.at) * 100
            for a, b in itertools.pairwise(series)
            if b.at > a.at and b.cpu_seconds >= a.cpu_seconds
        ]
        return max(peaks) if peaks else None

    def cpu_rate(self, name: str, since: float = 0.0) -> float:
        """Average CPU use (cores) from the first sample after ``since`` to the last one, over
        the latest process of that name (samples before a restart are left out)."""
        series = [s for s in self.samples.get(name, []) if s.at >= since]
        for i in range(len(series) - 1, 0, -1):
            if series[i].cpu_seconds < series[i - 1].cpu_seconds:  # restarted: keep the new one
                series = series[i:]
                break
        if len(series) < 2 or series[-1].at <= series[0].at:
            return 0.0
        return (series[-1].cpu_seconds - series[0].cpu_seconds) / (series[-1].at - series[0].at)

    def peak_rss(self, name: str, since: float = 0.0) -> int | None:
        series = [s.rss_bytes for s in self.samples.get(name, []) if s.at >= since]
        return max(series) if series else None
