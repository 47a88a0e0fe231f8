"""The search driver (Hypothesis ``find``, memo, shrink budget, confirmation, database) against a
pure stand-in for the system: the verdict is a function of the schedule, so every property of the
driver can be checked quickly and exactly. The real stack is exercised in
tests/integration/test_explore_runs.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

from harness.explore import (
    ExampleOutcome,
    ExploreOptions,
    Explorer,
    Schedule,
    load_envelope,
)
from harness.explore.invariants import Violation
from harness.scenario import Scenario, load_scenario

ENVELOPE = load_envelope()


class PureSystem(Explorer):
    """The real explorer with ``verdict(schedule, attempt)`` in place of a stack."""

    def __init__(self, options: ExploreOptions, broken: Callable[[Schedule, int], bool]) -> None:
        super().__init__(ENVELOPE, options)
        self.broken = broken
        self.attempts: dict[str, int] = {}

    async def _start_stack(self) -> None:  # type: ignore[override]
        return None

    async def play(
        self, schedule: Schedule, phase: str, *, scenario: Scenario | None = None
    ) -> ExampleOutcome:  # type: ignore[override]
        assert self.result is not None
        attempt = self.attempts.get(schedule.key(), 0)
        self.attempts[schedule.key()] = attempt + 1
        bad = self.broken(schedule, attempt)
        outcome = ExampleOutcome(
            index=len(self.result.examples) + 1,
            phase=phase,  # type: ignore[arg-type]
            schedule=schedule,
            verdict="fail" if bad else "pass",
            violations=[Violation("failover_within", "never failed over")] if bad else [],
            undecided=[],
            run_dir=None,
            seconds=1.0,
            reset_seconds=0.5,
        )
        self.result.examples.append(outcome)
        return outcome


def explore(tmp_path: Path, broken: Callable[[Schedule, int], bool], **options: object):
    options.setdefault("seed", 5)
    opts = ExploreOptions(state_dir=tmp_path / "state", report_dir=tmp_path / "reports", **options)  # type: ignore[arg-type]
    return asyncio.run(PureSystem(opts, broken).run())


def has_pause(schedule: Schedule, attempt: int = 0) -> bool:
    return any(f.fault == "pause" for f in schedule.faults)


def test_no_violation_within_the_budget(tmp_path: Path) -> None:
    result = explore(tmp_path, lambda s, a: False, budget=12)
    assert result.exit_code == 0 and result.minimal is None
    assert result.count("generate") == 12  # distinct schedules played
    assert result.examples_per_minute == 40.0  # 1 s play + 0.5 s reset each
    result.assert_no_violation()
    summary = json.loads((result.explore_dir / "explore.json").read_text())
    assert summary["status"] == "pass" and summary["examples"] == len(result.examples)


def test_violation_is_shrunk_confirmed_and_written_as_a_scenario(tmp_path: Path) -> None:
    result = explore(tmp_path, has_pause, budget=40, shrink_budget=100, seed=2)
    assert result.exit_code == 1
    first = next(e for e in result.examples if e.violated)
    assert len(first.schedule) == 3  # this seed first fails with three faults
    assert result.minimal is not None
    assert result.minimal.schedule.label() == "pause edge-ams at 0s for 2s"
    assert result.confirmed == (1, 1)
    assert result.count("confirm") == 1
    # Hypothesis proposes schedules again and again; each was played once (confirmation aside).
    keys = [e.schedule.key() for e in result.examples if e.phase != "confirm"]
    assert len(keys) == len(set(keys))
    assert result.reproduction is not None
    scenario = load_scenario(result.reproduction)
    assert scenario.name == "explore-default-minimal"
    assert [(e.fault, e.target, e.duration) for e in scenario.timeline] == [
        ("pause", "edge-ams", 2.0)
    ]
    assert scenario.time_scale == ENVELOPE.time_scale
    assert "failover_within pause edge-ams" in [c.display_name for c in scenario.checks]
    try:
        result.assert_no_violation()
    except AssertionError as exc:
        assert "outlast run" in str(exc) and "pause edge-ams" in str(exc)
    else:
        raise AssertionError("assert_no_violation passed on a violation")


def test_shrinking_stops_at_its_budget(tmp_path: Path) -> None:
    result = explore(tmp_path, has_pause, budget=40, shrink_budget=0, confirm=0, seed=2)
    assert result.exit_code == 1 and result.count("shrink") == 0
    first = next(e for e in result.examples if e.violated)
    assert result.minimal is not None and result.minimal.schedule == first.schedule


def test_failures_replay_first_from_the_database(tmp_path: Path) -> None:
    first = explore(tmp_path, has_pause, budget=40, shrink_budget=100, confirm=0, seed=2)
    assert first.minimal is not None
    again = explore(tmp_path, has_pause, budget=40, shrink_budget=100, confirm=0, seed=3)
    assert again.examples[0].violated
    assert again.examples[0].schedule == first.minimal.schedule
    assert again.count("generate") == 1


def test_a_flaky_minimum_gives_way_to_a_reproducible_failure(tmp_path: Path) -> None:
    def broken(schedule: Schedule, attempt: int) -> bool:
        if not has_pause(schedule):
            return False
        smallest = schedule.label() == "pause edge-ams at 0s for 2s"
        return attempt == 0 or not smallest  # the smallest one fails only once

    result = explore(tmp_path, broken, budget=40, shrink_budget=100, confirm=2, seed=2)
    assert result.minimal is not None
    assert result.minimal.schedule.label() != "pause edge-ams at 0s for 2s"
    assert has_pause(result.minimal.schedule)
    assert result.confirmed == (2, 2)


def test_the_same_seed_proposes_the_same_schedules(tmp_path: Path) -> None:
    runs = [explore(tmp_path / str(i), lambda s, a: False, budget=15, seed=11) for i in range(2)]
    labels = [[e.schedule.label() for e in run.examples] for run in runs]
    assert labels[0] == labels[1] and len(labels[0]) > 5
    other = explore(tmp_path / "other", lambda s, a: False, budget=15, seed=12)
    assert [e.schedule.label() for e in other.examples] != labels[0]


def test_a_broken_harness_stops_the_exploration_undecided(tmp_path: Path) -> None:
    class Broken(PureSystem):
        async def play(self, schedule, phase, *, scenario=None):  # type: ignore[no-untyped-def]
            assert self.result is not None
            if len(self.result.examples) == 2:
                raise RuntimeError("the stack broke")
            return await super().play(schedule, phase, scenario=scenario)

    opts = ExploreOptions(
        budget=10, seed=1, state_dir=tmp_path / "state", report_dir=tmp_path / "reports"
    )
    result = asyncio.run(Broken(opts, lambda s, a: False).run())
    assert result.exit_code == 2 and result.status == "unknown"
    assert result.error == "RuntimeError: the stack broke"
    assert len(result.examples) == 2
    summary = json.loads((result.explore_dir / "explore.json").read_text())
    assert summary["error"] == "RuntimeError: the stack broke"
