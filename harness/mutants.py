"""Mutation testing of the reference: source-level bugs kept outside the tree.

Each mutant is a patch ``tests/mutants/<name>.patch`` (a unified diff against the repository
root, as ``git diff`` writes it) whose header, before the first ``diff --git`` line, says what
bug it models and what must catch it::

    Mutant: a connection that drops is never dialled again
    Caught-by: link-flap/reconnect_within
    Caught-by: link-flap/ha_restored

A mutant is applied to a temporary copy of the tree (the repository's tracked and untracked,
not ignored, files); ``outlast run`` is then started from that copy with ``PYTHONPATH`` pointing
at it, so every component the stack spawns imports the mutated code. ``python -m
harness.mutants [NAME...]`` (``scripts/mutants``) runs each mutant against the scenarios it names
(or the whole catalogue with ``--catalogue``) and prints ``caught NAME by SCENARIO/CHECK`` or
``missed NAME``, then ``N caught, M missed``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTANTS_DIR = ROOT / "tests" / "mutants"
SCENARIOS_DIR = ROOT / "scenarios"
SUFFIX = ".patch"


class MutantError(RuntimeError):
    """A mutant file is malformed, or its patch does not apply to the tree."""


@dataclass(frozen=True)
class Catch:
    """A scenario and the label of one of its checks that must fail against a mutant."""

    scenario: str
    check: str

    def __str__(self) -> str:
        return f"{self.scenario}/{self.check}"


@dataclass(frozen=True)
class Mutant:
    """One planted bug: its patch and what is expected to catch it."""

    name: str
    description: str
    caught_by: tuple[Catch, ...]
    path: Path

    @property
    def scenarios(self) -> list[str]:
        """The scenarios named by ``Caught-by``, in order, each once."""
        return list(dict.fromkeys(c.scenario for c in self.caught_by))

    def checks_of(self, scenario: str) -> frozenset[str]:
        """Labels of the checks of ``scenario`` that must fail against this mutant."""
        return frozenset(c.check for c in self.caught_by if c.scenario == scenario)


def load_mutant(path: Path) -> Mutant:
    """Parse a mutant's header (``Mutant:`` once, ``Caught-by:`` any number of times)."""
    description = ""
    caught: list[Catch] = []
    text = path.read_text()
    if "\ndiff --git " not in text:
        raise MutantError(f"{path}: no diff")
    for line in text.split("\ndiff --git ", 1)[0].splitlines():
        key, _, value = line.partition(":")
        value = value.strip()
        if key == "Mutant":
            description = value
        elif key == "Caught-by":
            scenario, slash, check = value.partition("/")
            if not slash or not scenario or not check:
                raise MutantError(f"{path}: Caught-by must be SCENARIO/CHECK, got {value!r}")
            caught.append(Catch(scenario.strip(), check.strip()))
    if not description:
        raise MutantError(f"{path}: no 'Mutant:' line describing the bug")
    return Mutant(path.name.removesuffix(SUFFIX), description, tuple(caught), path)


def load_mutants(directory: Path = MUTANTS_DIR) -> dict[str, Mutant]:
    """Every mutant in ``directory`` by name, sorted."""
    return {m.name: m for m in (load_mutant(p) for p in sorted(directory.glob(f"*{SUFFIX}")))}


