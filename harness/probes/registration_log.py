"""Registration attempts as the edges log them, as journal samples (kind ``registration``).

Each edge writes one JSON line per registration it decides: ``Registered tunnel connection`` or
``registration refused`` (with ``cause``, ``should_retry``, ``retry_after``), naming the
connector (``connector_id``) and its slot (``connIndex``). The probe follows each edge's log file
and records every such line as a sample ``{event, at, tunnel_id, connector_id, conn_index,
cause, should_retry, retry_after}``, where ``at`` is the edge's own timestamp (Unix seconds), so
the gaps between one slot's attempts are measured where they happened, not when they were read.

Only where the logs can be read while the run plays (the local backend); elsewhere there are no
such samples and the checks that need them are undecided.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.journal import Journal

EVENTS = {"Registered tunnel connection": "registered", "registration refused": "refused"}


def parse_registration(line: str) -> dict[str, Any] | None:
    """The sample value of one edge log line, or None when the line is not a registration."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("message") not in EVENTS:
        return None
    try:
        at = datetime.fromisoformat(str(record["time"]).replace("Z", "+00:00")).timestamp()
    except (KeyError, ValueError):
        return None
    value: dict[str, Any] = {
        "event": EVENTS[record["message"]],
        "at": at,
        "tunnel_id": record.get("tunnel_id"),
        "connector_id": record.get("connector_id"),
        "conn_index": record.get("connIndex"),
    }
    if value["event"] == "refused":
        value.update(
            cause=record.get("cause"),
            should_retry=record.get("should_retry"),
            retry_after=record.get("retry_after"),
        )
    return value


class RegistrationLogProbe:
    """Follows each edge's log file every ``interval`` seconds (and once more at the end)."""

    def __init__(self, journal: Journal, logs: Mapping[str, Path], interval: float) -> None:
        self.journal = journal
        self.logs = dict(logs)  # edge component name -> its log file
        self.interval = interval
        self.offsets = dict.fromkeys(self.logs, 0)
        self.partial = dict.fromkeys(self.logs, b"")

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.read_all()
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except TimeoutError:
                pass
        self.read_all()

    def read_all(self) -> None:
        for source, path in self.logs.items():
            try:
                if path.stat().st_size < self.offsets[source]:  # a new file: from its start
                    self.offsets[source], self.partial[source] = 0, b""
                with open(path, "rb") as log:
                    log.seek(self.offsets[source])
                    data = log.read()
            except OSError:
                continue  # not written yet (or gone): read again next time
            self.offsets[source] += len(data)
            lines = (self.partial[source] + data).split(b"\n")
            self.partial[source] = lines.pop()  # an unfinished last line waits for its end
            for line in lines:
                value = parse_registration(line.decode("utf-8", "replace"))
                if value is not None:
                    self.journal.sample("registration", source, value)
