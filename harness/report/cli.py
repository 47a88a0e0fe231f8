"""``outlast report RUN_DIR...``: recompute reports from stored journals; SLA table across runs."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import click

from harness.checks.result import EXIT_CODES, combine
from harness.journal.reader import JournalError
from harness.report.run_dir import SUMMARY, RunReport, build_report, write_report
from harness.report.tables import (
    STATUS_WORD,
    sla_table_html,
    sla_table_markdown,
    sla_table_text,
)
from harness.scenario.loader import ScenarioError

VERIFY_MISMATCH = 3


def _verify(report: RunReport) -> bool:
    stored = report.run_dir / SUMMARY
    fresh = report.files()[SUMMARY]
    if not stored.is_file():
        click.echo(f"  {stored}: missing, nothing to compare", err=True)
        return False
    old = stored.read_text(encoding="utf-8")
    if old == fresh:
        click.echo(f"  {stored}: reproduced exactly")
        return True
    diff = difflib.unified_diff(
        old.splitlines(), fresh.splitlines(), "stored", "recomputed", lineterm="", n=1
    )
    click.echo(f"  {stored}: DIFFERS\n" + "\n".join(list(diff)[:40]), err=True)
    return False


@click.command("report")
@click.argument(
    "run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path)
)
@click.option(
    "--slo",
    type=click.FloatRange(0, 100, min_open=True, max_open=True),
    help="SLO in percent for the error-budget column of the SLA table "
    "(default: each scenario's own).",
)
@click.option(
    "--verify",
    is_flag=True,
    help="Only recompute and compare with the stored summary.json (exit 3 if any "
    "differs); write nothing.",
)
@click.option(
    "--sla-table",
    "sla_table",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the SLA table across the runs to this .md or .html file.",
)
def report_command(
    run_dirs: tuple[Path, ...], slo: float | None, verify: bool, sla_table: Path | None
) -> None:
    """Recompute summary.json, report.md, report.html and junit.xml of each RUN_DIR from its
    journal.jsonl (and scenario.yaml).

    Exit status: 0 every run passed, 1 a check failed, 2 a run could not be decided or read
    (3 with --verify when a stored summary differs).
    """
    outcomes: list[bool | None] = []
    summaries: list[dict[str, Any]] = []
    mismatches = 0
    for run_dir in run_dirs:
        try:
            report = build_report(run_dir) if verify else write_report(run_dir)
        except (FileNotFoundError, JournalError, ScenarioError) as exc:
            click.echo(f"UNREADABLE  {run_dir}: {exc}", err=True)
            outcomes.append(None)
            continue
        summary = report.summary
        summaries.append(summary)
        word = {"pass": True, "fail": False, "unknown": None}[summary["verdict"]]
        outcomes.append(word)
        failed = [c["name"] for c in summary["checks"] if c["passed"] is False]
        undecided = [c["name"] for c in summary["checks"] if c["passed"] is None]
        notes = [f"{len(summary['checks'])} checks"]
        if failed:
            notes.append("failed: " + ", ".join(failed))
        if undecided:
            notes.append("undecided: " + ", ".join(undecided))
        if summary["run"]["status"] != "completed":
            notes.append(f"run {summary['run']['status']}")
        click.echo(f"{STATUS_WORD[word]:<8} {summary['scenario']}  {run_dir}  ({'; '.join(notes)})")
        if verify and not _verify(report):
            mismatches += 1
    if len(summaries) > 1 or (summaries and slo is not None):
        click.echo("")
        click.echo(sla_table_text(summaries, slo), nl=False)
    if sla_table is not None and summaries:
        text = (
            sla_table_html(summaries, slo) + "\n"
            if sla_table.suffix in (".html", ".htm")
            else sla_table_markdown(summaries, slo)
        )
        sla_table.parent.mkdir(parents=True, exist_ok=True)
        sla_table.write_text(text, encoding="utf-8")
    if mismatches:
        raise SystemExit(VERIFY_MISMATCH)
    raise SystemExit(EXIT_CODES[combine(outcomes)])
