"""Schedules: the repair rules, the scenario a schedule becomes, invariants fitted to it."""

from __future__ import annotations

from pathlib import Path

from harness.explore import PlannedFault, Schedule, admit, load_envelope
from harness.explore.invariants import checks_for, isolated_pop_faults
from harness.explore.schedule import max_active, to_scenario
from harness.scenario import load_scenario, save_scenario

ENVELOPE = load_envelope()
POPS = ("ams", "fra")


def pf(fault: str, target: str | None, at: float, duration: float | None, **params: object):
    return PlannedFault.make(fault, target, at, duration, params)


def test_admit_keeps_a_valid_schedule_in_time_order() -> None:
    drawn = [pf("link_down", "conn-fra", 10, 5), pf("controlplane_outage", None, 0, 20)]
    schedule = admit(drawn, ENVELOPE)
    assert [f.fault for f in schedule.faults] == ["controlplane_outage", "link_down"]
    assert schedule.dropped == 0


def test_admit_drops_a_second_fault_on_the_same_thing_at_the_same_time() -> None:
    drawn = [
        pf("link_down", "conn-ams", 0, 10),
        pf("link_blackhole", "conn-ams", 5, 10),  # same link, overlapping: dropped
        pf("link_blackhole", "conn-ams", 10, 5),  # same link, after: kept (half-open windows)
        pf("broker_outage", None, 0, 10, mode="stop"),
        pf("broker_outage", None, 3, 2, mode="links"),  # same broker: dropped
        pf("restart", "edge-ams", 2, None),  # a different component of the same PoP: kept
    ]
    schedule = admit(drawn, ENVELOPE.model_copy(update={"max_overlap": 5}))
    assert schedule.dropped == 2
    assert [f.label() for f in schedule.faults] == [
        "broker_outage at 0s for 10s (mode=stop)",
        "link_down conn-ams at 0s for 10s",
        "restart edge-ams at 2s",
        "link_blackhole conn-ams at 10s for 5s",
    ]


def test_admit_limits_overlap() -> None:
    drawn = [
        pf("link_down", "conn-ams", 0, 10),
        pf("link_down", "conn-fra", 2, 10),
        pf("controlplane_outage", None, 4, 10),  # would be the third at once: dropped
        pf("restart", "edge-ams", 12, None),  # conn-fra still down: two at once, kept
    ]
    schedule = admit(drawn, ENVELOPE)
    assert [f.fault for f in schedule.faults] == ["link_down", "link_down", "restart"]
    assert max_active(f.window(ENVELOPE.step) for f in schedule.faults) == 2


def test_max_active_counts_half_open_windows() -> None:
    assert max_active([(0, 1), (1, 2), (2, 3)]) == 1
    assert max_active([(0, 3), (1, 2), (1.5, 4)]) == 3
    assert max_active([]) == 0


def test_schedule_key_and_size() -> None:
    a = Schedule((pf("link_down", "conn-ams", 0, 2), pf("restart", "edge-fra", 1, None)))
    b = Schedule((pf("link_down", "conn-ams", 0, 2), pf("restart", "edge-fra", 1, None)))
    assert a.key() == b.key() and a == b
    assert a.size() == (2, 2.0, 1.0)
    assert a.end(1.0) == 2.0


def test_to_scenario_adds_lead_in_and_settle_in_scenario_seconds(tmp_path: Path) -> None:
    schedule = Schedule(
        (pf("controlplane_outage", None, 0, 10, mode="links"), pf("restart", "edge-ams", 5, None))
    )
    scenario = to_scenario(schedule, ENVELOPE, name="explore-0001", seed=3, time_scale=0.5)
    # lead-in 2 s real = 4 scenario s at 0.5; settle 12 s real = 24 scenario s
    assert [(e.at, e.duration) for e in scenario.timeline] == [(4.0, 10.0), (9.0, None)]
    assert scenario.duration == 4 + 10 + 24
    assert scenario.real_duration == 19.0
    assert scenario.timeline[0].params.model_dump() == {"mode": "links"}
    assert scenario.stack == ENVELOPE.stack and scenario.traffic == ENVELOPE.traffic
    path = save_scenario(scenario, tmp_path / "s.yaml")
    assert load_scenario(path) == scenario


def test_failover_is_judged_only_for_isolated_pop_faults() -> None:
    bound, grace = 10.0, 5.0
    faults = [
        pf("link_blackhole", "conn-ams", 0, 20),  # nothing else near: judged
        pf("controlplane_outage", None, 5, 10),  # independent of the data plane
        pf("link_down", "conn-fra", 40, 20),  # other PoP's fault overlaps it:
        pf("pause", "edge-ams", 50, 20),  # neither is judged
        pf("link_latency", "conn-ams", 80, 20, latency=0.1),  # latency leaves the PoP usable
    ]
    isolated = isolated_pop_faults(
        faults,
        POPS,
        kinds=("link_down", "link_blackhole", "pause"),
        bound=bound,
        grace=grace,
        step=1,
    )
    assert [f.target for f in isolated] == ["conn-ams"]
    # a fault on the other PoP that ended within the grace period still disturbs
    near = [pf("link_down", "conn-fra", 0, 5), pf("link_down", "conn-ams", 8, 20)]
    assert isolated_pop_faults(near, POPS, kinds=("link_down",), bound=10, grace=5, step=1) == []
    # a fault on the same PoP does not
    same = [pf("link_down", "conn-ams", 0, 20), pf("restart", "edge-ams", 5, None)]
    assert len(isolated_pop_faults(same, POPS, kinds=("link_down",), bound=10, grace=5, step=1))
    # one PoP: nowhere to fail over to
    assert isolated_pop_faults(same, ("ams",), kinds=("link_down",), bound=1, grace=1, step=1) == []


def test_checks_for_expands_failover_per_judged_fault() -> None:
    schedule = [
        pf("link_blackhole", "conn-ams", 0, 30),
        pf("restart", "edge-fra", 60, None),
        pf("link_down", "conn-fra", 80, 30),
        pf("link_down", "conn-fra", 120, 2),
        pf("restart", "edge-ams", 123, None),  # disturbs the second conn-fra drop
    ]
    checks = checks_for(ENVELOPE.invariants, schedule, POPS, time_scale=0.5, step=1)
    failover = [c for c in checks if c.name == "failover_within"]
    assert [c.display_name for c in failover] == ["failover_within link_blackhole conn-ams"]
    params = failover[0].params.model_dump()
    assert params["faults"] == ("link_blackhole",) and params["targets"] == ("conn-ams",)
    assert params["bound"] == 10.0
    others = [c.name for c in checks if c.name != "failover_within"]
    assert others == [c.name for c in ENVELOPE.invariants if c.name != "failover_within"]
    quiet = checks_for(
        ENVELOPE.invariants, [pf("broker_outage", None, 0, 5)], POPS, time_scale=1, step=1
    )
    assert "failover_within" not in [c.name for c in quiet]
