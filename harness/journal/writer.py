"""``Journal``: the append-only writer of ``journal.jsonl``.

Each record is serialised, written as one line and flushed before the call returns, so a crash
loses at most the line being written (the reader tolerates a torn last line). Writes never
``await``: from asyncio code a record is written atomically with respect to other tasks, and a
lock makes the writer safe to share between threads too.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from harness.journal.records import (
    EndRecord,
    FaultRecord,
    NoteRecord,
    OpPhase,
    OpRecord,
    Record,
    RunRecord,
    RunStatus,
    SampleKind,
    SampleRecord,
    TunnelInfo,
    record_to_json,
)


class JournalClosedError(RuntimeError):
    """A record was written after the journal was closed."""


class Journal:
    """Append-only JSON-lines journal; ``t`` of every record is ns since the journal was opened.

    Use as a (sync or async) context manager; leaving the block with an exception writes an
    ``end`` record with status ``error`` and closes the file, so the history is never lost.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        clock: Callable[[], int] = time.monotonic_ns,
        fsync: bool = False,
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._fsync = fsync
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] | None = self.path.open("x", encoding="utf-8")
        self._t0 = clock()
        self._next_op_id = 0
        self._pending: dict[int, tuple[str, str]] = {}
        self._fault_count = 0
        self._ended = False

    # -- core -------------------------------------------------------------------------------

    def now(self) -> int:
        """Nanoseconds since the journal was opened (never negative)."""
        return max(0, self._clock() - self._t0)

    @property
    def closed(self) -> bool:
        return self._file is None

    def write(self, record: Record) -> Record:
        """Append a pre-built record as is (its ``t`` is kept) and flush it."""
        with self._lock:
            self._write_line(record)
        return record

    def _write_line(self, record: Record) -> None:
        if self._file is None:
            raise JournalClosedError(f"journal {self.path} is closed; cannot write {record.type}")
        self._file.write(record_to_json(record) + "\n")
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())
        if isinstance(record, EndRecord):
            self._ended = True

    def _stamp_and_write(self, build: Callable[[int], Record]) -> Record:
        with self._lock:
            record = build(self.now())
            self._write_line(record)
        return record

    # -- records ----------------------------------------------------------------------------

    def run(
        self,
        *,
        scenario: str,
        seed: int,
        time_scale: float = 1.0,
        backend: str = "local",
        pops: tuple[str, ...] | list[str] = (),
        tunnels: Mapping[str, TunnelInfo] | None = None,
        ha_connections: int = 4,
        clock_start: str | None = None,
        timeline_start_t: int | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> RunRecord:
        """Write the run-metadata record (first record of a run). ``started_at`` is now (UTC)."""
        started_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

        def build(t: int) -> RunRecord:
            return RunRecord(
                t=t,
                scenario=scenario,
                seed=seed,
                time_scale=time_scale,
                backend=backend,
                started_at=started_at,
                timeline_start_t=t if timeline_start_t is None else timeline_start_t,
                clock_start=clock_start,
                pops=tuple(pops),
                tunnels=dict(tunnels or {}),
                ha_connections=ha_connections,
                meta=dict(meta or {}),
            )

        record = self._stamp_and_write(build)
        assert isinstance(record, RunRecord)
        return record

    def invoke(self, process: str, f: str, value: Mapping[str, Any] | None = None) -> int:
        """Start an operation; returns its ``op_id`` for :meth:`complete`."""
        with self._lock:
            op_id = self._next_op_id
            self._next_op_id += 1
            self._pending[op_id] = (process, f)
            self._write_line(
                OpRecord(
                    t=self.now(),
                    process=process,
                    op_id=op_id,
                    f=f,
                    phase="invoke",
                    value=dict(value or {}),
                )
            )
        return op_id

    def complete(
        self,
        op_id: int,
        phase: OpPhase,
        value: Mapping[str, Any] | None = None,
        error: str | None = None,
    ) -> OpRecord:
        """Complete an invoked operation with ``ok``, ``fail`` or ``info`` (indeterminate)."""
        if phase == "invoke":
            raise ValueError("complete() takes ok, fail or info; use invoke() to start an op")
        with self._lock:
            try:
                process, f = self._pending.pop(op_id)
            except KeyError:
                raise ValueError(
                    f"operation {op_id} was not invoked or is already complete"
                ) from None
            record = OpRecord(
                t=self.now(),
                process=process,
                op_id=op_id,
                f=f,
                phase=phase,
                value=dict(value or {}),
                error=error,
            )
            self._write_line(record)
        return record

    @property
    def pending_ops(self) -> list[int]:
        """Operations invoked but not completed yet (they read as ``info`` if never completed)."""
        with self._lock:
            return sorted(self._pending)

    def fault_start(
        self,
        fault: str,
        target: str | None = None,
        params: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        fault_id: str | None = None,
        error: str | None = None,
    ) -> str:
        """Record that a fault was applied; returns the id to pass to :meth:`fault_stop`."""
        with self._lock:
            self._fault_count += 1
            fid = fault_id or f"f{self._fault_count}"
            self._write_line(
                FaultRecord(
                    t=self.now(),
                    phase="start",
                    fault_id=fid,
                    fault=fault,
                    target=target,
                    name=name,
                    params=dict(params or {}),
                    error=error,
                )
            )
        return fid

    def fault_stop(
        self,
        fault_id: str,
        fault: str,
        target: str | None = None,
        params: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        error: str | None = None,
    ) -> FaultRecord:
        """Record that the fault ``fault_id`` was undone (the "heal")."""
        record = self._stamp_and_write(
            lambda t: FaultRecord(
                t=t,
                phase="stop",
                fault_id=fault_id,
                fault=fault,
                target=target,
                name=name,
                params=dict(params or {}),
                error=error,
            )
        )
        assert isinstance(record, FaultRecord)
        return record

    def sample(
        self,
        kind: SampleKind,
        source: str,
        value: Mapping[str, Any] | None = None,
        *,
        error: str | None = None,
    ) -> SampleRecord:
        """Record a metrics scrape or an audit-log read (``error`` when the scrape failed)."""
        record = self._stamp_and_write(
            lambda t: SampleRecord(
                t=t, kind=kind, source=source, value=dict(value or {}), error=error
            )
        )
        assert isinstance(record, SampleRecord)
        return record

    def note(self, message: str, *, level: str = "info", **fields: Any) -> NoteRecord:
        """Record an annotation."""
        record = self._stamp_and_write(
            lambda t: NoteRecord.model_validate(
                {"t": t, "message": message, "level": level, "fields": fields}
            )
        )
        assert isinstance(record, NoteRecord)
        return record

    def end(self, status: RunStatus = "completed", error: str | None = None) -> EndRecord:
        """Write the ``end`` record (at most once)."""
        record = self._stamp_and_write(lambda t: EndRecord(t=t, status=status, error=error))
        assert isinstance(record, EndRecord)
        return record

    # -- lifecycle --------------------------------------------------------------------------

    def close(self, status: RunStatus = "completed", error: str | None = None) -> None:
        """Write an ``end`` record if none was written, then close the file. Idempotent."""
        with self._lock:
            if self._file is None:
                return
            try:
                if not self._ended:
                    self._write_line(EndRecord(t=self.now(), status=status, error=error))
                self._file.flush()
                os.fsync(self._file.fileno())
            finally:
                self._file.close()
                self._file = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close_for(exc_type, exc)

    async def __aenter__(self) -> Journal:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close_for(exc_type, exc)

    def _close_for(self, exc_type: type[BaseException] | None, exc: BaseException | None) -> None:
        if exc_type is None:
            self.close("completed")
        elif issubclass(exc_type, KeyboardInterrupt | asyncio.CancelledError):
            self.close("aborted", f"interrupted ({exc_type.__name__})")
        else:
            self.close("error", f"{exc_type.__name__}: {exc}")
