"""Generated schedules stay inside their envelope, make valid scenarios, and shrink well."""

from __future__ import annotations

from hypothesis import HealthCheck, find, given, settings

from harness.explore import Schedule, load_envelope, parse_envelope, schedules, to_scenario
from harness.explore.schedule import max_active

DEFAULT = load_envelope()
TIGHT = parse_envelope(
    """
name: tight
horizon: 8s
step: 500ms
faults_per_schedule: [2, 4]
max_overlap: 1
faults:
  - {fault: link_latency, targets: [conn-fra], for: [1s, 2s], params: {latency: [50ms, 200ms]}}
  - {fault: kill, targets: ["connector-*", origin], for: [500ms, 8s], params: {signal: [KILL]}}
  - {fault: pop_outage, targets: ["*"], for: 3s}
"""
)


def assert_inside(schedule: Schedule, envelope_name: str) -> None:
    envelope = DEFAULT if envelope_name == "default" else TIGHT
    rules = {rule.fault: rule for rule in envelope.faults}
    assert 1 <= len(schedule) <= envelope.faults_per_schedule[1]
    step = envelope.step
    for fault in schedule.faults:
        rule = rules[fault.fault]
        assert fault.target in (rule.expand_targets(envelope.stack) or (None,))
        start, end = fault.window(step)
        assert 0 <= start and end <= envelope.horizon + 1e-9
        assert abs(start / step - round(start / step)) < 1e-9
        if rule.duration is None:
            assert fault.duration is None
        else:
            assert fault.duration is not None
            assert rule.duration[0] - 1e-9 <= fault.duration <= rule.duration[1] + 1e-9
        for key, value in fault.params:
            assert value in rule.param_choices()[key]
    windows = [f.window(step) for f in schedule.faults]
    assert max_active(windows) <= envelope.max_overlap
    for i, a in enumerate(schedule.faults):
        for b in schedule.faults[i + 1 :]:
            (s1, e1), (s2, e2) = a.window(step), b.window(step)
            if s1 < e2 and s2 < e1:
                assert not a.resources(envelope.stack) & b.resources(envelope.stack)
    assert [f.at for f in schedule.faults] == sorted(f.at for f in schedule.faults)
    scenario = to_scenario(schedule, envelope, name="explore-0001", seed=1, time_scale=0.25)
    assert len(scenario.timeline) == len(schedule)


@settings(max_examples=150, deadline=None)
@given(schedules(DEFAULT))
def test_default_envelope_schedules_stay_inside(schedule: Schedule) -> None:
    assert_inside(schedule, "default")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(schedules(TIGHT))
def test_tight_envelope_schedules_stay_inside(schedule: Schedule) -> None:
    assert_inside(schedule, "tight")


def quick() -> settings:
    return settings(max_examples=300, database=None, deadline=None)


def test_one_fault_bugs_shrink_to_the_simplest_such_fault() -> None:
    minimal = find(
        schedules(DEFAULT),
        lambda s: any(f.fault == "pause" for f in s.faults),
        settings=quick(),
    )
    assert minimal.label() == "pause edge-ams at 0s for 2s"


def test_two_fault_bugs_shrink_to_the_two_faults() -> None:
    def restart_during_broker_outage(schedule: Schedule) -> bool:
        outages = [f for f in schedule.faults if f.fault == "broker_outage"]
        restarts = [f for f in schedule.faults if f.fault == "restart"]
        return any(o.at <= r.at < o.at + (o.duration or 0) for o in outages for r in restarts)

    minimal = find(schedules(DEFAULT), restart_during_broker_outage, settings=quick())
    assert len(minimal) == 2
    assert {f.fault for f in minimal.faults} == {"broker_outage", "restart"}
    outage = next(f for f in minimal.faults if f.fault == "broker_outage")
    assert outage.duration == 5.0 and outage.at == 0.0
