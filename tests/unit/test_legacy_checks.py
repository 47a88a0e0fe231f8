"""The ``availability`` window the legacy scenarios need: from a tunnel's first drop until the
control plane returns ("legacy is down from its first drop until the control plane returns")."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from harness.checks import run_check
from harness.journal import JournalBuilder

TUNNELS = {"web": ("named", ["app.example.com"]), "old": ("legacy", ["old.example.com"])}
BETWEEN = {
    "tunnel": "old",
    "window": "between",
    "faults": ["link_reset", "restart"],
    "until_faults": ["controlplane_outage"],
    "max": 0.05,
}


def outage(legacy_recovers_at: float | None) -> JournalBuilder:
    """Control plane down 10-40 s; the first drop at 15 s; another at 25 s."""
    b = JournalBuilder(tunnels=TUNNELS)
    b.fault(10, 40, "controlplane_outage")
    b.fault(15, 15.5, "link_reset", "conn-ams")
    b.fault(25, 25.5, "restart", "edge-fra")
    for i in range(100):
        t = i * 0.5
        b.request(t, "fail" if 15.2 <= t < 15.7 or 25 <= t < 26 else "ok", tunnel="web")
        down = 15.2 <= t < 41 and (legacy_recovers_at is None or t < legacy_recovers_at)
        b.request(t + 0.25, "fail" if down else "ok", tunnel="old")
    b.end(50)
    return b


def test_legacy_down_from_its_first_drop_until_the_control_plane_returns() -> None:
    result = run_check(outage(None).history(), "availability", BETWEEN)
    assert result.passed is True, result.detail
    assert "from the first link_reset/restart until the end of controlplane_outage" in (
        result.detail
    )
    # Up before the first drop: that part of the outage is not in the window.
    assert result.data["availability"] <= 0.05


def test_a_legacy_tunnel_that_comes_back_during_the_outage_fails_it() -> None:
    result = run_check(outage(legacy_recovers_at=20).history(), "availability", BETWEEN)
    assert result.passed is False, result.detail
    # The named tunnel, with the same window, is available.
    named = run_check(
        outage(None).history(),
        "availability",
        {**BETWEEN, "tunnel": "web", "max": None, "min": 0.9},
    )
    assert named.passed is True, named.detail


def test_the_window_needs_its_closing_fault() -> None:
    with pytest.raises(ValidationError, match="go together"):
        run_check(JournalBuilder().history(), "availability", {"window": "between", "max": 0.1})
    with pytest.raises(ValidationError, match="unknown fault"):
        run_check(
            JournalBuilder().history(),
            "availability",
            {**BETWEEN, "until_faults": ["controlplane_outgae"]},
        )
    b = JournalBuilder(tunnels=TUNNELS)
    b.fault(1, 2, "link_reset", "conn-ams")
    b.request(1.5, "fail", tunnel="old")
    b.end(5)
    assert run_check(b.history(), "availability", BETWEEN).passed is None
