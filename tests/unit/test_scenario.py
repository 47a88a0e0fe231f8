"""Scenario schema, loader (located errors), wall-clock anchoring and ``outlast scenarios``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from harness.checks.availability import AvailabilityParams
from harness.scenario import (
    CheckSpec,
    Scenario,
    ScenarioError,
    StackSpec,
    TimelineEntry,
    TunnelEntry,
    load_scenario,
    parse_scenario,
    save_scenario,
    scenario_files,
)
from harness.scenario.faults import LatencyParams

ROOT = Path(__file__).resolve().parents[2]
BAD = ROOT / "tests" / "data" / "scenarios"
CATALOGUE = ROOT / "scenarios"


def errors_of(name: str) -> list[str]:
    with pytest.raises(ScenarioError) as caught:
        load_scenario(BAD / name)
    return [str(issue).replace(str(BAD) + "/", "") for issue in caught.value.issues]


KNOWN_LINKS = (
    "conn-ams, conn-fra, connector-api, edge-ams-api, edge-fra-api, cp-broker, "
    "edge-ams-broker, edge-fra-broker, pop-ams-fra, pop-fra-ams"
)
KNOWN_FAULTS = (
    "controlplane_outage, broker_outage, token_rollover, credential_revocation, link_down, "
    "link_blackhole, link_latency, link_bandwidth, link_reset, link_slicer, link_limit_data, "
    "pop_outage, pop_withdraw, kill, pause, restart, stop, node_down, node_drain, task_kill, "
    "network_partition"
)
KNOWN_CHECKS = (
    "auth_errors, availability, control_plane_independent, dns_unchanged, failover_within, "
    "ha_restored, latency, no_corruption, no_misroute, reconnect_within, retry_cadence, "
    "retry_discipline, tunnel_revoked, visitor_errors"
)
CLOCK_HINT = "needs clock.start (add: clock: {start: 2020-04-15T15:00:00Z})"
MALFORMED: dict[str, list[tuple[int, str, str]]] = {
    "bad-duration.yaml": [
        (13, "timeline[2].for", 'invalid duration "5x" (use 90s, 5m, 1h20m)'),
    ],
    "bad-fault.yaml": [
        (
            6,
            "timeline[0].fault",
            f'invalid value "lnk_down" (did you mean "link_down"? expected one of: {KNOWN_FAULTS})',
        ),
    ],
    "bad-target.yaml": [
        (9, "timeline[0].target", f'unknown link "conn-par" for link_down (known: {KNOWN_LINKS})'),
        (
            12,
            "timeline[1].target",
            'unknown component "connector-nope" for kill '
            "(known: broker, controlplane, edge-ams, edge-fra, anycast, origin, connector-web)",
        ),
    ],
    "bad-params.yaml": [
        (8, "timeline[0].params.latency", "required field missing"),
        (
            9,
            "timeline[0].params.latncy",
            'unknown field (did you mean "latency"? allowed: stream, toxicity, latency, jitter)',
        ),
        (13, "checks[0].params.min", "Input should be less than or equal to 1"),
        (16, "checks[1].params.bound", 'invalid duration "soon" (use 90s, 5m, 1h20m)'),
    ],
    "bad-missing.yaml": [
        (1, "name", "required field missing"),
        (4, "timeline[0].for", 'pause needs "for" (how long it lasts, e.g. 30s)'),
        (8, "timeline[1].for", 'token_rollover is instantaneous; remove "for"'),
    ],
    "bad-unknown-check.yaml": [
        (
            5,
            "checks[1].name",
            f'unknown check "dns_unchnged" (did you mean "dns_unchanged"? known: {KNOWN_CHECKS})',
        ),
        (9, "checks[2].extra", "unknown field (allowed: name, params, expect, label)"),
    ],
    "bad-syntax.yaml": [
        (
            6,
            "",
            "YAML syntax: expected ',' or ']', but got '<stream end>' "
            "(while parsing a flow sequence started on line 5)",
        ),
    ],
    "bad-clock.yaml": [
        (4, "timeline[0].at", f'clock time "15:31" {CLOCK_HINT}'),
        (5, "timeline[0].until", f'clock time "19:52" {CLOCK_HINT}'),
    ],
    "bad-late.yaml": [
        (5, "timeline[0].for", "fault ends at 1m10s, after the scenario's duration 1m"),
    ],
    "bad-duplicate-key.yaml": [(4, "seed", 'duplicate key "seed"')],
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_files_name_file_line_and_field(name: str) -> None:
    expected = [
        f"{name}:{line}: {field}: {message}" if field else f"{name}:{line}: {message}"
        for line, field, message in MALFORMED[name]
    ]
    assert errors_of(name) == expected


def test_every_malformed_fixture_is_covered() -> None:
    assert sorted(p.name for p in BAD.glob("*.yaml")) == sorted(MALFORMED)


def test_scope_names_must_exist_in_the_stack() -> None:
    text = """
