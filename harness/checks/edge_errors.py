"""``visitor_errors``: a request the edge cannot serve gets an edge error, never a bare 200."""

from __future__ import annotations

from typing import Any

from harness.checks.params import CheckParams, scoped_operations
from harness.checks.registry import register
from harness.checks.result import CheckResult
from harness.journal.history import History


@register("visitor_errors", CheckParams)
def visitor_errors(history: History, params: CheckParams) -> CheckResult:
    """Every failed visitor HTTP request that got an answer got an edge error: a status other
    than 200 (530 with its error code when no connection is reachable), never a 200 whose body
    is not the origin's answer (an outage that looks like success)."""
    name = "visitor_errors"
    answered = 0
    bad: list[dict[str, Any]] = []
    for op in scoped_operations(history, params):
        status = op.value.get("status")
        if op.phase != "fail" or not isinstance(status, int) or status == 101:
            continue
        answered += 1
        if status == 200 and "not the origin's" in (op.error or ""):
            bad.append(
                {
                    "t_s": round(history.seconds(op.invoke_t), 3),
                    "op_id": op.op_id,
                    "hostname": op.hostname,
                    "pop": op.value.get("pop"),
                    "error": op.error,
                }
            )
    data: dict[str, Any] = {"failed_answered": answered, "bare_200": len(bad), "examples": bad[:10]}
    if bad:
        first = bad[0]
        return CheckResult(
            name,
            False,
            f"{len(bad)} of {answered} failed requests got 200 without the origin's answer; "
            f"first at {first['t_s']}s via {first['pop']}: {first['error']}",
            data,
        )
    return CheckResult(
        name, True, f"{answered} failed request(s) answered, all with an edge error", data
    )
