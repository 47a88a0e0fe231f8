"""Each check passes on a good synthetic history and fails on a bad one; undecided when it
cannot tell; expected failures invert; scoping per tunnel."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from harness.checks import (
    CHECKS,
    CheckResult,
    UnknownCheckError,
    apply_expectation,
    check_names,
    combine,
    exit_code,
    register,
    run_check,
    verdict,
)
from harness.checks.params import CheckParams
from harness.journal import History, JournalBuilder

CNAME = "web-id.tunnels.outlast.test"


def good_run(**overrides: Any) -> JournalBuilder:
    """A control-plane outage with two 2.5 s link drops that a named tunnel survives."""
    b = JournalBuilder(**overrides)
    b.fault(5, 35, "controlplane_outage")
    b.fault(10, 12.5, "link_down", "conn-ams")
    b.fault(25, 27.5, "link_down", "conn-fra")
    for i in range(400):
        t = i * 0.1
        pop = "ams" if i % 2 else "fra"
        dropped = (10 <= t < 13 and pop == "ams") or (25 <= t < 28 and pop == "fra")
        b.request(t, "fail" if dropped else "ok", pop=pop)
    for s in range(40):
        b.dns(s + 0.05, [CNAME], pop="ams")
        b.dns(s + 0.06, [CNAME + "."], pop="fra")
        ha = 2 if (10 <= s < 14 or 25 <= s < 29) else 4
        b.connector(s + 0.07, ha, ["ams", "fra"] * (ha // 2))
        if not 5 <= s < 35:
            b.controlplane(s + 0.08, {"GET /metrics": s, "GET /accounts/a/audit": s // 2})
    b.end(40)
    return b


def check(history: History, name: str, **params: Any) -> CheckResult:
    return run_check(history, name, params)


def test_all_builtin_checks_are_registered() -> None:
    assert check_names() == [
        "auth_errors",
        "availability",
        "control_plane_independent",
        "dns_unchanged",
        "failover_within",
        "ha_restored",
        "latency",
        "no_corruption",
        "no_misroute",
        "reconnect_within",
        "retry_cadence",
        "retry_discipline",
        "tunnel_revoked",
        "visitor_errors",
    ]
    with pytest.raises(UnknownCheckError, match='did you mean "ha_restored"'):
        run_check(good_run().history(), "ha_restord")


# -- dns_unchanged ---------------------------------------------------------------------------


def test_dns_unchanged_passes_and_normalises_trailing_dots() -> None:
    result = check(good_run().history(), "dns_unchanged")
    assert result.passed is True, result.detail
    assert result.data["answered"] == 80


def test_dns_unchanged_fails_when_an_answer_changes() -> None:
    b = good_run()
    b.dns(20.5, ["other-id.tunnels.outlast.test"], pop="fra")
    result = check(b.history(), "dns_unchanged")
    assert result.passed is False
    assert "20.5s" in result.detail and "other-id" in result.detail


def test_dns_unchanged_treats_nxdomain_as_a_change_but_ignores_unanswered() -> None:
    b = good_run()
    b.dns(20.5, None, phase="fail")
    assert check(b.history(), "dns_unchanged").passed is True
    b.dns(21.5, [], rcode="NXDOMAIN")
    result = check(b.history(), "dns_unchanged")
    assert result.passed is False and "NXDOMAIN" in result.detail


def test_dns_unchanged_is_undecided_without_answers() -> None:
    b = JournalBuilder()
    b.dns(1, None, phase="fail")
    assert check(b.history(), "dns_unchanged").passed is None


def test_dns_unchanged_per_tunnel_scope() -> None:
    b = JournalBuilder(
        tunnels={"web": ("named", ["app.example.com"]), "old": ("legacy", ["old.example.com"])}
    )
    b.dns(1, [CNAME])
    b.dns(1, ["old-id.tunnels.outlast.test"], hostname="old.example.com")
    b.dns(2, [CNAME])
    b.dns(2, [], hostname="old.example.com", rcode="NXDOMAIN")  # legacy record removed
    history = b.history()
    assert check(history, "dns_unchanged").passed is False
    assert check(history, "dns_unchanged", tunnel_kind="named").passed is True
    assert check(history, "dns_unchanged", tunnel="old").passed is False
    assert check(history, "dns_unchanged", hostname="app.example.com").passed is True


# -- reconnect_within ------------------------------------------------------------------------


def test_reconnect_within_passes_after_every_heal() -> None:
    result = check(good_run().history(), "reconnect_within", faults=["link_down"], bound="5s")
    assert result.passed is True, result.detail
    heals = result.data["heals"]
    assert [h["fault_id"] for h in heals] == ["f2", "f3"]
    assert all(h["served_s"] < 0.2 and h["ha_s"] <= 2.0 for h in heals)


def test_reconnect_within_fails_when_nothing_is_served_after_a_heal() -> None:
    b = JournalBuilder()
    b.fault(2, 4, "link_down", "conn-ams")
    b.request(1, "ok")
    for i in range(20):
        b.request(4 + i * 0.5, "fail")  # heal at 4 s, still failing 10 s later
    b.request(15, "ok")
    b.connector(3, 4, ["ams", "fra", "ams", "fra"])
    b.end(16)
    result = check(b.history(), "reconnect_within", bound="5s", require_ha=False)
    assert result.passed is False
    assert "link_down conn-ams healed at 4.0s: web not served" in result.detail


def test_reconnect_within_fails_when_ha_is_not_regained() -> None:
    b = good_run()
    history = b.history()
    # same run, but the connector stays at 2 connections after the second drop
    b2 = JournalBuilder()
    for record in history.records:
        if getattr(record, "kind", None) == "connector" and record.t >= 25_000_000_000:
            continue
        b2.records.append(record)
    for s in range(25, 40):
        b2.connector(s + 0.07, 2, ["ams", "ams"])
    result = check(b2.history(), "reconnect_within", faults=["link_down"], bound="5s")
    assert result.passed is False and "not at 4 HA" in result.detail
    assert check(b2.history(), "ha_restored").passed is False


def test_reconnect_within_undecided_cases() -> None:
    b = JournalBuilder()
    b.request(1, "ok")
    b.end(2)
    assert check(b.history(), "reconnect_within", bound=5).passed is None  # no heals
    b = JournalBuilder()
    b.fault(1, 2, "link_down", "conn-ams")
    b.request(2.5, "ok")
    b.end(3)
    result = check(b.history(), "reconnect_within", bound=5)
    assert result.passed is None and "undecided" in result.detail  # no connector samples
    assert check(b.history(), "reconnect_within", bound=5, require_ha=False).passed is True


def test_reconnect_within_censors_a_heal_cut_short_by_the_next_fault() -> None:
    b = JournalBuilder()
    b.fault(1, 2, "link_down", "conn-ams")
    b.fault(3, 4, "link_down", "conn-ams")  # starts before the first heal recovered
    for i in range(40):
        t = 2 + i * 0.25
        b.request(t, "ok" if t >= 4.5 else "fail")
    b.end(12)
    result = check(b.history(), "reconnect_within", bound=2, require_ha=False)
    assert result.passed is True, result.detail
    assert "cut short" in result.detail
    assert [h["served"] for h in result.data["heals"]] == ["censored", "ok"]


# -- availability ----------------------------------------------------------------------------


def test_availability_windows() -> None:
    history = good_run().history()
    overall = check(history, "availability", min=0.99)
    assert overall.passed is False and 0.9 < overall.data["availability"] < 0.95
    outside = check(
        history, "availability", window="outside_fault", faults=["link_down"], grace="1s", min=0.99
    )
    assert outside.passed is True, outside.detail
    during = check(
        history, "availability", window="during_fault", faults=["link_down"], grace="1s", max=0.9
    )
    assert during.passed is True, during.detail
    no_grace = check(
        history, "availability", window="outside_fault", faults=["link_down"], min=0.99
    )
    assert no_grace.passed is False  # failures in the 0.5 s after each heal


def test_availability_counts_indeterminate_only_when_asked() -> None:
    b = JournalBuilder()
    for i in range(9):
        b.request(i, "ok")
    b.request(10, "info", latency=None)
    b.request(11, "info")
    history = b.history()
    excluded = check(history, "availability", min=1.0)
    assert excluded.passed is True and excluded.data["info"] == 2
    counted = check(history, "availability", min=0.9, info="fail")
    assert counted.passed is False and counted.data["availability"] == pytest.approx(9 / 11, 1e-6)


def test_availability_undecided_without_decided_requests() -> None:
    b = JournalBuilder()
    b.request(1, "info", latency=None)
    assert check(b.history(), "availability", min=0.5).passed is None
    assert check(b.history(), "availability", min=0.5, window="during_fault").passed is None


def test_availability_needs_a_bound() -> None:
    with pytest.raises(ValidationError, match="give min"):
        run_check(JournalBuilder().history(), "availability", {})


def test_expected_failure_legacy_down_during_outage() -> None:
    b = JournalBuilder(
        tunnels={"web": ("named", ["app.example.com"]), "old": ("legacy", ["old.example.com"])}
    )
    b.fault(10, 30, "controlplane_outage")
    b.fault(12, 13, "link_reset", "conn-ams")
    for i in range(40):
        b.request(i, "ok", tunnel="web")
        b.request(i + 0.5, "fail" if 12 <= i < 30 else "ok", tunnel="old")
    b.end(40)
    history = b.history()
    # bounded expectation: the legacy tunnel is (mostly) down during the outage
    down = run_check(
        history,
        "availability",
        {"tunnel": "old", "window": "during_fault", "faults": ["controlplane_outage"], "max": 0.2},
    )
    assert down.passed is True, down.detail
    # the same idea as an expected failure of an SLO-style check
    spec = {
        "tunnel": "old",
        "window": "during_fault",
        "faults": ["controlplane_outage"],
        "min": 0.99,
    }
    inverted = run_check(history, "availability", spec, expect="fail", label="legacy down")
    assert inverted.passed is True and inverted.name == "legacy down"
    assert inverted.detail.startswith("failed as expected")
    named = run_check(history, "availability", {**spec, "tunnel": "web"}, expect="fail")
    assert named.passed is False and named.detail.startswith("expected to fail but passed")


def test_apply_expectation_keeps_undecided_undecided() -> None:
    undecided = CheckResult("x", None, "no data")
    assert apply_expectation(undecided, "fail").passed is None
    assert apply_expectation(undecided, "pass") is undecided


# -- no_misroute / no_corruption -------------------------------------------------------------


def test_no_misroute() -> None:
    b = good_run()
    assert check(b.history(), "no_misroute").passed is True
    b.request(20.05, "ok", served_tunnel="other")
    result = check(b.history(), "no_misroute")
    assert result.passed is False and "served by other, expected web" in result.detail


def test_no_misroute_accepts_tunnel_ids_and_checks_origins() -> None:
    b = JournalBuilder()
    b.request(1, "ok", served_tunnel="web-id", origin="origin-a", expected_origin="origin-a")
    assert check(b.history(), "no_misroute").passed is True
    b.request(2, "ok", served_tunnel="web-id", origin="origin-b", expected_origin="origin-a")
    assert check(b.history(), "no_misroute").passed is False
    empty = JournalBuilder()
    empty.request(1, "fail")
    assert check(empty.history(), "no_misroute").passed is None


def test_no_corruption() -> None:
    b = good_run()
    assert check(b.history(), "no_corruption").passed is True
    b.request(20.05, "fail", digest_ok=False, request_id_echo_ok=True, error="body digest")
    result = check(b.history(), "no_corruption")
    assert result.passed is False and "digest_ok" in result.detail
    only_info = JournalBuilder()
    only_info.request(1, "info", latency=None)
    assert check(only_info.history(), "no_corruption").passed is None


# -- ha_restored -----------------------------------------------------------------------------


def test_ha_restored_count_and_spread() -> None:
    assert check(good_run().history(), "ha_restored").passed is True
    b = good_run()
    b.connector(39.5, 4, ["ams", "ams", "ams", "ams"])
    result = check(b.history(), "ha_restored")
    assert result.passed is False and "1 PoP(s)" in result.detail
    assert check(b.history(), "ha_restored", min_pops=1).passed is True


def test_ha_restored_needs_a_sample_after_the_last_heal() -> None:
    b = JournalBuilder()
    b.connector(1, 4, ["ams", "fra", "ams", "fra"])
    b.fault(2, 3, "link_down", "conn-ams")
    assert check(b.history(), "ha_restored").passed is None
    b.fault(4, None, "kill", "connector-web")
    assert "never undone" in check(b.history(), "ha_restored").detail


def test_ha_restored_from_edge_samples() -> None:
    b = JournalBuilder()
    b.edge(5, "ams", {"web-id": 2})
    b.edge(5, "fra", {"web": 2})
    assert check(b.history(), "ha_restored", source="edge").passed is True
    b.edge(6, "fra", {"web": 0})
    assert check(b.history(), "ha_restored", source="edge").passed is False


# -- control_plane_independent ---------------------------------------------------------------


def test_control_plane_independent_passes_when_only_excluded_routes_move() -> None:
    history = good_run().history()
    strict = check(history, "control_plane_independent", faults=["link_down"], grace="2s")
    assert strict.passed is False  # metrics and audit reads are counted by default
    result = check(
        history,
        "control_plane_independent",
        faults=["link_down"],
        grace="2s",
        exclude_routes=["*metrics*", "*audit*"],
    )
    assert result.passed is True, result.detail


def test_control_plane_independent_fails_on_a_reconnect_calling_home() -> None:
    b = JournalBuilder()
    b.controlplane(1, {"POST /tunnels/{id}/connections": 3})
    b.fault(2, 4, "link_down", "conn-ams")
    b.controlplane(3, {"POST /tunnels/{id}/connections": 4})
    b.controlplane(8, {"POST /tunnels/{id}/connections": 5})
    b.end(9)
    result = check(b.history(), "control_plane_independent", grace="1s")
    assert result.passed is False
    # measured from the last sample before the window (1 s) to the first after it (8 s)
    assert "POST /tunnels/{id}/connections +2" in result.detail
    whole_run = check(b.history(), "control_plane_independent", window="run", max_requests=2)
    assert whole_run.passed is True and whole_run.data["windows"][0]["requests"] == 2


def test_control_plane_counter_reset_counts_as_new_requests() -> None:
    b = JournalBuilder()
    b.controlplane(1, {"register": 10})
    b.fault(2, 4, "link_down", "conn-ams")
    b.controlplane(6, {"register": 1})  # control plane restarted, then one request
    b.end(7)
    result = check(b.history(), "control_plane_independent", grace=1)
    assert result.passed is False and result.data["windows"][0]["requests"] == 1


def test_control_plane_independent_undecided_without_samples_around_windows() -> None:
    b = JournalBuilder()
    b.controlplane(1, {"x": 0})
    b.fault(2, 4, "link_down", "conn-ams")
    b.controlplane(3, {"x": 0})
    b.end(5)
    assert check(b.history(), "control_plane_independent", grace=5).passed is None


# -- auth_errors -----------------------------------------------------------------------------


def _api(b: JournalBuilder, at: float, phase: str, error: str | None = None, **value: Any) -> None:
    b.op(
        at,
        "api_call",
        phase,
        process="management",
        invoke_value={"action": "tunnel_list", "credential": value.pop("credential", "old")},
        value=value,
        error=error,
    )


def test_auth_errors_expected_refusals() -> None:
    b = JournalBuilder()
    b.fault(5, 5.1, "token_rollover")
    _api(b, 1, "ok")  # before the rollover: allowed
    _api(b, 6, "fail", "token rolled, run `tunnel login` again", status=403)
    _api(b, 7, "fail", "Token rolled, run `tunnel login` again", status=403)
    _api(b, 8, "ok", credential="fresh")
    params = {
        "after_fault": "token_rollover",
        "match": {"credential": "old"},
        "message": "run `tunnel login` again",
        "status": 403,
        "min_count": 2,
    }
    assert run_check(b.history(), "auth_errors", params).passed is True
    _api(b, 9, "fail", "internal error", status=500)
    result = run_check(b.history(), "auth_errors", params)
    assert result.passed is False and "internal error" in result.detail
    _api(b, 10, "ok")
    assert "accepted" in str(run_check(b.history(), "auth_errors", params).data["violations"])


def test_auth_errors_undecided_on_indeterminate_only() -> None:
    b = JournalBuilder()
    b.op(1, "api_call", "info", duration=None)
    result = run_check(b.history(), "auth_errors", {"message": "revoked"})
    assert result.passed is None and result.data["info"] == 1


# -- registry and verdicts -------------------------------------------------------------------


def test_a_crashing_check_is_undecided() -> None:
    class Params(CheckParams):
        pass

    @register("test_crashes", Params)
    def crashes(history: History, params: Params) -> CheckResult:
        raise ZeroDivisionError("boom")

    try:
        result = run_check(JournalBuilder().history(), "test_crashes")
    finally:
        CHECKS.pop("test_crashes")
    assert result.passed is None and "ZeroDivisionError: boom" in result.detail


def test_verdict_priority_and_exit_codes() -> None:
    assert combine([True, None, False]) == "fail"
    assert combine([True, None]) == "unknown"
    assert combine([True, True]) == "pass"
    assert combine([]) == "unknown"
    ok = CheckResult("a", True, "")
    assert verdict([ok]) == "pass"
    assert verdict([ok], run_completed=False) == "unknown"
    assert verdict([CheckResult("b", False, "")], run_completed=False) == "fail"
    assert [exit_code(v) for v in ("pass", "fail", "unknown")] == [0, 1, 2]
