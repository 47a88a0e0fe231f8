"""The run journal (``journal.jsonl``): record vocabulary, writer, reader and history view.

See ``docs/journal.md``.
"""

from harness.journal.builder import JournalBuilder
from harness.journal.history import NS_PER_S, FaultWindow, History, Operation
from harness.journal.reader import (
    JournalContents,
    JournalError,
    JournalProblem,
    load_journal,
    read_journal,
)
from harness.journal.records import (
    JOURNAL_FORMAT,
    VISITOR_FUNCTIONS,
    EndRecord,
    FaultRecord,
    NoteRecord,
    OpRecord,
    Record,
    RunRecord,
    SampleRecord,
    TunnelInfo,
    record_to_json,
)
from harness.journal.writer import Journal, JournalClosedError

__all__ = [
    "JOURNAL_FORMAT",
    "NS_PER_S",
    "VISITOR_FUNCTIONS",
    "EndRecord",
    "FaultRecord",
    "FaultWindow",
    "History",
    "Journal",
    "JournalBuilder",
    "JournalClosedError",
    "JournalContents",
    "JournalError",
    "JournalProblem",
    "NoteRecord",
    "OpRecord",
    "Operation",
    "Record",
    "RunRecord",
    "SampleRecord",
    "TunnelInfo",
    "load_journal",
    "read_journal",
    "record_to_json",
]
