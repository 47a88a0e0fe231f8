"""Envelopes: the packaged default, round trips, and errors that name file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.explore import DEFAULT_INVARIANTS, EnvelopeError, load_envelope, parse_envelope
from harness.scenario import FAULT_SPECS

MINIMAL = """\
name: tiny
faults:
  - {fault: link_down, targets: ["conn-*"], for: [1s, 3s]}
"""


def issues(text: str) -> list[str]:
    with pytest.raises(EnvelopeError) as caught:
        parse_envelope(text, "env.yaml")
    return [str(issue) for issue in caught.value.issues]


def test_default_envelope_matches_the_issue() -> None:
    envelope = load_envelope()
    kinds = {rule.fault for rule in envelope.faults}
    assert {"link_down", "link_blackhole", "controlplane_outage", "broker_outage"} <= kinds
    assert "restart" in kinds and "pause" in kinds
    assert not kinds & {"token_rollover", "credential_revocation"}
    for rule in envelope.faults:
        targets = rule.expand_targets(envelope.stack)
        if rule.fault.startswith("link_"):
            assert targets == ("conn-ams", "conn-fra")
        elif rule.fault in ("restart", "pause"):
            assert targets == ("edge-ams", "edge-fra")
        else:
            assert targets == ()
    assert [c.name for c in envelope.invariants] == [c["name"] for c in DEFAULT_INVARIANTS]
    assert envelope.max_overlap == 2 and envelope.faults_per_schedule == (1, 3)


def test_round_trip_spells_out_the_invariants(tmp_path: Path) -> None:
    envelope = load_envelope()
    path = tmp_path / "env.yaml"
    path.write_text(envelope.to_yaml())
    again = load_envelope(path)
    assert again.faults == envelope.faults
    assert again.invariants == envelope.invariants
    assert again.checks is not None  # written out explicitly


def test_minimal_envelope_takes_defaults() -> None:
    envelope = parse_envelope(MINIMAL)
    assert envelope.horizon == 40 and envelope.step == 1 and envelope.time_scale == 0.5
    assert envelope.duration_steps(envelope.faults[0]) == (1, 3)
    assert parse_envelope(MINIMAL + "faults_per_schedule: 2\n").faults_per_schedule == (2, 2)


def test_parameter_choices_are_validated_and_canonical() -> None:
    envelope = parse_envelope(
        "faults:\n"
        "  - fault: link_latency\n"
        '    targets: ["conn-ams"]\n'
        "    for: 5s\n"
        "    params: {latency: [100ms, 1s], jitter: 10ms}\n"
    )
    rule = envelope.faults[0]
    assert rule.duration == (5.0, 5.0)
    assert rule.param_choices() == {"latency": (0.1, 1.0), "jitter": (0.01,)}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MINIMAL + "horizn: 10s\n", 'env.yaml:4: horizn: unknown field (did you mean "horizon"?'),
        (
            "faults:\n  - {fault: credential_revocation, targets: [web]}\n",
            "env.yaml:2: faults[0].fault: credential_revocation cannot be explored",
        ),
        (
            "faults:\n  - {fault: token_rollover}\n",
            "env.yaml:2: faults[0].fault: token_rollover cannot be explored",
        ),
        (
            "faults:\n  - fault: link_down\n    targets: [conn-*, nope-*]\n    for: 1s\n",
            'env.yaml:3: faults[0].targets[1]: "nope-*" matches no link of the stack',
        ),
        (
            "faults:\n  - {fault: link_down, targets: [conn-*]}\n",
            'env.yaml:2: faults[0].for: link_down needs "for"',
        ),
        (
            "faults:\n  - {fault: restart, targets: [edge-*], for: 2s}\n",
            'env.yaml:2: faults[0].for: restart is instantaneous; remove "for"',
        ),
        (
            "faults:\n  - {fault: broker_outage, targets: [broker], for: 2s}\n",
            "env.yaml:2: faults[0].targets: broker_outage takes no target",
        ),
        (
            "faults:\n  - fault: broker_outage\n    for: 2s\n    params: {mode: [stop, lnks]}\n",
            "env.yaml:4: faults[0].params.mode[1]:",
        ),
        (
            "faults:\n  - fault: broker_outage\n    for: 2s\n    params: {mood: stop}\n",
            'env.yaml:4: faults[0].params.mood: unknown parameter (did you mean "mode"?',
        ),
        (
            "faults:\n  - {fault: link_down, targets: [conn-*], for: [500ms, 800ms]}\n",
            "env.yaml:2: faults[0].for: no multiple of step (1s)",
        ),
        (
            MINIMAL + "settle: 2s\nchecks:\n  - {name: reconnect_within, params: {bound: 5s}}\n",
            "env.yaml:6: checks[0].params.bound: reconnect_within bound (5s) is longer than settle",
        ),
        ("name: x\n", "env.yaml:1: faults: required field missing"),
        ("- a list\n", "env.yaml:1: an envelope is a mapping"),
    ],
)
def test_errors_name_file_line_and_field(text: str, expected: str) -> None:
    found = issues(text)
    assert any(issue.startswith(expected) for issue in found), found


def test_every_fault_kind_is_either_explorable_or_refused_with_a_reason() -> None:
    for kind, spec in FAULT_SPECS.items():
        target = {
            "none": "",
            "link": "conn-*",
            "pop": "*",
            "tunnel": "*",
            "component": "edge-*",
            "node": "pop-*",
        }
        lines = [f"faults:\n  - fault: {kind}\n"]
        if spec.target != "none":
            lines.append(f'    targets: ["{target[spec.target]}"]\n')
        if spec.duration != "forbidden":
            lines.append("    for: 2s\n")
        required = {
            "link_latency": "{latency: 100ms}",
            "link_bandwidth": "{rate_kbps: 10}",
            "link_slicer": "{average_size: 10}",
            "link_limit_data": "{bytes: 100}",
        }
        if kind in required:
            lines.append(f"    params: {required[kind]}\n")
        text = "".join(lines)
        if kind in (
            "token_rollover",
            "credential_revocation",
            "node_down",
            "node_drain",
            "task_kill",
            "network_partition",
        ):
            assert any("cannot be explored" in issue for issue in issues(text))
        else:
            assert parse_envelope(text).faults[0].fault == kind


def test_unreadable_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(EnvelopeError, match="cannot read"):
        load_envelope(tmp_path / "missing.yaml")
