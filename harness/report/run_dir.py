"""A run directory (``reports/<timestamp>-<scenario>/``) and the report files computed from it.

Inputs: ``journal.jsonl`` (required) and ``scenario.yaml`` (the effective scenario the run
played: checks and SLO). Outputs: ``summary.json``, ``report.md``, ``report.html``, ``junit.xml``
— all recomputable from the inputs alone, byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.checks.result import Verdict
from harness.journal.history import History
from harness.report.html import render_html
from harness.report.junit import render_junit
from harness.report.markdown import render_markdown
from harness.report.summary import compute_summary, summary_json
from harness.scenario.loader import load_scenario
from harness.scenario.schema import Scenario
from reference.files import atomic_write

JOURNAL = "journal.jsonl"
SCENARIO = "scenario.yaml"
SUMMARY = "summary.json"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
JUNIT = "junit.xml"


@dataclass(frozen=True)
class RunReport:
    """Everything computed for one run directory (nothing written yet)."""

    run_dir: Path
    history: History
    scenario: Scenario | None
    summary: dict[str, Any]

    @property
    def verdict(self) -> Verdict:
        value: Verdict = self.summary["verdict"]
        return value

    @property
    def exit_code(self) -> int:
        return int(self.summary["exit_code"])

    def files(self) -> dict[str, str]:
        """File name -> content of every report file."""
        return {
            SUMMARY: summary_json(self.summary),
            REPORT_MD: render_markdown(self.summary),
            REPORT_HTML: render_html(self.summary, self.history),
            JUNIT: render_junit([self.summary]),
        }


def build_report(run_dir: Path | str) -> RunReport:
    """Read a run directory and compute its report.

    Raises ``FileNotFoundError`` without a journal, ``JournalError`` for a damaged one and
    ``ScenarioError`` for an invalid ``scenario.yaml``; without ``scenario.yaml`` the report
    has the SLA but no checks (verdict ``unknown``).
    """
    run_dir = Path(run_dir)
    journal = run_dir / JOURNAL
    if not journal.is_file():
        raise FileNotFoundError(f"no {JOURNAL} in {run_dir}")
    history = History.from_path(journal)
    scenario_path = run_dir / SCENARIO
    scenario = load_scenario(scenario_path) if scenario_path.is_file() else None
    return RunReport(run_dir, history, scenario, compute_summary(history, scenario))


def write_report(run_dir: Path | str) -> RunReport:
    """Compute and (atomically) write every report file of a run directory."""
    report = build_report(run_dir)
    for name, content in report.files().items():
        atomic_write(report.run_dir / name, content.encode("utf-8"), 0o644)
    return report
