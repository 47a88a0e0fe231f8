"""The reference-vs-cloudflared table and findings of a ``--connector both`` catalogue."""

from __future__ import annotations

from typing import Any

from harness.report import connector_comparison as comparison


def summary(kind: str, availability: float, ttr: float, passed: bool, reconnects: int) -> Any:
    return {
        "scenario": "link-flap",
        "verdict": "pass" if passed else "fail",
        "connector": {
            "kind": kind,
            "version": "2026.8.2" if kind == "cloudflared" else None,
            "reconnects": reconnects,
        },
        "sla": {"availability": availability, "time_to_recover_s": ttr},
        "checks": [
            {
                "name": "reconnect_within",
                "check": "reconnect_within",
                "passed": passed,
                "detail": "worst 9.1s" if not passed else "worst 0.4s",
            },
            {
                "name": "control_plane_independent",
                "check": "control_plane_independent",
                "passed": True,
                "detail": "0",
                "data": {"windows": [{"requests": 0}, {"requests": 2}]},
            },
        ],
    }


def test_pairs_rows_and_findings() -> None:
    ref = summary("reference", 99.5, 0.4, True, 10)
    cfd = summary("cloudflared", 97.25, 9.1, False, 12)
    other = {**summary("reference", 100.0, 0.1, True, 1), "scenario": "solo"}
    assert [name for name, _, _ in comparison.pairs([ref, other, cfd])] == ["link-flap"]
    (row,) = comparison.comparison_rows([ref, cfd, other])
    assert row == ["link-flap", "pass / fail", "99.5 / 97.25", "0.4 / 9.1", "10 (2) / 12 (2)"]
    (finding,) = comparison.findings(ref, cfd)
    assert finding.startswith("reconnect_within fails with cloudflared (reference: passes)")
    assert "worst 9.1s" in finding
    assert comparison.findings(ref, ref) == []
    assert comparison.cloudflared_version([ref, cfd]) == "2026.8.2"
    assert comparison.played_by({"scenario": "old"}) == "reference"
