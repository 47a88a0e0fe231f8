"""The checks the catalogue added (failover_within, tunnel_revoked, latency) and the params it
added (availability ``match``, auth_errors ``error_code`` and ``settle``), on synthetic journals:
each passes on a good history, fails on a bad one, and is undecided when it cannot tell."""

from __future__ import annotations

from typing import Any

from harness.checks import CheckResult, run_check
from harness.checks.failover import pops_cut_off
from harness.journal import History, JournalBuilder


def check(history: History, name: str, **params: Any) -> CheckResult:
    return run_check(history, name, params)


# -- failover_within ----------------------------------------------------------------------------


def failover_run(*, moves: bool, hole_until: float = 30.0) -> History:
    """conn-ams black-holed from 10 s: the connector re-homes its 2 ams connections (or not)."""
    b = JournalBuilder()
    b.fault(10, hole_until, "link_blackhole", "conn-ams")
    for i in range(40):
        t = i + 0.5
        if moves and 14 <= t < hole_until:
            b.connector(t, 4, ["fra"] * 4)
        elif moves and 10 <= t < 14:
            b.connector(t, 2, ["fra"] * 2)
        else:
            b.connector(t, 4, ["ams", "fra", "ams", "fra"])
    b.end(40)
    return b.history()


def test_failover_within_passes_when_the_connections_leave_the_lost_pop_in_time() -> None:
    result = check(failover_run(moves=True), "failover_within", bound=8)
    assert result.passed is True, result.detail
    assert result.data["failovers"][0]["failover_s"] == 4.5
    assert result.data["failovers"][0]["avoid"] == ["ams"]


def test_failover_within_fails_when_dead_connections_still_count_as_ams() -> None:
    result = check(failover_run(moves=False), "failover_within", bound=8)
    assert result.passed is False
    assert "never held 4 connections away from ams" in result.detail


def test_failover_within_is_late_or_undecided_by_the_faults_length() -> None:
    assert check(failover_run(moves=True), "failover_within", bound=3).passed is False
    short = failover_run(moves=False, hole_until=12)
    result = check(short, "failover_within", bound=8)
    assert result.passed is None, result.detail  # the hole closed before the bound


def test_failover_needs_a_pop_to_avoid() -> None:
    assert pops_cut_off("conn-ams", ["ams", "fra"]) == ["ams"]
    assert pops_cut_off("edge-fra", ["ams", "fra"]) == ["fra"]
    assert pops_cut_off("ams", ["ams", "fra"]) == ["ams"]
    assert pops_cut_off("cp-broker", ["ams", "fra"]) == []
    b = JournalBuilder()
    b.fault(1, 5, "link_down", "cp-broker")
    b.connector(2, 4, ["ams", "fra"] * 2)
    b.end(10)
    assert check(b.history(), "failover_within", bound=2).passed is None
    assert check(b.history(), "failover_within", bound=2, avoid_pops=["ams"]).passed is False


# -- tunnel_revoked -----------------------------------------------------------------------------


def revocation_run(*, connector_stops: bool, edge_keeps: int = 0) -> History:
    b = JournalBuilder()
    b.fault(10, 10.5, "credential_revocation", "web")
    for i in range(40):
        t = i * 0.5
        revoked = t >= 11
        for pop in ("ams", "fra"):
            left = edge_keeps if pop == "fra" else 0
            b.edge(t + 0.1, pop, {"web-id": left if revoked else 2})
        if revoked and connector_stops:
            b.sample(t + 0.2, "connector", "connector-web", error="ConnectError: refused")
        else:
            b.connector(t + 0.2, 0 if revoked else 4, [] if revoked else ["ams", "fra"] * 2)
    b.end(20)
    return b.history()


def test_tunnel_revoked_passes_when_connections_go_and_the_connector_stops() -> None:
    result = check(revocation_run(connector_stops=True), "tunnel_revoked", bound=5)
    assert result.passed is True, result.detail
    assert result.data["connector_stopped_s"] == 1.2
    assert result.data["edges"]["ams"]["gone_s"] == 1.1


def test_tunnel_revoked_fails_on_a_connector_that_keeps_running() -> None:
    result = check(revocation_run(connector_stops=False), "tunnel_revoked", bound=5)
    assert result.passed is False
    assert "still answers its metrics at the end" in result.detail
    relaxed = check(
        revocation_run(connector_stops=False), "tunnel_revoked", bound=5, connector_stopped=False
    )
    assert relaxed.passed is True


