"""``outlast run SCENARIO_OR_DIR...``: play scenarios on a stack and write their reports.

Exit code: 0 every check passed, 1 a check failed, 2 a run could not decide (the stack did not
come up, the harness failed, or a scenario file is invalid).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from harness.checks.result import EXIT_CODES, combine
from harness.report.run_dir import RunReport
from harness.report.tables import sla_table_text
from harness.runner import RunOptions, run_scenario
from harness.scenario import Scenario, ScenarioError, load_scenario, scenario_files


def _load_all(locations: tuple[Path, ...]) -> list[Scenario]:
    scenarios: list[Scenario] = []
    problems: list[str] = []
    for location in locations:
        try:
            files = scenario_files(location)
        except FileNotFoundError as exc:
            problems.append(str(exc))
            continue
        if not files:
            problems.append(f"{location}: no *.yaml scenario files here")
        for path in files:
            try:
                scenarios.append(load_scenario(path))
            except ScenarioError as exc:
                problems.append(str(exc))
    if problems:
        for problem in problems:
            click.echo(problem, err=True)
        click.echo("no scenario was run: fix the files above", err=True)
        sys.exit(EXIT_CODES["unknown"])
    return scenarios


@click.command("run")
@click.argument("locations", nargs=-1, required=True, type=click.Path(exists=False, path_type=Path))
@click.option(
    "--backend",
    type=click.Choice(["local", "compose"]),
    default="local",
    show_default=True,
    help="Where the stack runs: local processes on 127.0.0.1, or Docker Compose "
    "(images from `outlast compose build`).",
)
@click.option("--seed", type=int, help="Override the scenarios' seed.")
@click.option(
    "--time-scale",
    type=click.FloatRange(min=0, min_open=True, max=100),
    help="Override the scenarios' time scale (wall seconds per scenario second).",
)
@click.option(
    "--report-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("reports"),
    show_default=True,
)
@click.option("-q", "--quiet", is_flag=True, help="Only print the result lines.")
def run_command(
    locations: tuple[Path, ...],
    backend: str,
    seed: int | None,
    time_scale: float | None,
    report_dir: Path,
    quiet: bool,
) -> None:
    """Run scenario files (or every scenario in a directory) and write reports."""
    scenarios = _load_all(locations)

    def progress(message: str) -> None:
        if not quiet:
            click.echo(message, err=True)

    options = RunOptions(
        backend=backend, seed=seed, time_scale=time_scale, report_dir=report_dir, progress=progress
    )
    reports: list[RunReport] = []
    try:
        for scenario in scenarios:
            report = asyncio.run(run_scenario(scenario, options))
            reports.append(report)
            _print_result(report)
    except KeyboardInterrupt:
        click.echo("interrupted: faults undone, stack stopped, journal kept", err=True)
        sys.exit(130)
    if len(reports) > 1:
        click.echo()
        click.echo(sla_table_text([r.summary for r in reports]))
    verdict = combine(None if r.verdict == "unknown" else r.verdict == "pass" for r in reports)
    sys.exit(EXIT_CODES[verdict])


def _print_result(report: RunReport) -> None:
    summary = report.summary
    sla = summary.get("sla", {})
    click.echo(
        f"{summary['scenario']}: {report.verdict.upper()}  "
        f"availability {sla.get('availability')}%  "
        f"requests {sla.get('requests')}  report {report.run_dir / 'report.html'}"
    )
    for check in summary.get("checks", []):
        mark = {True: "pass", False: "FAIL", None: "????"}[check["passed"]]
        click.echo(f"  [{mark}] {check['name']}: {check['detail']}")
