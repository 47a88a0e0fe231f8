"""scenarios/connector-restart-during-outage.yaml end to end (at a quarter of its speed, ~20 s):
on the reference the named tunnel comes back while the control plane is down and the legacy
one cannot; with an edge that confirms named registrations with the control plane
(``edge.named_calls_control_plane``) and lets legacy ones in from its cache
(``edge.legacy_from_cache``) both halves of the claim fail, each on its own checks."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from harness.mutants import run_with_mutants
from harness.stack.process import outlast_argv

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

SCENARIO = (
    Path(__file__).resolve().parents[2] / "scenarios" / "connector-restart-during-outage.yaml"
)
NAMED_CHECKS = {
    "named serves again after its restart",
    "named serves throughout except its own restart",
}
LEGACY_DOWN = "legacy down from its restart until the control plane returns"


def run(tmp_path: Path, *mutants: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    result = run_with_mutants(
        outlast_argv(
            "run", str(SCENARIO), "--time-scale", "0.25", "--report-dir", str(tmp_path), "-q"
        ),
        mutants,
        timeout=220,
    )
    runs = sorted(tmp_path.glob("*-connector-restart-during-outage"))
    assert len(runs) == 1, result.stdout + result.stderr
    return result, json.loads((runs[0] / "summary.json").read_text())


def test_named_comes_back_and_legacy_cannot_on_the_reference(tmp_path: Path) -> None:
    result, summary = run(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert summary["verdict"] == "pass"
    legacy = {c["name"]: c for c in summary["checks"]}[LEGACY_DOWN]
    assert legacy["data"]["availability"] <= 0.05


def test_both_claims_fail_against_their_mutants(tmp_path: Path) -> None:
    result, summary = run(tmp_path, "edge.named_calls_control_plane", "edge.legacy_from_cache")
    assert result.returncode == 1, result.stdout + result.stderr
    failed = {c["name"] for c in summary["checks"] if c["passed"] is False}
    assert NAMED_CHECKS <= failed, result.stdout
    assert LEGACY_DOWN in failed, result.stdout
