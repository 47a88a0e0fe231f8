"""`outlast explore` on the real stack: a small budget passes on the reference (through the pytest
entry point), and against a mutant of the reference (tests/mutants/) it finds a failure, shrinks
it to one or two faults, and the scenario file it writes reproduces the failure with `outlast run`.

Envelopes here are tight so that CI stays short: one reused stack, examples of 8-13 s.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.explore import load_envelope, parse_envelope, run_exploration
from harness.mutants import mutated_tree, run_in_tree
from harness.stack.process import outlast_argv

pytestmark = [pytest.mark.slow]

REFERENCE_ENVELOPE = """
name: ci-reference
time_scale: 0.5
horizon: 8s
step: 1s
faults_per_schedule: [1, 2]
lead_in: 1s
settle: 6s
faults:
  - {fault: link_down, targets: ["conn-*"], for: [1s, 4s]}
  - {fault: restart, targets: ["edge-*"]}
  - {fault: broker_outage, for: [2s, 6s]}
checks:
  - name: dns_unchanged
  - {name: reconnect_within, params: {bound: 6s}}
  - name: no_misroute
  - name: no_corruption
  - name: control_plane_independent
    params: {grace: 3s, exclude_routes: ["*audit*", "*metrics*"]}
  - name: ha_restored
"""

# A frozen edge among harmless control-plane outages. The reference connector's heartbeats see a
# frozen edge in ~4 s and move its connections to the other PoP; without heartbeats it never does.
FROZEN_EDGE_ENVELOPE = """
name: ci-frozen-edge
time_scale: 1
horizon: 9s
step: 1s
faults_per_schedule: [1, 2]
lead_in: 1s
settle: 2s
faults:
  - {fault: controlplane_outage, for: 2s}
  - {fault: pause, targets: ["edge-*"], for: 8s}
checks:
  - name: dns_unchanged
  - name: no_misroute
  - {name: failover_within, params: {bound: 7s}}
"""


@pytest.mark.timeout(150)
def test_small_budget_on_the_reference_finds_nothing(tmp_path: Path) -> None:
    lines: list[str] = []
    result = run_exploration(
        budget=2,
        envelope=parse_envelope(REFERENCE_ENVELOPE),
        seed=3,
        state_dir=tmp_path / "state",
        report_dir=tmp_path / "reports",
        progress=lines.append,
    )
    result.assert_no_violation()
    assert result.count("generate") == 2 and result.exit_code == 0
    assert result.examples_per_minute is not None and result.examples_per_minute > 0
    summary = json.loads((result.explore_dir / "explore.json").read_text())
    assert summary["status"] == "pass" and summary["examples"] == 2
    assert summary["stack_restarts"] == 0
    assert any("ok" in line for line in lines if line.startswith("["))
    assert load_envelope(result.explore_dir / "envelope.yaml").name == "ci-reference"


@pytest.mark.timeout(420)
def test_mutant_is_found_shrunk_and_replayed(tmp_path: Path) -> None:
    envelope = tmp_path / "frozen-edge.yaml"
    envelope.write_text(FROZEN_EDGE_ENVELOPE)
    with mutated_tree(["connector.no_heartbeat"]) as tree:
        _explore_and_replay(tmp_path, tree, envelope)


def _explore_and_replay(tmp_path: Path, tree: Path, envelope: Path) -> None:
    """Explore with the mutated ``tree``, then replay the minimal schedule there."""
    explored = run_in_tree(
        tree,
        outlast_argv(
            "explore",
            "--budget",
            "6",
            "--seed",
            "1",
            "--shrink-budget",
            "6",
            "--envelope",
            str(envelope),
            "--state-dir",
            str(tmp_path / "state"),
            "--report-dir",
            str(tmp_path / "reports"),
        ),
        timeout=400 - 60,
    )
    assert explored.returncode == 1, explored.stdout + explored.stderr
    explore_dir = next((tmp_path / "reports").glob("*-explore-ci-frozen-edge"))
    summary = json.loads((explore_dir / "explore.json").read_text())
    minimal = summary["minimal"]
    assert 1 <= minimal["faults"] <= 2, minimal
    assert "pause edge-" in minimal["schedule"]
    assert any(v.startswith("failover_within") for v in minimal["violations"])
    assert minimal["confirmed"] == "1/1"
    assert "VIOLATION: minimal schedule" in explored.stdout
    reproduction = Path(minimal["scenario"])
    assert reproduction.is_file() and (Path(minimal["report"]) / "report.html").is_file()

    replayed = run_in_tree(
        tree,
        outlast_argv("run", str(reproduction), "--report-dir", str(tmp_path / "replay"), "-q"),
        timeout=60,
    )
    assert replayed.returncode == 1, replayed.stdout + replayed.stderr
    assert "[FAIL] failover_within pause edge-" in replayed.stdout
