"""The scenario catalogue end to end: every scenario passes on the reference system, and fails
against the mutant its description names (a check that cannot fail proves nothing).

All runs play at ``--speed 2`` (each scenario twice as fast as its own time scale) and run in a
few parallel lanes of sequential ``outlast run`` invocations: the reference catalogue in two
invocations (several scenarios each, which also writes the catalogue page), each mutant in its
own, from a temporary copy of the tree with the mutant applied (harness/mutants.py).
``OUTLAST_CATALOGUE_LANES`` (default 3) sets the parallelism; on 2 cores the whole file takes
about 3 minutes.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.mutants import load_mutants, run_with_mutants
from harness.scenario import load_scenario
from harness.stack.process import outlast_argv

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
SPEED = "2"

# scenario -> the mutant (tests/mutants/) it is tested against; the checks that must fail are
# the mutant's Caught-by lines for that scenario.
MUTANT_OF: dict[str, str] = {
    "broker-outage": "edge.registration_needs_broker",
    "token-rollover": "controlplane.keep_rolled_token",
    "credential-revocation": "connector.retry_permanent_errors",
    "link-flap": "connector.no_reconnect",
    "link-blackhole": "wire.no_heartbeat",
    "degraded-link": "edge.short_response_timeout",
    "pop-outage": "connector.pinned_pops",
    "edge-restart-during-outage": "edge.forget_cache",
    "pop-partition": "edge.no_forwarding",
    "connector-restart-replicas": "edge.replicas_share_indexes",
    "fresh-pop-during-outage": "broker.no_persistence",
    "all-pops-unreachable": "connector.gives_up_after_dials",
}
MUTANTS = load_mutants()
# The reference run also replays the first scenario (its defects: test_run_scenario.py).
# fresh-pop-without-config's mutant runs in test_mutants_fast.py.
REFERENCE = ["control-plane-outage", "fresh-pop-without-config", *MUTANT_OF]


@dataclass
class Invocation:
    """One ``outlast run`` of some scenarios, on the tree or a copy with a mutant applied."""

    key: str
    scenarios: Sequence[str]
    mutant: str | None = None
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0
    report_dir: Path | None = None
    summaries: dict[str, dict] = field(default_factory=dict)

    @property
    def estimate(self) -> float:
        """Expected wall seconds: the scenarios' timelines at --speed plus stack start/stop."""
        total = 0.0
        for name in self.scenarios:
            scenario = load_scenario(SCENARIOS / f"{name}.yaml")
            total += scenario.real_duration / float(SPEED) + 8
        return total

    def run(self, report_dir: Path) -> Invocation:
        out = self.report_dir = report_dir / self.key
        argv = outlast_argv(
            "run",
            *(str(SCENARIOS / f"{name}.yaml") for name in self.scenarios),
            "--speed",
            SPEED,
            "--report-dir",
            str(out),
            "-q",
        )
        started = time.monotonic()
        mutants = [self.mutant] if self.mutant else []
        result = run_with_mutants(argv, mutants, timeout=600)
        self.seconds = time.monotonic() - started
        self.returncode, self.stdout, self.stderr = result.returncode, result.stdout, result.stderr
        for summary_file in out.glob("*/summary.json"):
            summary = json.loads(summary_file.read_text())
            self.summaries[summary["scenario"]] = summary
        return self

    def explain(self) -> str:
        return f"{self.key}: exit {self.returncode}\n{self.stdout}\n{self.stderr[-3000:]}"


def _lanes(jobs: list[Invocation], count: int) -> list[list[Invocation]]:
    """Longest job first, each to the least loaded lane."""
    lanes: list[list[Invocation]] = [[] for _ in range(count)]
    loads = [0.0] * count
    for job in sorted(jobs, key=lambda j: -j.estimate):
        i = loads.index(min(loads))
        lanes[i].append(job)
        loads[i] += job.estimate
    return [lane for lane in lanes if lane]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Invocation]]:
    report_dir = tmp_path_factory.mktemp("catalogue")
    half = len(REFERENCE) // 2
    jobs = [
        Invocation("reference-a", REFERENCE[:half]),
        Invocation("reference-b", REFERENCE[half:]),
        *(Invocation(f"mutant-{name}", [name], mutant) for name, mutant in MUTANT_OF.items()),
    ]
    lanes = _lanes(jobs, int(os.environ.get("OUTLAST_CATALOGUE_LANES", "3")))
    started = time.monotonic()

    def play(index: int) -> None:
        time.sleep(3 * index)  # stagger the first stack starts (CPU bursts)
        for job in lanes[index]:
            job.run(report_dir)

    with ThreadPoolExecutor(len(lanes)) as pool:
        list(pool.map(play, range(len(lanes))))
    elapsed = time.monotonic() - started
    print(f"catalogue: {len(jobs)} invocations in {len(lanes)} lanes, {elapsed:.0f} s")
    for job in jobs:
        print(f"  {job.key}: {job.seconds:.0f} s (estimated {job.estimate:.0f} s)")
    yield {job.key: job for job in jobs}


def _failed(summary: dict) -> set[str]:
    return {c["name"] for c in summary["checks"] if c["passed"] is False}


@pytest.mark.parametrize("key", ["reference-a", "reference-b"])
def test_catalogue_passes_on_the_reference(runs: dict[str, Invocation], key: str) -> None:
    run = runs[key]
    assert run.returncode == 0, run.explain()
    assert sorted(run.summaries) == sorted(run.scenarios), run.explain()
    for name, summary in run.summaries.items():
        assert summary["verdict"] == "pass", (name, summary["checks"])
    # Several scenarios in one run: the SLA table across them, as Markdown and HTML.
    assert run.report_dir is not None
    markdown_pages = list(run.report_dir.glob("catalogue-*.md"))
    html_pages = list(run.report_dir.glob("catalogue-*.html"))
    assert len(markdown_pages) == len(html_pages) == 1, run.explain()
    markdown, html = markdown_pages[0].read_text(), html_pages[0].read_text()
    for name in run.scenarios:
        assert f"| {name} | pass |" in markdown, markdown
        assert f"<td>{name}</td>" in html
    assert "worst TTR s" in markdown and "error budget" in html


@pytest.mark.parametrize("scenario", sorted(MUTANT_OF))
def test_scenario_fails_against_its_mutant(runs: dict[str, Invocation], scenario: str) -> None:
    mutant = MUTANT_OF[scenario]
    must_fail = MUTANTS[mutant].checks_of(scenario)
    assert must_fail, f"{mutant} names no check of {scenario}"
    run = runs[f"mutant-{scenario}"]
    assert run.returncode == 1, run.explain()
    summary = run.summaries[scenario]
    assert summary["verdict"] == "fail"
    assert must_fail <= _failed(summary), (mutant, summary["checks"])
    for label in must_fail:
        assert f"[FAIL] {label}:" in run.stdout
