"""``latency``: a quantile of visitor request latency stays under a bound, per window."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field

from harness.checks.params import FaultScopedParams, scoped_operations, selected_faults
from harness.checks.registry import register
from harness.checks.result import CheckResult
from harness.checks.windows import merge, overlaps
from harness.journal.history import NS_PER_S, History
from harness.journal.records import VISITOR_FUNCTIONS
from harness.scenario.durations import Duration, format_duration


class LatencyParams(FaultScopedParams):
    """``max`` is real time; ``quantile`` 0.99 is the p99."""

    max: Duration = Field(gt=0, description="bound on the quantile, e.g. 2s")
    quantile: float = Field(default=0.99, gt=0, le=1)
    window: Literal["overall", "during_fault", "outside_fault"] = "overall"
    grace: Duration = Field(default=0.0, description="extend each fault window after its stop")
    info: Literal["slow", "exclude"] = Field(
        default="slow",
        description="requests that never answered: slower than any bound, or left out",
    )
    functions: tuple[str, ...] = Field(default=VISITOR_FUNCTIONS, min_length=1)
    min_requests: int = Field(default=10, ge=1, description="fewer measured requests: undecided")


def nearest_rank(values: list[float], quantile: float) -> float:
    """The nearest-rank quantile of ``values`` (sorted ascending, not empty)."""
    return values[max(0, math.ceil(quantile * len(values)) - 1)]


@register("latency", LatencyParams)
def latency(history: History, params: LatencyParams) -> CheckResult:
    """The ``quantile`` of served requests' latency (invoke to completion) is at most ``max``.

    Measured over ``ok`` requests; ``fail`` requests are availability's business and left out.
    Requests without an answer (``info``) count as slower than any bound unless
    ``info: exclude``, so a probe timeout can never make latency look better.
    """
    name = "latency"
    ops = scoped_operations(history, params, params.functions)
    where = params.window.replace("_", " ")
    if params.window != "overall":
        faults = selected_faults(history, params)
        if not faults:
            return CheckResult(name, None, f"no fault windows to measure latency {where}")
        grace = round(params.grace * NS_PER_S)
        windows = merge((w.start_t, w.end_or(history.end_t) + grace) for w in faults)
        during = params.window == "during_fault"
        ops = [
            op
            for op in ops
            if overlaps(windows, op.invoke_t, op.complete_t or history.end_t) == during
        ]
    served = sorted(
        (op.complete_t - op.invoke_t) / NS_PER_S
        for op in ops
        if op.phase == "ok" and op.complete_t is not None
    )
    unanswered = sum(op.phase == "info" for op in ops)
    values = served + ([math.inf] * unanswered if params.info == "slow" else [])
    label = f"p{params.quantile * 100:g}"
    data: dict[str, Any] = {
        "window": where,
        "quantile": params.quantile,
        "served": len(served),
        "unanswered": unanswered,
        "max_s": params.max,
    }
    if len(values) < params.min_requests:
        return CheckResult(
            name,
            None,
            f"{len(values)} measured request(s) {where} (need {params.min_requests})",
            data,
        )
    value = nearest_rank(values, params.quantile)
    data["value_s"] = None if math.isinf(value) else round(value, 4)
    data["worst_s"] = round(served[-1], 4) if served else None
    shown = "no answer" if math.isinf(value) else f"{value * 1000:.0f} ms"
    bound = format_duration(params.max)
    counted = f"{len(served)} served" + (
        f", {unanswered} unanswered counted as slow" if params.info == "slow" and unanswered else ""
    )
    if value > params.max:
        return CheckResult(
            name, False, f"{label} latency {where} is {shown}, above {bound} ({counted})", data
        )
    return CheckResult(
        name, True, f"{label} latency {where} is {shown}, within {bound} ({counted})", data
    )
