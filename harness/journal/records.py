"""The journal's record vocabulary: one JSON object per line of ``journal.jsonl``.

Every record has ``type`` and ``t`` (monotonic nanoseconds since the journal was opened).
See ``docs/journal.md`` for the format with an example.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

JOURNAL_FORMAT = 1
"""Version of the record vocabulary, written in the ``run`` record."""

OpPhase = Literal["invoke", "ok", "fail", "info"]
"""``invoke`` starts an operation; ``ok``, ``fail`` or ``info`` (indeterminate) completes it."""

FaultPhase = Literal["start", "stop"]
TunnelKind = Literal["named", "legacy"]
RunStatus = Literal["completed", "aborted", "error"]
SampleKind = Literal["connector", "edge", "controlplane", "audit", "registration"]

VISITOR_FUNCTIONS: tuple[str, ...] = ("http_get", "http_post", "ws_roundtrip")
"""Operation ``f`` values that are visitor traffic (what availability and SLA count)."""


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    t: int = Field(ge=0, description="monotonic nanoseconds since the journal was opened")


class TunnelInfo(BaseModel):
    """One tunnel of the stack under test, as run metadata."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = ""
    kind: TunnelKind = "named"
    hostnames: tuple[str, ...] = ()


class RunRecord(_Record):
    """Run metadata; the first record of every journal."""

    type: Literal["run"] = "run"
    journal_format: int = JOURNAL_FORMAT
    scenario: str
    seed: int
    time_scale: float = 1.0
    backend: str = "local"
    started_at: str = Field(description="wall clock at run start, ISO 8601 UTC")
    timeline_start_t: int = Field(
        default=0, ge=0, description="t at which scenario time 0 was played"
    )
    clock_start: str | None = Field(
        default=None, description="wall-clock anchor of scenario time 0"
    )
    pops: tuple[str, ...] = ()
    tunnels: dict[str, TunnelInfo] = Field(default_factory=dict)
    ha_connections: int = 4
    meta: dict[str, Any] = Field(default_factory=dict)


class OpRecord(_Record):
    """One step of an operation: ``invoke`` then exactly one of ``ok``, ``fail``, ``info``."""

    type: Literal["op"] = "op"
    process: str
    op_id: int = Field(ge=0)
    f: str
    phase: OpPhase
    value: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None


class FaultRecord(_Record):
    """A fault applied (``start``) or undone (``stop``); ``fault_id`` links the two."""

    type: Literal["fault"] = "fault"
    phase: FaultPhase
    fault_id: str
    fault: str = Field(description="fault kind, e.g. link_down")
    target: str | None = None
    name: str | None = Field(default=None, description="label from the scenario, if any")
    params: dict[str, Any] = Field(default_factory=dict)
    error: str | None = Field(default=None, description="the fault could not be applied/undone")


class SampleRecord(_Record):
    """An observation scraped from the system: metrics or audit-log reads."""

    type: Literal["sample"] = "sample"
    kind: SampleKind
    source: str = Field(description="component scraped, e.g. connector-web, edge-ams")
    value: dict[str, Any] = Field(default_factory=dict)
    error: str | None = Field(default=None, description="the scrape failed; value is empty")


class NoteRecord(_Record):
    """A free-form annotation (harness progress, log excerpts)."""

    type: Literal["note"] = "note"
    message: str
    level: Literal["debug", "info", "warning", "error"] = "info"
    fields: dict[str, Any] = Field(default_factory=dict)


class EndRecord(_Record):
    """The last record of a run that ended in an orderly way (also after an error)."""

    type: Literal["end"] = "end"
    status: RunStatus
    error: str | None = None


Record = Annotated[
    RunRecord | OpRecord | FaultRecord | SampleRecord | NoteRecord | EndRecord,
    Field(discriminator="type"),
]
"""Any journal record (a pydantic discriminated union on ``type``)."""

RECORD_ADAPTER: TypeAdapter[Record] = TypeAdapter(Record)
RECORD_TYPES: tuple[str, ...] = ("run", "op", "fault", "sample", "note", "end")


def record_to_json(record: Record) -> str:
    """One journal line (without the newline): compact JSON, ``type`` and ``t`` first,
    top-level ``None`` fields left out."""
    data = record.model_dump(mode="json", exclude_none=True)
    ordered = {"type": data.pop("type"), "t": data.pop("t"), **data}
    return json.dumps(ordered, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
