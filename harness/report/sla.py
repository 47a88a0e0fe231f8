"""SLA figures from a journal: availability, error budget, downtime, time to recover, latency.

Definitions (also in ``docs/reports.md``):

* availability = ok / (ok + fail) over visitor requests, in percent; indeterminate (``info``)
  requests are counted but left out of the ratio (as in Jepsen: they may or may not have worked).
* error_budget_consumed = (100 - availability) / (100 - slo): 1.0 means the whole budget.
* downtime window (per tunnel) = from the invoke of a failed request to the invoke of the first
  of ``RECOVERY_RUN`` consecutive successful requests after it (or to the end of the traffic);
  failures interleaved with successes (one PoP of two failing) stay in one window.
* time to recover, per healed fault = from the fault's stop to the completion of the first of
  ``RECOVERY_RUN`` consecutive successful requests invoked after it, the worst over tunnels.
* latency percentiles are nearest-rank over successful visitor requests (invoke -> completion).
* the headline figures are the visitor's view: requests sent to the edge network's anycast
  entry (``view: anycast``) unless the scenario sent them to each PoP's own address
  (``view: pops``). ``pops`` breaks them down by the PoP the visitor reached (from the
  response; ``-`` = no PoP answered, e.g. refused during a route change) and counts the
  requests that PoP forwarded to a peer because it held no connection of the tunnel.
* scope: the headline measures the design under test. In a run with named *and* legacy tunnels
  (the legacy ones are the baseline a postmortem contrasts with) it covers the named tunnels;
  every tunnel is in ``tunnels``. Requests to a tunnel after its deliberate deletion
  (``credential_revocation``) are the intended outcome, not downtime: they are left out of every
  figure and counted in ``after_revocation``. Likewise the scenario's planned downtime
  (``slo.exclude_faults``): requests invoked while such a fault is active are left out and
  counted in ``excluded``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from harness.journal.history import NS_PER_S, History, Operation

RECOVERY_RUN = 3
PERCENTILE_METHOD = "nearest-rank"
MAX_WINDOWS = 200


def nearest_rank(sorted_values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-quantile (``0 < q <= 1``) of ascending ``sorted_values``."""
    if not sorted_values:
        raise ValueError("no values")
    index = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[index]


def latency_ms(ops: Sequence[Operation]) -> dict[str, Any]:
    """p50/p95/p99/max of successful operations, in ms (``None`` without any)."""
    values = sorted(
        op.latency_ns / 1e6 for op in ops if op.phase == "ok" and op.latency_ns is not None
    )
    result: dict[str, Any] = {"method": PERCENTILE_METHOD, "count": len(values)}
    for key, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0)):
        result[key] = round(nearest_rank(values, q), 3) if values else None
    return result


def availability_percent(ok: int, fail: int) -> float | None:
    decided = ok + fail
    return None if decided == 0 else round(100.0 * ok / decided, 4)


def budget_consumed(availability: float | None, slo: float | None) -> float | None:
    if availability is None or slo is None:
        return None
    return round((100.0 - availability) / (100.0 - slo), 4)


def _by_tunnel(history: History, ops: Sequence[Operation]) -> dict[str, list[Operation]]:
    groups: dict[str, list[Operation]] = {}
    for op in ops:
        groups.setdefault(history.tunnel_of(op) or "-", []).append(op)
    return dict(sorted(groups.items()))


def downtime_windows(history: History, ops: Sequence[Operation]) -> list[dict[str, Any]]:
    """Per tunnel, the spans during which its requests failed (see module docstring)."""
    windows: list[dict[str, Any]] = []
    for tunnel, group in _by_tunnel(history, ops).items():
        decided = [op for op in group if op.phase != "info"]
        start: Operation | None = None
        failed = 0
        streak: list[Operation] = []
        for op in decided:
            if op.phase == "fail":
                if start is None:
                    start, failed = op, 0
                failed += 1
                streak = []
            elif start is not None:
                streak.append(op)
                if len(streak) == RECOVERY_RUN:
                    windows.append(
                        _window(history, tunnel, start.invoke_t, streak[0].invoke_t, failed)
                    )
                    start, streak = None, []
        if start is not None:
            if streak:
                end = streak[0].invoke_t
            else:
                last = decided[-1]
                end = last.complete_t if last.complete_t is not None else last.invoke_t
            windows.append(_window(history, tunnel, start.invoke_t, end, failed))
    windows.sort(key=lambda w: (w["start_s"], w["tunnel"]))
    return windows


