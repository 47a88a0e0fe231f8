"""``no_corruption``: every response echoed its request id and body digest intact."""

from __future__ import annotations

from typing import Any

from harness.checks.params import CheckParams, scoped_operations
from harness.checks.registry import register
from harness.checks.result import CheckResult
from harness.journal.history import History

FLAGS = ("request_id_echo_ok", "digest_ok")


@register("no_corruption", CheckParams)
def no_corruption(history: History, params: CheckParams) -> CheckResult:
    """No response had a wrong request-id echo or body digest.

    Completed requests (``ok`` or ``fail``) carrying ``request_id_echo_ok``/``digest_ok`` are
    verified; ``info`` requests (no response) are not.
    """
    name = "no_corruption"
    verified = 0
    bad: list[dict[str, Any]] = []
    for op in scoped_operations(history, params):
        if op.phase == "info":
            continue
        flags = {flag: op.value.get(flag) for flag in FLAGS if op.value.get(flag) is not None}
        if not flags:
            continue
        verified += 1
        broken = sorted(flag for flag, ok in flags.items() if ok is not True)
        if broken:
            bad.append(
                {
                    "t_s": round(history.seconds(op.invoke_t), 3),
                    "op_id": op.op_id,
                    "f": op.f,
                    "hostname": op.hostname,
                    "failed": broken,
                }
            )
    data: dict[str, Any] = {"verified": verified, "corrupted": len(bad), "examples": bad[:10]}
    if verified == 0:
        return CheckResult(name, None, "no responses carried echo/digest results", data)
    if bad:
        first = bad[0]
        return CheckResult(
            name,
            False,
            f"{len(bad)} of {verified} responses corrupted; first at {first['t_s']}s: "
            f"{first['f']} {first['hostname']} failed {', '.join(first['failed'])}",
            data,
        )
    return CheckResult(name, True, f"{verified} responses, ids and digests all intact", data)
