"""``History``: a read-only view of a journal that checks and reports work on.

It pairs each operation's ``invoke`` with its completion (an operation that never completed reads
as ``info``, indeterminate — as in Jepsen), pairs fault ``start``/``stop`` records into windows and
keeps samples in time order. All times are integer nanoseconds of the journal clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from harness.journal.reader import read_journal
from harness.journal.records import (
    VISITOR_FUNCTIONS,
    EndRecord,
    FaultRecord,
    NoteRecord,
    OpRecord,
    Record,
    RunRecord,
    SampleKind,
    SampleRecord,
    TunnelKind,
)

NS_PER_S = 1_000_000_000
Outcome = Literal["ok", "fail", "info"]


@dataclass(frozen=True)
class Operation:
    """An invoked operation and its outcome; ``value`` merges the invoke and completion values."""

    op_id: int
    process: str
    f: str
    invoke_t: int
    complete_t: int | None
    phase: Outcome
    value: Mapping[str, Any]
    error: str | None = None

    @property
    def latency_ns(self) -> int | None:
        """Completion minus invoke time, or ``None`` if the operation never completed."""
        return None if self.complete_t is None else self.complete_t - self.invoke_t

    @property
    def tunnel(self) -> str | None:
        tunnel = self.value.get("tunnel")
        return tunnel if isinstance(tunnel, str) else None

    @property
    def hostname(self) -> str | None:
        hostname = self.value.get("hostname")
        return hostname if isinstance(hostname, str) else None

    @property
    def pop(self) -> str | None:
        pop = self.value.get("pop")
        return pop if isinstance(pop, str) else None


@dataclass(frozen=True)
class FaultWindow:
    """A fault from its ``start`` to its ``stop`` (``stop_t`` is ``None`` if never undone)."""

    fault_id: str
    fault: str
    target: str | None
    start_t: int
    stop_t: int | None
    name: str | None = None
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    error: str | None = None

    @property
    def healed(self) -> bool:
        return self.stop_t is not None

    def end_or(self, end_t: int) -> int:
        """The stop time, or ``end_t`` for a fault still active at the end of the journal."""
        return end_t if self.stop_t is None else self.stop_t

    def label(self) -> str:
        return f"{self.fault} {self.target}" if self.target else self.fault


class History:
    """Checks and reports read journals through this class only."""

    def __init__(self, records: Iterable[Record]) -> None:
        self.records: tuple[Record, ...] = tuple(records)
        ordered = sorted(enumerate(self.records), key=lambda pair: (pair[1].t, pair[0]))
        self.run: RunRecord | None = None
        self.end: EndRecord | None = None
        anomalies: list[str] = []
        invokes: dict[int, OpRecord] = {}
        completions: dict[int, OpRecord] = {}
        starts: dict[str, FaultRecord] = {}
        stops: dict[str, FaultRecord] = {}
        samples: list[SampleRecord] = []
        notes: list[NoteRecord] = []
        for _, record in ordered:
            if isinstance(record, RunRecord):
                if self.run is None:
                    self.run = record
                else:
                    anomalies.append(f"t={record.t}: second run record ignored")
            elif isinstance(record, EndRecord):
                self.end = record
            elif isinstance(record, OpRecord):
                target = invokes if record.phase == "invoke" else completions
                if record.op_id in target:
                    anomalies.append(f"t={record.t}: op {record.op_id} {record.phase} repeated")
                else:
                    target[record.op_id] = record
            elif isinstance(record, FaultRecord):
                pairs = starts if record.phase == "start" else stops
                if record.fault_id in pairs:
                    anomalies.append(
                        f"t={record.t}: fault {record.fault_id} {record.phase} repeated"
                    )
                else:
                    pairs[record.fault_id] = record
            elif isinstance(record, SampleRecord):
                samples.append(record)
            else:
                notes.append(record)

        operations: list[Operation] = []
        for op_id, invoke in invokes.items():
            done = completions.pop(op_id, None)
            value = dict(invoke.value)
            if done is not None:
                value.update(done.value)
            operations.append(
                Operation(
                    op_id=op_id,
                    process=invoke.process,
                    f=invoke.f,
                    invoke_t=invoke.t,
                    complete_t=None if done is None else done.t,
                    phase="info" if done is None else _outcome(done),
                    value=MappingProxyType(value),
                    error=None if done is None else done.error,
                )
            )
        for op_id in sorted(completions):
            anomalies.append(f"op {op_id}: completion without invoke ignored")
        operations.sort(key=lambda op: (op.invoke_t, op.op_id))

        faults: list[FaultWindow] = []
        for fault_id, start in starts.items():
            stop = stops.pop(fault_id, None)
            faults.append(
                FaultWindow(
                    fault_id=fault_id,
                    fault=start.fault,
                    target=start.target,
                    start_t=start.t,
                    stop_t=None if stop is None else max(stop.t, start.t),
                    name=start.name,
                    params=MappingProxyType(dict(start.params)),
                    error=start.error or (stop.error if stop else None),
                )
            )
        for fault_id in sorted(stops):
            anomalies.append(f"fault {fault_id}: stop without start ignored")
        faults.sort(key=lambda w: (w.start_t, w.fault_id))

        self.operations: tuple[Operation, ...] = tuple(operations)
        self.faults: tuple[FaultWindow, ...] = tuple(faults)
        self.samples: tuple[SampleRecord, ...] = tuple(samples)
        self.notes: tuple[NoteRecord, ...] = tuple(notes)
        self.anomalies: tuple[str, ...] = tuple(anomalies)
        self.end_t: int = max((r.t for r in self.records), default=0)

    @classmethod
    def from_path(cls, path: Path | str) -> History:
        """Read ``journal.jsonl`` (see :func:`harness.journal.read_journal`)."""
        return cls(read_journal(path))

    # -- metadata ---------------------------------------------------------------------------

    @property
    def start_t(self) -> int:
        """Scenario time 0 on the journal clock (``run.timeline_start_t``, else 0)."""
        return self.run.timeline_start_t if self.run else 0

    @property
    def time_scale(self) -> float:
        return self.run.time_scale if self.run else 1.0

    @property
    def completed(self) -> bool:
        """The run wrote an ``end`` record with status ``completed``."""
        return self.end is not None and self.end.status == "completed"

    def tunnel_names(self, kind: TunnelKind | None = None) -> list[str]:
        """Tunnels of the run metadata (else those seen in operations), sorted."""
        if self.run and self.run.tunnels:
            return sorted(
                name for name, info in self.run.tunnels.items() if kind in (None, info.kind)
            )
        seen = {op.tunnel for op in self.operations if op.tunnel}
        return sorted(t for t in seen if t is not None and (kind is None or kind == "named"))

    def tunnel_kind(self, name: str) -> TunnelKind:
        """``named`` unless the run metadata says ``legacy``."""
        if self.run and name in self.run.tunnels:
            return self.run.tunnels[name].kind
        return "named"

    def tunnel_id(self, name: str) -> str | None:
        if self.run and name in self.run.tunnels:
            return self.run.tunnels[name].id or None
        return None

    def tunnel_for_hostname(self, hostname: str) -> str | None:
        """The tunnel routed at ``hostname`` according to the run metadata."""
        if self.run:
            for name, info in sorted(self.run.tunnels.items()):
                if hostname in info.hostnames:
                    return name
        return None

    def hostnames(self, tunnel: str) -> list[str]:
        if self.run and tunnel in self.run.tunnels:
            return list(self.run.tunnels[tunnel].hostnames)
        return []

    def tunnel_of(self, op: Operation) -> str | None:
        """The tunnel an operation addressed: its ``tunnel`` value, else via its hostname."""
        if op.tunnel:
            return op.tunnel
        return self.tunnel_for_hostname(op.hostname) if op.hostname else None

    # -- selections -------------------------------------------------------------------------

    def ops(self, functions: Sequence[str] | None = None) -> list[Operation]:
        """Operations (optionally only those whose ``f`` is in ``functions``), by invoke time."""
        if functions is None:
            return list(self.operations)
        wanted = set(functions)
        return [op for op in self.operations if op.f in wanted]

    def visitor_ops(self) -> list[Operation]:
        """Visitor traffic: ``http_get``, ``http_post``, ``ws_roundtrip``."""
        return self.ops(VISITOR_FUNCTIONS)

    def samples_of(self, kind: SampleKind, *, include_errors: bool = False) -> list[SampleRecord]:
        """Samples of one kind in time order; failed scrapes only if ``include_errors``."""
        return [s for s in self.samples if s.kind == kind and (include_errors or s.error is None)]

    def seconds(self, t: int) -> float:
        """Journal time in seconds since the journal was opened."""
        return t / NS_PER_S


def _outcome(record: OpRecord) -> Outcome:
    phase = record.phase
    if phase == "invoke":  # pragma: no cover - completions never have phase invoke
        return "info"
    return phase