def _window(history: History, tunnel: str, start: int, end: int, failed: int) -> dict[str, Any]:
    return {
        "tunnel": tunnel,
        "start_s": round(history.seconds(start), 3),
        "end_s": round(history.seconds(end), 3),
        "duration_s": round((end - start) / NS_PER_S, 3),
        "failed": failed,
    }


def recoveries(history: History, ops: Sequence[Operation]) -> list[dict[str, Any]]:
    """Time to recover after every healed fault (see module docstring)."""
    groups = _by_tunnel(history, ops)
    rows: list[dict[str, Any]] = []
    for fault in history.faults:
        if fault.stop_t is None or fault.error is not None:
            continue
        healed = fault.stop_t
        worst: int | None = 0
        for group in groups.values():
            recovered = _recovered_at(group, healed)
            if recovered is None:
                worst = None
                break
            assert worst is not None
            worst = max(worst, recovered - healed)
        rows.append(
            {
                "fault_id": fault.fault_id,
                "fault": fault.label(),
                "healed_at_s": round(history.seconds(healed), 3),
                "ttr_s": None if worst is None else round(worst / NS_PER_S, 3),
            }
        )
    return rows


def _recovered_at(group: Sequence[Operation], healed: int) -> int | None:
    streak: list[Operation] = []
    for op in group:
        if op.invoke_t < healed or op.phase == "info":
            continue
        if op.phase == "ok":
            streak.append(op)
            if len(streak) == RECOVERY_RUN:
                return streak[0].complete_t
        else:
            streak = []
    return None


def _landing_pop(op: Operation) -> str:
    return op.pop or "-"


def per_pop(history: History, ops: Sequence[Operation]) -> dict[str, Any]:
    """Visitor requests by the PoP that answered them (a diagnostic beside the headline)."""
    groups: dict[str, list[Operation]] = {}
    for op in ops:
        groups.setdefault(_landing_pop(op), []).append(op)
    table: dict[str, Any] = {}
    for pop, group in sorted(groups.items(), key=lambda item: (item[0] == "-", item[0])):
        p_ok = sum(op.phase == "ok" for op in group)
        p_fail = sum(op.phase == "fail" for op in group)
        forwarded = [
            op
            for op in group
            if isinstance(op.value.get("tunnel_pop"), str) and op.value["tunnel_pop"] != pop
        ]
        table[pop] = {
            "requests": len(group),
            "failed": p_fail,
            "indeterminate": sum(op.phase == "info" for op in group),
            "availability": availability_percent(p_ok, p_fail),
            "forwarded": len(forwarded),
        }
    return table


def _view(ops: Sequence[Operation]) -> str:
    entries = {op.value.get("entry", op.pop) for op in ops}
    return "anycast" if entries == {"anycast"} else "pops" if "anycast" not in entries else "mixed"


def _revoked_at(history: History) -> dict[str, int]:
    """Tunnel name -> when its credentials were revoked (the fault's start)."""
    revoked: dict[str, int] = {}
    for fault in history.faults:
        if fault.fault == "credential_revocation" and fault.target and fault.error is None:
            revoked[fault.target] = min(fault.start_t, revoked.get(fault.target, fault.start_t))
    return revoked


def _scope(history: History) -> str:
    """``named`` when named and legacy tunnels ran side by side (legacy is the baseline)."""
    kinds = {history.tunnel_kind(t) for t in history.tunnel_names()}
    return "named" if {"named", "legacy"} <= kinds else "all"


