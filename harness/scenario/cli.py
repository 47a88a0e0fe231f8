"""``outlast scenarios [PATH]...``: the scenario catalogue with one-line descriptions."""

from __future__ import annotations

from pathlib import Path

import click

from harness.scenario.durations import format_duration
from harness.scenario.loader import ScenarioError, load_scenario, scenario_files


@click.command("scenarios")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--quiet", "-q", is_flag=True, help="Print only invalid files.")
def scenarios_command(paths: tuple[Path, ...], quiet: bool) -> None:
    """List scenario files (default: ./scenarios) with one-line descriptions.

    Every file is validated; invalid ones are reported with file:line: field: message and
    the command exits with status 1.
    """
    locations = list(paths) or [Path("scenarios")]
    files: list[Path] = []
    for location in locations:
        try:
            files.extend(scenario_files(location))
        except FileNotFoundError as exc:
            raise click.UsageError(str(exc)) from None
    invalid = 0
    rows: list[tuple[str, str, str, str]] = []
    for file in files:
        try:
            scenario = load_scenario(file)
        except ScenarioError as exc:
            invalid += 1
            click.echo(str(exc), err=True)
            continue
        timing = format_duration(scenario.real_duration)
        rows.append((scenario.name, timing, scenario.summary, str(file)))
    if not quiet:
        if not rows and not invalid:
            click.echo("no scenario files found")
        name_width = max((len(r[0]) for r in rows), default=0)
        for name, timing, summary, where in rows:
            text = summary if len(summary) <= 90 else summary[:87] + "..."
            click.echo(f"{name:<{name_width}}  {timing:>7}  {text}  ({where})")
    if invalid:
        click.echo(f"{invalid} invalid scenario file(s)", err=True)
        raise SystemExit(1)