name: scoped
duration: 60s
checks:
  - name: availability
    params: {tunnel: legacy, min: 0.5}
"""
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, "inline.yaml")
    assert str(caught.value) == (
        'inline.yaml:6: checks[0].params.tunnel: tunnel "legacy" is not in the stack (known: web)'
    )


def test_the_first_scenario_loads_and_fits_in_under_a_minute() -> None:
    scenario = load_scenario(CATALOGUE / "control-plane-outage.yaml")
    assert scenario.real_duration < 60
    kinds = [entry.fault for entry in scenario.timeline]
    assert kinds == ["controlplane_outage", "broker_outage", "link_down", "link_down"]
    outage = scenario.timeline[0]
    for drop in scenario.timeline[2:]:
        assert drop.end is not None and outage.end is not None
        assert outage.at < drop.at and drop.end < outage.end  # inside the outage
    assert {e.target for e in scenario.timeline[2:]} == {"conn-ams", "conn-fra"}
    assert {c.name for c in scenario.checks} >= {
        "dns_unchanged",
        "reconnect_within",
        "availability",
        "ha_restored",
        "control_plane_independent",
    }


def test_every_catalogue_file_is_valid() -> None:
    for path in scenario_files(CATALOGUE):
        load_scenario(path)


def test_yaml_round_trip(tmp_path: Path) -> None:
    scenario = load_scenario(CATALOGUE / "control-plane-outage.yaml")
    copy = load_scenario(save_scenario(scenario, tmp_path / "scenario.yaml"))
    assert copy == scenario


def test_durations_and_time_scale() -> None:
    scenario = parse_scenario(
        """
name: scaled
time_scale: 0.01
duration: 1h20m
timeline:
  - {at: 5m, for: 250ms, fault: link_latency, target: conn-ams, params: {latency: 200ms}}
"""
    )
    entry = scenario.timeline[0]
    assert (entry.at, entry.duration, scenario.duration) == (300.0, 0.25, 4800.0)
    assert scenario.real_duration == pytest.approx(48.0)
    assert isinstance(entry.params, LatencyParams) and entry.params.latency == 0.2


def test_wall_clock_anchoring_for_postmortems() -> None:
    scenario = parse_scenario(
        """
name: postmortem-2020-04-15
clock: {start: "2020-04-15T15:00:00Z"}
time_scale: 0.005
duration: 5h
timeline:
  - {at: "15:31", until: "19:52", fault: controlplane_outage}
  - {at: "2020-04-15T16:00:00Z", fault: restart, target: edge-ams}