def _planned(history: History, kinds: Sequence[str]) -> list[tuple[int, int]]:
    """(start, end) of every fault of ``kinds`` (planned downtime), on the journal clock."""
    return [
        (fault.start_t, fault.end_or(history.end_t))
        for fault in history.faults
        if fault.fault in kinds and fault.error is None
    ]


def compute_sla(
    history: History,
    slo: float | None,
    latency_p99_slo_ms: float | None = None,
    exclude_faults: Sequence[str] = (),
) -> dict[str, Any]:
    """The ``sla`` object of ``summary.json`` (``slo`` in percent)."""
    revoked = _revoked_at(history)
    unrevoked = [
        op
        for op in history.visitor_ops()
        if not (
            (tunnel := history.tunnel_of(op)) in revoked and op.invoke_t >= revoked[tunnel or ""]
        )
    ]
    after_revocation = len(history.visitor_ops()) - len(unrevoked)
    planned = _planned(history, exclude_faults)
    measured = [
        op for op in unrevoked if not any(start <= op.invoke_t <= end for start, end in planned)
    ]
    excluded = len(unrevoked) - len(measured)
    every_tunnel = measured
    scope = _scope(history)
    ops = [
        op
        for op in measured
        if scope == "all" or history.tunnel_kind(history.tunnel_of(op) or "") == "named"
    ]
    ok = sum(op.phase == "ok" for op in ops)
    fail = sum(op.phase == "fail" for op in ops)
    info = sum(op.phase == "info" for op in ops)
    availability = availability_percent(ok, fail)
    all_windows = downtime_windows(history, every_tunnel)  # every tunnel's, labelled
    in_scope = {history.tunnel_of(op) or "-" for op in ops}
    windows = [w for w in all_windows if w["tunnel"] in in_scope]
    recovered = recoveries(history, ops)
    ttrs = [r["ttr_s"] for r in recovered if r["ttr_s"] is not None]
    latency = latency_ms(ops)
    per_tunnel: dict[str, Any] = {}
    for tunnel, group in _by_tunnel(history, every_tunnel).items():
        t_ok = sum(op.phase == "ok" for op in group)
        t_fail = sum(op.phase == "fail" for op in group)
        t_avail = availability_percent(t_ok, t_fail)
        per_tunnel[tunnel] = {
            "kind": history.tunnel_kind(tunnel) if tunnel != "-" else None,
            "requests": len(group),
            "failed": t_fail,
            "indeterminate": sum(op.phase == "info" for op in group),
            "availability": t_avail,
            "error_budget_consumed": budget_consumed(t_avail, slo),
            "downtime_s": round(
                sum(w["duration_s"] for w in all_windows if w["tunnel"] == tunnel), 3
            ),
        }
    return {
        "view": _view(ops) if ops else None,
        "scope": scope,
        "after_revocation": after_revocation,
        "excluded": excluded,
        "exclude_faults": list(exclude_faults),
        "availability": availability,
        "availability_method": "ok / (ok + fail) in percent; indeterminate left out",
        "requests": len(ops),
        "ok": ok,
        "failed": fail,
        "indeterminate": info,
        "slo": slo,
        "error_budget_consumed": budget_consumed(availability, slo),
        "downtime_windows": all_windows[:MAX_WINDOWS],
        "downtime_window_count": len(all_windows),
        "downtime_s": round(sum(w["duration_s"] for w in windows), 3),
        "time_to_recover_s": max(ttrs) if ttrs else None,
        "recoveries": recovered,
        "unrecovered_faults": sum(r["ttr_s"] is None for r in recovered),
        "latency_ms": latency,
        "latency_p99_slo_ms": latency_p99_slo_ms,
        "latency_p99_within_slo": (
            None
            if latency_p99_slo_ms is None or latency["p99"] is None
            else latency["p99"] <= latency_p99_slo_ms
        ),
        "tunnels": per_tunnel,
        "pops": per_pop(history, ops),
        "forwarded": sum(
            isinstance(op.value.get("tunnel_pop"), str) and op.value["tunnel_pop"] != op.pop
            for op in ops
        ),
    }
