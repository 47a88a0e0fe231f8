"""CI's fast subset of the mutants: ``scripts/mutants`` on three mutants whose scenarios are short
(about 25-30 s each at ``--speed 2``) must report each caught, and its last line the tally. They
are the ones ``test_catalogue.py`` does not apply (that file runs one mutant per scenario). The
full set is run by hand (docs/catalogue.md#mutants)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.timeout(400), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
FAST = [
    "edge.empty_200_without_connection",  # pop-partition/visitor_errors
    "connector.ignores_retry_after",  # fresh-pop-without-config/retry_discipline
    "edge.flip_byte_large_bodies",  # link-flap/no_corruption (bodies up to 1 MiB + 1)
]


def test_fast_mutants_are_caught() -> None:
    result = subprocess.run(
        [str(ROOT / "scripts" / "mutants"), *FAST],
        capture_output=True,
        text=True,
        timeout=380,
        check=False,
    )
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    for name in FAST:
        assert any(line.startswith(f"caught {name} by ") for line in lines), lines
    assert lines[-1] == f"{len(FAST)} caught, 0 missed"