def copy_tree(source: Path, destination: Path) -> None:
    """Copy the files git knows of under ``source`` (tracked, or untracked but not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=source,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        origin = source / name
        if not origin.is_file():  # deleted in the work tree but still in the index
            continue
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(origin, target)


def apply_mutant(mutant: Mutant, tree: Path) -> None:
    """Apply ``mutant``'s patch to the copy at ``tree`` (MutantError if it does not apply)."""
    result = subprocess.run(
        ["git", "apply", "--whitespace=nowarn", str(mutant.path)],
        cwd=tree,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise MutantError(f"mutant {mutant.name} does not apply: {result.stderr.strip()}")


@contextlib.contextmanager
def mutated_tree(names: Sequence[str], *, source: Path = ROOT) -> Iterator[Path]:
    """A temporary copy of ``source`` with the named mutants applied (none: a clean copy)."""
    mutants = load_mutants()
    with tempfile.TemporaryDirectory(prefix="outlast-mutant-") as scratch:
        tree = Path(scratch) / "tree"
        copy_tree(source, tree)
        for name in names:
            if name not in mutants:
                raise MutantError(f"no mutant named {name!r}; known: {', '.join(mutants)}")
            apply_mutant(mutants[name], tree)
        yield tree


def tree_env(tree: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment under which ``python -m harness`` (and all it spawns) imports ``tree``."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join([str(tree), *filter(None, [env.get("PYTHONPATH")])])
    return env


def run_in_tree(
    tree: Path, argv: Sequence[str], *, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` from ``tree`` with its code first on the path; on timeout interrupt it
    (SIGINT to its process group: faults undone, stack stopped), then kill it, and raise
    ``subprocess.TimeoutExpired``."""
    proc = subprocess.Popen(
        list(argv),
        cwd=tree,
        env=tree_env(tree, env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
        raise
    return subprocess.CompletedProcess(list(argv), proc.returncode, stdout, stderr)


def run_with_mutants(
    argv: Sequence[str],
    names: Sequence[str],
    *,
    timeout: float,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (e.g. ``outlast_argv("run", ...)``) on the tree as it is when ``names`` is
    empty, else from a temporary copy with those mutants applied."""
    if not names:
        return subprocess.run(
            list(argv), capture_output=True, text=True, env=env, timeout=timeout, check=False
        )
    with mutated_tree(names) as tree:
        return run_in_tree(tree, argv, timeout=timeout, env=env)


# --- the runner ----------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one mutant's run showed."""

    mutant: Mutant
    caught_by: list[str] = field(default_factory=list)
    problem: str | None = None
    seconds: float = 0.0

    @property
    def caught(self) -> bool:
        return bool(self.caught_by)

    def line(self) -> str:
        took = f"({self.seconds:.0f} s)"
        if self.caught:
            expected = {str(c) for c in self.mutant.caught_by}
            note = ""
            if expected and not expected & set(self.caught_by):
                note = f" [expected {', '.join(sorted(expected))}]"
            return f"caught {self.mutant.name} by {', '.join(self.caught_by)}{note} {took}"
        reason = f": {self.problem}" if self.problem else ""
        return f"missed {self.mutant.name}{reason} {took}"


def failed_checks(report_dir: Path) -> list[str]:
    """``SCENARIO/CHECK`` of every failed check in the run summaries under ``report_dir``."""
    found = []
    for summary_file in sorted(report_dir.glob("*/summary.json")):
        summary = json.loads(summary_file.read_text())
        for check in summary["checks"]:
            if check["passed"] is False:
                found.append(f"{summary['scenario']}/{check['name']}")
    return found


def scenario_seconds(names: Sequence[str], speed: float) -> float:
    """Rough wall time of ``outlast run`` of ``names``: timelines at ``speed`` plus start/stop."""
    from harness.scenario import load_scenario

    return sum(load_scenario(SCENARIOS_DIR / f"{n}.yaml").real_duration / speed + 10 for n in names)


def run_mutant(
    mutant: Mutant,
    scenarios: Sequence[str],
    *,
    speed: float = 2.0,
    timeout: float | None = None,
    keep: Path | None = None,
) -> Outcome:
    """Apply ``mutant`` to a copy of the tree and play ``scenarios`` there."""
    outcome = Outcome(mutant)
    if not scenarios:
        outcome.problem = "names no scenario (Caught-by) to run"
        return outcome
    started = time.monotonic()
    limit = timeout if timeout is not None else 2 * scenario_seconds(scenarios, speed) + 60
    try:
        with mutated_tree([mutant.name]) as tree:
            reports = (keep / mutant.name) if keep else tree.parent / "reports"
            argv = [
                sys.executable,
                "-m",
                "harness",
                "run",
                *(str(tree / "scenarios" / f"{n}.yaml") for n in scenarios),
                "--speed",
                f"{speed:g}",
                "--report-dir",
                str(reports),
                "-q",
            ]
            try:
                result = run_in_tree(tree, argv, timeout=limit)
            except subprocess.TimeoutExpired:
                outcome.problem = f"run killed after {limit:.0f} s (hung)"
                return outcome
            outcome.caught_by = failed_checks(reports)
            if not outcome.caught_by and result.returncode not in (0, 1):
                tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
                outcome.problem = f"run exited {result.returncode} without a verdict: {tail}"
    except MutantError as exc:
        outcome.problem = str(exc)
    finally:
        outcome.seconds = time.monotonic() - started
    return outcome


def main(argv: Sequence[str] | None = None) -> int:
    """``scripts/mutants``: exit 0 when every mutant run is caught, 1 otherwise."""
    parser = argparse.ArgumentParser(prog="scripts/mutants", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument(
        "--catalogue", action="store_true", help="run the whole catalogue against each mutant"
    )
    parser.add_argument("--speed", type=float, default=2.0, help="outlast run --speed (2)")
    parser.add_argument("--timeout", type=float, help="seconds per mutant before it is killed")
    parser.add_argument("--keep", type=Path, help="keep each mutant's reports under this dir")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument(
        "--copy", type=Path, help="only write a copy of the tree with NAMEs applied to this dir"
    )
    args = parser.parse_args(argv)
    mutants = load_mutants()
    if args.copy is not None:
        copy_tree(ROOT, args.copy)
        for name in args.names:
            apply_mutant(mutants[name], args.copy)
        print(f"cd {args.copy} && PYTHONPATH=$PWD {sys.executable} -m harness run ...")
        return 0
    if args.list:
        for mutant in mutants.values():
            expected = ", ".join(str(c) for c in mutant.caught_by) or "-"
            print(f"{mutant.name}: {mutant.description} [{expected}]")
        return 0
    unknown = [n for n in args.names if n not in mutants]
    if unknown:
        parser.error(f"no mutant named {', '.join(unknown)}; known: {', '.join(mutants)}")
    catalogue = sorted(p.stem for p in SCENARIOS_DIR.glob("*.yaml"))
    caught = missed = 0
    for name in args.names or list(mutants):
        mutant = mutants[name]
        outcome = run_mutant(
            mutant,
            catalogue if args.catalogue else mutant.scenarios,
            speed=args.speed,
            timeout=args.timeout,
            keep=args.keep,
        )
        print(outcome.line(), flush=True)
        caught, missed = caught + outcome.caught, missed + (not outcome.caught)
    print(f"{caught} caught, {missed} missed")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
