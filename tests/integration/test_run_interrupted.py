"""`outlast run` stopped by SIGTERM (how CI systems cancel a job) in the middle of a fault:
faults undone, every component stopped, the journal closed as aborted and the report written."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from harness.stack.process import outlast_argv

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "control-plane-outage.yaml"


def _our_processes(marker: str) -> list[str]:
    """Command lines of live processes that mention ``marker`` (the run's directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if marker in cmdline and state != "Z":
            found.append(cmdline)
    return found


def test_sigterm_during_a_fault_tears_down_and_keeps_the_journal(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        outlast_argv("run", str(SCENARIO), "--report-dir", str(tmp_path), "-q"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    journal: Path | None = None
    while time.monotonic() < deadline and proc.poll() is None:
        journals = list(tmp_path.glob("*-control-plane-outage/journal.jsonl"))
        if journals and '"controlplane_outage"' in journals[0].read_text():
            journal = journals[0]
            break
        time.sleep(0.1)
    assert journal is not None, "the control-plane outage never started"
    assert _our_processes(str(tmp_path)), "expected the stack's processes to be running"
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)

    assert proc.returncode == 143, err
    assert "terminated (SIGTERM): faults undone, stack stopped, journal kept" in err
    assert _our_processes(str(tmp_path)) == []
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    assert events[-1]["type"] == "end" and events[-1]["status"] == "aborted"
    faults = [e for e in events if e.get("type") == "fault"]
    started = {e.get("fault_id") for e in faults if e.get("phase") == "start"}
    stopped = {e.get("fault_id") for e in faults if e.get("phase") == "stop"}
    assert started and started <= stopped, "every fault that started was undone"
    summary = json.loads((journal.parent / "summary.json").read_text())
    assert summary["verdict"] == "unknown"
