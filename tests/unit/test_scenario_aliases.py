"""A scenario file from a pull request cannot exhaust the runner: YAML aliases are refused,
located, in well under a second and a few MB, even for a "billion laughs" document."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.scenario.loader import ScenarioError, parse_scenario


def billion_laughs(levels: int = 12, width: int = 10) -> str:
    """``width ** levels`` strings, in about 1.3 KB of YAML (issue 21, item 6)."""
    lines = ["name: laughs", "duration: 10s", 'l0: &l0 ["lol"]']
    for level in range(1, levels + 1):
        refs = ", ".join([f"*l{level - 1}"] * width)
        lines.append(f"l{level}: &l{level} [{refs}]")
    return "\n".join(lines) + "\n"


MEASURE = """
import json, resource, sys, time, tracemalloc
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from harness.scenario.loader import ScenarioError, load_scenario
tracemalloc.start()
started = time.perf_counter()
try:
    load_scenario(sys.argv[1])
    first = "loaded"
except ScenarioError as exc:
    first = str(exc.issues[0])
print(json.dumps({"seconds": time.perf_counter() - started,
                  "peak": tracemalloc.get_traced_memory()[1], "first": first}))
"""


def test_billion_laughs_is_refused_fast_in_bounded_memory(tmp_path: Path) -> None:
    bomb = tmp_path / "laughs.yaml"
    bomb.write_text(billion_laughs())
    assert bomb.stat().st_size < 1500
    try:
        done = subprocess.run(
            [sys.executable, "-c", MEASURE, str(bomb)],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("loading a 1.3 KB alias bomb did not finish in 20 s")
    assert done.returncode == 0, done.stderr[-2000:]
    measured = json.loads(done.stdout)
    assert measured["first"] == (
        f"{bomb}:4: l1[0]: YAML alias *l0 is not allowed in scenario files (write the value out)"
    )
    assert measured["seconds"] < 1.0
    assert measured["peak"] < 20 * 1024 * 1024


def test_merge_keys_are_refused_too() -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario("name: m\nduration: 10s\nbase: &b {x: 1}\nother:\n  <<: *b\n", "m.yaml")
    assert str(caught.value.issues[0]) == (
        "m.yaml:5: other.<<: YAML alias *b is not allowed in scenario files (write the value out)"
    )


def test_oversized_file_is_refused_before_parsing() -> None:
    with pytest.raises(ScenarioError, match=r"big.yaml:1: file is \d+ bytes; at most 1000000"):
        parse_scenario("name: big\n" + "#" * 1_000_001 + "\n", "big.yaml")
