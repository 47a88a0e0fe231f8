"""``retry_cadence``: while no PoP can be reached, every connection slot keeps dialling at least
once per retry cap (exponential backoff with a cap, never a connector that gives up or waits
far longer than its cap)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from harness.checks.params import FaultScopedParams, selected_faults
from harness.checks.registry import register
from harness.checks.result import CheckResult
from harness.checks.samples import connector_samples, connector_sources
from harness.journal.history import NS_PER_S, History
from harness.journal.records import SampleRecord
from harness.scenario.durations import Duration, format_duration


class RetryCadenceParams(FaultScopedParams):
    """Real seconds. The window is where every selected fault is in effect at once."""

    cap: Duration = Field(gt=0, description="the connector's retry cap (largest backoff wait)")
    warmup: Duration = Field(
        default=4.0, ge=0, description="from the window's start: the backoff reaching its cap"
    )
    slack: Duration = Field(
        default=0.25, ge=0, description="added to the cap per wait (a refused dial, the loop)"
    )
    slots: int | None = Field(
        default=None, ge=1, description="dialling slots per connector (default: HA connections)"
    )


def _dial_failures(sample: SampleRecord) -> int:
    value = sample.value.get("dial_failures", 0)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


@register("retry_cadence", RetryCadenceParams)
def retry_cadence(history: History, params: RetryCadenceParams) -> CheckResult:
    """While every selected fault is in effect, each connector dials at least
    ``slots x floor(span / (cap + slack))`` times after the warm-up.

    Each slot waits at most ``cap`` between failed dials, so in any span of length L it dials
    at least ``floor(L / (cap + slack))`` times; the connector's cumulative failed-dial count
    (scraped) must grow by that much per slot between the first and the last sample of the
    window after ``warmup``.
    """
    name = "retry_cadence"
    faults = selected_faults(history, params)
    if not faults:
        return CheckResult(name, None, "no selected faults in the journal")
    start = max(w.start_t for w in faults)
    end = min(w.end_or(history.end_t) for w in faults)
    begin = start + round(params.warmup * NS_PER_S)
    if end <= begin:
        return CheckResult(name, None, "the selected faults never overlap for longer than warmup")
    slots = params.slots or (history.run.ha_connections if history.run else 4)
    gap = params.cap + params.slack
    rows: list[dict[str, Any]] = []
    for tunnel in history.tunnel_names():
        for source in connector_sources(history, tunnel):
            inside = [s for s in connector_samples(history, tunnel, source) if begin <= s.t <= end]
            row: dict[str, Any] = {"connector": source, "samples": len(inside)}
            if len(inside) < 2:
                row["state"] = "undecided"
                rows.append(row)
                continue
            span = (inside[-1].t - inside[0].t) / NS_PER_S
            dials = _dial_failures(inside[-1]) - _dial_failures(inside[0])
            least = slots * int(span // gap)
            row.update(span_s=round(span, 3), dials=dials, least=least)
            row["state"] = "ok" if dials >= least else "slow"
            rows.append(row)
    data: dict[str, Any] = {
        "window_s": [round(history.seconds(begin), 3), round(history.seconds(end), 3)],
        "cap_s": params.cap,
        "connectors": rows,
    }
    slow = [r for r in rows if r["state"] == "slow"]
    if slow:
        first = slow[0]
        return CheckResult(
            name,
            False,
            f"{first['connector']} dialled {first['dials']} time(s) in {first['span_s']}s with "
            f"no PoP reachable; {slots} slots retrying at least every "
            f"{format_duration(params.cap)} make at least {first['least']}",
            data,
        )
    if not rows or any(r["state"] == "undecided" for r in rows):
        return CheckResult(
            name, None, "a connector has fewer than two metric samples in the window", data
        )
    worst = min(rows, key=lambda r: r["dials"] - r["least"])
    return CheckResult(
        name,
        True,
        f"{len(rows)} connector(s) kept dialling with no PoP reachable: fewest "
        f"{worst['dials']} dials in {worst['span_s']}s (at least {worst['least']} with a "
        f"{format_duration(params.cap)} cap)",
        data,
    )
