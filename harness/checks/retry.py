"""``retry_cadence``: while no PoP can be reached, every connection slot keeps dialling at least
once per retry cap (exponential backoff with a cap, never a connector that gives up or waits
far longer than its cap)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from harness.checks.params import CheckParams, FaultScopedParams, selected_faults
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


class RetryDisciplineParams(CheckParams):
    """How early a redial may be, as seen in the edges' own log timestamps."""

    tolerance: Duration = Field(
        default=0.05, ge=0, description="log timestamps are milliseconds apart at best"
    )


def _attempts(history: History) -> dict[tuple[str, int], list[SampleRecord]]:
    """Registration attempts the edges logged, per connector slot, in the order they happened."""
    slots: dict[tuple[str, int], list[SampleRecord]] = {}
    for sample in history.samples_of("registration"):
        connector, index = sample.value.get("connector_id"), sample.value.get("conn_index")
        if isinstance(connector, str) and isinstance(index, int):
            slots.setdefault((connector, index), []).append(sample)
    for attempts in slots.values():
        attempts.sort(key=lambda s: float(s.value.get("at") or 0.0))
    return slots


@register("retry_discipline", RetryDisciplineParams)
def retry_discipline(history: History, params: RetryDisciplineParams) -> CheckResult:
    """After a refusal, a connector slot waits the edge's ``retry_after`` before it registers
    there again, and never registers again after a permanent refusal (``should_retry: false``).

    Read from the registration attempts the edges logged (samples ``registration``): for each
    connector slot, the gap from a refusal to that slot's next attempt at the same edge (at any
    edge after a permanent refusal), in the edges' own timestamps.
    """
    name = "retry_discipline"
    slots = _attempts(history)
    hinted = permanent = 0
    bad: list[dict[str, Any]] = []
    for (connector, index), attempts in sorted(slots.items()):
        for at, refusal in enumerate(attempts):
            if refusal.value.get("event") != "refused":
                continue
            hint = refusal.value.get("retry_after")
            final = refusal.value.get("should_retry") is False
            retry_after = float(hint) if isinstance(hint, int | float) else 0.0
            if final:
                permanent += 1
            elif retry_after > 0:
                hinted += 1
            else:
                continue
            # a permanent refusal holds at every edge; a hint is the refusing edge's own
            following = next(
                (a for a in attempts[at + 1 :] if final or a.source == refusal.source), None
            )
            if following is None:
                continue
            gap = float(following.value["at"]) - float(refusal.value["at"])
            if final or gap < retry_after - params.tolerance:
                bad.append(
                    {
                        "t_s": round(history.seconds(following.t), 3),
                        "connector_id": connector,
                        "conn_index": index,
                        "cause": refusal.value.get("cause"),
                        "retry_after": None if final else retry_after,
                        "gap_s": round(gap, 3),
                        "edge": following.source,
                    }
                )
    data: dict[str, Any] = {
        "attempts": sum(len(a) for a in slots.values()),
        "hinted_refusals": hinted,
        "permanent_refusals": permanent,
        "violations": bad[:20],
        "violation_count": len(bad),
    }
    if bad:
        first = bad[0]
        wanted = (
            "never (permanent refusal)"
            if first["retry_after"] is None
            else f"after {first['retry_after']}s"
        )
        return CheckResult(
            name,
            False,
            f"{len(bad)} early registration(s); first: slot {first['conn_index']} of connector "
            f"{first['connector_id'][:8]} registered at {first['edge']} {first['gap_s']}s after "
            f"a refusal ({first['cause']}) that said {wanted}",
            data,
        )
    if not hinted and not permanent:
        return CheckResult(
            name,
            None,
            f"no refusal with a retry_after hint or a permanent one among {data['attempts']} "
            "logged registration attempts (nothing to judge)",
            data,
        )
    return CheckResult(
        name,
        True,
        f"{hinted} refusal(s) with retry_after honoured, {permanent} permanent refusal(s) "
        "never retried",
        data,
    )