"""
    )
    outage, restart = scenario.timeline
    assert outage.at == 31 * 60 and outage.duration == (4 * 60 + 21) * 60
    assert restart.at == 3600
    assert scenario.clock is not None
    assert scenario.clock.offset("15:31") == 1860
    reloaded = parse_scenario(scenario.to_yaml())
    assert reloaded == scenario


def test_scenarios_as_python_scripts() -> None:
    scenario = Scenario(
        name="scripted",
        duration=60,
        stack=StackSpec(
            tunnels=(
                TunnelEntry(name="web", hostname="app.example.com"),
                TunnelEntry(name="old", kind="legacy", hostname="old.example.com"),
            )
        ),
        timeline=(
            TimelineEntry(
                at=10,
                duration=5,
                fault="link_latency",
                target="conn-ams",
                params=LatencyParams(latency=0.3, jitter=0.05),
            ),
            TimelineEntry(at=20, fault="credential_revocation", target="old"),
        ),
        checks=(
            CheckSpec(
                name="availability",
                params=AvailabilityParams(tunnel="old", max=0.1, window="during_fault"),
                label="legacy",
            ),
            CheckSpec.model_validate({"name": "dns_unchanged", "params": {"tunnel_kind": "named"}}),
        ),
    )
    assert isinstance(scenario.timeline[0].params, LatencyParams)
    assert isinstance(scenario.checks[0].params, AvailabilityParams)
    assert scenario.checks[0].display_name == "legacy"
    assert parse_scenario(scenario.to_yaml()) == scenario
    with pytest.raises(ValidationError, match='unknown tunnel "nope"'):
        Scenario(
            name="x",
            duration=60,
            timeline=(TimelineEntry(at=1, fault="credential_revocation", target="nope"),),
        )


def test_stack_shape_errors() -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(
            """
name: shape
duration: 10s
stack:
  pops: [ams, AMS]
  tunnels:
    - {name: web, hostname: app.example.com}
    - {name: web, hostname: app.other.org}
""",
            "shape.yaml",
        )
    lines = str(caught.value).splitlines()
    assert lines[0].startswith("shape.yaml:5: stack.pops: PoP name 'AMS'")


def test_duplicate_check_labels_are_refused() -> None:
    with pytest.raises(ScenarioError, match='two checks are called "availability"'):
        parse_scenario(
            """
name: dup
duration: 10s
checks:
  - {name: availability, params: {min: 0.9}}
  - {name: availability, params: {max: 0.1, tunnel: web}}
"""
        )


def test_outlast_scenarios_lists_and_validates(tmp_path: Path) -> None:
    good = subprocess.run(
        [sys.executable, "-m", "harness", "scenarios", str(CATALOGUE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert good.returncode == 0, good.stderr
    assert "control-plane-outage" in good.stdout and "45s" in good.stdout
    (tmp_path / "ok.yaml").write_text("name: ok\ndescription: Fine. More.\nduration: 10s\n")
    (tmp_path / "broken.yaml").write_text("name: broken\nduration: 10x\n")
    mixed = subprocess.run(
        [sys.executable, "-m", "harness", "scenarios", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert mixed.returncode == 1
    assert "ok" in mixed.stdout and "Fine." in mixed.stdout and "More" not in mixed.stdout
    assert f'{tmp_path}/broken.yaml:2: duration: invalid duration "10x"' in mixed.stderr


def test_nested_parameter_choices_are_listed() -> None:
    text = """
name: x
duration: 60s
timeline:
  - {at: 1s, for: 2s, fault: link_latency, target: conn-ams, params: {latency: 1s, stream: up}}
checks:
  - {name: availability, params: {min: 0.5, window: durin}}
"""
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, "x.yaml")
    assert str(caught.value).splitlines() == [
        'x.yaml:5: timeline[0].params.stream: invalid value "up" '
        "(expected one of: upstream, downstream, both)",
        'x.yaml:7: checks[0].params.window: invalid value "durin" '
        "(expected one of: overall, during_fault, outside_fault, between)",
    ]


def test_a_fresh_restart_must_target_an_edge() -> None:
    text = (
        "name: x\nduration: 30s\ntimeline:\n"
        "  - {at: 5s, fault: restart, target: edge-ams, params: {fresh: true}}\n"
        "  - {at: 10s, fault: restart, target: broker, params: {fresh: true}}\n"
    )
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, "fresh.yaml")
    assert str(caught.value) == (
        "fresh.yaml:5: timeline[1].params.fresh: fresh: true forgets an edge's cache; "
        '"broker" is not an edge (use edge-<pop>)'
    )
