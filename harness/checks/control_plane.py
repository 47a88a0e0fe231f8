"""``control_plane_independent``: named reconnects make no control-plane requests."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from harness.checks.params import FaultScopedParams, selected_faults
from harness.checks.registry import register
from harness.checks.result import CheckResult
from harness.checks.samples import counter_increase, route_matches
from harness.checks.windows import merge
from harness.journal.history import NS_PER_S, History
from harness.journal.records import SampleRecord
from harness.scenario.durations import Duration


class ControlPlaneIndependentParams(FaultScopedParams):
    routes: tuple[str, ...] = Field(default=("*",), description="route globs that count")
    exclude_routes: tuple[str, ...] = Field(default=(), description="route globs that do not")
    window: Literal["reconnect", "run"] = Field(
        default="reconnect", description="fault windows (+grace), or the whole run"
    )
    grace: Duration = Field(default=10.0, description="extend each fault window after its stop")
    max_requests: int = Field(default=0, ge=0)


def _increase(
    samples: list[SampleRecord], start: int, end: int, params: ControlPlaneIndependentParams
) -> dict[str, int] | None:
    """Per-route counter increase from the last sample at/before ``start`` to the first
    at/after ``end``; ``None`` if either is missing."""
    before = [i for i, s in enumerate(samples) if s.t <= start]
    after = [i for i, s in enumerate(samples) if s.t >= end]
    if not before or not after:
        return None
    span = samples[before[-1] : after[0] + 1]
    routes = sorted({r for s in span for r in (s.value.get("requests") or {})})
    increases: dict[str, int] = {}
    for route in routes:
        if not route_matches(route, params.routes, params.exclude_routes):
            continue
        values = [int((s.value.get("requests") or {}).get(route, 0)) for s in span]
        grown = counter_increase(values)
        if grown:
            increases[route] = grown
    return increases


@register("control_plane_independent", ControlPlaneIndependentParams)
def control_plane_independent(
    history: History, params: ControlPlaneIndependentParams
) -> CheckResult:
    """Control-plane request counters do not grow across reconnect windows (or the run).

    Uses ``controlplane`` samples (cumulative ``requests`` by route; a drop is a restart). A
    window is measured from the last good sample before it to the first good sample after it,
    so samples that fail during a control-plane outage only widen the measured span. The
    tunnel/PoP scope does not apply (counters are per route).
    """
    name = "control_plane_independent"
    samples = [s for s in history.samples_of("controlplane") if "requests" in s.value]
    if len(samples) < 2:
        return CheckResult(name, None, f"{len(samples)} control-plane sample(s); need 2")
    if params.window == "run":
        windows = [(samples[0].t, samples[-1].t)]
    else:
        faults = selected_faults(history, params)
        if not faults:
            return CheckResult(name, None, "no fault windows to measure")
        grace = round(params.grace * NS_PER_S)
        windows = merge((w.start_t, w.end_or(history.end_t) + grace) for w in faults)
    rows: list[dict[str, Any]] = []
    for start, end in windows:
        grown = _increase(samples, start, end, params)
        rows.append(
            {
                "from_s": round(history.seconds(start), 3),
                "to_s": round(history.seconds(end), 3),
                "requests": None if grown is None else sum(grown.values()),
                "routes": grown,
            }
        )
    data: dict[str, Any] = {"windows": rows, "max_requests": params.max_requests}
    over = [r for r in rows if r["requests"] is not None and r["requests"] > params.max_requests]
    if over:
        first = over[0]
        return CheckResult(
            name,
            False,
            f"{sum(r['requests'] for r in over)} control-plane request(s) in {len(over)} window(s)"
            f" (max {params.max_requests}); first {first['from_s']}-{first['to_s']}s: "
            + ", ".join(f"{route} +{n}" for route, n in sorted(first["routes"].items())),
            data,
        )
    unmeasured = [r for r in rows if r["requests"] is None]
    if unmeasured:
        return CheckResult(
            name,
            None,
            f"{len(unmeasured)} window(s) lack a control-plane sample before or after them",
            data,
        )
    total = sum(r["requests"] for r in rows)
    return CheckResult(
        name,
        True,
        f"{total} counted control-plane request(s) in {len(rows)} window(s) "
        f"(max {params.max_requests})",
        data,
    )
