"""The live progress view of ``outlast run``: timeline, active faults, running availability.

On a terminal one status line is redrawn in place and events (a fault starts or stops) scroll
above it::

    [2/9] link-flap  12.5/27.5s [===#==#>..*..*..] 97.3% (ok 120 fail 3 info 0)  conn-ams down

The bar is the timeline: ``=`` played, ``#`` played with a fault in effect, ``>`` now,
``.`` still to come, ``*`` a fault still to come. Anywhere else (CI logs, pipes) the view
prints plain lines: every event, and a status line every few seconds.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from typing import TextIO

from harness.runner import RunStatus

BAR_WIDTH = 24
CLEAR_LINE = "\r\x1b[K"


def timeline_bar(status: RunStatus, width: int = BAR_WIDTH) -> str:
    """The timeline as ``width`` cells: played / now / to come, with fault windows marked."""
    total = status.total or 1.0
    now_cell = min(width - 1, int(status.elapsed / total * width))
    cells = []
    for i in range(width):
        start, end = i * total / width, (i + 1) * total / width
        fault = any(s < end and e > start for s, e in status.planned)
        if i < now_cell:
            cells.append("#" if fault else "=")
        elif i == now_cell:
            cells.append(">")
        else:
            cells.append("*" if fault else ".")
    return "[" + "".join(cells) + "]"


def availability_text(status: RunStatus) -> str:
    value = status.availability
    shown = "-" if value is None else f"{value * 100:.1f}%"
    return f"{shown} (ok {status.ok} fail {status.fail} info {status.info})"


class ProgressView:
    """Writes run events and statuses to ``stream`` (live on a TTY, plain lines otherwise)."""

    def __init__(
        self,
        stream: TextIO,
        *,
        live: bool | None = None,
        plain_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.live = stream.isatty() if live is None else live
        self.plain_interval = plain_interval
        self.clock = clock
        self.prefix = ""
        self._status_line = ""
        self._last_plain = float("-inf")

    def begin(self, index: int, count: int, scenario: str) -> None:
        """A new scenario starts (``index`` from 1)."""
        self.prefix = f"[{index}/{count}] {scenario}" if count > 1 else scenario
        self._last_plain = float("-inf")
        self.clear()

    def event(self, message: str) -> None:
        """A line that stays: lifecycle messages, faults starting and stopping."""
        if self.live:
            self.stream.write(CLEAR_LINE + message + "\n")
            if self._status_line:
                self.stream.write(self._fit(self._status_line))
        else:
            self.stream.write(message + "\n")
        self.stream.flush()

    def status(self, status: RunStatus) -> None:
        """The run's state: redrawn in place when live, a plain line every few seconds else."""
        active = ", ".join(status.active) or "no fault"
        timing = f"{status.elapsed:5.1f}/{status.total:.1f}s"
        if self.live:
            self._status_line = (
                f"{self.prefix}  {timing} {timeline_bar(status)} "
                f"{availability_text(status)}  {active}"
            )
            self.stream.write(self._fit(self._status_line))
            self.stream.flush()
            return
        now = self.clock()
        if now - self._last_plain < self.plain_interval:
            return
        self._last_plain = now
        self.stream.write(f"  {timing}  visitors {availability_text(status)}  active: {active}\n")
        self.stream.flush()

    def clear(self) -> None:
        """Remove the status line (before printing results below it)."""
        if self.live and self._status_line:
            self.stream.write(CLEAR_LINE)
            self.stream.flush()
        self._status_line = ""

    def _fit(self, line: str) -> str:
        width = shutil.get_terminal_size((120, 24)).columns
        return CLEAR_LINE + (line if len(line) < width else line[: max(width - 2, 10)] + "…")
