"""The peer connector's reconnect policy model (bench/peer_policy.py) follows its algorithm."""

from __future__ import annotations

import random

import pytest

from bench.common import percentile, summarize
from bench.peer_policy import (
    BackoffHandler,
    LinkFault,
    PeerPolicy,
    predict,
    simulate,
)


class FixedRandom(random.Random):
    """``uniform(a, b)`` always answers ``b`` (the bound), to read the schedule's bounds."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_per_connection_bounds_double_from_2s_to_a_32s_cap() -> None:
    handler = BackoffHandler(base=1.0, max_retries=5, reset_deadline=-1.0)
    bounds = [handler.timer(float(t), FixedRandom()) for t in range(8)]
    assert bounds == [2.0, 4.0, 8.0, 16.0, 32.0, 32.0, 32.0, 32.0]


def test_waits_are_full_jitter_below_the_bound() -> None:
    rng = random.Random(7)
    waits = []
    for _ in range(2000):
        handler = BackoffHandler(base=1.0, max_retries=5, reset_deadline=-1.0)
        waits.append(handler.timer(0.0, rng))
    assert all(0.0 <= w < 2.0 for w in waits)
    assert 0.9 < sum(waits) / len(waits) < 1.1  # U(0, 2): mean 1
    assert min(waits) < 0.1 and max(waits) > 1.9


def test_registering_resets_the_schedule_after_the_deadline() -> None:
    handler = BackoffHandler(base=1.0, max_retries=5)
    for t in range(4):
        handler.timer(float(t), FixedRandom())
    assert handler.retries == 4
    handler.reset_now(10.0)
    assert handler.max_backoff(10.5) == 1.0  # what cloudflared logs right after a drop
    assert handler.timer(10.5, FixedRandom()) == 2.0


def test_grace_period_keeps_the_count_until_it_expires() -> None:
    handler = BackoffHandler(base=10.0, max_retries=5)
    handler.timer(0.0, FixedRandom())
    handler.timer(1.0, FixedRandom())
    handler.set_grace_period(2.0, FixedRandom())  # deadline 2 + 10 * 2**4 = 162
    assert handler.reset_deadline == 162.0
    assert handler.timer(100.0, FixedRandom()) == 80.0  # still counting: 10 * 2**3
    assert handler.timer(200.0, FixedRandom()) == 20.0  # reset, then 10 * 2**1


def test_first_retry_after_a_drop_waits_both_layers() -> None:
    # Bounds only: per-connection U(0, 2) then the supervisor's U(0, 20): the first dial after
    # a drop at 0 happens at 22 s; the fault healed at 1 s, so that dial succeeds 21 s later.
    result = simulate(LinkFault(duration=1.0), connections=1, rng=FixedRandom())
    assert result.first == pytest.approx(21.0)
    assert result.attempts == 1


def test_without_the_supervisor_layer_only_per_connection_backoff_remains() -> None:
    policy = PeerPolicy(supervisor=False)
    result = simulate(LinkFault(duration=1.0), connections=1, rng=FixedRandom(), policy=policy)
    assert result.first == pytest.approx(1.0)  # the dial at 2 s, 1 s after the heal


def test_failed_attempts_climb_the_schedule() -> None:
    # Bounds, no supervisor: dials at 2, 2+4=6, 6+8=14, 14+16=30; heal at 20 -> 10 s later.
    policy = PeerPolicy(supervisor=False)
    result = simulate(LinkFault(duration=20.0), connections=1, rng=FixedRandom(), policy=policy)
    assert result.first == pytest.approx(10.0)
    assert result.attempts == 4


def test_a_black_hole_dial_costs_the_dial_timeout() -> None:
    policy = PeerPolicy(supervisor=False)
    # Detected at 3 s; dial at 3+2=5 hangs until 20; then 20+4=24, after the heal at 10.
    fault = LinkFault(duration=10.0, detection=3.0, attempt_failure=15.0)
    result = simulate(fault, connections=1, rng=FixedRandom(), policy=policy)
    assert result.first == pytest.approx(14.0)


def test_a_fault_shorter_than_its_detection_drops_nothing() -> None:
    result = simulate(LinkFault(duration=2.0, detection=3.0), 2, random.Random(1))
    assert result.dropped is False
    assert result.first == result.last == 0.0


def test_the_shared_supervisor_timer_brings_connections_back_together() -> None:
    results = predict([LinkFault(duration=5.0)] * 300, connections=2, seed=3)
    assert all(r.last >= r.first >= 0.0 for r in results)
    # One shared timer fires for every queued index, so most trials restore both at once.
    together = sum(1 for r in results if r.last - r.first < 1e-9)
    assert together > 150


def test_predictions_are_reproducible_and_far_slower_than_two_seconds() -> None:
    faults = [LinkFault(duration=d) for d in (4.0, 5.5, 7.0, 8.0)] * 50
    first = predict(faults, connections=2, seed=11)
    assert first == predict(faults, connections=2, seed=11)
    served = summarize([r.first for r in first])
    assert served["p50"] is not None and served["p50"] > 2.0
    assert served["max"] is not None and served["max"] < 32.0 + 320.0 + 8.0


def test_invalid_faults_are_refused() -> None:
    with pytest.raises(ValueError, match="duration > 0"):
        LinkFault(duration=0.0)
    with pytest.raises(ValueError, match="at least one connection"):
        simulate(LinkFault(duration=1.0), 0, random.Random(0))


def test_percentile_is_nearest_rank() -> None:
    assert percentile([1.0, 2.0], 0.5) == 1.0
    assert percentile([3.0, 1.0, 2.0], 1.0) == 3.0
    assert percentile(list(map(float, range(1, 101))), 0.99) == 99.0
    assert summarize([])["p99"] is None
