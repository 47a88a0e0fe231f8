"""The exploration loop: Hypothesis proposes schedules, one reused stack plays them.

How it is driven: :func:`hypothesis.find` with the schedule strategy and the condition "this
schedule violates an invariant". ``find`` runs the database's stored failures first (reuse
phase), then generated schedules until ``budget`` distinct ones were played; the first violation
is shrunk and ``find`` returns the minimal schedule it saw fail. ``find`` is synchronous, so it
runs in a worker thread and hands every example to the event loop that owns the stack. The seed
goes to the generator Hypothesis draws each test's seed from, in that thread only
(:func:`_seed_this_thread`): the same seed and database contents propose the same schedules, and
the database stays on.

Every schedule is played at most once: outcomes are remembered by schedule, which keeps
Hypothesis consistent about a system whose timing is not deterministic and makes repeated
proposals free. Shrinking runs at most ``shrink_budget`` new examples; after that, unseen
schedules are reported as passing without being run, so Hypothesis settles on the smallest
failure seen so far. The minimal schedule is then replayed ``confirm`` times; if it does not
fail every time, the next-smallest failing schedules are tried, and the first that does is
written as the reproduction.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from random import Random
from typing import Any, Literal

from hypothesis import HealthCheck, Phase, Verbosity, find, settings
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.errors import NoSuchExample

from harness.explore.envelope import Envelope
from harness.explore.invariants import Violation, undecided, violations
from harness.explore.schedule import Schedule, to_scenario
from harness.explore.steady import SteadyStateError, reset_stack
from harness.explore.strategies import schedules
from harness.journal import Journal
from harness.report.run_dir import write_report
from harness.runner import RunOptions, ScenarioRun, make_stack
from harness.scenario import Scenario, save_scenario
from harness.stack.local import LocalStack

Progress = Callable[[str], None]
Phase_ = Literal["generate", "shrink", "confirm"]
MAX_CONSECUTIVE_ERRORS = 3
REPRODUCTION = "minimal-reproduction"


class ExplorationAborted(BaseException):
    """Stops Hypothesis at once (a ``BaseException``: never mistaken for a failing example)."""


class BudgetSpent(BaseException):
    """``budget`` distinct schedules were played without a violation: stop generating."""


class ExplorationError(RuntimeError):
    """The exploration itself could not go on (the stack broke, the harness failed)."""


@dataclass
class ExploreOptions:
    """How to explore (see ``outlast explore --help``)."""

    budget: int = 50
    seed: int | None = None
    time_scale: float | None = None
    state_dir: Path = Path(".outlast/explore")
    report_dir: Path = Path("reports")
    shrink_budget: int = 30
    confirm: int = 1
    keep_passing: bool = False
    progress: Progress | None = None


@dataclass
class ExampleOutcome:
    """One played schedule and what the invariants said."""

    index: int
    phase: Phase_
    schedule: Schedule
    verdict: str
    violations: list[Violation]
    undecided: list[str]
    run_dir: Path | None
    seconds: float
    reset_seconds: float
    error: str | None = None

    @property
    def violated(self) -> bool:
        return bool(self.violations) and self.error is None

    def to_data(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "phase": self.phase,
            "faults": [f.to_data() for f in self.schedule.faults],
            "schedule": self.schedule.label(),
            "verdict": self.verdict,
            "violations": [{"check": v.check, "detail": v.detail} for v in self.violations],
            "undecided": self.undecided,
            "run_dir": None if self.run_dir is None else str(self.run_dir),
            "seconds": self.seconds,
            "reset_seconds": self.reset_seconds,
            "error": self.error,
        }


@dataclass
class ExplorationResult:
    """What an exploration found; ``exit_code`` 0 nothing, 1 a violation, 2 could not decide."""

    explore_dir: Path
    envelope: Envelope
    seed: int
    budget: int
    time_scale: float
    examples: list[ExampleOutcome] = field(default_factory=list)
    minimal: ExampleOutcome | None = None
    reproduction: Path | None = None
    reproduction_report: Path | None = None
    confirmed: tuple[int, int] = (0, 0)
    elapsed_s: float = 0.0
    stack_restarts: int = 0
    interrupted: bool = False
    error: str | None = None

    @property
    def failures(self) -> list[ExampleOutcome]:
        return [e for e in self.examples if e.violated]

    @property
    def status(self) -> Literal["pass", "fail", "unknown"]:
        if self.failures:
            return "fail"
        if self.error or self.interrupted:
            return "unknown"
        return "pass"

    @property
    def exit_code(self) -> int:
        return {"pass": 0, "fail": 1, "unknown": 2}[self.status]

    @property
    def examples_per_minute(self) -> float | None:
        busy = sum(e.seconds + e.reset_seconds for e in self.examples)
        return round(60 * len(self.examples) / busy, 2) if busy else None

    def count(self, phase: Phase_) -> int:
        return sum(e.phase == phase for e in self.examples)

    def to_data(self) -> dict[str, Any]:
        resets = [e.reset_seconds for e in self.examples]
        plays = [e.seconds for e in self.examples]
        minimal = self.minimal
        return {
            "status": self.status,
            "exit_code": self.exit_code,
            "envelope": self.envelope.name,
            "seed": self.seed,
            "budget": self.budget,
            "time_scale": self.time_scale,
            "examples": len(self.examples),
            "generated": self.count("generate"),
            "shrink_examples": self.count("shrink"),
            "confirm_examples": self.count("confirm"),
            "failing_examples": len(self.failures),
            "examples_per_minute": self.examples_per_minute,
            "mean_example_s": round(sum(plays) / len(plays), 2) if plays else None,
            "mean_reset_s": round(sum(resets) / len(resets), 2) if resets else None,
            "max_reset_s": max(resets, default=None),
            "elapsed_s": round(self.elapsed_s, 1),
            "stack_restarts": self.stack_restarts,
            "interrupted": self.interrupted,
            "error": self.error,
            "minimal": None
            if minimal is None
            else {
                "faults": len(minimal.schedule),
                "schedule": minimal.schedule.label(),
                "violations": [v.check for v in minimal.violations],
                "confirmed": f"{self.confirmed[0]}/{self.confirmed[1]}",
                "scenario": None if self.reproduction is None else str(self.reproduction),
                "report": None
                if self.reproduction_report is None
                else str(self.reproduction_report),
            },
            "runs": [e.to_data() for e in self.examples],
        }

    def assert_no_violation(self) -> None:
        """For pytest: fail with the minimal reproduction when an invariant was violated."""
        if self.status == "pass":
            return
        if self.minimal is not None:
            lines = [
                f"outlast explore found a violation ({len(self.failures)} failing example(s)); "
                f"minimal schedule ({len(self.minimal.schedule)} fault(s)): "
                f"{self.minimal.schedule.label()}",
                *(f"  {v.check}: {v.detail}" for v in self.minimal.violations),
                f"replay: outlast run {self.reproduction}",
            ]
            raise AssertionError("\n".join(lines))
        raise AssertionError(
            f"outlast explore could not decide: {self.error or 'interrupted'} "
            f"(see {self.explore_dir})"
        )


def database_key(envelope: Envelope) -> bytes:
    """Hypothesis database key: one per envelope, so its failures replay first next time."""
    digest = hashlib.sha256(json.dumps(envelope.to_data(), sort_keys=True).encode()).hexdigest()
    return f"outlast-explore/{envelope.name}/{digest[:16]}".encode()


def _seed_this_thread(seed: int) -> bool:
    """Seed Hypothesis's per-thread generator (this worker thread only); ``False`` if this
    Hypothesis version has none.

    ``find(random=...)``, ``@seed`` and ``derandomize`` all switch the example database off;
    seeding the generator Hypothesis draws a test's seed from keeps both: the same seed proposes
    the same schedules, and stored failures still replay first.
    """
    from hypothesis import core

    local = getattr(core, "threadlocal", None)
    if local is None or not hasattr(local, "_hypothesis_global_random"):
        return False
    local._hypothesis_global_random = Random(seed)
    return True


def _new_dir(report_dir: Path, envelope: Envelope) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = report_dir / f"{stamp}-explore-{envelope.name}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = report_dir / f"{stamp}-explore-{envelope.name}-{suffix}"
    path.mkdir(parents=True)
    return path


class Explorer:
    """One exploration: a stack, a Hypothesis search, the reproduction (see module docstring)."""

    def __init__(self, envelope: Envelope, options: ExploreOptions) -> None:
        self.envelope = envelope
        self.options = options
        self.seed = options.seed if options.seed is not None else Random().randrange(2**32)
        self.time_scale = options.time_scale or envelope.time_scale
        self.say: Progress = options.progress or (lambda _message: None)
        self.stack: LocalStack | None = None
        self.result: ExplorationResult | None = None
        self._memo: dict[str, ExampleOutcome] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._current: concurrent.futures.Future[ExampleOutcome] | None = None
        self._stopping = False
        self._fatal: BaseException | None = None
        self._best: ExampleOutcome | None = None
        self._shrink_runs = 0
        self._shrink_skipped = 0
        self._generated = 0
        self._consecutive_errors = 0
        self._stack_generation = 0

    # -- the stack ---------------------------------------------------------------------------

    def _template(self) -> Scenario:
        return to_scenario(
            Schedule(()), self.envelope, name="explore", seed=self.seed, time_scale=self.time_scale
        )

    async def _start_stack(self) -> LocalStack:
        self._stack_generation += 1
        state = self.options.state_dir.absolute() / "stack" / f"run-{self._stack_generation}"
        if state.exists():
            shutil.rmtree(state)
        stack = make_stack(self._template(), RunOptions(), state)
        assert isinstance(stack, LocalStack)
        self.stack = stack
        await stack.up()
        return stack

    async def _reset(self) -> float:
        """Reset to steady state; a stack that does not get there is replaced once."""
        assert self.stack is not None
        started = time.monotonic()
        try:
            await reset_stack(self.stack)
        except (SteadyStateError, OSError) as exc:
            self.say(f"  steady state not reached ({exc}); starting a fresh stack")
            assert self.result is not None
            self.result.stack_restarts += 1
            with contextlib.suppress(Exception):
                await asyncio.shield(self.stack.down())
            stack = await self._start_stack()
            await reset_stack(stack)
        return round(time.monotonic() - started, 3)

    # -- one example -------------------------------------------------------------------------

    def scenario_for(self, schedule: Schedule, name: str, description: str = "") -> Scenario:
        """The scenario that plays ``schedule`` with this exploration's seed and time scale."""
        return to_scenario(
            schedule,
            self.envelope,
            name=name,
            seed=self.seed,
            time_scale=self.time_scale,
            description=description,
        )

    async def play(
        self, schedule: Schedule, phase: Phase_, *, scenario: Scenario | None = None
    ) -> ExampleOutcome:
        """Reset, play ``schedule`` as a scenario in a fresh run directory, judge it."""
        assert self.result is not None and self.stack is not None
        index = len(self.result.examples) + 1
        reset_seconds = await self._reset()
        scenario = scenario or self.scenario_for(
            schedule,
            f"explore-{index:04d}",
            f"Example {index} of outlast explore (envelope {self.envelope.name}, "
            f"seed {self.seed}, {phase}): {schedule.label()}.",
        )
        run_dir = self.result.explore_dir / "examples" / f"{index:04d}"
        run_dir.mkdir(parents=True)
        save_scenario(scenario, run_dir / "scenario.yaml")
        journal = Journal(run_dir / "journal.jsonl")
        started = time.monotonic()
        status: Literal["completed", "aborted", "error"] = "completed"
        error: str | None = None
        try:
            await ScenarioRun(scenario, self.stack, journal, lambda _message: None).play()
        except asyncio.CancelledError:
            status, error = "aborted", "interrupted"
            raise
        except Exception as exc:
            status, error = "error", f"{type(exc).__name__}: {exc}"
        finally:
            journal.close(status, error)
        seconds = round(time.monotonic() - started, 3)
        report = await asyncio.to_thread(write_report, run_dir)
        checks = report.summary.get("checks", [])
        outcome = ExampleOutcome(
            index=index,
            phase=phase,
            schedule=schedule,
            verdict=report.verdict if error is None else "error",
            violations=violations(checks),
            undecided=undecided(checks),
            run_dir=run_dir,
            seconds=seconds,
            reset_seconds=reset_seconds,
            error=error,
        )
        self.result.examples.append(outcome)
        self._announce(outcome)
        if not outcome.violated and outcome.error is None and not self.options.keep_passing:
            shutil.rmtree(run_dir, ignore_errors=True)
            outcome.run_dir = None
        return outcome

    def _announce(self, outcome: ExampleOutcome) -> None:
        budget = self.options.budget
        tag = {
            "generate": f"{self.result.count('generate') if self.result else 0:>4}/{budget}",
            "shrink": "shrink",
            "confirm": "confirm",
        }[outcome.phase]
        if outcome.error:
            verdict = f"ERROR {outcome.error}"
        elif outcome.violated:
            verdict = "VIOLATION " + ", ".join(v.check for v in outcome.violations)
        else:
            verdict = "ok"
        self.say(
            f"[{tag:>9}] {len(outcome.schedule)} fault(s): {outcome.schedule.label()} -> "
            f"{verdict}  ({outcome.seconds:.1f} s + reset {outcome.reset_seconds:.1f} s)"
        )

    # -- the search (worker thread) ----------------------------------------------------------

    def _violates(self, schedule: Schedule) -> bool:
        """Hypothesis's condition; runs in the worker thread, plays on the event loop."""
        if self._stopping:
            raise ExplorationAborted
        key = schedule.key()
        if key in self._memo:
            return self._memo[key].violated
        best = self._best
        phase: Phase_ = "generate" if best is None else "shrink"
        if phase == "generate" and self._generated >= self.options.budget:
            raise BudgetSpent
        if best is not None and (
            schedule.size() >= best.schedule.size()
            or self._shrink_runs >= self.options.shrink_budget
        ):
            # Not simpler than the smallest failure so far, or the budget is spent: not run
            # (and not remembered). The answer stays the same if asked again, since the
            # smallest failure only gets smaller.
            self._shrink_skipped += 1
            return False
        assert self._loop is not None
        self._current = asyncio.run_coroutine_threadsafe(self.play(schedule, phase), self._loop)
        try:
            outcome = self._current.result()
        except concurrent.futures.CancelledError:
            raise ExplorationAborted from None
        except BaseException as exc:
            self._fatal = exc
            raise ExplorationAborted from None
        finally:
            self._current = None
        self._memo[key] = outcome
        if phase == "shrink":
            self._shrink_runs += 1
        else:
            self._generated += 1
        if outcome.error is not None:
            self._consecutive_errors += 1
            if self._consecutive_errors >= MAX_CONSECUTIVE_ERRORS:
                self._fatal = ExplorationError(
                    f"{MAX_CONSECUTIVE_ERRORS} examples in a row could not be played; "
                    f"last: {outcome.error}"
                )
                raise ExplorationAborted
        else:
            self._consecutive_errors = 0
        if outcome.violated and (best is None or outcome.schedule.size() < best.schedule.size()):
            if best is None:
                self.say(f"  violation found at example {outcome.index}; shrinking")
            self._best = outcome
        return outcome.violated

    def _search(self) -> Schedule | None:
        options = self.options
        database = DirectoryBasedExampleDatabase(str(options.state_dir.absolute() / "hypothesis"))
        search_settings = settings(
            # Hypothesis proposes some schedules twice (they are not replayed); the budget counts
            # distinct schedules played, and BudgetSpent ends generation when it is reached.
            max_examples=options.budget * 10,
            deadline=None,
            # Hypothesis's built-in "ci" profile (chosen when CI is set) derandomizes: every seed
            # would then propose the same schedules. The seed here is the user's, so say so.
            derandomize=False,
            database=database,
            phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink),
            suppress_health_check=list(HealthCheck),
            verbosity=Verbosity.quiet,
            report_multiple_bugs=False,
            print_blob=False,
        )
        seeded = _seed_this_thread(self.seed)
        try:
            return find(
                schedules(self.envelope),
                self._violates,
                settings=search_settings,
                random=None if seeded else Random(self.seed),
                database_key=database_key(self.envelope),
            )
        except (NoSuchExample, BudgetSpent):
            return None
        except ExplorationAborted:
            return None  # stopping, or self._fatal says why

    # -- the whole exploration ---------------------------------------------------------------

    async def run(self) -> ExplorationResult:
        """Explore; always stops the stack and writes ``explore.json``."""
        options = self.options
        explore_dir = _new_dir(options.report_dir, self.envelope)
        (explore_dir / "envelope.yaml").write_text(self.envelope.to_yaml(), encoding="utf-8")
        result = ExplorationResult(
            explore_dir, self.envelope, self.seed, options.budget, self.time_scale
        )
        self.result = result
        self._loop = asyncio.get_running_loop()
        started = time.monotonic()
        self.say(
            f"explore: envelope {self.envelope.name}, budget {options.budget}, seed {self.seed}, "
            f"time scale {self.time_scale:g}; output {explore_dir}"
        )
        executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="outlast-explore")
        search: concurrent.futures.Future[Schedule | None] | None = None
        try:
            await self._start_stack()
            self.say(f"explore: stack up in {self.stack.startup_seconds if self.stack else '?'} s")
            search = executor.submit(self._search)
            minimal = await asyncio.wrap_future(search)
            fatal = self._fatal
            if fatal is not None:
                raise fatal if isinstance(fatal, Exception) else ExplorationError(repr(fatal))
            if minimal is not None:
                await self._reproduce(minimal)
        except asyncio.CancelledError:
            result.interrupted = True
            raise
        except Exception as exc:
            result.error = f"{type(exc).__name__}: {exc}"
            self.say(f"explore: stopped: {result.error}")
        finally:
            self._stopping = True
            current = self._current
            if current is not None:
                current.cancel()
            if search is not None and not search.done():
                with contextlib.suppress(BaseException):  # the worker stops at its next step
                    await asyncio.wait([asyncio.wrap_future(search)], timeout=120)
            executor.shutdown(wait=False)
            if self.stack is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.stack.down())
            result.elapsed_s = time.monotonic() - started
            (explore_dir / "explore.json").write_text(
                json.dumps(result.to_data(), indent=2) + "\n", encoding="utf-8"
            )
        return result

    async def _reproduce(self, minimal: Schedule) -> None:
        """Confirm the minimal failing schedule (or the next-smallest) and write it out."""
        result = self.result
        assert result is not None
        # Hypothesis's minimum is the smallest failure in its own order; the smallest by
        # Schedule.size() (fewest faults, least faulted time, earliest) is what a person wants.
        found = self._best or self._memo[minimal.key()]
        self.say(
            f"explore: shrunk to {len(minimal)} fault(s) with {self._shrink_runs} shrink "
            f"example(s) ({self._shrink_skipped} proposal(s) not played: no simpler than the "
            "smallest failure, or over the shrink budget)"
        )
        failing = sorted(
            (o for o in self._memo.values() if o.violated and o.schedule != found.schedule),
            key=lambda o: o.schedule.size(),
        )
        chosen, report, reproduced = found, found.run_dir, (0, 0)
        for candidate in [found, *failing[:2]] if self.options.confirm else []:
            scenario = self._reproduction_scenario(candidate)
            runs: list[ExampleOutcome] = []
            for _ in range(self.options.confirm):
                runs.append(await self.play(candidate.schedule, "confirm", scenario=scenario))
                if not runs[-1].violated:
                    break
            hits = sum(o.violated for o in runs)
            reproduced = (hits, len(runs))
            if hits == self.options.confirm:
                chosen, report = candidate, runs[-1].run_dir
                break
            self.say(
                f"  {candidate.schedule.label()}: reproduced {hits}/{len(runs)}; "
                "trying the next-smallest failing schedule"
            )
        result.minimal = chosen
        result.confirmed = reproduced
        explore_dir = result.explore_dir
        result.reproduction = save_scenario(
            self._reproduction_scenario(chosen), explore_dir / f"{REPRODUCTION}.yaml"
        )
        if report is not None and report.exists():
            target = explore_dir / REPRODUCTION
            shutil.copytree(report, target)
            result.reproduction_report = target

    def _reproduction_scenario(self, outcome: ExampleOutcome) -> Scenario:
        return self.scenario_for(
            outcome.schedule,
            f"explore-{self.envelope.name}-minimal"[:64],
            f"Minimal reproduction found by outlast explore (envelope {self.envelope.name}, "
            f"seed {self.seed}): {outcome.schedule.label()} violates "
            f"{', '.join(v.check for v in outcome.violations)}. "
            f"Replay with: outlast run {REPRODUCTION}.yaml",
        )


async def explore(envelope: Envelope, options: ExploreOptions) -> ExplorationResult:
    """Run one exploration (see :class:`Explorer`)."""
    return await Explorer(envelope, options).run()
