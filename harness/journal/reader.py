"""Reading ``journal.jsonl`` back: strict about damage, tolerant of a crashed run's torn tail."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from harness.journal.records import RECORD_ADAPTER, RECORD_TYPES, Record


@dataclass(frozen=True)
class JournalProblem:
    """One malformed line."""

    line: int
    message: str

    def format(self, path: Path | str) -> str:
        return f"{path}:{self.line}: {self.message}"


@dataclass(frozen=True)
class JournalContents:
    """Every well-formed record, the malformed lines, and whether a torn last line was dropped."""

    path: Path
    records: list[Record]
    problems: list[JournalProblem] = field(default_factory=list)
    torn_tail: bool = False


class JournalError(ValueError):
    """The journal has malformed lines (other than a torn last line)."""

    def __init__(self, path: Path, problems: list[JournalProblem]) -> None:
        self.path = path
        self.problems = problems
        shown = [p.format(path) for p in problems[:20]]
        more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(
            f"{len(problems)} malformed line(s) in {path}:\n" + "\n".join(shown) + more
        )


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False)[:3]:
        loc = ".".join(str(x) for x in item["loc"])
        if item["type"] == "union_tag_invalid":
            parts.append(f"unknown record type (known: {', '.join(RECORD_TYPES)})")
        elif item["type"] == "union_tag_not_found":
            parts.append('missing "type"')
        else:
            parts.append(f"{loc}: {item['msg']}" if loc else item["msg"])
    return "; ".join(parts)


def load_journal(path: Path | str) -> JournalContents:
    """Parse a journal, collecting malformed lines instead of raising.

    The last non-empty line is dropped silently (``torn_tail=True``) if it is not valid JSON:
    that is what a run killed mid-write leaves behind.
    """
    path = Path(path)
    lines = path.read_bytes().split(b"\n")
    numbered = [(i + 1, raw) for i, raw in enumerate(lines) if raw.strip()]
    last_number = numbered[-1][0] if numbered else 0
    records: list[Record] = []
    problems: list[JournalProblem] = []
    torn = False
    for number, raw in numbered:
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            if number == last_number:
                torn = True
            else:
                problems.append(JournalProblem(number, f"not JSON ({exc})"))
            continue
        if not isinstance(data, dict):
            problems.append(JournalProblem(number, "not a JSON object"))
            continue
        try:
            records.append(RECORD_ADAPTER.validate_python(data))
        except ValidationError as exc:
            problems.append(JournalProblem(number, _describe(exc)))
    return JournalContents(path=path, records=records, problems=problems, torn_tail=torn)


def read_journal(path: Path | str) -> list[Record]:
    """Every record of a journal, in file order.

    Raises :class:`JournalError` naming each malformed line (number and reason); a torn last
    line (a crashed run) is not an error and is skipped.
    """
    contents = load_journal(path)
    if contents.problems:
        raise JournalError(contents.path, contents.problems)
    return contents.records
