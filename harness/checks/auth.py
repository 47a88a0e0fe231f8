"""``auth_errors``: operations that must be refused are refused, with the expected message."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from harness.checks.params import CheckParams, scoped_operations
from harness.checks.registry import register
from harness.checks.result import CheckResult
from harness.journal.history import NS_PER_S, History, Operation
from harness.scenario.durations import Duration
from harness.scenario.faults import FAULT_KINDS


class AuthErrorsParams(CheckParams):
    functions: tuple[str, ...] = Field(default=("api_call",), min_length=1)
    match: dict[str, Any] = Field(default_factory=dict, description="value fields to select ops")
    message: str = Field(min_length=1, description="text the refusal must contain")
    status: int | None = Field(default=None, description="expected status code, if any")
    error_code: int | None = Field(
        default=None, description="expected error_code (API envelope code, edge error code)"
    )
    min_count: int = Field(default=1, ge=1)
    after_fault: str | None = Field(
        default=None, description="only ops invoked after this fault kind first started"
    )
    settle: Duration = Field(
        default=0.0, ge=0, description="with after_fault: skip ops invoked this soon after it"
    )

    @field_validator("after_fault")
    @classmethod
    def _known_fault(cls, value: str | None) -> str | None:
        if value is not None and value not in FAULT_KINDS:
            raise ValueError(f'unknown fault "{value}" (known: {", ".join(FAULT_KINDS)})')
        return value


def _refusal_text(op: Operation) -> str:
    return " ".join(str(x) for x in (op.error, op.value.get("message")) if x)


@register("auth_errors", AuthErrorsParams)
def auth_errors(history: History, params: AuthErrorsParams) -> CheckResult:
    """Every selected operation was refused (``fail``) with the expected message (and status).

    An ``ok`` is a violation (it should have been refused); ``info`` operations are left out.
    Undecided if fewer than ``min_count`` were refused or accepted.
    """
    name = "auth_errors"
    since = 0
    if params.after_fault is not None:
        starts = [w.start_t for w in history.faults if w.fault == params.after_fault]
        if not starts:
            return CheckResult(name, None, f"no {params.after_fault} fault in the journal")
        since = min(starts) + round(params.settle * NS_PER_S)
    ops = [
        op
        for op in scoped_operations(history, params, params.functions)
        if op.invoke_t >= since and all(op.value.get(k) == v for k, v in params.match.items())
    ]
    wanted = params.message.lower()
    refused = 0
    bad: list[dict[str, Any]] = []
    for op in ops:
        if op.phase == "info":
            continue
        where = {"t_s": round(history.seconds(op.invoke_t), 3), "op_id": op.op_id, "f": op.f}
        if op.phase == "ok":
            bad.append({**where, "problem": "accepted"})
            continue
        text = _refusal_text(op)
        status = op.value.get("status")
        if wanted not in text.lower():
            bad.append({**where, "problem": f"message {text!r}"})
        elif params.status is not None and status != params.status:
            bad.append({**where, "problem": f"status {status}"})
        elif params.error_code is not None and op.value.get("error_code") != params.error_code:
            bad.append({**where, "problem": f"error_code {op.value.get('error_code')}"})
        else:
            refused += 1
    info = sum(op.phase == "info" for op in ops)
    data: dict[str, Any] = {
        "selected": len(ops),
        "refused_as_expected": refused,
        "info": info,
        "violations": bad[:10],
    }
    if bad:
        first = bad[0]
        return CheckResult(
            name,
            False,
            f"{len(bad)} operation(s) not refused as expected (want {params.message!r}); "
            f"first at {first['t_s']}s: {first['problem']}",
            data,
        )
    if refused < params.min_count:
        return CheckResult(
            name,
            None,
            f"{refused} refusal(s) observed, need {params.min_count} ({info} info)",
            data,
        )
    return CheckResult(name, True, f"{refused} operation(s) refused with {params.message!r}", data)
