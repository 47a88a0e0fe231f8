"""The journal: writer, reader (torn tail, malformed lines) and the history view."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest

from harness.journal import (
    EndRecord,
    FaultRecord,
    History,
    Journal,
    JournalBuilder,
    JournalClosedError,
    JournalError,
    NoteRecord,
    OpRecord,
    Record,
    RunRecord,
    SampleRecord,
    TunnelInfo,
    load_journal,
    read_journal,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "journals"


class FakeClock:
    """A monotonic clock the test advances by hand (ns)."""

    def __init__(self) -> None:
        self.now = 1_000_000_000

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += round(seconds * 1e9)


def test_writer_records_every_kind_and_reads_back(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "journal.jsonl"
    with Journal(path, clock=clock) as journal:
        journal.run(
            scenario="demo",
            seed=3,
            time_scale=0.5,
            pops=["ams", "fra"],
            tunnels={"web": TunnelInfo(id="u-1", kind="named", hostnames=("app.example.com",))},
        )
        clock.advance(0.5)
        op = journal.invoke("visitor-0", "http_get", {"pop": "ams", "hostname": "app.example.com"})
        clock.advance(0.02)
        journal.complete(op, "ok", {"status": 200, "digest_ok": True})
        fault = journal.fault_start("link_down", "conn-ams")
        clock.advance(1)
        journal.fault_stop(fault, "link_down", "conn-ams")
        journal.sample("connector", "connector-web", {"ha_connections": 4})
        journal.note("halfway", phase="b")
    records = read_journal(path)
    assert [type(r) for r in records] == [
        RunRecord,
        OpRecord,
        OpRecord,
        FaultRecord,
        FaultRecord,
        SampleRecord,
        NoteRecord,
        EndRecord,
    ]
    run = records[0]
    assert isinstance(run, RunRecord)
    assert run.t == 0 and run.time_scale == 0.5 and run.tunnels["web"].id == "u-1"
    assert run.started_at.endswith("Z")
    assert [r.t for r in records] == sorted(r.t for r in records)
    assert records[1].t == 500_000_000 and records[2].t == 520_000_000
    end = records[-1]
    assert isinstance(end, EndRecord) and end.status == "completed"
    first_line = json.loads(path.read_text().splitlines()[1])
    assert list(first_line)[:2] == ["type", "t"]


def test_every_line_is_on_disk_before_the_call_returns(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    journal.run(scenario="demo", seed=1)
    op = journal.invoke("p", "http_get")
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["op_id"] == op
    journal.close()


def test_complete_rejects_unknown_and_double_completion(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.jsonl") as journal:
        op = journal.invoke("p", "http_get")
        journal.complete(op, "fail", error="HTTP 502")
        with pytest.raises(ValueError, match="not invoked or is already complete"):
            journal.complete(op, "ok")
        with pytest.raises(ValueError, match="complete\\(\\) takes ok, fail or info"):
            journal.complete(journal.invoke("p", "x"), "invoke")
        assert journal.pending_ops == [1]


def test_an_exception_leaves_an_end_record_with_the_error(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with pytest.raises(RuntimeError), Journal(path) as journal:
        journal.run(scenario="demo", seed=1)
        journal.invoke("p", "http_get")
        raise RuntimeError("stack exploded")
    records = read_journal(path)
    end = records[-1]
    assert isinstance(end, EndRecord)
    assert end.status == "error" and end.error == "RuntimeError: stack exploded"
    history = History(records)
    assert history.operations[0].phase == "info"  # never completed: indeterminate
    assert not history.completed
    with pytest.raises(JournalClosedError):
        journal.note("too late")


def test_journal_refuses_to_overwrite_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_text("precious\n")
    with pytest.raises(FileExistsError):
        Journal(path)
    assert path.read_text() == "precious\n"


async def test_async_context_manager_and_concurrent_tasks(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"

    async def visitor(journal: Journal, index: int) -> None:
        for _ in range(50):
            op = journal.invoke(f"visitor-{index}", "http_get")
            await asyncio.sleep(0)
            journal.complete(op, "ok")

    async with Journal(path) as journal:
        journal.run(scenario="demo", seed=1)
        await asyncio.gather(*(visitor(journal, i) for i in range(8)))
    history = History(read_journal(path))
    assert len(history.operations) == 400
    assert all(op.phase == "ok" for op in history.operations)
    assert len({op.op_id for op in history.operations}) == 400


async def test_cancellation_is_recorded_as_aborted(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"

    async def run() -> None:
        async with Journal(path) as journal:
            journal.run(scenario="demo", seed=1)
            await asyncio.sleep(30)

    task = asyncio.create_task(run())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    end = read_journal(path)[-1]
    assert isinstance(end, EndRecord) and end.status == "aborted"


def test_threads_share_a_journal_without_tearing_lines(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:

        def work() -> None:
            for i in range(200):
                journal.sample("edge", "edge-ams", {"i": i, "pad": "x" * 200})

        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert len(read_journal(path)) == 801  # 800 samples + end


def test_torn_last_line_is_dropped_silently() -> None:
    contents = load_journal(DATA / "torn.jsonl")
    assert contents.torn_tail and not contents.problems
    records = read_journal(DATA / "torn.jsonl")
    history = History(records)
    assert [op.phase for op in history.operations] == ["ok", "info"]


def test_malformed_lines_are_reported_with_their_numbers() -> None:
    path = DATA / "malformed.jsonl"
    with pytest.raises(JournalError) as caught:
        read_journal(path)
    problems = {p.line: p.message for p in caught.value.problems}
    assert sorted(problems) == [3, 4, 5, 6]
    assert problems[3].startswith("not JSON")
    assert "phase" in problems[4]
    assert "unknown record type" in problems[5]
    assert problems[6] == "not a JSON object"
    assert f"{path}:3: not JSON" in str(caught.value)
    lenient = load_journal(path)
    assert len(lenient.records) == 3 and not lenient.torn_tail


def test_history_pairs_operations_and_faults() -> None:
    b = JournalBuilder()
    b.request(1.0, "ok")
    b.request(2.0, "fail")
    b.request(3.0, "info", latency=None)
    b.fault(1.5, 2.5, "link_down", "conn-ams")
    b.fault(4.0, None, "pause", "edge-fra")
    b.end(5.0)
    history = b.history()
    assert [op.phase for op in history.operations] == ["ok", "fail", "info"]
    ok = history.operations[0]
    assert ok.latency_ns == 10_000_000 and ok.value["status"] == 200 and ok.value["pop"] == "ams"
    assert history.operations[2].complete_t is None
    healed, active = history.faults
    assert healed.healed and healed.stop_t == 2_500_000_000
    assert not active.healed and active.end_or(history.end_t) == 5_000_000_000
    assert history.completed
    assert history.tunnel_for_hostname("app.example.com") == "web"
    assert history.tunnel_of(ok) == "web"


def test_history_reports_anomalies_instead_of_crashing() -> None:
    records: list[Record] = [
        OpRecord(t=5, process="p", op_id=9, f="http_get", phase="ok"),
        FaultRecord(t=6, phase="stop", fault_id="x", fault="link_down"),
        OpRecord(t=7, process="p", op_id=1, f="http_get", phase="invoke"),
        OpRecord(t=8, process="p", op_id=1, f="http_get", phase="invoke"),
    ]
    history = History(records)
    assert len(history.operations) == 1
    assert history.run is None and not history.completed
    assert any("op 9: completion without invoke" in a for a in history.anomalies)
    assert any("fault x: stop without start" in a for a in history.anomalies)
    assert any("op 1 invoke repeated" in a for a in history.anomalies)


def test_builder_output_is_a_valid_journal(tmp_path: Path) -> None:
    b = JournalBuilder(
        tunnels={"web": ("named", ["app.example.com"]), "old": ("legacy", ["old.example.com"])}
    )
    b.request(0.5, tunnel="old")
    b.dns(0.7, ["web-id.tunnels.outlast.test"])
    b.connector(0.9, 4, ["ams", "fra", "ams", "fra"])
    b.controlplane(1.0, {"GET /zones": 1})
    b.note(1.1, "hello", step=1)
    b.end(2.0)
    path = b.write(tmp_path / "journal.jsonl")
    history = History.from_path(path)
    assert history.tunnel_names() == ["old", "web"]
    assert history.tunnel_kind("old") == "legacy"
    assert history.tunnel_names(kind="named") == ["web"]
    assert len(history.samples) == 2 and history.notes[0].fields == {"step": 1}
