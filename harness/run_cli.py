"""``outlast run SCENARIO_OR_DIR...``: play scenarios on a stack and write their reports.

Several scenarios (e.g. ``outlast run scenarios/``) also give an SLA table across them: printed,
and written as ``<report-dir>/catalogue-<timestamp>.md`` and ``.html`` (``harness.run_catalogue``).
Progress goes to stderr: a live status line on a terminal, plain lines otherwise
(``harness.run_progress``).

Exit code: 0 every check passed, 1 a check failed, 2 a run could not decide (the stack did not
come up, the harness failed, or a scenario file is invalid).
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import replace
from pathlib import Path

import click

from harness.checks.result import EXIT_CODES, combine
from harness.interrupts import Terminated, cancel_on_sigterm, stopped_by
from harness.report.run_dir import RunReport
from harness.report.tables import run_problem, sla_table_text, undecided_by_run
from harness.run_catalogue import write_catalogue
from harness.run_progress import ProgressView
from harness.runner import RunOptions, RunStatus, run_scenario
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
    type=click.Choice(["local", "compose", "swarm", "kubernetes"]),
    default="local",
    show_default=True,
    help="Where the stack runs: local processes on 127.0.0.1, Docker Compose "
    "(images from `outlast compose build`), a Docker Swarm stack (`outlast swarm up`), or a "
    "Kubernetes cluster (the current kubeconfig context; docs/distributed.md).",
)
@click.option("--seed", type=int, help="Override the scenarios' seed.")
@click.option(
    "--time-scale",
    type=click.FloatRange(min=0, min_open=True, max=100),
    help="Override the scenarios' time scale (wall seconds per scenario second).",
)
@click.option(
    "--speed",
    type=click.FloatRange(min=0, min_open=True, max=1000),
    help="Play each scenario this many times faster than its own time scale (2 halves every "
    "scenario's wall time); for catalogues whose scenarios have different time scales.",
)
@click.option(
    "--report-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("reports"),
    show_default=True,
)
@click.option(
    "--connector",
    type=click.Choice(["reference", "cloudflared", "both"]),
    default=None,
    help="What runs the named tunnels (default: each scenario's stack.connector, itself "
    "'reference'): the reference connector or the real cloudflared binary "
    "(docs/cloudflared.md); 'both' runs every scenario with each, one after the other, and "
    "the catalogue shows them side by side. Legacy tunnels always run the reference connector.",
)
@click.option(
    "--cloudflared",
    "cloudflared_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="The cloudflared binary for --connector cloudflared (default: $OUTLAST_CLOUDFLARED, "
    "../shared/cloudflared/cloudflared, or cloudflared on PATH).",
)
@click.option("-q", "--quiet", is_flag=True, help="Only print the result lines.")
def run_command(
    locations: tuple[Path, ...],
    backend: str,
    seed: int | None,
    time_scale: float | None,
    speed: float | None,
    report_dir: Path,
    connector: str | None,
    cloudflared_path: Path | None,
    quiet: bool,
) -> None:
    """Run scenario files (or every scenario in a directory) and write reports."""
    if time_scale is not None and speed is not None:
        raise click.UsageError("give --time-scale (one scale for all) or --speed, not both")
    if backend != "local" and connector in ("cloudflared", "both"):
        raise click.UsageError(
            f"--connector {connector} runs on the local backend only (not --backend {backend})"
        )
    scenarios = _load_all(locations)
    view = ProgressView(sys.stderr)

    def progress(message: str) -> None:
        if not quiet:
            view.event(message)

    def status(state: RunStatus) -> None:
        if not quiet:
            view.status(state)

    options = RunOptions(
        backend=backend,
        seed=seed,
        time_scale=time_scale,
        speed=speed,
        report_dir=report_dir,
        progress=progress,
        status=status,
        connector=connector,
        cloudflared=cloudflared_path,
    )
    reports: list[RunReport] = []
    connectors: list[str | None] = (
        ["reference", "cloudflared"] if connector == "both" else [connector]
    )
    plays = [(s, c) for s in scenarios for c in connectors]
    try:
        for index, (scenario, played_by) in enumerate(plays, start=1):
            label = scenario.name + (f" ({played_by})" if connector == "both" else "")
            view.begin(index, len(plays), label)
            warning = _stretch_warning(scenario, time_scale)
            if warning and not quiet:
                view.event(warning)
            played = replace(options, connector=played_by)
            report = asyncio.run(cancel_on_sigterm(run_scenario(scenario, played)))
            view.clear()
            reports.append(report)
            _print_result(report)
    except (KeyboardInterrupt, Terminated) as exc:
        view.clear()
        how, exit_status = stopped_by(exc)
        click.echo(f"{how}: faults undone, stack stopped, journal kept", err=True)
        _catalogue(report_dir, reports, scenarios)
        sys.exit(exit_status)
    _catalogue(report_dir, reports, scenarios)
    verdict = combine(None if r.verdict == "unknown" else r.verdict == "pass" for r in reports)
    sys.exit(EXIT_CODES[verdict])


def _stretch_warning(scenario: Scenario, time_scale: float | None) -> str | None:
    """A warning when ``--time-scale`` makes a scenario play much longer than it would."""
    if time_scale is None or time_scale <= 2 * scenario.time_scale:
        return None
    minutes = scenario.duration * time_scale / 60
    own = scenario.real_duration / 60
    return (
        f"warning: --time-scale {time_scale:g} plays {scenario.name} in {minutes:.1f} min "
        f"(its own time scale {scenario.time_scale:g}: {own:.1f} min); "
        "--speed F compresses every scenario relative to its own scale"
    )


def _catalogue(report_dir: Path, reports: list[RunReport], scenarios: list[Scenario]) -> None:
    """SLA table across the runs so far: printed, and written as the catalogue page."""
    if len(reports) < 2:
        return
    click.echo()
    click.echo(sla_table_text([r.summary for r in reports]))
    md, html = write_catalogue(report_dir, reports, scenarios)
    click.echo(f"catalogue: {html}  {md}")


def _print_result(report: RunReport) -> None:
    summary = report.summary
    sla = summary.get("sla", {})
    connector = summary.get("connector") or {}
    played = f" [{connector['kind']}]" if connector.get("kind", "reference") != "reference" else ""
    click.echo(
        f"{summary['scenario']}{played}: {report.verdict.upper()}  "
        f"availability {sla.get('availability')}%  "
        f"requests {sla.get('requests')}  report {report.run_dir / 'report.html'}"
    )
    problem = run_problem(summary)
    if problem is not None:
        click.echo("  run " + problem.replace("\n", "\n    "))  # a log tail stays indented
    checks = summary.get("checks", [])
    if checks and undecided_by_run(summary):
        click.echo(f"  [????] none of the {len(checks)} checks was decided")
        return
    for check in checks:
        mark = {True: "pass", False: "FAIL", None: "????"}[check["passed"]]
        click.echo(f"  [{mark}] {check['name']}: {check['detail']}")
