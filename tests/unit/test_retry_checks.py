"""``retry_cadence`` and ``retry_discipline`` on synthetic journals: each passes on the
behaviour the connector promises and fails on the broken one."""

from __future__ import annotations

from harness.checks import run_check
from harness.journal.builder import JournalBuilder
from harness.probes.registration_log import parse_registration


def _outage_with_dials(per_second: float, *, seconds: float = 10.0) -> JournalBuilder:
    """Both links down from 10 s for ``seconds``; connector samples every 0.5 s whose failed-dial
    counter grows at ``per_second``."""
    journal = JournalBuilder()
    journal.fault(10.0, 10.0 + seconds, "link_down", "conn-ams")
    journal.fault(10.0, 10.0 + seconds, "link_down", "conn-fra")
    t = 0.0
    while t <= 30.0:
        dials = 0 if t < 10 else round((min(t, 10.0 + seconds) - 10.0) * per_second)
        journal.sample(
            t,
            "connector",
            "connector-web",
            {"tunnel": "web", "ha_connections": 0 if 10 <= t < 20 else 4, "dial_failures": dials},
        )
        t += 0.5
    journal.end(30.0)
    return journal


def test_retry_cadence_passes_for_slots_redialling_within_the_cap() -> None:
    # 4 slots with a 2 s cap and full jitter redial about every second: 4 dials a second
    result = run_check(_outage_with_dials(4.0).history(), "retry_cadence", {"cap": 2})
    assert result.passed is True, result.detail
    assert result.data["connectors"][0]["least"] == 8  # 4 slots x floor(6 s / 2.25 s)


def test_retry_cadence_fails_when_the_backoff_outgrows_its_cap() -> None:
    # a cap ten times too large: about one dial per slot in the 6 s after the warm-up
    result = run_check(_outage_with_dials(0.7).history(), "retry_cadence", {"cap": 2})
    assert result.passed is False
    assert "dialled 4 time(s)" in result.detail


def test_retry_cadence_is_undecided_when_the_outage_is_shorter_than_the_warmup() -> None:
    history = _outage_with_dials(4.0, seconds=3.0).history()
    assert run_check(history, "retry_cadence", {"cap": 2}).passed is None


def _attempt(
    journal: JournalBuilder,
    at: float,
    edge: str,
    event: str,
    *,
    slot: int = 3,
    retry_after: float | None = None,
    should_retry: bool = True,
) -> None:
    value = {
        "event": event,
        "at": 1_700_000_000.0 + at,
        "tunnel_id": "web-id",
        "connector_id": "c0ffee00-connector",
        "conn_index": slot,
    }
    if event == "refused":
        value.update(cause="unknown tunnel", should_retry=should_retry, retry_after=retry_after)
    journal.sample(at, "registration", edge, value)


def test_retry_discipline_passes_when_each_hint_is_waited_for() -> None:
    journal = JournalBuilder()
    for at in (1.0, 3.2, 5.4):
        _attempt(journal, at, "edge-fra", "refused", retry_after=2.0)
    _attempt(journal, 5.5, "edge-ams", "registered", slot=0)  # another slot: not judged
    _attempt(journal, 7.6, "edge-fra", "registered")
    journal.end(10.0)
    result = run_check(journal.history(), "retry_discipline")
    assert result.passed is True, result.detail
    assert result.data["hinted_refusals"] == 3


def test_retry_discipline_fails_on_a_slot_that_comes_back_early() -> None:
    journal = JournalBuilder()
    _attempt(journal, 1.0, "edge-fra", "refused", retry_after=2.0)
    _attempt(journal, 1.9, "edge-fra", "refused", retry_after=2.0)
    journal.end(10.0)
    result = run_check(journal.history(), "retry_discipline")
    assert result.passed is False
    assert "0.9s after a refusal (unknown tunnel) that said after 2.0s" in result.detail


def test_a_hint_is_the_refusing_edges_own() -> None:
    """Going to another PoP at once is allowed; coming back to the refusing one early is not."""
    journal = JournalBuilder()
    _attempt(journal, 1.0, "edge-fra", "refused", retry_after=2.0)
    _attempt(journal, 1.1, "edge-ams", "registered")
    journal.end(10.0)
    assert run_check(journal.history(), "retry_discipline").passed is True


def test_retry_discipline_fails_on_a_retry_after_a_permanent_refusal() -> None:
    journal = JournalBuilder()
    _attempt(journal, 1.0, "edge-fra", "refused", should_retry=False)
    _attempt(journal, 30.0, "edge-ams", "refused", should_retry=False)
    journal.end(40.0)
    result = run_check(journal.history(), "retry_discipline")
    assert result.passed is False
    assert "never (permanent refusal)" in result.detail


def test_retry_discipline_is_undecided_without_refusals() -> None:
    journal = JournalBuilder()
    _attempt(journal, 1.0, "edge-fra", "registered")
    journal.end(10.0)
    assert run_check(journal.history(), "retry_discipline").passed is None


def test_registration_lines_of_an_edge_log_become_samples() -> None:
    refused = (
        '{"time": "2026-12-03T17:39:59.665Z", "level": "warning", "component": "edge-fra", '
        '"message": "registration refused", "reason": "unknown_tunnel", "cause": "unknown '
        'tunnel", "should_retry": true, "retry_after": 2.0, "tunnel_id": "t", "connIndex": 3, '
        '"connector_id": "c", "attempt": 1}'
    )
    value = parse_registration(refused)
    assert value is not None
    assert value["event"] == "refused" and value["conn_index"] == 3
    assert value["retry_after"] == 2.0 and value["should_retry"] is True
    assert abs(value["at"] - 1796319599.665) < 1e-3
    assert parse_registration('{"time": "x", "message": "edge started"}') is None
    assert parse_registration("not json") is None
