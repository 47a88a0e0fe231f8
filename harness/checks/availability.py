"""``availability``: share of decided visitor requests that succeeded, per window."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from harness.checks.params import FaultScopedParams, scoped_operations, selected_faults
from harness.checks.registry import register
from harness.checks.result import CheckResult
from harness.checks.windows import merge, overlaps
from harness.journal.history import NS_PER_S, History
from harness.journal.records import VISITOR_FUNCTIONS
from harness.scenario.durations import Duration, format_duration
from harness.scenario.faults import FAULT_KINDS

Window = Literal["overall", "during_fault", "outside_fault", "between"]


class AvailabilityParams(FaultScopedParams):
    """Bounds are fractions (0.99 = 99 %); give ``min``, ``max`` or both."""

    min: float | None = Field(default=None, ge=0, le=1)
    max: float | None = Field(default=None, ge=0, le=1)
    window: Window = "overall"
    grace: Duration = Field(default=0.0, description="extend each fault window after its stop")
    info: Literal["exclude", "fail"] = Field(
        default="exclude", description="indeterminate requests: left out, or counted as failed"
    )
    functions: tuple[str, ...] = Field(default=VISITOR_FUNCTIONS, min_length=1)
    match: dict[str, Any] = Field(
        default_factory=dict, description="only ops whose value has these fields (equality)"
    )
    min_requests: int = Field(default=1, ge=1, description="fewer decided requests: undecided")
    until_faults: tuple[str, ...] | None = Field(
        default=None,
        description='window "between": from the first start of a selected fault to the last '
        "stop of one of these fault kinds",
    )

    @model_validator(mode="after")
    def _between(self) -> AvailabilityParams:
        if (self.window == "between") != bool(self.until_faults):
            raise ValueError('window "between" and until_faults go together')
        for kind in self.until_faults or ():
            if kind not in FAULT_KINDS:
                raise ValueError(f'unknown fault "{kind}" (known: {", ".join(FAULT_KINDS)})')
        return self

    @model_validator(mode="after")
    def _bounds(self) -> AvailabilityParams:
        if self.min is None and self.max is None:
            raise ValueError("give min (e.g. 0.99) and/or max (e.g. 0.1)")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is above max")
        return self


def window_label(params: AvailabilityParams) -> str:
    if params.window == "overall":
        return "overall"
    kinds = "/".join(params.faults) if params.faults else "fault"
    targets = f" on {'/'.join(params.targets)}" if params.targets else ""
    grace = f" (+{format_duration(params.grace)} grace)" if params.grace else ""
    if params.window == "between":
        until = "/".join(params.until_faults or ())
        return f"from the first {kinds}{targets} until the end of {until}{grace}"
    where = "during" if params.window == "during_fault" else "outside"
    return f"{where} {kinds} windows{targets}{grace}"


@register("availability", AvailabilityParams)
def availability(history: History, params: AvailabilityParams) -> CheckResult:
    """Share of decided visitor requests that succeeded, overall or during/outside faults.

    An operation belongs to a fault window if its invoke..completion interval overlaps it.
    Indeterminate (``info``) requests are left out (``info: exclude``, the default) or counted
    as failures (``info: fail``).
    """
    name = "availability"
    ops = [
        op
        for op in scoped_operations(history, params, params.functions)
        if all(op.value.get(k) == v for k, v in params.match.items())
    ]
    where = window_label(params)
    if params.window != "overall":
        faults = selected_faults(history, params)
        if not faults:
            return CheckResult(name, None, f"no fault windows to measure {where}")
        grace = round(params.grace * NS_PER_S)
        windows = merge((w.start_t, w.end_or(history.end_t) + grace) for w in faults)
        if params.window == "between":
            ends = [w for w in history.faults if w.fault in (params.until_faults or ())]
            if not ends:
                return CheckResult(name, None, f"no fault windows to measure {where}")
            end = max(w.end_or(history.end_t) for w in ends) + grace
            windows = merge([(min(w.start_t for w in faults), end)])
        during = params.window != "outside_fault"
        ops = [
            op
            for op in ops
            if overlaps(windows, op.invoke_t, op.complete_t or history.end_t) == during
        ]
    ok = sum(op.phase == "ok" for op in ops)
    fail = sum(op.phase == "fail" for op in ops)
    info = sum(op.phase == "info" for op in ops)
    if params.info == "fail":
        fail += info
    decided = ok + fail
    data: dict[str, object] = {"window": where, "ok": ok, "fail": fail, "info": info}
    info_note = (
        f"{info} indeterminate counted as failed"
        if params.info == "fail"
        else f"{info} indeterminate left out"
    )
    if decided < params.min_requests:
        return CheckResult(
            name,
            None,
            f"{decided} decided request(s) {where} (need {params.min_requests}); {info_note}",
            data,
        )
    value = ok / decided
    data["availability"] = round(value, 6)
    problems = []
    if params.min is not None and value < params.min:
        problems.append(f"below min {params.min}")
    if params.max is not None and value > params.max:
        problems.append(f"above max {params.max}")
    bounds = " ".join(
        f"{key} {bound}"
        for key, bound in (("min", params.min), ("max", params.max))
        if bound is not None
    )
    detail = f"availability {value:.4f} {where} ({ok} ok / {decided} decided, {info_note}); " + (
        ", ".join(problems) if problems else f"within {bounds}"
    )
    return CheckResult(name, not problems, detail, data)
