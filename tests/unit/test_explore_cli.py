"""`outlast explore` without a stack: the effective envelope, and invalid envelopes (exit 2)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from harness.cli import main
from harness.explore import load_envelope, parse_envelope


def test_show_envelope_prints_the_effective_envelope() -> None:
    result = CliRunner().invoke(main, ["explore", "--show-envelope"])
    assert result.exit_code == 0, result.output
    shown = parse_envelope(result.output)
    assert shown.faults == load_envelope().faults
    assert [c.name for c in shown.invariants] == [c.name for c in load_envelope().invariants]


def test_invalid_envelope_exits_2_with_located_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nfaults:\n  - {fault: token_rollover}\n")
    result = CliRunner().invoke(main, ["explore", "--envelope", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:3: faults[0].fault: token_rollover cannot be explored" in result.output
    assert "nothing was explored" in result.output


def test_help_names_the_options() -> None:
    result = CliRunner().invoke(main, ["explore", "--help"])
    assert result.exit_code == 0
    for option in ("--budget", "--seed", "--time-scale", "--envelope", "--state-dir"):
        assert option in result.output
