"""``reconnect_within``: after every heal, service and full HA come back within a bound."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from harness.checks.params import (
    FaultScopedParams,
    scoped_operations,
    scoped_tunnels,
    selected_faults,
)
from harness.checks.registry import register
from harness.checks.result import CheckResult
from harness.checks.samples import connector_samples, connector_sources, ha_connections
from harness.journal.history import NS_PER_S, History
from harness.journal.records import SampleRecord
from harness.scenario.durations import Duration, format_duration

Status = Literal["ok", "late", "censored", "undecided"]


class ReconnectWithinParams(FaultScopedParams):
    """Bounds are real seconds measured from each fault's stop."""

    bound: Duration = Field(gt=0, description="heal -> first served request")
    ha_bound: Duration | None = Field(default=None, description="heal -> full HA (default bound)")
    ha_connections: int | None = Field(default=None, ge=1, description="default: run metadata")
    require_ha: bool = Field(default=True, description="also measure HA from connector samples")


def _judge(
    recovered_at: int | None, healed_at: int, bound_ns: int, later_starts: Sequence[int], end: int
) -> Status:
    deadline = healed_at + bound_ns
    if recovered_at is not None and recovered_at <= deadline:
        return "ok"
    interrupting = [s for s in later_starts if healed_at < s <= deadline]
    if interrupting and (recovered_at is None or recovered_at > interrupting[0]):
        return "censored"
    if recovered_at is None and end < deadline:
        return "undecided"
    return "late"


def _seconds(delta: int | None) -> float | None:
    return None if delta is None else round(delta / NS_PER_S, 3)


@register("reconnect_within", ReconnectWithinParams)
def reconnect_within(history: History, params: ReconnectWithinParams) -> CheckResult:
    """After each healed fault, each tunnel serves a request and regains full HA in time.

    Served: the first ``ok`` visitor request of the tunnel invoked after the heal (``fail`` and
    ``info`` do not count as served). HA: the first connector sample after the heal with at
    least ``ha_connections``. A heal whose bound is cut short by the next selected fault
    starting before recovery is "censored" (not judged); one whose journal ends first is
    undecided.
    """
    name = "reconnect_within"
    faults = selected_faults(history, params)
    heals = [w for w in faults if w.stop_t is not None and w.error is None]
    if not heals:
        return CheckResult(name, None, "no healed faults to measure")
    tunnels = scoped_tunnels(history, params)
    if not tunnels:
        return CheckResult(name, None, "no tunnels in scope")
    starts = sorted(w.start_t for w in faults)
    expected_ha = params.ha_connections or (history.run.ha_connections if history.run else 4)
    bound = round(params.bound * NS_PER_S)
    ha_bound = round((params.ha_bound or params.bound) * NS_PER_S)
    ops = scoped_operations(history, params)
    rows: list[dict[str, Any]] = []

    def full(sample: SampleRecord) -> bool:
        return ha_connections(sample) >= expected_ha

    for tunnel in tunnels:
        served_ops = [op for op in ops if op.phase == "ok" and history.tunnel_of(op) == tunnel]
        sources = connector_sources(history, tunnel)
        replicas = [connector_samples(history, tunnel, source) for source in sources]
        samples = [s for replica in replicas for s in replica]
        for heal in heals:
            healed = heal.stop_t
            assert healed is not None
            served = next((op for op in served_ops if op.invoke_t >= healed), None)
            served_t = None if served is None else served.complete_t
            row: dict[str, Any] = {
                "fault_id": heal.fault_id,
                "fault": heal.label(),
                "tunnel": tunnel,
                "healed_at_s": round(history.seconds(healed), 3),
                "served_s": _seconds(None if served_t is None else served_t - healed),
                "served": _judge(served_t, healed, bound, starts, history.end_t),
            }
            if params.require_ha:
                # Full HA once every replica is back at its HA connections.
                firsts = [
                    next((s.t for s in replica if s.t >= healed and full(s)), None)
                    for replica in replicas
                ]
                full_t = None if None in firsts else max(t for t in firsts if t is not None)
                row["ha_s"] = _seconds(None if full_t is None else full_t - healed)
                row["ha"] = (
                    _judge(full_t, healed, ha_bound, starts, history.end_t)
                    if samples
                    else "undecided"
                )
            rows.append(row)
    statuses = [row[k] for row in rows for k in ("served", "ha") if k in row]
    late = [
        f"{row['fault']} healed at {row['healed_at_s']}s: {row['tunnel']} "
        + " and ".join(
            what
            for key, what in (("served", "not served"), ("ha", f"not at {expected_ha} HA"))
            if row.get(key) == "late"
        )
        for row in rows
        if "late" in (row["served"], row.get("ha"))
    ]
    worst_served = max((r["served_s"] for r in rows if r["served"] == "ok"), default=None)
    worst_ha = max((r["ha_s"] for r in rows if r.get("ha") == "ok"), default=None)
    data: dict[str, Any] = {
        "heals": rows[:50],
        "worst_served_s": worst_served,
        "worst_ha_s": worst_ha,
        "bound_s": params.bound,
        "ha_bound_s": params.ha_bound or params.bound,
        "ha_connections": expected_ha,
    }
    bound_text = f"within {format_duration(params.bound)}"
    if late:
        return CheckResult(
            name,
            False,
            f"{len(late)} late recovery(ies) ({bound_text}): " + "; ".join(late[:3]),
            data,
        )
    undecided = statuses.count("undecided")
    if "ok" not in statuses or undecided:
        return CheckResult(
            name,
            None,
            f"{undecided} measurement(s) undecided (no samples, or the journal ends too early); "
            f"{statuses.count('ok')} in time",
            data,
        )
    censored = statuses.count("censored")
    ha_text = f", worst full HA ({expected_ha}) {worst_ha}s" if params.require_ha else ""
    return CheckResult(
        name,
        True,
        f"{len(heals)} heal(s) x {len(tunnels)} tunnel(s) recovered {bound_text}: worst first "
        f"served request {worst_served}s{ha_text}"
        + (f"; {censored} cut short by the next fault" if censored else ""),
        data,
    )