def test_tunnel_revoked_fails_on_an_edge_that_keeps_connections() -> None:
    result = check(revocation_run(connector_stops=True, edge_keeps=1), "tunnel_revoked", bound=5)
    assert result.passed is False
    assert "edge fra still has 1 connection(s)" in result.detail


def test_tunnel_revoked_is_undecided_without_a_revocation() -> None:
    b = JournalBuilder()
    b.edge(1, "ams", {"web-id": 2})
    b.end(2)
    assert check(b.history(), "tunnel_revoked", bound=5).passed is None


# -- latency ------------------------------------------------------------------------------------


def latency_run(slow: float, *, unanswered: int = 0) -> History:
    b = JournalBuilder()
    b.fault(10, 20, "link_latency", "conn-ams")
    for i in range(300):
        t = i * 0.1
        during = 10 <= t < 20
        b.request(t, latency=slow if during else 0.02, pop="ams")
    for i in range(unanswered):
        b.request(12 + i * 0.01, "info", latency=None)
    b.end(40)
    return b.history()


def test_latency_quantile_within_and_above_the_bound() -> None:
    good = check(latency_run(0.8), "latency", window="during_fault", max=2)
    assert good.passed is True, good.detail
    assert good.data["value_s"] == 0.8
    assert check(latency_run(2.5), "latency", window="during_fault", max=2).passed is False
    after = check(latency_run(2.5), "latency", window="outside_fault", grace=3, max=0.1)
    assert after.passed is True, after.detail


def test_latency_counts_unanswered_requests_as_slow_unless_told() -> None:
    history = latency_run(0.1, unanswered=5)
    slow = check(history, "latency", window="during_fault", max=2)  # p99 of 105: a timeout
    assert slow.passed is False and "no answer" in slow.detail
    excluded = check(history, "latency", window="during_fault", max=2, info="exclude")
    assert excluded.passed is True


def test_latency_is_undecided_with_too_few_requests() -> None:
    b = JournalBuilder()
    b.request(1)
    b.end(2)
    assert check(b.history(), "latency", max=1).passed is None


# -- availability match, auth_errors error_code and settle -------------------------------------


def management_run(*, old_code: int = 10003, refused_from: float = 10.0) -> History:
    b = JournalBuilder()
    b.fault(10, 10.2, "token_rollover")
    for i in range(20):
        t = i * 1.0
        refused = t >= refused_from
        b.op(
            t,
            "api_call",
            "fail" if refused else "ok",
            process="management",
            invoke_value={"action": "tunnel_list", "credential": "old"},
            value={
                "status": 401,
                "error_code": old_code,
                "message": "token rolled; run `outlast tunnel login` again",
            }
            if refused
            else {"status": 200},
        )
        if t > 10:
            b.op(
                t + 0.1,
                "api_call",
                "ok",
                process="management",
                invoke_value={"action": "tunnel_list", "credential": "fresh"},
                value={"status": 200},
            )
    b.end(21)
    return b.history()


def test_auth_errors_checks_the_error_code() -> None:
    params: dict[str, Any] = {
        "after_fault": "token_rollover",
        "match": {"credential": "old"},
        "message": "outlast tunnel login",
        "status": 401,
        "error_code": 10003,
    }
    assert check(management_run(), "auth_errors", **params).passed is True
    wrong = check(management_run(old_code=10002), "auth_errors", **params)
    assert wrong.passed is False and "error_code 10002" in wrong.detail


def test_auth_errors_settle_skips_operations_right_after_the_fault() -> None:
    params: dict[str, Any] = {"after_fault": "token_rollover", "message": "outlast tunnel login"}
    late = management_run(refused_from=12)
    assert check(late, "auth_errors", match={"credential": "old"}, **params).passed is False
    settled = check(late, "auth_errors", match={"credential": "old"}, settle=2.5, **params)
    assert settled.passed is True, settled.detail


def test_availability_match_selects_operations_by_value() -> None:
    history = management_run()
    fresh = check(
        history, "availability", functions=["api_call"], match={"credential": "fresh"}, min=1.0
    )
    assert fresh.passed is True and fresh.data["ok"] == 9
    old = check(history, "availability", functions=["api_call"], match={"credential": "old"}, min=1)
    assert old.passed is False
