"""The catalogue's files, without running a stack: every scenario loads, names the mutant it is
tested against, and is listed in docs/catalogue.md; a directory run picks up every
file; ``--speed`` compresses each scenario relative to its own time scale."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.mutants import load_mutants
from harness.run_cli import _load_all, _stretch_warning, run_command
from harness.runner import RunOptions, effective_scenario, wants_management_probe
from harness.scenario import load_scenario, scenario_files
from tests.integration.test_catalogue import MUTANT_OF, MUTANTS, REFERENCE

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"


def mutants_named(description: str) -> set[str]:
    return set(re.findall(r"`([a-z]+\.[a-z_0-9]+)`", description)) & set(load_mutants())


def test_every_scenario_file_loads_and_names_a_mutant() -> None:
    """The issue's rule for the whole catalogue: each scenario says which broken variant of the
    reference (a mutant in tests/mutants/) it fails against (no check that cannot fail)."""
    files = scenario_files(SCENARIOS)
    assert {f.stem for f in files} >= set(REFERENCE)
    for path in files:
        scenario = load_scenario(path)
        assert scenario.name == path.stem, path
        assert mutants_named(scenario.description), f"{path.name} names no mutant"


@pytest.mark.parametrize("name", sorted(MUTANT_OF))
def test_description_names_the_mutant_that_the_test_applies(name: str) -> None:
    scenario = load_scenario(SCENARIOS / f"{name}.yaml")
    mutant = MUTANT_OF[name]
    checks = MUTANTS[mutant].checks_of(name)
    assert mutant in mutants_named(scenario.description), scenario.description
    labels = {c.display_name for c in scenario.checks}
    assert checks <= labels, (checks, labels)


def test_docs_catalogue_lists_every_scenario_and_mutant() -> None:
    doc = (ROOT / "docs" / "catalogue.md").read_text()
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([a-z0-9.-]+)` \|.*$", doc, re.M)}
    for path in scenario_files(SCENARIOS):
        assert path.stem in rows, f"docs/catalogue.md has no row for {path.name}"
    for name, mutant in MUTANT_OF.items():
        assert f"`{mutant}`" in rows[name], name
    for mutant in load_mutants():
        assert f"| `{mutant}` |" in doc, f"docs/catalogue.md does not list mutant {mutant}"


def test_a_directory_run_picks_up_every_scenario_file() -> None:
    names = [s.name for s in _load_all((SCENARIOS,))]
    assert names == [p.stem for p in scenario_files(SCENARIOS)]


def test_speed_divides_each_scenarios_own_time_scale() -> None:
    fast = load_scenario(SCENARIOS / "link-flap.yaml")
    assert effective_scenario(fast, RunOptions(speed=2)).time_scale == fast.time_scale / 2
    assert effective_scenario(fast, RunOptions(time_scale=0.1, speed=2)).time_scale == 0.1
    replay = fast.model_copy(update={"time_scale": 0.0035, "duration": 19200.0})
    warning = _stretch_warning(replay, 0.25)
    assert warning is not None and "80.0 min" in warning and "--speed" in warning
    assert _stretch_warning(fast, 0.25) is None


def test_time_scale_and_speed_together_are_refused() -> None:
    result = CliRunner().invoke(
        run_command, [str(SCENARIOS / "link-flap.yaml"), "--time-scale", "0.1", "--speed", "2"]
    )
    assert result.exit_code == 2
    assert "not both" in result.output


def test_management_calls_are_probed_only_when_a_check_reads_them() -> None:
    assert wants_management_probe(load_scenario(SCENARIOS / "token-rollover.yaml"))
    for name in ("control-plane-outage", "credential-revocation", "link-flap"):
        assert not wants_management_probe(load_scenario(SCENARIOS / f"{name}.yaml")), name
