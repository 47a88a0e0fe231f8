"""Properties of checks and the numbers reports are built from."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.checks import combine, run_check
from harness.checks.windows import merge, overlaps, total
from harness.journal import JournalBuilder
from harness.report.sla import nearest_rank
from harness.scenario.durations import format_duration, parse_duration

PHASES = st.sampled_from(["ok", "fail", "info"])
OUTCOMES = st.lists(PHASES, min_size=1, max_size=60)


def availability_of(phases: list[str], **params: object) -> float | None:
    b = JournalBuilder()
    for i, phase in enumerate(phases):
        b.request(i * 0.1, phase, latency=None if phase == "info" and i % 2 else 0.01)
    result = run_check(b.history(), "availability", {"min": 0.0, **params})
    value = result.data.get("availability")
    assert result.passed in (True, None)
    return None if value is None else float(value)


@settings(max_examples=60, deadline=None)
@given(OUTCOMES)
def test_availability_is_a_fraction_and_undecided_only_without_decided_ops(
    phases: list[str],
) -> None:
    value = availability_of(phases)
    if all(p == "info" for p in phases):
        assert value is None
    else:
        assert value is not None and 0.0 <= value <= 1.0


@settings(max_examples=60, deadline=None)
@given(OUTCOMES, st.integers(min_value=1, max_value=10))
def test_adding_successful_requests_never_lowers_availability(
    phases: list[str], extra: int
) -> None:
    before = availability_of(phases)
    after = availability_of(phases + ["ok"] * extra)
    assert after is not None
    assert before is None or after >= before - 1e-12


@settings(max_examples=60, deadline=None)
@given(OUTCOMES, st.integers(min_value=1, max_value=10))
def test_indeterminate_requests_do_not_move_availability_when_excluded(
    phases: list[str], extra: int
) -> None:
    assert availability_of(phases) == availability_of(phases + ["info"] * extra)


@settings(max_examples=60, deadline=None)
@given(OUTCOMES)
def test_counting_info_as_failure_never_raises_availability(phases: list[str]) -> None:
    excluded = availability_of(phases)
    pessimistic = availability_of(phases, info="fail")
    if excluded is not None:
        assert pessimistic is not None and pessimistic <= excluded + 1e-12


@given(st.lists(st.sampled_from([True, False, None]), max_size=8))
def test_verdict_priority_false_over_unknown_over_true(outcomes: list[bool | None]) -> None:
    value = combine(outcomes)
    if False in outcomes:
        assert value == "fail"
    elif None in outcomes or not outcomes:
        assert value == "unknown"
    else:
        assert value == "pass"


@given(
    st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=50),
    st.floats(min_value=0.01, max_value=1.0),
    st.floats(min_value=0.01, max_value=1.0),
)
def test_nearest_rank_is_a_sample_and_monotonic(values: list[float], q1: float, q2: float) -> None:
    ordered = sorted(values)
    low, high = sorted((q1, q2))
    assert nearest_rank(ordered, low) in ordered
    assert nearest_rank(ordered, low) <= nearest_rank(ordered, high)
    assert nearest_rank(ordered, 1.0) == ordered[-1]


def test_nearest_rank_known_values() -> None:
    values = [float(v) for v in range(1, 101)]
    assert nearest_rank(values, 0.95) == 95.0
    assert nearest_rank(values, 0.5) == 50.0
    assert nearest_rank(values, 0.99) == 99.0


INTERVALS = st.lists(
    st.tuples(st.integers(0, 1000), st.integers(0, 200)).map(lambda p: (p[0], p[0] + p[1])),
    max_size=12,
)


@given(INTERVALS, st.integers(0, 1300))
def test_merge_preserves_membership(intervals: list[tuple[int, int]], point: int) -> None:
    merged = merge(intervals)
    inside = any(start <= point < end for start, end in intervals)
    assert any(start <= point < end for start, end in merged) == inside
    assert overlaps(merged, point, point) == inside
    assert all(a[1] < b[0] for a, b in pairwise(merged))
    assert total(merged) <= sum(end - start for start, end in intervals)


@given(st.integers(min_value=0, max_value=10 * 24 * 3600 * 1000))
def test_durations_round_trip_through_their_text(millis: int) -> None:
    seconds = millis / 1000
    assert parse_duration(format_duration(seconds)) == seconds
