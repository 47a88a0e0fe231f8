"""What every benchmark shares: the machine it ran on, percentiles, tables, JSON results.

Results land in ``bench/results/<name>.json`` (git-ignored) with the machine facts and the load
average before and after the run, because the figures mean little without them on a shared box.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages (``/proc/loadavg``); empty where unavailable."""
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return []


def memory_total_mib() -> int | None:
    """Physical memory in MiB (``/proc/meminfo``), None where unavailable."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError):
        return None
    return None


def tcp_listen_overflows() -> int | None:
    """The kernel's count of connections dropped because a listen queue was full (system-wide,
    ``TcpExt ListenOverflows`` in ``/proc/net/netstat``)."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return None
    for names, values in itertools.pairwise(lines):
        if names.startswith("TcpExt:") and values.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            value = table.get("ListenOverflows")
            return int(value) if value is not None else None
    return None


def cpu_model() -> str | None:
    """The CPU's model name (``/proc/cpuinfo``), else ``platform.processor()``, else None."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine() -> dict[str, Any]:
    """Facts about the machine a figure was measured on."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "nproc": cpus,
        "cpu_model": cpu_model(),
        "memory_mib": memory_total_mib(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: the smallest sample with at least ``q`` of samples at or below.

    (``ceil(q * n)``-th smallest; p100 is the maximum, p50 of [1, 2] is 1.)
    """
    if not samples:
        raise ValueError("percentile of no samples")
    ordered = sorted(samples)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(samples: Sequence[float]) -> dict[str, float | int | None]:
    """n, p50, p95, p99, max and mean of ``samples`` (None values when there are none)."""
    if not samples:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    return {
        "n": len(samples),
        "p50": percentile(samples, 0.50),
        "p95": percentile(samples, 0.95),
        "p99": percentile(samples, 0.99),
        "max": max(samples),
        "mean": statistics.fmean(samples),
    }


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: floats rounded, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], digits: int = 3) -> None:
    """A plain aligned text table on stdout."""
    cells = [[fmt(v, digits) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    print(
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w)
            for i, (h, w) in enumerate(zip(headers, widths, strict=True))
        )
    )
    for row in cells:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )


WHAT_IF = ("uvloop", "heartbeat_wakeups", "backlog")


def enable_what_if(names: Sequence[str]) -> None:
    """Make every process started from now on apply these ``bench/whatif`` experiments."""
    if not names:
        return
    unknown = sorted(set(names) - set(WHAT_IF))
    if unknown:
        raise ValueError(f"unknown what-if experiments {unknown}; known: {', '.join(WHAT_IF)}")
    whatif = str(Path(__file__).resolve().parent / "whatif")
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (whatif, os.environ.get("PYTHONPATH", "")) if p
    )
    os.environ["OUTLAST_BENCH_WHATIF"] = ",".join(names)


class Run:
    """The bookkeeping of one benchmark run: start time, load before and after, JSON output."""

    def __init__(self, name: str, argv: Sequence[str] | None = None) -> None:
        self.name = name
        self.argv = list(sys.argv if argv is None else argv)
        self.started = time.time()
        self.load_before = loadavg()

    def write(self, result: dict[str, Any], path: Path | None = None) -> Path:
        """Write ``result`` with the machine facts and load averages; return the path."""
        path = path or RESULTS_DIR / f"{self.name}.json"
        document = {
            "benchmark": self.name,
            "command": " ".join(["python", *self.argv]),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "duration_s": round(time.time() - self.started, 1),
            "machine": machine(),
            "loadavg_before": self.load_before,
            "loadavg_after": loadavg(),
            **result,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=2) + "\n")
        return path

    def footer(self) -> str:
        """One line with the machine and the load, printed under every table."""
        m = machine()
        return (
            f"machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_mib']} MiB, "
            f"Python {m['python']}; "
            f"load average before {self.load_before}, now {loadavg()}"
        )


T = TypeVar("T")


def run_async(work: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(work)``, with SIGTERM handled like Ctrl-C: the measurement is cancelled,
    so its stacks are torn down, and the script exits 143."""
    from harness.interrupts import EXIT_TERMINATED, Terminated, cancel_on_sigterm

    try:
        return asyncio.run(cancel_on_sigterm(work))
    except Terminated:
        print("terminated (SIGTERM): stacks stopped, nothing written", file=sys.stderr)
        sys.exit(EXIT_TERMINATED)
