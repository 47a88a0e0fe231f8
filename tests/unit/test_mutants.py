"""The mutants of tests/mutants/ without running a stack: each parses, applies to the current
tree, and names scenarios and checks that exist; the reference carries no test-only switch."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.mutants import (
    ROOT,
    SCENARIOS_DIR,
    MutantError,
    load_mutant,
    load_mutants,
    mutated_tree,
    tree_env,
)
from harness.scenario import load_scenario

MUTANTS = load_mutants()


def test_there_are_at_least_twenty_mutants() -> None:
    assert len(MUTANTS) >= 20, sorted(MUTANTS)


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_mutant_applies_and_names_existing_checks(name: str) -> None:
    mutant = MUTANTS[name]
    assert mutant.description and mutant.caught_by, name
    with mutated_tree([name]) as tree:
        changed = [
            p
            for p in re.findall(r"^\+\+\+ b/(\S+)$", mutant.path.read_text(), re.M)
            if (tree / p).read_bytes() != (ROOT / p).read_bytes()
        ]
        assert changed, f"{name} changes nothing"
    for scenario in mutant.scenarios:
        labels = {c.display_name for c in load_scenario(SCENARIOS_DIR / f"{scenario}.yaml").checks}
        assert mutant.checks_of(scenario) <= labels, (scenario, labels)


def test_a_clean_copy_is_the_tree_and_its_env_imports_it() -> None:
    with mutated_tree([]) as tree:
        assert (tree / "harness" / "mutants.py").read_bytes() == Path(
            ROOT / "harness" / "mutants.py"
        ).read_bytes()
        assert tree_env(tree, {"PYTHONPATH": "/x"})["PYTHONPATH"] == f"{tree}:/x"


def test_a_malformed_mutant_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "x.patch"
    bad.write_text("Caught-by: link-flap/ha_restored\n\ndiff --git a/x b/x\n")
    with pytest.raises(MutantError, match="Mutant:"):
        load_mutant(bad)
    bad.write_text("Mutant: something\nCaught-by: nothing\n\ndiff --git a/x b/x\n")
    with pytest.raises(MutantError, match="SCENARIO/CHECK"):
        load_mutant(bad)


def test_unknown_mutant_names_are_refused() -> None:
    with pytest.raises(MutantError, match="no mutant named"), mutated_tree(["no.such"]):
        pass


def test_no_planted_defect_switch_is_left_in_the_reference() -> None:
    for path in (ROOT / "reference").rglob("*.py"):
        text = path.read_text()
        assert "OUTLAST_DEFECTS" not in text and "defects.enabled" not in text, path


def test_every_scenario_is_named_by_some_mutant() -> None:
    named = {s for m in MUTANTS.values() for s in m.scenarios}
    assert {p.stem for p in SCENARIOS_DIR.glob("*.yaml")} <= named
