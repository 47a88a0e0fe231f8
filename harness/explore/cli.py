"""``outlast explore``: search for fault schedules that break an invariant, shrink, write a replay.

Exit code: 0 no violation within the budget, 1 a violation (the minimal reproduction is written),
2 the exploration could not decide (invalid envelope, the stack broke, interrupted).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from harness.checks.result import EXIT_CODES
from harness.interrupts import Terminated, cancel_on_sigterm, stopped_by


@click.command("explore")
@click.option(
    "--budget",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Generated schedules to try (shrinking and confirmation come on top).",
)
@click.option("--seed", type=int, help="Seed of the search (default: a new one, printed).")
@click.option(
    "--time-scale",
    type=click.FloatRange(min=0, min_open=True, max=100),
    help="Wall seconds per scenario second (default: the envelope's).",
)
@click.option(
    "--envelope",
    "envelope_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Envelope YAML (default: the packaged default envelope).",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".outlast/explore"),
    show_default=True,
    help="The stack's files and the Hypothesis database (failures replay first next time).",
)
@click.option(
    "--report-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("reports"),
    show_default=True,
    help="Where the exploration directory is written.",
)
@click.option(
    "--shrink-budget",
    type=click.IntRange(min=0),
    default=30,
    show_default=True,
    help="Most schedules played while shrinking a violation.",
)
@click.option(
    "--confirm",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Replays of the minimal schedule that must all fail before it is written.",
)
@click.option("--keep-passing", is_flag=True, help="Keep the run directories of passing examples.")
@click.option(
    "--show-envelope", is_flag=True, help="Print the effective envelope as YAML and exit."
)
@click.option("-q", "--quiet", is_flag=True, help="Only print the summary.")
def explore_command(
    budget: int,
    seed: int | None,
    time_scale: float | None,
    envelope_file: Path | None,
    state_dir: Path,
    report_dir: Path,
    shrink_budget: int,
    confirm: int,
    keep_passing: bool,
    show_envelope: bool,
    quiet: bool,
) -> None:
    """Generate fault schedules inside an envelope, play them on one reused stack, check the
    invariants after each, and shrink the first violation to a minimal scenario file."""
    try:
        from harness.explore.envelope import EnvelopeError, load_envelope
        from harness.explore.explorer import ExplorationResult, ExploreOptions, explore
    except ImportError as exc:  # hypothesis is an optional dependency
        click.echo(
            f"outlast explore needs Hypothesis ({exc}): pip install 'hypothesis>=6.100'", err=True
        )
        sys.exit(EXIT_CODES["unknown"])
    try:
        envelope = load_envelope(envelope_file)
    except EnvelopeError as exc:
        click.echo(str(exc), err=True)
        click.echo("nothing was explored: fix the envelope above", err=True)
        sys.exit(EXIT_CODES["unknown"])
    if show_envelope:
        click.echo(envelope.to_yaml(), nl=False)
        return

    def progress(message: str) -> None:
        if not quiet:
            click.echo(message, err=True)

    options = ExploreOptions(
        budget=budget,
        seed=seed,
        time_scale=time_scale,
        state_dir=state_dir,
        report_dir=report_dir,
        shrink_budget=shrink_budget,
        confirm=confirm,
        keep_passing=keep_passing,
        progress=progress,
    )
    try:
        result: ExplorationResult = asyncio.run(cancel_on_sigterm(explore(envelope, options)))
    except (KeyboardInterrupt, Terminated) as exc:
        how, status = stopped_by(exc)
        click.echo(f"{how}: faults undone, stack stopped, explore.json written", err=True)
        sys.exit(status)
    _print_summary(result)
    sys.exit(result.exit_code)


def _print_summary(result: object) -> None:
    from harness.explore.explorer import ExplorationResult

    assert isinstance(result, ExplorationResult)
    data = result.to_data()
    click.echo(
        f"explore {result.envelope.name}: {data['generated']} generated schedule(s) "
        f"(budget {result.budget}), {data['shrink_examples']} shrinking, "
        f"{data['confirm_examples']} confirming; {data['failing_examples']} failing; "
        f"{data['examples_per_minute']} examples/min (mean play {data['mean_example_s']} s, "
        f"reset {data['mean_reset_s']} s); {data['elapsed_s']} s in all; seed {result.seed}"
    )
    if result.minimal is not None:
        minimal = result.minimal
        click.echo(
            f"VIOLATION: minimal schedule, {len(minimal.schedule)} fault(s), reproduced "
            f"{data['minimal']['confirmed']}: {minimal.schedule.label()}"
        )
        for violation in minimal.violations:
            click.echo(f"  [FAIL] {violation.check}: {violation.detail}")
        click.echo(f"  replay: outlast run {result.reproduction}")
        if result.reproduction_report is not None:
            click.echo(f"  report: {result.reproduction_report / 'report.html'}")
    elif result.error or result.interrupted:
        click.echo(f"UNDECIDED: {result.error or 'interrupted'}")
    else:
        click.echo("no violation found")
    click.echo(f"details: {result.explore_dir / 'explore.json'}")
