"""`outlast run` end to end: the first scenario passes on the reference and fails on broken ones.

Each run plays scenarios/control-plane-outage.yaml at a quarter of its speed (about 25 s).
A mutant of the reference (tests/mutants/, applied to a copy of the tree) must turn the verdict
to fail, exit 1, and name the check that caught it — a check that cannot fail proves nothing.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from harness.mutants import run_with_mutants
from harness.stack.process import outlast_argv

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "control-plane-outage.yaml"


def _run(tmp_path: Path, *mutants: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    result = run_with_mutants(
        outlast_argv(
            "run", str(SCENARIO), "--time-scale", "0.25", "--report-dir", str(tmp_path), "-q"
        ),
        mutants,
        timeout=220,
    )
    runs = sorted(tmp_path.glob("*-control-plane-outage"))
    assert len(runs) == 1, result.stderr
    summary = json.loads((runs[0] / "summary.json").read_text())
    return result, summary


def _failed(summary: dict) -> set[str]:
    return {c["name"] for c in summary["checks"] if c["passed"] is False}


def test_first_scenario_passes_on_the_reference(tmp_path: Path) -> None:
    result, summary = _run(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert summary["verdict"] == "pass"
    assert _failed(summary) == set()
    run_dir = next(tmp_path.glob("*-control-plane-outage"))
    for name in ("journal.jsonl", "summary.json", "report.md", "report.html", "junit.xml"):
        assert (run_dir / name).is_file(), name
    # Recomputing from the journal alone reproduces the stored summary byte for byte.
    verify = subprocess.run(
        outlast_argv("report", str(run_dir), "--verify"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "reproduced exactly" in verify.stdout


def test_edge_that_deletes_dns_on_disconnect_fails_dns_unchanged(tmp_path: Path) -> None:
    result, summary = _run(tmp_path, "edge.dns_follows_connections")
    assert result.returncode == 1, result.stdout + result.stderr
    assert summary["verdict"] == "fail"
    assert "dns_unchanged" in _failed(summary)
    assert "[FAIL] dns_unchanged" in result.stdout


def test_connector_that_never_reconnects_fails_reconnect_and_ha(tmp_path: Path) -> None:
    result, summary = _run(tmp_path, "connector.no_reconnect")
    assert result.returncode == 1, result.stdout + result.stderr
    assert summary["verdict"] == "fail"
    assert {"reconnect_within", "ha_restored"} <= _failed(summary)
