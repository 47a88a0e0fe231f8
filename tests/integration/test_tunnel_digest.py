"""The tunnel's body digest end to end (issue 16, item 1), on real processes: a user's
``python3 -m http.server`` behind the tunnel, once on the tree as it is (every body verified by
the digest: ``no_corruption`` passes on that basis alone) and once with a connector that flips a
byte of every fifth body frame over 64 bytes after hashing it (mutant
``wire.corrupts_response_bodies``, in a temporary copy of the tree): the edges count the
mismatches, no corrupted body reaches a visitor as complete (the static page's SHA-256 never
changes among the answers accepted), and ``no_corruption`` fails."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from harness.mutants import run_with_mutants
from harness.stack.process import outlast_argv

pytestmark = [pytest.mark.timeout(300)]

SCENARIO = """\
name: tunnel-digest
seed: 3
stack:
  origin:
    command: "python3 -m http.server {{port}} --bind 127.0.0.1 --directory {site}"
    health: /small.txt
traffic:
  rate: 10
  metrics_interval: 250ms
  requests:
    - {{method: GET, path: /big.bin, expect_status: 200, static: true}}
    - {{method: GET, path: /small.txt, expect_status: 200, expect_body_contains: tiny}}
duration: 5s
checks:
  - name: no_corruption
"""


def _site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    (site / "big.bin").write_bytes(os.urandom(64 * 1024))  # body frames over 64 bytes
    (site / "small.txt").write_text("tiny\n")  # one frame under 64 bytes: left intact
    return site


def _run(
    tmp_path: Path, scenario: Path, name: str, mutants: list[str]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    out = tmp_path / name
    argv = outlast_argv("run", str(scenario), "--report-dir", str(out), "-q")
    result = run_with_mutants(argv, mutants, timeout=240)
    summaries = list(out.glob("*/summary.json"))
    assert summaries, f"exit {result.returncode}\n{result.stdout}\n{result.stderr[-3000:]}"
    run_dir = summaries[0].parent
    ops = [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]
    return json.loads(summaries[0].read_text()), ops


def _outcomes(records: list[dict[str, Any]], request: str) -> set[str]:
    """Phases of the completed visitor requests labelled ``request`` (``GET /big.bin``)."""
    ops = [r for r in records if r.get("type") == "op" and r.get("process") == "visitor"]
    invoked = {
        r["op_id"] for r in ops if r["phase"] == "invoke" and r["value"].get("request") == request
    }
    return {r["phase"] for r in ops if r["op_id"] in invoked and r["phase"] != "invoke"}


def test_the_tunnel_digest_verifies_bodies_and_catches_a_corrupting_connector(
    tmp_path: Path,
) -> None:
    scenario = tmp_path / "tunnel-digest.yaml"
    scenario.write_text(SCENARIO.format(site=_site(tmp_path)))
    clean, _ = _run(tmp_path, scenario, "clean", [])
    (check,) = clean["checks"]
    assert check["passed"] is True, check
    assert check["data"]["basis"] == ["static_digest", "tunnel_digest"]
    digests = check["data"]["tunnel_digest"]
    assert digests["verified"] >= 20 and digests["mismatch"] == 0, digests
    assert "tunnel_digest" in clean["integrity"]["applied"]

    broken, ops = _run(tmp_path, scenario, "broken", ["wire.corrupts_response_bodies"])
    (check,) = broken["checks"]
    assert check["passed"] is False, check
    assert "did not match the tunnel digest" in check["detail"]
    mismatches = check["data"]["tunnel_digest"]["mismatch"]
    assert mismatches >= 3, check["data"]
    # Every corrupted body was aborted: no accepted answer differs from the first one...
    assert check["data"]["corrupted"] == 0, check["data"]["examples"]
    # ...and the aborted ones are the visitors' failures; small bodies were never touched.
    assert _outcomes(ops, "GET /big.bin") == {"ok", "fail"}, _outcomes(ops, "GET /big.bin")
    assert _outcomes(ops, "GET /small.txt") == {"ok"}
